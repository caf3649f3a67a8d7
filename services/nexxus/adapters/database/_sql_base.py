"""`SqlDatabase`: DatabaseAdapter + IdentityStore over a `Session`, written once
for SQLite and PostgreSQL. A subclass supplies the connections (`_read`,
`_transaction`), the `Dialect`, and `start` / `stop`."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from nexxus.core.errors import InvalidArgument, NotFound
from nexxus.core.models import (
    AppRecord,
    DeviceRecord,
    OperationRecord,
    RefreshTokenRecord,
    SortKey,
    StoredObject,
    UserRecord,
)
from nexxus.core.ports import DatabaseAdapter, IdentityStore, SearchPage, WriteOutcome

from ._sql_common import (
    APP_COLUMNS,
    APP_TABLES,
    DEVICE_COLUMNS,
    TOKEN_COLUMNS,
    USER_COLUMNS,
    Dialect,
    Row,
    Session,
    app_params,
    decode_token,
    device_params,
    dumps,
    encode_token,
    loads,
    row_to_app,
    row_to_device,
    row_to_object,
    row_to_operation,
    row_to_token,
    row_to_user,
    token_params,
    user_params,
)
from ._sql_search import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, build_search
from ._sql_writes import SELECT_OBJECT, SELECT_OPERATION, WriteRace, apply_fast, apply_slow

if TYPE_CHECKING:
    from nexxus.core.filterquery import FilterNode
    from nexxus.core.schema import ModelSchema
    from nexxus.v1.internal_pb2 import WriteCommand

__all__ = ["SqlDatabase"]

T = TypeVar("T")

_INSERT_USER = (
    "INSERT INTO {t}users (app_id, id, username, username_lc, email, email_lc, display_name,"
    " password_hash, profile, tokens_valid_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EXTERNAL = "INSERT INTO {t}user_external_ids (app_id, external_id, user_id) VALUES (?, ?, ?)"
_SELECT_USER = f"SELECT {USER_COLUMNS} FROM {{t}}users WHERE app_id = ? AND "
_USER_UPDATABLE = frozenset(
    {"username", "email", "display_name", "password_hash", "profile", "external_ids", "tokens_valid_after"}
)


class SqlDatabase(DatabaseAdapter, IdentityStore):
    """The shared implementation; see `SqliteDatabase` and `PostgresDatabase`."""

    dialect: Dialect

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Session]:
        """A session for reads (autocommit)."""

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Session]:
        """A session inside a write transaction: committed on exit, rolled back on error."""

    def _q(self, template: str) -> str:
        return self.dialect.q(template)

    async def _fetch(self, template: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._read() as s:
            return await s.fetch(self._q(template), params)

    async def _fetchrow(self, template: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._fetch(template, params)
        return rows[0] if rows else None

    async def _execute(self, template: str, params: Sequence[Any] = ()) -> int:
        async with self._transaction() as s:
            return await s.execute(self._q(template), params)

    # ------------------------------------------------------------------ objects

    async def apply_writes(self, writes: Sequence[tuple[WriteCommand, ModelSchema]]) -> list[WriteOutcome]:
        if not writes:
            return []
        d = self.dialect
        try:
            return await self._in_transaction(lambda s: apply_fast(s, d, writes))
        except WriteRace:
            pass
        return await self._in_transaction(lambda s: apply_slow(s, d, writes))

    async def _in_transaction(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """`work(session)` inside one write transaction (committed when it returns,
        rolled back when it raises). `work` only awaits the session's methods, so a
        subclass may run it somewhere else (SQLite: whole, in its connection thread)."""
        async with self._transaction() as s:
            return await work(s)

    async def get_object(self, app_id: str, model: str, object_id: str) -> StoredObject | None:
        r = await self._fetchrow(SELECT_OBJECT, (app_id, model, object_id))
        return row_to_object(self.dialect, r) if r is not None else None

    async def search_objects(
        self,
        app_id: str,
        model: str,
        filter: FilterNode | None,
        sort: Sequence[SortKey],
        page_size: int,
        page_token: str,
        *,
        owner_id: str | None = None,
    ) -> SearchPage:
        query = build_search(self.dialect, app_id, model, filter, sort, page_size, page_token, owner_id)
        async with self._read() as s:
            rows = await s.fetch(query.sql, query.params)
        objects = [row_to_object(self.dialect, r) for r in rows[: query.page_size]]
        return SearchPage(objects=objects, next_page_token=query.next_token(rows))

    async def get_operation(self, app_id: str, command_id: str) -> OperationRecord | None:
        r = await self._fetchrow(SELECT_OPERATION, (app_id, command_id))
        return row_to_operation(self.dialect, r) if r is not None else None

    async def delete_app_data(self, app_id: str) -> None:
        async with self._transaction() as s:
            for table in ("objects", "tombstones", "operations"):
                await s.execute(self._q(f"DELETE FROM {{t}}{table} WHERE app_id = ?"), (app_id,))

    async def trim(self, *, operations_before: datetime, tombstones_before: datetime) -> int:
        d = self.dialect
        async with self._transaction() as s:
            ops = await s.execute(
                self._q("DELETE FROM {t}operations WHERE created_at < ?"), (d.ts_in(operations_before),)
            )
            tombs = await s.execute(
                self._q("DELETE FROM {t}tombstones WHERE deleted_at < ?"), (d.ts_in(tombstones_before),)
            )
        return ops + tombs

    # ------------------------------------------------------------------ applications and schemas

    async def create_app(self, app: AppRecord) -> None:
        await self._execute(
            f"INSERT INTO {{t}}apps ({APP_COLUMNS}) VALUES (?, ?, ?, ?, ?)", app_params(self.dialect, app)
        )

    async def get_app(self, app_id: str) -> AppRecord | None:
        r = await self._fetchrow(f"SELECT {APP_COLUMNS} FROM {{t}}apps WHERE id = ?", (app_id,))
        return row_to_app(self.dialect, r) if r is not None else None

    async def delete_app(self, app_id: str) -> bool:
        deleted = 0
        async with self._transaction() as s:
            for table, column in APP_TABLES:
                deleted = await s.execute(self._q(f"DELETE FROM {{t}}{table} WHERE {column} = ?"), (app_id,))
        return deleted > 0

    async def set_server_key_hash(self, app_id: str, key_hash: str) -> bool:
        return (
            await self._execute("UPDATE {t}apps SET server_key_hash = ? WHERE id = ?", (key_hash, app_id)) > 0
        )

    async def list_apps(self) -> list[AppRecord]:
        rows = await self._fetch(f"SELECT {APP_COLUMNS} FROM {{t}}apps ORDER BY id", ())
        return [row_to_app(self.dialect, r) for r in rows]

    async def put_schema(self, app_id: str, schema: Mapping[str, Any]) -> None:
        name = schema.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("a schema needs a name", field="schema.name")
        await self._execute(
            "INSERT INTO {t}schemas (app_id, name, schema) VALUES (?, ?, ?)"
            " ON CONFLICT (app_id, name) DO UPDATE SET schema = excluded.schema",
            (app_id, name, dumps(dict(schema))),
        )

    async def list_schemas(self, app_id: str) -> list[dict[str, Any]]:
        rows = await self._fetch("SELECT schema FROM {t}schemas WHERE app_id = ? ORDER BY name", (app_id,))
        return [loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ users

    async def create_user(self, user: UserRecord) -> None:
        async with self._transaction() as s:
            await s.execute(self._q(_INSERT_USER), user_params(self.dialect, user))
            await self._insert_external_ids(s, user)

    async def _insert_external_ids(self, s: Session, user: UserRecord) -> None:
        if user.external_ids:
            rows = [(user.app_id, ext, user.id) for ext in dict.fromkeys(user.external_ids)]
            await s.executemany(self._q(_INSERT_EXTERNAL), rows)

    async def _user(self, s: Session, r: Row | None) -> UserRecord | None:
        if r is None:
            return None
        ext = await s.fetch(
            self._q(
                "SELECT external_id FROM {t}user_external_ids"
                " WHERE app_id = ? AND user_id = ? ORDER BY external_id"
            ),
            (r[0], r[1]),
        )
        return row_to_user(self.dialect, r, [e[0] for e in ext])

    async def get_user(self, app_id: str, user_id: str) -> UserRecord | None:
        async with self._read() as s:
            return await self._user(s, await s.fetchrow(self._q(_SELECT_USER + "id = ?"), (app_id, user_id)))

    async def find_user_by_login(self, app_id: str, login: str) -> UserRecord | None:
        key = login.lower()
        if not key:
            return None
        async with self._read() as s:
            r = await s.fetchrow(self._q(_SELECT_USER + "username_lc = ?"), (app_id, key))
            if r is None:
                r = await s.fetchrow(self._q(_SELECT_USER + "email_lc = ?"), (app_id, key))
            return await self._user(s, r)

    async def find_user_by_external_id(self, app_id: str, external_id: str) -> UserRecord | None:
        sql = _SELECT_USER + (
            "id = (SELECT user_id FROM {t}user_external_ids WHERE app_id = ? AND external_id = ?)"
        )
        async with self._read() as s:
            return await self._user(s, await s.fetchrow(self._q(sql), (app_id, app_id, external_id)))

    async def update_user(self, user: UserRecord, fields: Collection[str]) -> None:
        unknown = sorted(set(fields) - _USER_UPDATABLE)
        if unknown:
            raise InvalidArgument(f"cannot update user field(s) {unknown}", field="fields")
        d = self.dialect
        sets: list[str] = []
        params: list[Any] = []
        for name in sorted(set(fields) - {"external_ids"}):
            if name in ("username", "email"):
                value = getattr(user, name)
                sets.append(f"{name} = ?, {name}_lc = ?")
                params += [value, value.lower()]
            elif name == "profile":
                sets.append("profile = ?")
                params.append(dumps(user.profile))
            elif name == "tokens_valid_after":
                if user.tokens_valid_after is not None:
                    sets.append("tokens_valid_after = " + d.later_of("tokens_valid_after", "?"))
                    params.append(d.ts_in(user.tokens_valid_after))
            else:
                sets.append(f"{name} = ?")
                params.append(getattr(user, name))
        # A no-op SET keeps the existence check (and NotFound) in one statement.
        assignments = ", ".join(sets) or "id = id"
        async with self._transaction() as s:
            changed = await s.execute(
                self._q(f"UPDATE {{t}}users SET {assignments} WHERE app_id = ? AND id = ?"),
                (*params, user.app_id, user.id),
            )
            if changed == 0:
                raise NotFound(f"user {user.id!r} does not exist", reason="USER_NOT_FOUND")
            if "external_ids" in fields:
                await s.execute(
                    self._q("DELETE FROM {t}user_external_ids WHERE app_id = ? AND user_id = ?"),
                    (user.app_id, user.id),
                )
                await self._insert_external_ids(s, user)

    # ------------------------------------------------------------------ devices

    async def create_device(self, device: DeviceRecord) -> None:
        await self._execute(
            f"INSERT INTO {{t}}devices ({DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            device_params(self.dialect, device),
        )

    async def get_device(self, app_id: str, device_id: str) -> DeviceRecord | None:
        r = await self._fetchrow(
            f"SELECT {DEVICE_COLUMNS} FROM {{t}}devices WHERE app_id = ? AND id = ?", (app_id, device_id)
        )
        return row_to_device(self.dialect, r) if r is not None else None

    async def list_users(self, app_id: str, page_size: int, page_token: str) -> tuple[list[UserRecord], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        sql, params = _SELECT_USER + "1 = 1", [app_id]
        if page_token:
            payload = decode_token(page_token)
            if (
                not isinstance(payload, dict)
                or payload.get("k") != "users"
                or not isinstance(payload.get("a"), str)
            ):
                raise InvalidArgument("page token does not belong to this query", field="page_token")
            sql += " AND id > ?"
            params.append(payload["a"])
        async with self._read() as s:
            rows = await s.fetch(self._q(f"{sql} ORDER BY id LIMIT {size + 1}"), params)
            users = [u for r in rows[:size] if (u := await self._user(s, r)) is not None]
        token = encode_token({"k": "users", "a": users[-1].id}) if len(rows) > size else ""
        return users, token

    async def list_devices(
        self, app_id: str, user_id: str, page_size: int, page_token: str
    ) -> tuple[list[DeviceRecord], str]:
        """The devices of `user_id` ("" = every device of the application), by id."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        sql = f"SELECT {DEVICE_COLUMNS} FROM {{t}}devices WHERE app_id = ?"
        params: list[Any] = [app_id]
        if user_id:
            sql += " AND user_id = ?"
            params.append(user_id)
        if page_token:
            payload = decode_token(page_token)
            if (
                not isinstance(payload, dict)
                or payload.get("u") != user_id
                or not isinstance(payload.get("a"), str)
            ):
                raise InvalidArgument("page token does not belong to this query", field="page_token")
            sql += " AND id > ?"
            params.append(payload["a"])
        rows = await self._fetch(f"{sql} ORDER BY id LIMIT {size + 1}", params)
        devices = [row_to_device(self.dialect, r) for r in rows[:size]]
        token = encode_token({"u": user_id, "a": devices[-1].id}) if len(rows) > size else ""
        return devices, token

    async def update_device(self, device: DeviceRecord) -> None:
        """Update a device; its `tokens_valid_after` only moves forward."""
        p = device_params(self.dialect, device)
        sql = "UPDATE {t}devices SET user_id = ?, name = ?, platform = ?, transport = ?"
        params: list[Any] = list(p[2:6])
        if device.tokens_valid_after is not None:
            sql += ", tokens_valid_after = " + self.dialect.later_of("tokens_valid_after", "?")
            params.append(p[6])
        sql += " WHERE app_id = ? AND id = ?"
        changed = await self._execute(sql, (*params, device.app_id, device.id))
        if changed == 0:
            raise NotFound(f"device {device.id!r} does not exist", reason="DEVICE_NOT_FOUND")

    async def delete_device(self, app_id: str, device_id: str) -> bool:
        """Delete a device; its refresh tokens are revoked."""
        async with self._transaction() as s:
            changed = await s.execute(
                self._q("DELETE FROM {t}devices WHERE app_id = ? AND id = ?"), (app_id, device_id)
            )
            await s.execute(
                self._q("UPDATE {t}refresh_tokens SET revoked = ? WHERE app_id = ? AND device_id = ?"),
                (True, app_id, device_id),
            )
        return changed > 0

    # ------------------------------------------------------------------ refresh tokens

    async def store_refresh_token(self, token: RefreshTokenRecord) -> None:
        await self._execute(
            f"INSERT INTO {{t}}refresh_tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            token_params(self.dialect, token),
        )

    async def get_refresh_token(self, app_id: str, token_hash: str) -> RefreshTokenRecord | None:
        r = await self._fetchrow(
            f"SELECT {TOKEN_COLUMNS} FROM {{t}}refresh_tokens WHERE app_id = ? AND token_hash = ?",
            (app_id, token_hash),
        )
        return row_to_token(self.dialect, r) if r is not None else None

    async def revoke_refresh_tokens(
        self,
        app_id: str,
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        token_hash: str | None = None,
    ) -> int:
        """Revoke the not yet revoked tokens matching every given criterion (all
        tokens of the application when none is given)."""
        sql = "UPDATE {t}refresh_tokens SET revoked = ? WHERE app_id = ? AND revoked = ?"
        params: list[Any] = [True, app_id, False]
        for column, value in (("user_id", user_id), ("device_id", device_id), ("token_hash", token_hash)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        return await self._execute(sql, params)

    async def trim_refresh_tokens(self, expired_before: datetime) -> int:
        return await self._execute(
            "DELETE FROM {t}refresh_tokens WHERE expires_at < ?", (self.dialect.ts_in(expired_before),)
        )
