"""PostgreSQL database (asyncpg pool, JSONB documents).

Every table lives in `PostgresSettings.schema` (created if missing). `start()`
creates the schema and tables under a transaction-scoped advisory lock, so
several processes may start at once. Statements with parameters go through
asyncpg's prepared-statement cache; batches use ``executemany``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from nexxus.core.config.settings import PostgresSettings
from nexxus.core.errors import NexxusError
from nexxus.observability.metrics import observe_database_error

from ._sql_base import SqlDatabase
from ._sql_common import (
    SCHEMA_VERSION,
    Dialect,
    Row,
    Session,
    TransientConflict,
    db_unavailable,
    ddl_statements,
    unique_violation,
)

__all__ = ["PostgresDatabase"]

log = logging.getLogger("nexxus.database.postgres")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    OSError,
    asyncio.TimeoutError,
)
_DRIVER_ERRORS = (asyncpg.PostgresError, *_UNAVAILABLE)


def _translate(exc: BaseException) -> NexxusError:
    """A driver exception as a Nexxus error (the caller raises it `from exc`), counted."""
    return observe_database_error(_translate_driver(exc))


def _translate_driver(exc: BaseException) -> NexxusError:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return unique_violation(f"{exc.constraint_name} {exc}")
    if isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        return TransientConflict("a concurrent write conflicted; retry", internal=f"postgres: {exc}")
    if isinstance(exc, _UNAVAILABLE):
        return db_unavailable(f"postgres: {exc!r}")
    return NexxusError("the database failed", reason="DATABASE_ERROR", internal=f"postgres: {exc!r}")


def _rowcount(status: str) -> int:
    """The row count of a command tag ("UPDATE 3", "INSERT 0 1"; 0 for others)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PgSession(Session):
    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self.conn.fetch(sql, *params))
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            status: str = await self.conn.execute(sql, *params)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        return _rowcount(status)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self.conn.executemany(sql, rows)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc


class PostgresDatabase(SqlDatabase):
    """DatabaseAdapter and IdentityStore on PostgreSQL."""

    name = "postgres"

    def __init__(self, settings: PostgresSettings, *, data_dir: str = "") -> None:
        if not _IDENTIFIER.fullmatch(settings.schema):
            raise ValueError(f"database.postgres.schema: not a plain SQL identifier: {settings.schema!r}")
        self.settings = settings
        self.dialect = Dialect("postgres", settings.schema)
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.settings.dsn,
                min_size=self.settings.min_pool,
                max_size=self.settings.max_pool,
                # Statements stay prepared (no re-parsing), but are planned with
                # their parameters: a generic plan made while a table was small
                # (seq scans) would otherwise outlive its growth until ANALYZE.
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
        except _DRIVER_ERRORS as exc:
            raise db_unavailable(f"cannot connect to postgres: {exc!r}") from exc
        try:
            async with self._transaction() as s:
                await s.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", (f"nexxus.schema.{self.settings.schema}",)
                )
                await s.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.settings.schema}"')
                for stmt in ddl_statements(self.dialect):
                    await s.execute(stmt)
                if not await s.fetch(self.dialect.q("SELECT version FROM {t}schema_version")):
                    await s.execute(
                        self.dialect.q("INSERT INTO {t}schema_version (version) VALUES (?)"),
                        (SCHEMA_VERSION,),
                    )
        except BaseException:
            await self.stop()
            raise
        log.info("postgres database ready (schema %s)", self.settings.schema)

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, *_DRIVER_ERRORS):
                pool.terminate()

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresDatabase used before start() (or after stop())")
        return self._pool

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Session]:
        pool = self._require()
        try:
            conn = await pool.acquire()
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        try:
            yield _PgSession(conn)
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Session]:
        async with self._read() as session:
            assert isinstance(session, _PgSession)
            tx = session.conn.transaction()
            try:
                await tx.start()
            except _DRIVER_ERRORS as exc:
                raise _translate(exc) from exc
            try:
                yield session
            except BaseException:
                try:
                    await tx.rollback()
                except _DRIVER_ERRORS:
                    log.warning("rollback failed", exc_info=True)
                raise
            try:
                await tx.commit()
            except _DRIVER_ERRORS as exc:
                raise _translate(exc) from exc
