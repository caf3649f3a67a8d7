"""IdentityStore contract: applications, schemas, users, devices, refresh tokens."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from nexxus.adapters.database._sql_base import SqlDatabase
from nexxus.core.errors import AlreadyExists, InvalidArgument, NotFound
from nexxus.core.models import AppRecord, DeviceRecord, RefreshTokenRecord, UserRecord

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def user(app_id: str, uid: str, username: str, email: str = "", **kw: object) -> UserRecord:
    return UserRecord(
        app_id=app_id,
        id=uid,
        username=username,
        email=email,
        display_name=username.title(),
        password_hash="argon2$x",
        created_at=T0,
        **kw,  # type: ignore[arg-type]
    )


def device(app_id: str, did: str, uid: str) -> DeviceRecord:
    return DeviceRecord(app_id, did, uid, f"phone {did}", "ios", "grpc", created_at=T0)


def token(app_id: str, h: str, uid: str, did: str) -> RefreshTokenRecord:
    return RefreshTokenRecord(app_id, h, uid, did, T0 + timedelta(days=30), created_at=T0)


async def test_app_crud(db: SqlDatabase, app_id: str) -> None:
    app = AppRecord(app_id, "My app", True, "hash", created_at=T0)
    await db.create_app(app)
    assert await db.get_app(app_id) == app
    with pytest.raises(AlreadyExists):
        await db.create_app(app)
    assert await db.get_app("nope") is None


async def test_schemas_upsert_by_name(db: SqlDatabase, app_id: str) -> None:
    await db.put_schema(app_id, {"name": "task", "fields": {"a": {"type": "string"}}})
    await db.put_schema(app_id, {"name": "note", "fields": {}})
    await db.put_schema(app_id, {"name": "task", "fields": {"b": {"type": "integer"}}})
    assert await db.list_schemas(app_id) == [
        {"name": "note", "fields": {}},
        {"name": "task", "fields": {"b": {"type": "integer"}}},
    ]
    assert await db.list_schemas("other") == []
    with pytest.raises(InvalidArgument):
        await db.put_schema(app_id, {"fields": {}})


async def test_user_roundtrip_and_lookups(db: SqlDatabase, app_id: str) -> None:
    u = user(
        app_id,
        "u1",
        "Alice",
        "Alice@Example.com",
        profile={"age": 30, "tags": ["x"]},
        external_ids=["google:1", "github:9"],
        tokens_valid_after=T0 + timedelta(seconds=1),
    )
    await db.create_user(u)
    got = await db.get_user(app_id, "u1")
    assert got is not None
    assert got.external_ids == ["github:9", "google:1"]
    got.external_ids = u.external_ids
    assert got == u
    for login in ("alice", "ALICE", "alice@example.COM"):
        found = await db.find_user_by_login(app_id, login)
        assert found is not None, login
        assert found.id == "u1", login
    assert await db.find_user_by_login(app_id, "bob") is None
    assert await db.find_user_by_login(app_id, "") is None
    assert await db.find_user_by_login("other-app", "alice") is None
    found = await db.find_user_by_external_id(app_id, "google:1")
    assert found is not None
    assert found.id == "u1"
    assert await db.find_user_by_external_id(app_id, "google:2") is None


async def test_user_uniqueness_is_case_insensitive_and_per_app(db: SqlDatabase, app_id: str) -> None:
    await db.create_user(user(app_id, "u1", "alice", "a@x.io"))
    with pytest.raises(AlreadyExists) as taken:
        await db.create_user(user(app_id, "u2", "ALICE", "other@x.io"))
    # The field and a plain sentence, never the driver's SQL text.
    assert (taken.value.field, taken.value.message) == ("username", "this username is already taken")
    with pytest.raises(AlreadyExists) as taken:
        await db.create_user(user(app_id, "u3", "carol", "A@X.IO"))
    assert (taken.value.field, taken.value.message) == ("email", "this e-mail address is already taken")
    with pytest.raises(AlreadyExists):
        await db.create_user(user(app_id, "u1", "dave"))
    # Empty e-mails never collide; other applications are independent.
    await db.create_user(user(app_id, "u4", "erin"))
    await db.create_user(user(app_id, "u5", "frank"))
    await db.create_user(user(f"{app_id}-2", "u1", "alice", "a@x.io"))
    assert (await db.get_user(app_id, "u2")) is None


ALL_USER_FIELDS = {"username", "email", "display_name", "password_hash", "profile", "external_ids"}


async def test_update_user(db: SqlDatabase, app_id: str) -> None:
    await db.create_user(user(app_id, "u1", "alice", external_ids=["g:1"]))
    await db.create_user(user(app_id, "u2", "bob", external_ids=["g:2"]))
    u = await db.get_user(app_id, "u1")
    assert u is not None
    u.username, u.email, u.external_ids = "Alicia", "al@x.io", ["g:3"]
    await db.update_user(u, {"username", "email", "external_ids"})
    assert (await db.get_user(app_id, "u1")) == u
    assert await db.find_user_by_external_id(app_id, "g:1") is None
    assert await db.find_user_by_login(app_id, "alicia") == u
    u.username = "BOB"
    with pytest.raises(AlreadyExists):
        await db.update_user(u, {"username"})
    u.username, u.external_ids = "alicia", ["g:2"]
    with pytest.raises(AlreadyExists):
        await db.update_user(u, ALL_USER_FIELDS)
    # The failed updates changed nothing.
    stored = await db.get_user(app_id, "u1")
    assert stored is not None
    assert (stored.username, stored.external_ids) == ("Alicia", ["g:3"])
    assert (await db.find_user_by_external_id(app_id, "g:2")) is not None
    with pytest.raises(NotFound):
        await db.update_user(user(app_id, "ghost", "ghost"), {"display_name"})
    with pytest.raises(NotFound):
        await db.update_user(user(app_id, "ghost", "ghost"), set())
    with pytest.raises(InvalidArgument):
        await db.update_user(u, {"id"})


async def test_update_user_writes_only_its_fields(db: SqlDatabase, app_id: str) -> None:
    """A profile update made from a stale copy never restores an old password hash
    nor undoes a revocation; tokens_valid_after never moves back."""
    await db.create_user(user(app_id, "u1", "alice"))
    stale = await db.get_user(app_id, "u1")
    fresh = await db.get_user(app_id, "u1")
    assert stale is not None
    assert fresh is not None
    fresh.password_hash = "argon2$new"
    await db.update_user(fresh, {"password_hash"})
    fresh.tokens_valid_after = T0 + timedelta(hours=1)
    await db.update_user(fresh, {"tokens_valid_after"})
    stale.display_name = "Ally"
    stale.profile = {"theme": "dark"}
    await db.update_user(stale, {"display_name", "profile"})
    got = await db.get_user(app_id, "u1")
    assert got is not None
    assert (got.display_name, got.profile) == ("Ally", {"theme": "dark"})
    assert (got.password_hash, got.tokens_valid_after) == ("argon2$new", T0 + timedelta(hours=1))
    stale.tokens_valid_after = T0  # an older revocation instant
    await db.update_user(stale, {"tokens_valid_after"})
    got = await db.get_user(app_id, "u1")
    assert got is not None
    assert got.tokens_valid_after == T0 + timedelta(hours=1)


async def test_concurrent_updates_of_other_fields_are_all_kept(db: SqlDatabase, app_id: str) -> None:
    """Updates of different fields at the same time, each from its own copy: none
    undoes another (the search engine re-reads and re-merges when it loses a race)."""
    await db.create_user(user(app_id, "u1", "alice"))
    base = await db.get_user(app_id, "u1")
    assert base is not None
    changes: list[tuple[str, object]] = [
        ("display_name", "Ally"),
        ("password_hash", "argon2$new"),
        ("profile", {"theme": "dark"}),
        ("email", "al@x.io"),
        ("external_ids", ["g:9"]),
        ("tokens_valid_after", T0 + timedelta(hours=3)),
    ]
    copies = [dataclasses.replace(base, **{name: value}) for name, value in changes]
    await asyncio.gather(*(db.update_user(c, {name}) for c, (name, _) in zip(copies, changes, strict=True)))
    got = await db.get_user(app_id, "u1")
    assert got is not None
    assert {name: getattr(got, name) for name, _ in changes} == dict(changes)
    assert got.username == "alice"
    assert await db.find_user_by_login(app_id, "AL@x.io") == got
    assert await db.find_user_by_external_id(app_id, "g:9") == got


async def test_device_revocation_never_moves_back(db: SqlDatabase, app_id: str) -> None:
    await db.create_device(device(app_id, "d1", "u1"))
    stale = await db.get_device(app_id, "d1")
    fresh = await db.get_device(app_id, "d1")
    assert stale is not None
    assert fresh is not None
    fresh.tokens_valid_after = T0 + timedelta(hours=2)
    await db.update_device(fresh)
    stale.name = "renamed"  # a stale copy without the revocation
    await db.update_device(stale)
    got = await db.get_device(app_id, "d1")
    assert got is not None
    assert (got.name, got.tokens_valid_after) == ("renamed", T0 + timedelta(hours=2))
    stale.tokens_valid_after = T0
    await db.update_device(stale)
    got = await db.get_device(app_id, "d1")
    assert got is not None
    assert got.tokens_valid_after == T0 + timedelta(hours=2)


async def test_trim_refresh_tokens(db: SqlDatabase, app_id: str) -> None:
    await db.store_refresh_token(token(app_id, "h1", "u1", "d1"))  # expires T0 + 30 days
    assert await db.trim_refresh_tokens(T0) == 0
    assert await db.trim_refresh_tokens(T0 + timedelta(days=31)) >= 1
    assert await db.get_refresh_token(app_id, "h1") is None


async def test_devices(db: SqlDatabase, app_id: str) -> None:
    for i in range(5):
        await db.create_device(device(app_id, f"d{i}", "u1"))
    await db.create_device(device(app_id, "x", "u2"))
    with pytest.raises(AlreadyExists):
        await db.create_device(device(app_id, "d0", "u1"))
    assert await db.get_device(app_id, "d3") == device(app_id, "d3", "u1")
    page, tok = await db.list_devices(app_id, "u1", 2, "")
    seen = [d.id for d in page]
    while tok:
        page, tok = await db.list_devices(app_id, "u1", 2, tok)
        seen += [d.id for d in page]
    assert seen == ["d0", "d1", "d2", "d3", "d4"]
    all_devices, tok = await db.list_devices(app_id, "", 100, "")
    assert len(all_devices) == 6
    assert tok == ""
    with pytest.raises(InvalidArgument):
        await db.list_devices(app_id, "u1", 2, "garbage!")
    d = device(app_id, "d1", "u1")
    d.name, d.tokens_valid_after = "renamed", T0
    await db.update_device(d)
    assert await db.get_device(app_id, "d1") == d
    with pytest.raises(NotFound):
        await db.update_device(device(app_id, "ghost", "u1"))
    assert await db.delete_device(app_id, "d1") is True
    assert await db.delete_device(app_id, "d1") is False
    assert await db.get_device(app_id, "d1") is None


async def test_refresh_tokens(db: SqlDatabase, app_id: str) -> None:
    await db.store_refresh_token(token(app_id, "h1", "u1", "d1"))
    await db.store_refresh_token(token(app_id, "h2", "u1", "d2"))
    await db.store_refresh_token(token(app_id, "h3", "u2", "d3"))
    await db.store_refresh_token(token(app_id, "h4", "u2", "d4"))
    with pytest.raises(AlreadyExists):
        await db.store_refresh_token(token(app_id, "h1", "u1", "d1"))
    assert await db.get_refresh_token(app_id, "h1") == token(app_id, "h1", "u1", "d1")
    assert await db.revoke_refresh_tokens(app_id, token_hash="h1") == 1
    assert await db.revoke_refresh_tokens(app_id, user_id="u1") == 1  # h2; h1 already revoked
    assert await db.revoke_refresh_tokens(app_id, user_id="u2", device_id="d3") == 1
    rec = await db.get_refresh_token(app_id, "h2")
    assert rec is not None
    assert rec.revoked
    rec = await db.get_refresh_token(app_id, "h4")
    assert rec is not None
    assert not rec.revoked
    # Deleting a device revokes its tokens.
    await db.create_device(device(app_id, "d4", "u2"))
    await db.delete_device(app_id, "d4")
    rec = await db.get_refresh_token(app_id, "h4")
    assert rec is not None
    assert rec.revoked


async def test_delete_app_removes_everything(db: SqlDatabase, app_id: str) -> None:
    other = f"{app_id}-other"
    for a in (app_id, other):
        await db.create_app(AppRecord(a, "x", False, "h", created_at=T0))
        await db.put_schema(a, {"name": "task"})
        await db.create_user(user(a, "u1", "alice", "a@x.io", external_ids=["g:1"]))
        await db.create_device(device(a, "d1", "u1"))
        await db.store_refresh_token(token(a, "h1", "u1", "d1"))
    assert await db.delete_app(app_id) is True
    assert await db.delete_app(app_id) is False
    assert await db.get_app(app_id) is None
    assert await db.list_schemas(app_id) == []
    assert await db.get_user(app_id, "u1") is None
    assert await db.find_user_by_external_id(app_id, "g:1") is None
    assert await db.get_device(app_id, "d1") is None
    assert await db.get_refresh_token(app_id, "h1") is None
    # The same ids are free again, and the other application is untouched.
    await db.create_user(user(app_id, "u1", "alice", "a@x.io", external_ids=["g:1"]))
    assert await db.get_app(other) is not None
    assert await db.find_user_by_login(other, "alice") is not None
    assert await db.get_refresh_token(other, "h1") is not None
