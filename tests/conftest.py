"""Shared fixtures: real NATS and Valkey servers, and adapters built on them.

Servers (session scope, one per test run, in a temp dir, on free ports):
    nats_server    a `NatsServer` (JetStream on), or None when NEXXUS_TEST_NATS_URL is set
    redis_server   a `ValkeyServer`, or None when NEXXUS_TEST_REDIS_URL is set
    nats_url       the URL to use: NEXXUS_TEST_NATS_URL or nats_server.url
    redis_url      the URL to use: NEXXUS_TEST_REDIS_URL or redis_server.url
    opensearch_url an OpenSearch node: NEXXUS_TEST_OPENSEARCH_URL, or one started from
                   its Maven Central artifacts (`nexxus.devserver.searchengine`; needs
                   java and mvn). Started only when a test asks for it; without the
                   tools it skips, except under CI=true, where it fails.

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
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nexxus.adapters.bus.nats import NatsBus
from nexxus.adapters.store.redis import RedisSubscriptionStore
from nexxus.core.config.settings import NatsSettings, RedisSettings
from nexxus.devserver.searchengine import OpenSearchServer, SearchEngineUnavailable
from nexxus.devserver.servers import NatsServer, ValkeyServer


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
async def opensearch_url() -> AsyncIterator[str]:
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
            if os.environ.get("CI") == "true":
                pytest.fail(f"OpenSearch cannot start under CI: {exc}")
            pytest.skip(f"OpenSearch unavailable: {exc}")
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
