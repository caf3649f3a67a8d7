"""Identity, tenancy and authorization on every request and every push (real mesh)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import jwt
import pytest

from nexxus.devserver.mesh import Mesh
from nexxus.v1 import applications_pb2, devices_pb2, events_pb2, objects_pb2, subscriptions_pb2, users_pb2
from tests.e2e.conftest import OIDC_AUDIENCE, OIDC_ISSUER, OIDC_KID, new_app_id, oidc_private_key
from tests.e2e.harness import Api, open_stream, patch, struct

pytestmark = pytest.mark.e2e

K = events_pb2
DIARY = {
    "fields": {"text": {"type": "string"}},
    "access": {"read": {"kind": "owner"}, "update": {"kind": "owner"}},
}
TICKET = {
    "fields": {"title": {"type": "string"}, "assignedTo": {"type": "string", "filterable": True}},
    "access": {
        "read": {"kind": "filter", "filter": {"assignedTo": {"eq": "$auth.user_id"}}},
        "update": {"kind": "authenticated"},
    },
}
BOARD = {
    "fields": {"title": {"type": "string"}},
    "access": {
        "read": {"kind": "public"},
        "create": {"kind": "authenticated"},
        "update": {"kind": "owner"},
        "delete": {"kind": "owner"},
    },
}


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


async def _app(
    operator: Api, schemas: dict[str, dict[str, Any]], *, optional_auth: bool = False
) -> tuple[str, Api]:
    app_id = new_app_id()
    server = operator.as_(await operator.create_app(app_id, optional_auth=optional_auth))
    for model, schema in schemas.items():
        await server.put_schema(app_id, model, schema)
    return app_id, server


async def test_nothing_crosses_applications(operator: Api, events_channel: grpc.aio.Channel) -> None:
    a_id, a_server = await _app(operator, {"board": BOARD})
    b_id, b_server = await _app(operator, {"board": BOARD})
    alice = await a_server.user_with_device(a_id, "alice")
    bob = await b_server.user_with_device(b_id, "bob")
    a, b = a_server.as_(alice.token), b_server.as_(bob.token)
    await b.create(b_id, "board", {"title": "b's"}, object_id="x")

    # Alice's token, and app A's server key, are worth nothing in app B.
    for api in (a, a_server):
        assert (
            await code_of(
                api.objects.GetObject(
                    objects_pb2.GetObjectRequest(app_id=b_id, model="board", object_id="x"), metadata=api.md
                )
            )
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert (
            await code_of(
                api.objects.SearchObjects(
                    objects_pb2.SearchObjectsRequest(app_id=b_id, model="board"), metadata=api.md
                )
            )
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert (
            await code_of(api.create(b_id, "board", {"title": "intruder"})) == grpc.StatusCode.UNAUTHENTICATED
        )
        assert await code_of(api.subscribe(b_id, "board")) == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with open_stream(events_channel, b_id, alice.token):
            pass
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Same model name and object id in both apps: each stream sees its own app only.
    await a.subscribe(a_id, "board")
    await b.subscribe(b_id, "board")
    async with (
        open_stream(events_channel, a_id, alice.token) as sa,
        open_stream(events_channel, b_id, bob.token) as sb,
    ):
        await b.update(b_id, "board", "x", [patch("replace", ["title"], ["b only"])])
        await a.create(a_id, "board", {"title": "a only"}, object_id="x")
        ev_a, ev_b = await sa.next(), await sb.next()
        if (ev_b.kind, ev_b.object.data["title"]) == (K.EVENT_KIND_CREATED, "b's"):
            # B's own create of x, made before the subscription: routing is asynchronous,
            # so a subscription made right after a write's ack may still see it.
            ev_b = await sb.next()
        assert (ev_a.kind, ev_a.object.data["title"]) == (K.EVENT_KIND_CREATED, "a only")
        assert (ev_b.kind, ev_b.object.data["title"]) == (K.EVENT_KIND_UPDATED, "b only")
        assert await sa.quiet(0.5) == []
        assert await sb.quiet(0.1) == []


async def test_owner_only_model_delivers_only_own_objects(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, server = await _app(operator, {"diary": DIARY})
    alice = await server.user_with_device(app_id, "alice")
    bob = await server.user_with_device(app_id, "bob")
    a, b = server.as_(alice.token), server.as_(bob.token)
    await b.subscribe(app_id, "diary")
    async with open_stream(events_channel, app_id, bob.token) as sb:
        await a.create(app_id, "diary", {"text": "alice's secret"}, object_id="a1")
        await b.create(app_id, "diary", {"text": "bob's"}, object_id="b1")
        ev = await sb.next()
        assert ev.object_id == "b1"
        assert await sb.quiet(0.5) == []
    # Reads and searches follow the same rule; another's object looks missing.
    assert (
        await code_of(
            b.objects.GetObject(
                objects_pb2.GetObjectRequest(app_id=app_id, model="diary", object_id="a1"), metadata=b.md
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    found = await b.objects.SearchObjects(
        objects_pb2.SearchObjectsRequest(app_id=app_id, model="diary"), metadata=b.md
    )
    assert [o.id for o in found.objects] == ["b1"]
    assert (
        await code_of(b.update(app_id, "diary", "a1", [patch("replace", ["text"], ["x"])]))
        == grpc.StatusCode.NOT_FOUND
    )
    # The server key sees everything.
    every = await server.objects.SearchObjects(
        objects_pb2.SearchObjectsRequest(app_id=app_id, model="diary"), metadata=server.md
    )
    assert sorted(o.id for o in every.objects) == ["a1", "b1"]


async def test_rule_based_model_enter_and_leave_with_the_rule(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, server = await _app(operator, {"ticket": TICKET})
    alice = await server.user_with_device(app_id, "alice")
    bob = await server.user_with_device(app_id, "bob")
    a, b = server.as_(alice.token), server.as_(bob.token)
    await b.subscribe(app_id, "ticket")
    async with open_stream(events_channel, app_id, bob.token) as sb:
        await server.create(
            app_id, "ticket", {"title": "for alice", "assignedTo": alice.user_id}, object_id="t1"
        )
        await server.create(app_id, "ticket", {"title": "for bob", "assignedTo": bob.user_id}, object_id="t2")
        await server.update(app_id, "ticket", "t1", [patch("replace", ["assignedTo"], [bob.user_id])])
        await server.update(app_id, "ticket", "t2", [patch("replace", ["assignedTo"], [alice.user_id])])
        got = await sb.collect(3)
        assert [(e.object_id, e.kind) for e in got] == [
            ("t2", K.EVENT_KIND_CREATED),
            ("t1", K.EVENT_KIND_ENTERED),
            ("t2", K.EVENT_KIND_LEFT),
        ]
        assert not got[2].HasField("object")
        assert await sb.quiet(0.5) == []
    mine = await a.objects.SearchObjects(
        objects_pb2.SearchObjectsRequest(app_id=app_id, model="ticket"), metadata=a.md
    )
    assert [o.id for o in mine.objects] == ["t2"]


async def test_user_scoped_channel_is_only_for_oneself(operator: Api) -> None:
    app_id, server = await _app(operator, {"board": BOARD})
    alice = await server.user_with_device(app_id, "alice")
    bob = await server.user_with_device(app_id, "bob")
    b = server.as_(bob.token)
    assert (
        await code_of(b.subscribe(app_id, "board", user_id=alice.user_id))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    own = await b.subscribe(app_id, "board", user_id=bob.user_id)
    assert own.user_id == bob.user_id
    # Writes the rule forbids: PERMISSION_DENIED (the object is public to read).
    await server.as_(alice.token).create(app_id, "board", {"title": "alice's"}, object_id="p")
    assert (
        await code_of(b.update(app_id, "board", "p", [patch("replace", ["title"], ["hijack"])]))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert await code_of(b.delete(app_id, "board", "p")) == grpc.StatusCode.PERMISSION_DENIED


def _forge(claims: dict[str, Any], key: str) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


async def test_bad_tokens_are_refused(mesh: Mesh, operator: Api, events_channel: grpc.aio.Channel) -> None:
    app_id, server = await _app(operator, {"board": BOARD})
    other_app, _ = await _app(operator, {"board": BOARD})
    u = await server.user_with_device(app_id, "carol")
    key = mesh.settings.auth.signing_key
    now = int(time.time())
    base = {"iss": "nexxus", "aud": app_id, "sub": u.user_id, "did": u.device_id, "iat": now, "jti": "j"}
    good = _forge({**base, "exp": now + 300}, key)
    header, payload, sig = good.split(".")
    bad_tokens = {
        "expired": _forge({**base, "iat": now - 600, "exp": now - 300}, key),
        "tampered": f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}",
        "wrong key": _forge({**base, "exp": now + 300}, "x" * 48),
        "wrong app": _forge({**base, "aud": other_app, "exp": now + 300}, key),
        "malformed": "not-a-token",
        "unsigned": jwt.encode({**base, "exp": now + 300}, None, algorithm="none"),
    }
    me = users_pb2.GetMeRequest(app_id=app_id)
    assert (await server.users.GetMe(me, metadata=[("authorization", f"Bearer {good}")])).user.id == u.user_id
    for name, token in bad_tokens.items():
        code = await code_of(server.users.GetMe(me, metadata=[("authorization", f"Bearer {token}")]))
        assert code == grpc.StatusCode.UNAUTHENTICATED, name
    assert await code_of(server.users.GetMe(me)) == grpc.StatusCode.UNAUTHENTICATED  # no token at all
    # The interceptor refuses a forged JWT before any handler: even where the handler
    # would have answered PERMISSION_DENIED (not the operator key), it is UNAUTHENTICATED.
    forged_md = [("authorization", f"Bearer {bad_tokens['wrong key']}")]
    assert (
        await code_of(
            server.apps.CreateApplication(
                applications_pb2.CreateApplicationRequest(app_id="x-app"), metadata=forged_md
            )
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        await code_of(
            server.apps.CreateApplication(
                applications_pb2.CreateApplicationRequest(app_id="x-app"),
                metadata=[("authorization", f"Bearer {good}")],
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )

    # A revoked (deleted) device: its tokens stop working and its stream is closed.
    second = await server.add_device(u, "tablet")
    await server.as_(second.token).subscribe(app_id, "board")
    async with open_stream(events_channel, app_id, second.token) as s:
        await server.as_(u.user_token).devices.DeleteDevice(
            devices_pb2.DeleteDeviceRequest(app_id=app_id, device_id=second.device_id),
            metadata=[("authorization", f"Bearer {u.user_token}")],
        )
        for _ in range(100):
            if s.task is not None and s.task.done():
                break
            await asyncio.sleep(0.05)
        assert s.task is not None
        assert s.task.done()
    await asyncio.sleep(2.1)  # other processes cache token checks for up to 2 s
    assert (
        await code_of(
            server.as_(second.token).users.GetMe(me, metadata=[("authorization", f"Bearer {second.token}")])
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )


async def test_login_failures_are_uniform_and_throttled(operator: Api) -> None:
    app_id, server = await _app(operator, {"board": BOARD})
    await server.user_with_device(app_id, "dora", password="right password 1")
    details = []
    for login in ("dora", "nobody"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await server.users.Login(
                users_pb2.LoginRequest(app_id=app_id, login=login, password="wrong pass")
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        details.append(err.value.details())
    assert details[0] == details[1]  # never says which half was wrong
    codes = []
    for _ in range(4):
        codes.append(
            await code_of(
                server.users.Login(users_pb2.LoginRequest(app_id=app_id, login="dora", password="wrong pass"))
            )
        )
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes


async def test_logout_revokes_and_refresh_rotates(operator: Api) -> None:
    app_id, server = await _app(operator, {"board": BOARD})
    await server.users.RegisterUser(
        users_pb2.RegisterUserRequest(app_id=app_id, username="eve", password="long enough pw")
    )
    login = await server.users.Login(
        users_pb2.LoginRequest(app_id=app_id, login="eve", password="long enough pw")
    )
    refreshed = await server.users.RefreshToken(
        users_pb2.RefreshTokenRequest(app_id=app_id, refresh_token=login.tokens.refresh_token)
    )
    assert refreshed.tokens.access_token
    # A refresh token works once.
    assert (
        await code_of(
            server.users.RefreshToken(
                users_pb2.RefreshTokenRequest(app_id=app_id, refresh_token=login.tokens.refresh_token)
            )
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    md = [("authorization", f"Bearer {refreshed.tokens.access_token}")]
    await server.users.Logout(users_pb2.LogoutRequest(app_id=app_id), metadata=md)
    await asyncio.sleep(2.1)
    assert (
        await code_of(server.users.GetMe(users_pb2.GetMeRequest(app_id=app_id), metadata=md))
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        await code_of(
            server.users.RefreshToken(
                users_pb2.RefreshTokenRequest(app_id=app_id, refresh_token=refreshed.tokens.refresh_token)
            )
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )


async def test_reused_refresh_token_revokes_its_family(operator: Api) -> None:
    app_id, server = await _app(operator, {"board": BOARD})
    alice = await server.user_with_device(app_id, "alice-reuse")
    user_api = server.as_(alice.user_token)
    dev = await user_api.devices.RegisterDevice(
        devices_pb2.RegisterDeviceRequest(app_id=app_id, name="tablet"), metadata=user_api.md
    )
    first = dev.tokens.refresh_token

    async def refresh(token: str) -> users_pb2.RefreshTokenResponse:
        return await server.users.RefreshToken(
            users_pb2.RefreshTokenRequest(app_id=app_id, refresh_token=token)
        )

    second = (await refresh(first)).tokens
    md = [("authorization", f"Bearer {second.access_token}")]
    assert (await server.users.GetMe(users_pb2.GetMeRequest(app_id=app_id), metadata=md)).user.id
    # The rotated-out token comes back (a thief, or the victim after the thief): the family goes.
    assert await code_of(refresh(first)) == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(refresh(second.refresh_token)) == grpc.StatusCode.UNAUTHENTICATED
    await asyncio.sleep(2.1)  # other processes' auth caches
    assert (
        await code_of(server.users.GetMe(users_pb2.GetMeRequest(app_id=app_id), metadata=md))
        == grpc.StatusCode.UNAUTHENTICATED
    )
    # Alice's other device is a separate session and keeps working.
    other = [("authorization", f"Bearer {alice.token}")]
    assert (await server.users.GetMe(users_pb2.GetMeRequest(app_id=app_id), metadata=other)).user.id


async def test_oidc_sign_in_with_a_local_key_set(operator: Api) -> None:
    app_id, server = await _app(operator, {"board": BOARD})
    now = int(time.time())
    subject = uuid.uuid4().hex
    claims = {
        "iss": OIDC_ISSUER,
        "aud": OIDC_AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + 300,
        "email": "oidc@example.test",
        "email_verified": True,
        "name": "Oidc User",
    }
    token = jwt.encode(claims, oidc_private_key(), algorithm="RS256", headers={"kid": OIDC_KID})
    first = await server.users.OidcLogin(
        users_pb2.OidcLoginRequest(app_id=app_id, provider="test", id_token=token)
    )
    assert first.created
    assert first.user.email == "oidc@example.test"
    again = await server.users.OidcLogin(
        users_pb2.OidcLoginRequest(app_id=app_id, provider="test", id_token=token)
    )
    assert not again.created
    assert again.user.id == first.user.id
    me = await server.users.GetMe(
        users_pb2.GetMeRequest(app_id=app_id),
        metadata=[("authorization", f"Bearer {again.tokens.access_token}")],
    )
    assert me.user.id == first.user.id
    forged = jwt.encode(
        {**claims, "aud": "someone-else"}, oidc_private_key(), algorithm="RS256", headers={"kid": OIDC_KID}
    )
    assert (
        await code_of(
            server.users.OidcLogin(
                users_pb2.OidcLoginRequest(app_id=app_id, provider="test", id_token=forged)
            )
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        await code_of(
            server.users.OidcLogin(users_pb2.OidcLoginRequest(app_id=app_id, provider="nope", id_token=token))
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_optional_auth_lets_anonymous_read_public_only(operator: Api) -> None:
    open_app, open_server = await _app(operator, {"board": BOARD, "diary": DIARY}, optional_auth=True)
    closed_app, _ = await _app(operator, {"board": BOARD})
    u = await open_server.user_with_device(open_app, "finn")
    await open_server.as_(u.token).create(open_app, "board", {"title": "public"}, object_id="pub")
    await open_server.as_(u.token).create(open_app, "diary", {"text": "private"}, object_id="priv")
    anon = open_server.as_("")
    found = await anon.objects.SearchObjects(objects_pb2.SearchObjectsRequest(app_id=open_app, model="board"))
    assert [o.id for o in found.objects] == ["pub"]
    hidden = await anon.objects.SearchObjects(
        objects_pb2.SearchObjectsRequest(app_id=open_app, model="diary")
    )
    assert list(hidden.objects) == []
    assert (
        await code_of(anon.create(open_app, "board", {"title": "anon"})) == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        await code_of(
            anon.objects.SearchObjects(objects_pb2.SearchObjectsRequest(app_id=closed_app, model="board"))
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        await code_of(
            anon.subs.CreateSubscription(
                subscriptions_pb2.CreateSubscriptionRequest(app_id=open_app, model="board", filter=struct({}))
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )  # subscriptions need a device


async def test_anonymous_devices_subscribe_to_public_data_only(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    open_app, server = await _app(operator, {"board": BOARD, "diary": DIARY}, optional_auth=True)
    closed_app, _ = await _app(operator, {"board": BOARD})
    u = await server.user_with_device(open_app, "gus")
    writer = server.as_(u.token)
    subs = [
        subscriptions_pb2.CreateSubscriptionRequest(app_id=open_app, model="board"),
        subscriptions_pb2.CreateSubscriptionRequest(app_id=open_app, model="diary"),
    ]
    async with open_stream(events_channel, open_app, "", subscriptions=subs) as s:
        assert s.ready.device_id.startswith("anon-")
        assert s.ready.user_id == ""
        await writer.create(open_app, "diary", {"text": "private"}, object_id="d1")
        await writer.create(open_app, "board", {"title": "public"}, object_id="b1")
        ev = await s.next()
        assert (ev.model, ev.object_id) == ("board", "b1")
        assert await s.quiet(0.5) == []  # never the owner-only diary
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with open_stream(events_channel, closed_app, "", subscriptions=[]):
            pass
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
