"""End-to-end fixtures: the whole mesh — real nats-server, Valkey, the four
services each in its own process — per database backend.

SQLite and PostgreSQL (`postgres_dsn`: a server the suite starts, or
NEXXUS_TEST_POSTGRES_DSN).
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from nexxus.core.config.settings import OidcProviderSettings, Settings
from nexxus.devserver.mesh import Mesh
from tests.e2e.harness import Api

BACKENDS = ["sqlite", "postgres"]
OIDC_ISSUER = "https://accounts.example.test"
OIDC_AUDIENCE = "nexxus-e2e"
OIDC_KID = "e2e-key-1"


@functools.cache
def oidc_private_key() -> rsa.RSAPrivateKey:
    """A locally generated RSA key standing in for an identity provider's."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def oidc_jwks() -> str:
    jwk = json.loads(RSAAlgorithm.to_jwk(oidc_private_key().public_key()))
    jwk.update({"kid": OIDC_KID, "use": "sig", "alg": "RS256"})
    return json.dumps({"keys": [jwk]})


def _settings(backend: str, data_dir: Path, pg_dsn: str = "") -> Settings:
    s = Settings()
    s.data_dir = str(data_dir)
    s.api.port = 0
    s.transport.grpc_port = 0
    s.transport.ws_port = 0
    s.transport.sse_port = 0
    # Dead transport nodes' connections expire within seconds (kill -9 tests).
    s.transport.lease_seconds = 4
    s.transport.heartbeat_seconds = 5
    s.writer.max_deliver = 3
    s.auth.access_token_ttl_seconds = 600
    s.logging.level = "INFO"
    s.auth.max_failed_logins_per_minute = 3
    s.observability.trace_sample_ratio = 1.0  # every write traced (tests/e2e/test_observability.py)
    s.auth.oidc = {"test": OidcProviderSettings(issuer=OIDC_ISSUER, jwks=oidc_jwks(), audience=OIDC_AUDIENCE)}
    if backend == "postgres":
        s.database.adapter = "postgres"
        s.database.postgres.dsn = pg_dsn
        s.database.postgres.schema = f"nexxus_e2e_{uuid.uuid4().hex[:8]}"
    return s


@contextlib.asynccontextmanager
async def running_mesh(settings: Settings, *, envoy: bool = False) -> AsyncIterator[Mesh]:
    """A started mesh (and Envoy in front when asked), stopped afterwards — and
    its PostgreSQL schema dropped, so parallel runs leave nothing behind."""
    m = Mesh(settings)
    try:
        try:
            await m.start()
            if envoy:
                await m.start_envoy(timeout=60)
        except BaseException:
            await m.stop()
            raise
        yield m
        await m.stop()
    finally:
        if settings.database.adapter == "postgres":
            import asyncpg

            conn = await asyncpg.connect(settings.database.postgres.dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database.postgres.schema}" CASCADE')
            finally:
                await conn.close()


def backend_dsn(request: pytest.FixtureRequest, backend: str) -> str:
    """The PostgreSQL DSN when `backend` needs one (the server starts on first use), else ""."""
    return str(request.getfixturevalue("postgres_dsn")) if backend == "postgres" else ""


@pytest.fixture(scope="session", params=BACKENDS)
async def mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    backend: str = request.param
    settings = _settings(backend, tmp_path_factory.mktemp(f"mesh-{backend}"), backend_dsn(request, backend))
    async with running_mesh(settings) as m:
        yield m


@pytest.fixture(scope="session")
async def api_channel(mesh: Mesh) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as channel:
        yield channel


@pytest.fixture(scope="session")
async def events_channel(mesh: Mesh) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.transport.grpc_port}") as channel:
        yield channel


@pytest.fixture(scope="session")
def operator(mesh: Mesh, api_channel: grpc.aio.Channel) -> Api:
    return Api(api_channel, mesh.settings.operator_key)


def new_app_id() -> str:
    return f"app-{uuid.uuid4().hex[:10]}"
