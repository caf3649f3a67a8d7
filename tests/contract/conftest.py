"""Contract-suite fixtures.

Database: `db` runs each test against every SQL backend — SQLite always (a
temp file), PostgreSQL when NEXXUS_TEST_POSTGRES_DSN is set (e.g.
postgresql://postgres@127.0.0.1:5432/postgres); the PostgreSQL tables live in
a schema unique to this session (nexxus_test_<random>), dropped at the end.
Tests isolate themselves with a fresh `app_id`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from nexxus.adapters.database._sql_base import SqlDatabase
from nexxus.adapters.database.postgres import PostgresDatabase
from nexxus.adapters.database.sqlite import SqliteDatabase
from nexxus.core.config.settings import PostgresSettings, SqliteSettings

PG_DSN_ENV = "NEXXUS_TEST_POSTGRES_DSN"
_EXAMPLE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


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


@pytest.fixture(params=DB_BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path, pg_schema: str) -> AsyncIterator[SqlDatabase]:
    """A started database adapter, once per backend."""
    adapter = _make(request.param, tmp_path, pg_schema)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


def _make(backend: str, tmp_path: Path, pg_schema: str) -> SqlDatabase:
    if backend == "sqlite":
        return SqliteDatabase(SqliteSettings(path="db/nexxus.db"), data_dir=str(tmp_path))
    dsn = os.environ.get(PG_DSN_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL contract tests need {PG_DSN_ENV} (e.g. {_EXAMPLE_DSN})")
    return PostgresDatabase(PostgresSettings(dsn=dsn, schema=pg_schema, min_pool=1, max_pool=4))


@pytest.fixture
def db_factory(db: SqlDatabase, tmp_path: Path, pg_schema: str) -> Callable[[], SqlDatabase]:
    """More (unstarted) adapters on the same storage as `db`."""
    backend = db.name
    return lambda: _make(backend, tmp_path, pg_schema)


@pytest.fixture
def app_id() -> str:
    return f"app_{secrets.token_hex(6)}"
