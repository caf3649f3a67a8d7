"""The identity store of the search-engine adapters: applications, schemas,
users, devices and refresh tokens as documents in the engine, so that every
process of a deployment (api, writer, router, transport) sees the same ones.

Indices (``{prefix}`` is the adapter's ``index_prefix``), every document with
an ``app_id`` keyword:

    {prefix}-apps        id = app id
    {prefix}-schemas     id = app/name; the schema dict under ``schema`` (not indexed)
    {prefix}-users       id = app/user id
    {prefix}-userkeys    the unique keys of users: lower-cased username and e-mail,
                         external ids; id = a hash of (app, kind, key), body = its user
    {prefix}-devices     id = app/device id
    {prefix}-tokens      id = app/token hash

Uniqueness without transactions: a user first *claims* each of its keys by
creating its key document (``op_type=create`` fails when another user holds
it), then writes itself; a failure releases the claims it made. A key left by
a crash between the two steps is stale (its user does not exist or no longer
has that key) and is taken over by the next claim. Writes that later searches
must see (devices, schemas, tokens) refresh at once.

Updates are read-merge-write, guarded by the document's sequence number and
re-done when another writer came first: `update_user` writes only the fields
it is given, and a ``tokens_valid_after`` (user or device) never moves back.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from nexxus.adapters.database._engine_client import (
    ENGINE_ERRORS,
    EngineBase,
    EngineClient,
    EngineError,
    doc_path,
)
from nexxus.adapters.database._engine_docs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_page_token,
    encode_page_token,
    from_micros,
    micros,
)
from nexxus.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from nexxus.core.models import AppRecord, DeviceRecord, RefreshTokenRecord, UserRecord
from nexxus.core.ports import IdentityStore

from ._unique import key_taken

__all__ = ["IDENTITY_KINDS", "EngineIdentity"]

# One word each: an object index is ``{prefix}-{app}-{model}``, so a name with a
# ``-`` could be an application's index (app "user", model "keys") and fall under
# its ``{prefix}-{app}-*`` pattern when that application's data is deleted.
IDENTITY_KINDS = ("apps", "schemas", "users", "userkeys", "devices", "tokens")
_KEYWORD = {"type": "keyword"}
_EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "apps": {},
    "schemas": {"name": _KEYWORD, "schema": {"type": "object", "enabled": False}},
    "users": {"id": _KEYWORD, "profile": {"type": "object", "enabled": False}},
    "userkeys": {"user_id": _KEYWORD},
    "devices": {"id": _KEYWORD, "user_id": _KEYWORD},
    "tokens": {
        "user_id": _KEYWORD,
        "device_id": _KEYWORD,
        "token_hash": _KEYWORD,
        "revoked": {"type": "boolean"},
        "expires_at": {"type": "long"},
    },
}
_MAPPINGS: dict[str, dict[str, Any]] = {
    kind: {"dynamic": False, "properties": {"app_id": _KEYWORD, **extra}}
    for kind, extra in _EXTRA_FIELDS.items()
}
_NOW = "true"  # refresh mode of identity writes that searches must see
# Read-merge-write rounds of one update that keeps losing races before Unavailable.
_UPDATE_ATTEMPTS = 8
_USER_UPDATABLE = frozenset(
    {"username", "email", "display_name", "password_hash", "profile", "external_ids", "tokens_valid_after"}
)


def _opt_micros(value: Any) -> int | None:
    return None if value is None else micros(value)


def _opt_time(value: Any) -> Any:
    return None if value is None else from_micros(int(value))


def _later(stored: datetime | None, given: datetime | None) -> datetime | None:
    """A revocation instant that never moves back (None: keep the stored one)."""
    if given is None or (stored is not None and stored >= given):
        return stored
    return given


def _merge_user(stored: UserRecord, user: UserRecord, fields: Collection[str]) -> UserRecord:
    """`stored` with `fields` taken from `user`."""
    changes: dict[str, Any] = {f: getattr(user, f) for f in fields if f != "tokens_valid_after"}
    if "tokens_valid_after" in fields:
        changes["tokens_valid_after"] = _later(stored.tokens_valid_after, user.tokens_valid_after)
    merged = dataclasses.replace(stored, **changes)
    merged.external_ids = sorted(set(merged.external_ids))
    return merged


def _guard(doc: Mapping[str, Any]) -> dict[str, str]:
    """Write only if the document is still the one read."""
    return {"if_seq_no": str(doc["_seq_no"]), "if_primary_term": str(doc["_primary_term"])}


def _user_keys(user: UserRecord) -> set[tuple[str, str]]:
    keys = {("u", user.username.lower())}
    if user.email:
        keys.add(("e", user.email.lower()))
    keys.update(("x", ext) for ext in user.external_ids)
    return keys


def _user_doc(u: UserRecord) -> dict[str, Any]:
    return {
        "app_id": u.app_id,
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "display_name": u.display_name,
        "password_hash": u.password_hash,
        "profile": u.profile,
        "external_ids": sorted(set(u.external_ids)),
        "tokens_valid_after": _opt_micros(u.tokens_valid_after),
        "created_at": micros(u.created_at),
    }


def _doc_user(src: Mapping[str, Any]) -> UserRecord:
    return UserRecord(
        app_id=src["app_id"],
        id=src["id"],
        username=src["username"],
        email=src["email"],
        display_name=src["display_name"],
        password_hash=src["password_hash"],
        profile=dict(src.get("profile") or {}),
        external_ids=list(src.get("external_ids") or []),
        tokens_valid_after=_opt_time(src.get("tokens_valid_after")),
        created_at=from_micros(int(src["created_at"])),
    )


def _device_doc(d: DeviceRecord) -> dict[str, Any]:
    return {
        "app_id": d.app_id,
        "id": d.id,
        "user_id": d.user_id,
        "name": d.name,
        "platform": d.platform,
        "transport": d.transport,
        "tokens_valid_after": _opt_micros(d.tokens_valid_after),
        "created_at": micros(d.created_at),
    }


def _doc_device(src: Mapping[str, Any]) -> DeviceRecord:
    return DeviceRecord(
        app_id=src["app_id"],
        id=src["id"],
        user_id=src["user_id"],
        name=src["name"],
        platform=src["platform"],
        transport=src["transport"],
        tokens_valid_after=_opt_time(src.get("tokens_valid_after")),
        created_at=from_micros(int(src["created_at"])),
    )


def _token_doc(t: RefreshTokenRecord) -> dict[str, Any]:
    return {
        "app_id": t.app_id,
        "token_hash": t.token_hash,
        "user_id": t.user_id,
        "device_id": t.device_id,
        "expires_at": micros(t.expires_at),
        "revoked": t.revoked,
        "created_at": micros(t.created_at),
    }


def _doc_token(src: Mapping[str, Any]) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        app_id=src["app_id"],
        token_hash=src["token_hash"],
        user_id=src["user_id"],
        device_id=src["device_id"],
        expires_at=from_micros(int(src["expires_at"])),
        revoked=bool(src["revoked"]),
        created_at=from_micros(int(src["created_at"])),
    )


class EngineIdentity(EngineBase, IdentityStore):
    """IdentityStore on the engine (mixed into `SearchEngineDatabase`)."""

    def _idx(self, kind: str) -> str:
        return f"{self._prefix}-{kind}"

    async def _create_identity_indices(self, client: EngineClient) -> None:
        for kind in IDENTITY_KINDS:
            await self._create_index(client, self._idx(kind), _MAPPINGS[kind])
            # An index made by an earlier version gets the fields added since (idempotent).
            await client.request(
                "PUT", f"/{self._idx(kind)}/_mapping", body={"properties": _MAPPINGS[kind]["properties"]}
            )

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc

    async def _source(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        doc = await self._call(self._get_doc(self._idx(kind), doc_id))
        return None if doc is None else dict(doc["_source"])

    async def _create(self, kind: str, doc_id: str, body: dict[str, Any], what: str) -> None:
        if not await self._call(self._create_doc(self._idx(kind), doc_id, body, _NOW)):
            raise AlreadyExists(f"{what} already exists")

    async def _search(
        self, kind: str, query: list[dict[str, Any]], sort: str, size: int, after: str = ""
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query": {"bool": {"filter": query}}, "sort": [{sort: "asc"}], "size": size}
        if after:
            body["search_after"] = [after]
        resp = await self._call(self._engine.request("POST", f"/{self._idx(kind)}/_search", body=body))
        return [dict(h["_source"]) for h in resp["hits"]["hits"]]

    # -------------------------------------------------------------- applications and schemas

    async def create_app(self, app: AppRecord) -> None:
        body = {
            "app_id": app.id,
            "display_name": app.display_name,
            "optional_auth": app.optional_auth,
            "server_key_hash": app.server_key_hash,
            "created_at": micros(app.created_at),
        }
        await self._create("apps", app.id, body, f"application {app.id!r}")

    async def get_app(self, app_id: str) -> AppRecord | None:
        src = await self._source("apps", app_id)
        if src is None:
            return None
        return AppRecord(
            src["app_id"],
            src["display_name"],
            bool(src["optional_auth"]),
            src["server_key_hash"],
            from_micros(int(src["created_at"])),
        )

    async def delete_app(self, app_id: str) -> bool:
        existed: bool = await self._call(self._delete_doc(self._idx("apps"), app_id))
        others = [self._idx(kind) for kind in IDENTITY_KINDS if kind != "apps"]
        await self._call(self._delete_by_query(others, {"term": {"app_id": app_id}}))
        return existed

    async def set_server_key_hash(self, app_id: str, key_hash: str) -> bool:
        path = f"/{self._idx('apps')}/_update/{quote(app_id, safe='')}"
        body = {"doc": {"server_key_hash": key_hash}}
        try:
            await self._engine.request("POST", path, params={"refresh": _NOW}, body=body)
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise self._translate(exc) from exc
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        return True

    async def list_apps(self) -> list[AppRecord]:
        rows = await self._search("apps", [{"match_all": {}}], "app_id", 10_000)
        return [
            AppRecord(
                src["app_id"],
                src["display_name"],
                bool(src["optional_auth"]),
                src["server_key_hash"],
                from_micros(int(src["created_at"])),
            )
            for src in rows
        ]

    async def put_schema(self, app_id: str, schema: Mapping[str, Any]) -> None:
        name = schema.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("a schema needs a name", field="schema.name")
        body = {"app_id": app_id, "name": name, "schema": dict(schema)}
        path = doc_path(self._idx("schemas"), f"{app_id}/{name}")
        await self._call(self._engine.request("PUT", path, params={"refresh": _NOW}, body=body))

    async def list_schemas(self, app_id: str) -> list[dict[str, Any]]:
        rows = await self._search("schemas", [{"term": {"app_id": app_id}}], "name", 10_000)
        return [dict(r["schema"]) for r in rows]

    # -------------------------------------------------------------- users

    def _key_id(self, app_id: str, key: tuple[str, str]) -> str:
        return hashlib.sha256("\0".join((app_id, *key)).encode()).hexdigest()

    async def _claim(self, app_id: str, user_id: str, key: tuple[str, str]) -> bool:
        """Make `key` this user's; False when another user holds it."""
        index, key_id = self._idx("userkeys"), self._key_id(app_id, key)
        body = {"app_id": app_id, "user_id": user_id}
        if await self._create_doc(index, key_id, body, ""):
            return True
        doc = await self._get_doc(index, key_id)
        if doc is None:
            return await self._create_doc(index, key_id, body, "")
        holder = doc["_source"]["user_id"]
        if holder == user_id:
            return True
        owner = await self._source("users", f"{app_id}/{holder}")
        if owner is not None and key in _user_keys(_doc_user(owner)):
            return False
        # A stale key (its user is gone or changed): take it over, unless someone else just did.
        guard = _guard(doc)
        try:
            await self._engine.request("PUT", doc_path(index, key_id), params=guard, body=body)
        except EngineError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def _release(self, app_id: str, user_id: str, keys: set[tuple[str, str]]) -> None:
        for key in keys:
            index, key_id = self._idx("userkeys"), self._key_id(app_id, key)
            doc = await self._get_doc(index, key_id)
            if doc is not None and doc["_source"]["user_id"] == user_id:
                guard = _guard(doc)
                try:
                    await self._delete_doc(index, key_id, guard)
                except EngineError as exc:
                    if exc.status != 409:
                        raise

    async def _claim_all(self, app_id: str, user_id: str, keys: set[tuple[str, str]]) -> None:
        claimed: set[tuple[str, str]] = set()
        for key in sorted(keys):
            if not await self._claim(app_id, user_id, key):
                await self._release(app_id, user_id, claimed)
                raise key_taken({"u": "username", "e": "email", "x": "external_id"}[key[0]])
            claimed.add(key)

    async def create_user(self, user: UserRecord) -> None:
        keys = _user_keys(user)
        try:
            await self._claim_all(user.app_id, user.id, keys)
            if not await self._create_doc(
                self._idx("users"), f"{user.app_id}/{user.id}", _user_doc(user), ""
            ):
                await self._release(user.app_id, user.id, keys)
                raise AlreadyExists(f"user {user.id!r} already exists")
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc

    async def get_user(self, app_id: str, user_id: str) -> UserRecord | None:
        src = await self._source("users", f"{app_id}/{user_id}")
        return None if src is None else _doc_user(src)

    async def _by_key(self, app_id: str, key: tuple[str, str]) -> UserRecord | None:
        claim = await self._source("userkeys", self._key_id(app_id, key))
        if claim is None:
            return None
        user = await self.get_user(app_id, claim["user_id"])
        return user if user is not None and key in _user_keys(user) else None

    async def find_user_by_login(self, app_id: str, login: str) -> UserRecord | None:
        if not login:
            return None
        return await self._by_key(app_id, ("u", login.lower())) or await self._by_key(
            app_id, ("e", login.lower())
        )

    async def find_user_by_external_id(self, app_id: str, external_id: str) -> UserRecord | None:
        return await self._by_key(app_id, ("x", external_id))

    async def update_user(self, user: UserRecord, fields: Collection[str]) -> None:
        unknown = sorted(set(fields) - _USER_UPDATABLE)
        if unknown:
            raise InvalidArgument(f"cannot update user field(s) {unknown}", field="fields")
        try:
            for _ in range(_UPDATE_ATTEMPTS):
                if await self._update_user_once(user, set(fields)):
                    return
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        raise Unavailable(f"user {user.id!r} keeps changing concurrently; retry", reason="WRITE_CONTENTION")

    async def _update_user_once(self, user: UserRecord, fields: set[str]) -> bool:
        """One read-merge-write; False when another writer came first."""
        doc_id = f"{user.app_id}/{user.id}"
        doc = await self._get_doc(self._idx("users"), doc_id)
        if doc is None:
            raise NotFound(f"user {user.id!r} does not exist", reason="USER_NOT_FOUND")
        stored = _doc_user(doc["_source"])
        merged = _merge_user(stored, user, fields)
        if merged == stored:
            return True
        old, new = _user_keys(stored), _user_keys(merged)
        await self._claim_all(user.app_id, user.id, new - old)
        try:
            await self._engine.request(
                "PUT", doc_path(self._idx("users"), doc_id), params=_guard(doc), body=_user_doc(merged)
            )
        except EngineError as exc:
            if exc.status != 409:
                raise
            # Claims made for this round stay: the next round needs them, and one
            # its user does not end up with is stale (taken over by the next claim).
            return False
        await self._release(user.app_id, user.id, old - new)
        return True

    # -------------------------------------------------------------- devices

    async def create_device(self, device: DeviceRecord) -> None:
        await self._create(
            "devices", f"{device.app_id}/{device.id}", _device_doc(device), f"device {device.id!r}"
        )

    async def get_device(self, app_id: str, device_id: str) -> DeviceRecord | None:
        src = await self._source("devices", f"{app_id}/{device_id}")
        return None if src is None else _doc_device(src)

    async def list_users(self, app_id: str, page_size: int, page_token: str) -> tuple[list[UserRecord], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(page_token, "users", 1)[0] if page_token else ""
        if not isinstance(after, str):
            raise InvalidArgument("page token does not belong to this query", field="page_token")
        rows = await self._search("users", [{"term": {"app_id": app_id}}], "id", size + 1, after)
        users = [_doc_user(r) for r in rows[:size]]
        token = encode_page_token("users", [users[-1].id]) if len(rows) > size else ""
        return users, token

    async def list_devices(
        self, app_id: str, user_id: str, page_size: int, page_token: str
    ) -> tuple[list[DeviceRecord], str]:
        """The devices of `user_id` ("" = every device of the application), by id."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        fp = f"devices:{user_id}"
        after = decode_page_token(page_token, fp, 1)[0] if page_token else ""
        if not isinstance(after, str):
            raise InvalidArgument("page token does not belong to this query", field="page_token")
        query: list[dict[str, Any]] = [{"term": {"app_id": app_id}}]
        if user_id:
            query.append({"term": {"user_id": user_id}})
        rows = await self._search("devices", query, "id", size + 1, after)
        devices = [_doc_device(r) for r in rows[:size]]
        token = encode_page_token(fp, [devices[-1].id]) if len(rows) > size else ""
        return devices, token

    async def update_device(self, device: DeviceRecord) -> None:
        """Update a device; its `tokens_valid_after` only moves forward."""
        doc_id = f"{device.app_id}/{device.id}"
        index = self._idx("devices")
        try:
            for _ in range(_UPDATE_ATTEMPTS):
                doc = await self._get_doc(index, doc_id)
                if doc is None:
                    raise NotFound(f"device {device.id!r} does not exist", reason="DEVICE_NOT_FOUND")
                stored = _doc_device(doc["_source"])
                merged = dataclasses.replace(
                    device,
                    created_at=stored.created_at,
                    tokens_valid_after=_later(stored.tokens_valid_after, device.tokens_valid_after),
                )
                params = {**_guard(doc), "refresh": _NOW}
                try:
                    await self._engine.request(
                        "PUT", doc_path(index, doc_id), params=params, body=_device_doc(merged)
                    )
                except EngineError as exc:
                    if exc.status != 409:
                        raise
                    continue
                return
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        raise Unavailable(
            f"device {device.id!r} keeps changing concurrently; retry", reason="WRITE_CONTENTION"
        )

    async def delete_device(self, app_id: str, device_id: str) -> bool:
        """Delete a device; its refresh tokens are revoked."""
        existed: bool = await self._call(self._delete_doc(self._idx("devices"), f"{app_id}/{device_id}"))
        await self.revoke_refresh_tokens(app_id, device_id=device_id)
        return existed

    # -------------------------------------------------------------- refresh tokens

    async def store_refresh_token(self, token: RefreshTokenRecord) -> None:
        await self._create("tokens", f"{token.app_id}/{token.token_hash}", _token_doc(token), "refresh token")

    async def get_refresh_token(self, app_id: str, token_hash: str) -> RefreshTokenRecord | None:
        src = await self._source("tokens", f"{app_id}/{token_hash}")
        return None if src is None else _doc_token(src)

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
        query: list[dict[str, Any]] = [{"term": {"app_id": app_id}}, {"term": {"revoked": False}}]
        for column, value in (("user_id", user_id), ("device_id", device_id), ("token_hash", token_hash)):
            if value is not None:
                query.append({"term": {column: value}})
        body = {
            "query": {"bool": {"filter": query}},
            "script": {"source": "ctx._source.revoked = true", "lang": "painless"},
        }
        params = {"conflicts": "proceed", "refresh": "true"}
        resp = await self._call(
            self._engine.request("POST", f"/{self._idx('tokens')}/_update_by_query", params=params, body=body)
        )
        return int(resp.get("updated", 0))

    async def trim_refresh_tokens(self, expired_before: datetime) -> int:
        query = {"range": {"expires_at": {"lt": micros(expired_before)}}}
        removed: int = await self._call(self._delete_by_query([self._idx("tokens")], query))
        return removed
