"""Shared fixtures: real NATS and Valkey servers, and adapters built on them.

Servers (session scope, one per test run, in a temp dir, on free ports):
    nats_server    a `NatsServer` (JetStream on), or None when NEXXUS_TEST_NATS_URL is set
    redis_server   a `ValkeyServer`, or None when NEXXUS_TEST_REDIS_URL is set
    nats_url       the URL to use: NEXXUS_TEST_NATS_URL or nats_server.url
    redis_url      the URL to use: NEXXUS_TEST_REDIS_URL or redis_server.url
    postgres_dsn   NEXXUS_TEST_POSTGRES_DSN, or a PostgreSQL server started from the machine's
                   binaries (Debian's `postgresql`) on first use; skips when there are none,
                   fails under CI=true
    opensearch_url NEXXUS_TEST_OPENSEARCH_URL, or an OpenSearch node started from its Maven
                   Central artifacts (`nexxus.devserver.searchengine`; needs java and mvn) on
                   first use; skips without them, fails under CI=true

Adapters (function scope, isolated per test):
    nats_settings  NatsSettings with a unique stream prefix and subject prefix
    bus            a started NatsBus on those settings (streams deleted afterwards)
    redis_settings RedisSettings with a unique key prefix
    store          a started RedisSubscriptionStore on those settings (keys deleted afterwards)

Sub-directory conftests add their own fixtures on top of these.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nexxus.adapters.bus.nats import NatsBus
from nexxus.adapters.store.redis import RedisSubscriptionStore
from nexxus.core.config.settings import NatsSettings, RedisSettings
from nexxus.devserver.postgres import PostgresNotFound, PostgresServer
from nexxus.devserver.searchengine import OpenSearchServer, SearchEngineUnavailable
from nexxus.devserver.servers import NatsServer, ValkeyServer

PG_DSN_ENV = "NEXXUS_TEST_POSTGRES_DSN"


def unique(prefix: str = "t") -> str:
    """A short unique token usable in stream names, subjects and keys."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer | None]:
    if os.environ.get("NEXXUS_TEST_NATS_URL"):
        yield None
        return
    async with NatsServer(Path(tmp_path_factory.mktemp("nats"))) as server:
        yield server


@pytest.fixture(scope="session")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ValkeyServer | None]:
    if os.environ.get("NEXXUS_TEST_REDIS_URL"):
        yield None
        return
    async with ValkeyServer(Path(tmp_path_factory.mktemp("valkey"))) as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer | None) -> str:
    return os.environ.get("NEXXUS_TEST_NATS_URL") or (nats_server.url if nats_server else "")


@pytest.fixture(scope="session")
def redis_url(redis_server: ValkeyServer | None) -> str:
    return os.environ.get("NEXXUS_TEST_REDIS_URL") or (redis_server.url if redis_server else "")


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL DSN for the PostgreSQL variants of the suite (started only when one runs)."""
    configured = os.environ.get(PG_DSN_ENV)
    if configured:
        yield configured
        return
    try:
        server = PostgresServer()
    except PostgresNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {exc}")
        pytest.skip(f"PostgreSQL variants: {exc} (or set {PG_DSN_ENV})")
    with server:
        yield server.dsn


@pytest.fixture(scope="session")
async def opensearch_url() -> AsyncIterator[str]:
    """An OpenSearch node for the search-engine variants of the suite (started only when one runs)."""
    configured = os.environ.get("NEXXUS_TEST_OPENSEARCH_URL")
    if configured:
        yield configured
        return
    # Not under pytest's own temp dir: the node runs as an unprivileged user when we are
    # root, and that user must reach its data directory.
    data_dir = Path(tempfile.mkdtemp(prefix="nexxus-opensearch-"))
    os.chmod(data_dir, 0o755)
    server = OpenSearchServer(data_dir)
    try:
        try:
            await server.start()
        except SearchEngineUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"CI needs OpenSearch: {exc}")
            pytest.skip(f"search-engine variants: {exc} (or set NEXXUS_TEST_OPENSEARCH_URL)")
        yield server.url
    finally:
        await server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- adapters


@pytest.fixture
def nats_settings(nats_url: str) -> NatsSettings:
    token = unique()
    return NatsSettings(servers=[nats_url], stream_prefix=token.upper(), subject_prefix=token)


@pytest.fixture
async def bus(nats_settings: NatsSettings) -> AsyncIterator[NatsBus]:
    bus = NatsBus(nats_settings)
    await bus.start()
    try:
        yield bus
    finally:
        with contextlib.suppress(Exception):
            await bus.delete_streams()
        await bus.stop()


@pytest.fixture
def redis_settings(redis_url: str) -> RedisSettings:
    return RedisSettings(url=redis_url, key_prefix=unique("nxt"), change_log_length=1000)


@pytest.fixture
async def store(redis_settings: RedisSettings) -> AsyncIterator[RedisSubscriptionStore]:
    store = RedisSubscriptionStore(redis_settings)
    await store.start()
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            await store.delete_all()
        await store.stop()


# --------------------------------------------------------------------------- reporting


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how the search-engine variants went, so a CI log shows that they ran."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if "searchengine" in getattr(report, "keywords", {}) and getattr(report, "when", "call") in (
                "call",
                "setup",
            ):
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        terminalreporter.write_line(f"search-engine (OpenSearch) variants: {detail}")
