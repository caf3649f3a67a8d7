"""SQL plumbing shared by the SQLite and PostgreSQL adapters.

Statements are written once, as templates with ``?`` placeholders and ``{t}``
where a table name needs its schema prefix; `Dialect.q` turns a template into
the SQL of one backend (``$1, $2…`` and ``"schema".table`` on PostgreSQL).

Storage conventions (both backends):
  - JSON documents: TEXT (SQLite) / JSONB (PostgreSQL), exchanged as JSON text.
  - Timestamps: INTEGER unix microseconds (SQLite) / TIMESTAMPTZ (PostgreSQL).
  - Booleans: INTEGER 0/1 (SQLite) / BOOLEAN (PostgreSQL).
  - User names and e-mails are unique per application case-insensitively, on
    ``username_lc`` / ``email_lc`` columns computed with `str.lower` in Python,
    so both backends fold case identically (SQLite's lower() is ASCII-only).

`Session` is the small driver-neutral surface (fetch / execute / executemany
inside one connection) that the shared logic runs on; each adapter implements
it and translates driver exceptions (unique violation → AlreadyExists,
connection failures → Unavailable).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from nexxus.core.errors import AlreadyExists, InvalidArgument, Unavailable
from nexxus.core.models import (
    AppRecord,
    DeviceRecord,
    OperationRecord,
    RefreshTokenRecord,
    StoredObject,
    UserRecord,
)

from ._unique import key_taken

__all__ = [
    "SCHEMA_VERSION",
    "Dialect",
    "DialectName",
    "Row",
    "Session",
    "TransientConflict",
    "db_unavailable",
    "ddl_statements",
    "decode_token",
    "encode_token",
    "unique_violation",
]

DialectName = Literal["sqlite", "postgres"]
Row = Sequence[Any]

# Bump with a migration step when the tables change.
SCHEMA_VERSION = 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLACEHOLDER = re.compile(r"\?")


# A unique index or key (as the drivers name it) → the field it guards.
_UNIQUE_FIELDS = (
    (("users_username", "users.username_lc"), "username"),
    (("users_email", "users.email_lc"), "email"),
    (("user_external_ids",), "external_id"),
)


def db_unavailable(internal: str) -> Unavailable:
    """The client's view of a database outage; the details go to the operator's log only."""
    return Unavailable(
        "the database is unavailable; retry later", reason="DATABASE_UNAVAILABLE", internal=internal
    )


def unique_violation(detail: str) -> AlreadyExists:
    """AlreadyExists for a driver's unique-violation text, naming the field, never the SQL."""
    for markers, field in _UNIQUE_FIELDS:
        if any(marker in detail for marker in markers):
            return key_taken(field)
    return AlreadyExists("it already exists")


class Dialect:
    """What differs between the two SQL backends, in one place."""

    def __init__(self, name: DialectName, schema: str = "") -> None:
        self.name: DialectName = name
        self.prefix = f'"{schema}".' if schema else ""
        self._cache: dict[str, str] = {}

    @property
    def is_pg(self) -> bool:
        return self.name == "postgres"

    def ph(self, index: int) -> str:
        """The placeholder of the `index`-th (1-based) parameter."""
        return f"${index}" if self.is_pg else "?"

    def q(self, template: str) -> str:
        """A statement template as this backend's SQL (cached)."""
        sql = self._cache.get(template)
        if sql is None:
            sql = template.replace("{t}", self.prefix)
            if self.is_pg:
                counter = iter(range(1, 10_000))
                sql = _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)
            self._cache[template] = sql
        return sql

    # ---- value codecs

    def ts_in(self, dt: datetime) -> Any:
        if self.is_pg:
            return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
        return to_micros(dt)

    def ts_out(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return from_micros(int(value))

    def ts_opt_in(self, dt: datetime | None) -> Any:
        return None if dt is None else self.ts_in(dt)

    def ts_opt_out(self, value: Any) -> datetime | None:
        return None if value is None else self.ts_out(value)

    def later_of(self, column: str, placeholder: str) -> str:
        """The later of a nullable timestamp column and a parameter (never NULL
        when the parameter is not)."""
        if self.is_pg:
            return f"GREATEST({column}, {placeholder}::timestamptz)"
        return f"MAX(COALESCE({column}, 0), {placeholder})"

    def in_list(self, column: str, placeholder: str) -> str:
        """``column`` is one of a list bound as one parameter (see `list_param`)."""
        if self.is_pg:
            return f"{column} = ANY({placeholder}::text[])"
        return f"{column} IN (SELECT value FROM json_each({placeholder}))"

    def list_param(self, values: Sequence[str]) -> Any:
        return list(values) if self.is_pg else json.dumps(list(values))


def to_micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


# --------------------------------------------------------------------------- DDL

_TABLES = """
CREATE TABLE IF NOT EXISTS {t}schema_version (
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}objects (
  app_id TEXT NOT NULL, model TEXT NOT NULL, id TEXT NOT NULL,
  owner_id TEXT NOT NULL, version BIGINT NOT NULL, data {json} NOT NULL,
  created_at {ts} NOT NULL, updated_at {ts} NOT NULL,
  PRIMARY KEY (app_id, model, id)
);
CREATE INDEX IF NOT EXISTS objects_owner ON {t}objects (app_id, model, owner_id, id);
CREATE TABLE IF NOT EXISTS {t}tombstones (
  app_id TEXT NOT NULL, model TEXT NOT NULL, id TEXT NOT NULL,
  version BIGINT NOT NULL, deleted_at {ts} NOT NULL,
  PRIMARY KEY (app_id, model, id)
);
CREATE INDEX IF NOT EXISTS tombstones_deleted ON {t}tombstones (deleted_at);
CREATE TABLE IF NOT EXISTS {t}operations (
  app_id TEXT NOT NULL, command_id TEXT NOT NULL, object_id TEXT NOT NULL,
  ok {bool} NOT NULL, error_code TEXT NOT NULL, error_message TEXT NOT NULL,
  error_reason TEXT NOT NULL, version BIGINT NOT NULL, event {blob} NOT NULL,
  created_at {ts} NOT NULL,
  PRIMARY KEY (app_id, command_id)
);
CREATE INDEX IF NOT EXISTS operations_created ON {t}operations (created_at);
CREATE TABLE IF NOT EXISTS {t}apps (
  id TEXT PRIMARY KEY, display_name TEXT NOT NULL, optional_auth {bool} NOT NULL,
  server_key_hash TEXT NOT NULL, created_at {ts} NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}schemas (
  app_id TEXT NOT NULL, name TEXT NOT NULL, schema {json} NOT NULL,
  PRIMARY KEY (app_id, name)
);
CREATE TABLE IF NOT EXISTS {t}users (
  app_id TEXT NOT NULL, id TEXT NOT NULL, username TEXT NOT NULL,
  username_lc TEXT NOT NULL, email TEXT NOT NULL, email_lc TEXT NOT NULL,
  display_name TEXT NOT NULL, password_hash TEXT NOT NULL, profile {json} NOT NULL,
  tokens_valid_after {ts}, created_at {ts} NOT NULL,
  PRIMARY KEY (app_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username ON {t}users (app_id, username_lc)
  WHERE username_lc <> '';
CREATE UNIQUE INDEX IF NOT EXISTS users_email ON {t}users (app_id, email_lc)
  WHERE email_lc <> '';
CREATE TABLE IF NOT EXISTS {t}user_external_ids (
  app_id TEXT NOT NULL, external_id TEXT NOT NULL, user_id TEXT NOT NULL,
  PRIMARY KEY (app_id, external_id)
);
CREATE INDEX IF NOT EXISTS user_external_ids_user ON {t}user_external_ids (app_id, user_id);
CREATE TABLE IF NOT EXISTS {t}devices (
  app_id TEXT NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL, name TEXT NOT NULL,
  platform TEXT NOT NULL, transport TEXT NOT NULL, tokens_valid_after {ts},
  created_at {ts} NOT NULL,
  PRIMARY KEY (app_id, id)
);
CREATE INDEX IF NOT EXISTS devices_user ON {t}devices (app_id, user_id, id);
CREATE TABLE IF NOT EXISTS {t}refresh_tokens (
  app_id TEXT NOT NULL, token_hash TEXT NOT NULL, user_id TEXT NOT NULL,
  device_id TEXT NOT NULL, expires_at {ts} NOT NULL, revoked {bool} NOT NULL,
  created_at {ts} NOT NULL,
  PRIMARY KEY (app_id, token_hash)
);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON {t}refresh_tokens (app_id, user_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_device ON {t}refresh_tokens (app_id, device_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_expires ON {t}refresh_tokens (expires_at);
"""

_TYPES: dict[DialectName, dict[str, str]] = {
    "sqlite": {"json": "TEXT", "ts": "INTEGER", "bool": "INTEGER", "blob": "BLOB"},
    "postgres": {"json": "JSONB", "ts": "TIMESTAMPTZ", "bool": "BOOLEAN", "blob": "BYTEA"},
}

# Every table holding rows of an application, with its app id column.
APP_TABLES = (
    ("objects", "app_id"),
    ("tombstones", "app_id"),
    ("operations", "app_id"),
    ("schemas", "app_id"),
    ("user_external_ids", "app_id"),
    ("users", "app_id"),
    ("devices", "app_id"),
    ("refresh_tokens", "app_id"),
    ("apps", "id"),
)


def ddl_statements(dialect: Dialect) -> list[str]:
    """The idempotent CREATE statements of every table and index."""
    text = _TABLES
    for key, sql_type in _TYPES[dialect.name].items():
        text = text.replace("{" + key + "}", sql_type)
    return [dialect.q(stmt.strip()) for stmt in text.split(";") if stmt.strip()]


# --------------------------------------------------------------------------- sessions


class TransientConflict(Unavailable):
    """A deadlock or serialization failure: retrying the transaction may succeed."""

    default_reason = "TRANSIENT_CONFLICT"


class Session(ABC):
    """One connection (usually inside a transaction). SQL passed here is final
    (already through `Dialect.q`). Implementations translate driver errors."""

    @abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def executemany_count(self, sql: str, rows: Sequence[Sequence[Any]]) -> int | None:
        """`executemany`, returning the total rows changed when the driver knows it."""
        await self.executemany(sql, rows)
        return None

    async def fetchrow(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None


# --------------------------------------------------------------------------- rows ↔ records

OBJECT_COLUMNS = "app_id, model, id, owner_id, version, data, created_at, updated_at"
OPERATION_COLUMNS = (
    "app_id, command_id, object_id, ok, error_code, error_message, error_reason, version, event, created_at"
)
USER_COLUMNS = (
    "app_id, id, username, email, display_name, password_hash, profile, tokens_valid_after, created_at"
)
DEVICE_COLUMNS = "app_id, id, user_id, name, platform, transport, tokens_valid_after, created_at"
TOKEN_COLUMNS = "app_id, token_hash, user_id, device_id, expires_at, revoked, created_at"
APP_COLUMNS = "id, display_name, optional_auth, server_key_hash, created_at"


def object_params(d: Dialect, obj: StoredObject) -> tuple[Any, ...]:
    return (
        obj.app_id,
        obj.model,
        obj.id,
        obj.owner_id,
        obj.version,
        dumps(obj.data),
        d.ts_in(obj.created_at),
        d.ts_in(obj.updated_at),
    )


def row_to_object(d: Dialect, r: Row) -> StoredObject:
    return StoredObject(
        app_id=r[0],
        model=r[1],
        id=r[2],
        owner_id=r[3],
        version=int(r[4]),
        data=loads(r[5]),
        created_at=d.ts_out(r[6]),
        updated_at=d.ts_out(r[7]),
    )


def operation_params(d: Dialect, op: OperationRecord) -> tuple[Any, ...]:
    return (
        op.app_id,
        op.command_id,
        op.object_id,
        op.ok,
        op.error_code,
        op.error_message,
        op.error_reason,
        op.version,
        op.event,
        d.ts_in(op.created_at),
    )


def row_to_operation(d: Dialect, r: Row) -> OperationRecord:
    return OperationRecord(
        app_id=r[0],
        command_id=r[1],
        object_id=r[2],
        ok=bool(r[3]),
        error_code=r[4],
        error_message=r[5],
        error_reason=r[6],
        version=int(r[7]),
        event=bytes(r[8]),
        created_at=d.ts_out(r[9]),
    )


def app_params(d: Dialect, app: AppRecord) -> tuple[Any, ...]:
    return (app.id, app.display_name, app.optional_auth, app.server_key_hash, d.ts_in(app.created_at))


def row_to_app(d: Dialect, r: Row) -> AppRecord:
    return AppRecord(
        id=r[0],
        display_name=r[1],
        optional_auth=bool(r[2]),
        server_key_hash=r[3],
        created_at=d.ts_out(r[4]),
    )


def user_params(d: Dialect, u: UserRecord) -> tuple[Any, ...]:
    """Parameters for (app_id, id, username, username_lc, email, email_lc,
    display_name, password_hash, profile, tokens_valid_after, created_at)."""
    return (
        u.app_id,
        u.id,
        u.username,
        u.username.lower(),
        u.email,
        u.email.lower(),
        u.display_name,
        u.password_hash,
        dumps(u.profile),
        d.ts_opt_in(u.tokens_valid_after),
        d.ts_in(u.created_at),
    )


def row_to_user(d: Dialect, r: Row, external_ids: list[str]) -> UserRecord:
    return UserRecord(
        app_id=r[0],
        id=r[1],
        username=r[2],
        email=r[3],
        display_name=r[4],
        password_hash=r[5],
        profile=loads(r[6]),
        external_ids=external_ids,
        tokens_valid_after=d.ts_opt_out(r[7]),
        created_at=d.ts_out(r[8]),
    )


def device_params(d: Dialect, dev: DeviceRecord) -> tuple[Any, ...]:
    return (
        dev.app_id,
        dev.id,
        dev.user_id,
        dev.name,
        dev.platform,
        dev.transport,
        d.ts_opt_in(dev.tokens_valid_after),
        d.ts_in(dev.created_at),
    )


def row_to_device(d: Dialect, r: Row) -> DeviceRecord:
    return DeviceRecord(
        app_id=r[0],
        id=r[1],
        user_id=r[2],
        name=r[3],
        platform=r[4],
        transport=r[5],
        tokens_valid_after=d.ts_opt_out(r[6]),
        created_at=d.ts_out(r[7]),
    )


def token_params(d: Dialect, t: RefreshTokenRecord) -> tuple[Any, ...]:
    return (
        t.app_id,
        t.token_hash,
        t.user_id,
        t.device_id,
        d.ts_in(t.expires_at),
        t.revoked,
        d.ts_in(t.created_at),
    )


def row_to_token(d: Dialect, r: Row) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        app_id=r[0],
        token_hash=r[1],
        user_id=r[2],
        device_id=r[3],
        expires_at=d.ts_out(r[4]),
        revoked=bool(r[5]),
        created_at=d.ts_out(r[6]),
    )


# --------------------------------------------------------------------------- page tokens


def encode_token(payload: Any) -> str:
    """An opaque, URL-safe page token for a JSON-able payload."""
    return base64.urlsafe_b64encode(dumps(payload).encode()).decode().rstrip("=")


def decode_token(token: str) -> Any:
    """The payload of `encode_token`; InvalidArgument(field="page_token") when malformed."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("malformed page token", field="page_token") from exc
