"""The embedded default database: one SQLite file (aiosqlite).

WAL mode with ``synchronous=NORMAL``; one writer connection (every write,
identity or model, is serialized through it with ``BEGIN IMMEDIATE``, which
also serializes writers of other processes on the same file) and one reader
connection, which WAL lets read while the writer writes. Documents are JSON
text; timestamps unix microseconds. Settings: `SqliteSettings` (the path is
relative to ``data_dir``; ``:memory:`` keeps everything in one connection).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import aiosqlite

from nexxus.core.config.settings import SqliteSettings
from nexxus.core.errors import NexxusError
from nexxus.observability.metrics import observe_database_error

from ._sql_base import SqlDatabase
from ._sql_common import (
    SCHEMA_VERSION,
    Dialect,
    Row,
    Session,
    db_unavailable,
    ddl_statements,
    unique_violation,
)

__all__ = ["SqliteDatabase"]

log = logging.getLogger("nexxus.database.sqlite")

_BUSY_TIMEOUT_MS = 10_000

T = TypeVar("T")


def _translate(exc: Exception) -> NexxusError:
    """A driver exception as a Nexxus error (the caller raises it `from exc`), counted."""
    return observe_database_error(_translate_driver(exc))


def _translate_driver(exc: Exception) -> NexxusError:
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in text.upper():
        return unique_violation(text)
    closed = isinstance(exc, sqlite3.ProgrammingError | ValueError) and "closed" in text.lower()
    if closed or isinstance(exc, sqlite3.OperationalError | OSError):
        # locked / busy, I/O errors, a closed connection.
        return db_unavailable(f"sqlite: {exc!r}")
    return NexxusError("the database failed", reason="DATABASE_ERROR", internal=f"sqlite: {exc!r}")


class _SqliteSession(Session):
    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as exc:
            raise _translate(exc) from exc

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self._conn.execute(sql, params)
        except (sqlite3.Error, ValueError) as exc:
            raise _translate(exc) from exc
        return max(cursor.rowcount, 0)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.executemany_count(sql, rows)

    async def executemany_count(self, sql: str, rows: Sequence[Sequence[Any]]) -> int | None:
        try:
            cursor = await self._conn.executemany(sql, rows)
        except (sqlite3.Error, ValueError) as exc:
            raise _translate(exc) from exc
        return max(cursor.rowcount, 0)


class _ThreadSession(Session):
    """A session on the raw sqlite3 connection, for code running in that connection's
    own (aiosqlite) thread. Its coroutines never suspend, so `_drive` runs a
    coroutine that only awaits them to completion synchronously."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except (sqlite3.Error, ValueError) as exc:
            raise _translate(exc) from exc

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return max(self._conn.execute(sql, params).rowcount, 0)
        except (sqlite3.Error, ValueError) as exc:
            raise _translate(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.executemany_count(sql, rows)

    async def executemany_count(self, sql: str, rows: Sequence[Sequence[Any]]) -> int | None:
        try:
            return max(self._conn.executemany(sql, rows).rowcount, 0)
        except (sqlite3.Error, ValueError) as exc:
            raise _translate(exc) from exc


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (it awaits only `_ThreadSession`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a coroutine on the sqlite connection thread tried to suspend")


def _transaction_in_thread(conn: sqlite3.Connection, work: Callable[[Session], Awaitable[T]]) -> T:
    """BEGIN IMMEDIATE, `work`, COMMIT (ROLLBACK on error) — in the connection's thread."""
    session = _ThreadSession(conn)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except (sqlite3.Error, ValueError) as exc:
        raise _translate(exc) from exc
    try:
        coro = work(session)
        assert isinstance(coro, Coroutine)
        result: T = _drive(coro)
        try:
            conn.execute("COMMIT")
        except (sqlite3.Error, ValueError) as exc:
            raise _translate(exc) from exc
    except BaseException:
        with suppress(sqlite3.Error, ValueError):
            conn.execute("ROLLBACK")
        raise
    return result


class SqliteDatabase(SqlDatabase):
    """DatabaseAdapter and IdentityStore on one SQLite file."""

    name = "sqlite"

    def __init__(self, settings: SqliteSettings, *, data_dir: str) -> None:
        self.settings = settings
        path = settings.path
        if path != ":memory:" and not os.path.isabs(path):
            path = os.path.join(data_dir, path)
        self.path = path
        self._dir = os.path.dirname(os.path.abspath(path))
        self.dialect = Dialect("sqlite")
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # Serializes this process's transactions on the single writer connection.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._writer is not None:
            return
        try:
            if self.path != ":memory:":
                await asyncio.to_thread(os.makedirs, self._dir, exist_ok=True)
            self._writer = await self._connect()
            await self._writer.execute("PRAGMA journal_mode=WAL")
            async with self._transaction() as s:
                for stmt in ddl_statements(self.dialect):
                    await s.execute(stmt)
                if not await s.fetch("SELECT version FROM schema_version"):
                    await s.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            if self.path == ":memory:":
                self._reader = self._writer
            else:
                self._reader = await self._connect()
                await self._reader.execute("PRAGMA query_only=ON")
        except (sqlite3.Error, OSError, ValueError) as exc:
            await self.stop()
            raise _translate(exc) from exc
        except BaseException:
            await self.stop()
            raise
        log.info("sqlite database ready at %s", self.path)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            # Not a database file, say: close it, or its worker thread keeps the process alive.
            await conn.close()
            raise
        return conn

    async def stop(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for conn in {id(c): c for c in (reader, writer) if c is not None}.values():
            with suppress(sqlite3.Error, ValueError):
                await conn.close()

    def _require(self, conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise RuntimeError("SqliteDatabase used before start() (or after stop())")
        return conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Session]:
        yield _SqliteSession(self._require(self._reader))

    async def _in_transaction(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """The whole transaction in ONE hop to the writer connection's thread (not
        one per statement): the writer's per-batch cost at low load."""
        conn = self._require(self._writer)
        async with self._lock:
            # aiosqlite runs `fn(*args)` in the connection's own thread (its queue
            # also orders it after every statement queued before).
            run: Callable[[Callable[[], T]], Awaitable[T]] = conn._execute
            try:
                return await run(lambda: _transaction_in_thread(conn._conn, work))
            except ValueError as exc:  # aiosqlite: "Connection closed"
                if "closed" in str(exc).lower():
                    raise _translate(exc) from exc
                raise

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Session]:
        conn = self._require(self._writer)
        session = _SqliteSession(conn)
        async with self._lock:
            await session.execute("BEGIN IMMEDIATE")
            try:
                yield session
            except BaseException:
                with suppress(sqlite3.Error, ValueError):
                    await conn.execute("ROLLBACK")
                raise
            try:
                await session.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error, ValueError):
                    await conn.execute("ROLLBACK")
                raise
