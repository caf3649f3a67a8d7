"""Contract-suite fixtures.

Database: `db` runs each test against every backend — SQLite (a temp file),
PostgreSQL (`postgres_dsn`: a server the suite starts, or
NEXXUS_TEST_POSTGRES_DSN) and OpenSearch (`opensearch_url`: a node the suite
starts, or NEXXUS_TEST_OPENSEARCH_URL). The PostgreSQL tables live in a schema
unique to this session (nexxus_test_<random>), dropped at the end; the
OpenSearch indices under an index prefix unique to this session.
Tests isolate themselves with a fresh `app_id`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from nexxus.adapters.database._sql_base import SqlDatabase
from nexxus.adapters.database.opensearch import OpenSearchDatabase
from nexxus.adapters.database.postgres import PostgresDatabase
from nexxus.adapters.database.sqlite import SqliteDatabase
from nexxus.core.config.settings import OpenSearchSettings, PostgresSettings, SqliteSettings

DB_BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("opensearch", marks=pytest.mark.searchengine),
]
# One index prefix per session: the suite's indices never meet another run's.
ENGINE_PREFIX = f"nexxus-test-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class PgTarget:
    dsn: str
    schema: str


@pytest.fixture(scope="session")
def pg_target(postgres_dsn: str) -> Iterator[PgTarget]:
    """The PostgreSQL server and a schema unique to this test session, dropped at the end."""
    target = PgTarget(postgres_dsn, f"nexxus_test_{secrets.token_hex(4)}")
    yield target

    async def drop() -> None:
        conn = await asyncpg.connect(target.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=DB_BACKENDS)
def db_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SqlDatabase]:
    """Unstarted adapters on one storage, once per backend (PostgreSQL started on first use)."""
    if request.param == "sqlite":
        return lambda: SqliteDatabase(SqliteSettings(path="db/nexxus.db"), data_dir=str(tmp_path))
    if request.param == "opensearch":
        url: str = request.getfixturevalue("opensearch_url")
        settings = OpenSearchSettings(hosts=[url], index_prefix=ENGINE_PREFIX, refresh="true")
        # The same ports and contract as the SQL adapters (the suite is typed on SqlDatabase).
        return lambda: OpenSearchDatabase(settings)  # type: ignore[return-value]
    pg: PgTarget = request.getfixturevalue("pg_target")
    return lambda: PostgresDatabase(PostgresSettings(dsn=pg.dsn, schema=pg.schema, min_pool=1, max_pool=4))


@pytest.fixture
async def db(db_factory: Callable[[], SqlDatabase]) -> AsyncIterator[SqlDatabase]:
    """A started database adapter, once per backend."""
    adapter = db_factory()
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


@pytest.fixture
def app_id() -> str:
    return f"app_{secrets.token_hex(6)}"
