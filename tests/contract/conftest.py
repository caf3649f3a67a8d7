"""Contract-suite fixtures.

Database: `db` runs each test against every backend — SQLite always (a
temp file), PostgreSQL when NEXXUS_TEST_POSTGRES_DSN is set (e.g.
postgresql://postgres@127.0.0.1:5432/postgres), and OpenSearch (a real node,
`opensearch_url`). The PostgreSQL tables live in a schema unique to this session
(nexxus_test_<random>), dropped at the end; the OpenSearch indices under a
prefix unique to this session, deleted at the end. Tests isolate themselves
with a fresh `app_id`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from nexxus.adapters.database._sql_base import SqlDatabase
from nexxus.adapters.database.opensearch import OpenSearchDatabase
from nexxus.adapters.database.postgres import PostgresDatabase
from nexxus.adapters.database.sqlite import SqliteDatabase
from nexxus.core.config.settings import OpenSearchSettings, PostgresSettings, SqliteSettings

PG_DSN_ENV = "NEXXUS_TEST_POSTGRES_DSN"
_EXAMPLE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("opensearch", marks=pytest.mark.searchengine),
]


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema unique to this test session, dropped at the end."""
    schema = f"nexxus_test_{secrets.token_hex(4)}"
    yield schema
    dsn = os.environ.get(PG_DSN_ENV)
    if dsn:
        import asyncio

        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.fixture(scope="session")
async def engine_prefix() -> AsyncIterator[str]:
    """The index prefix of this session's search-engine indices; deleted at the end from
    a server given by NEXXUS_TEST_OPENSEARCH_URL (a node the fixtures started goes away whole)."""
    prefix = f"nexxus-test-{secrets.token_hex(4)}"
    yield prefix
    url = os.environ.get("NEXXUS_TEST_OPENSEARCH_URL")
    if url and "opensearch" in _ENGINE_URL:
        from opensearchpy import AsyncOpenSearch

        client = AsyncOpenSearch(hosts=[url])
        try:
            await client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        finally:
            await client.close()


# backend -> URL of its server, once a test asked for it.
_ENGINE_URL: dict[str, str] = {}


@pytest.fixture(params=DB_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of `db`; starts the search engine node only when it is asked for."""
    name = str(request.param)
    if name == "opensearch":
        _ENGINE_URL[name] = request.getfixturevalue("opensearch_url")
    return name


@pytest.fixture
async def db(backend: str, tmp_path: Path, pg_schema: str, engine_prefix: str) -> AsyncIterator[SqlDatabase]:
    """A started database adapter, once per backend."""
    adapter = _make(backend, tmp_path, pg_schema, engine_prefix)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


def _make(backend: str, tmp_path: Path, pg_schema: str, engine_prefix: str) -> SqlDatabase:
    if backend == "sqlite":
        return SqliteDatabase(SqliteSettings(path="db/nexxus.db"), data_dir=str(tmp_path))
    if backend == "opensearch":
        settings = OpenSearchSettings(
            hosts=[_ENGINE_URL["opensearch"]], index_prefix=engine_prefix, refresh="true"
        )
        # The same port and contract as the SQL adapters (the suite is typed on SqlDatabase).
        return OpenSearchDatabase(settings)  # type: ignore[return-value]
    dsn = os.environ.get(PG_DSN_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL contract tests need {PG_DSN_ENV} (e.g. {_EXAMPLE_DSN})")
    return PostgresDatabase(PostgresSettings(dsn=dsn, schema=pg_schema, min_pool=1, max_pool=4))


@pytest.fixture
def db_factory(
    db: SqlDatabase, tmp_path: Path, pg_schema: str, engine_prefix: str
) -> Callable[[], SqlDatabase]:
    """More (unstarted) adapters on the same storage as `db`."""
    backend = db.name
    return lambda: _make(backend, tmp_path, pg_schema, engine_prefix)


@pytest.fixture
def app_id() -> str:
    return f"app_{secrets.token_hex(6)}"
