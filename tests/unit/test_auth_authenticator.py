"""Authenticator: operator key, server keys, access tokens and revocation."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from nexxus.auth.authenticator import Authenticator
from nexxus.auth.caller import Caller
from nexxus.auth.passwords import PasswordHasher
from nexxus.auth.server_keys import generate_server_key, hash_server_key, key_matches
from nexxus.auth.tokens import TokenService
from nexxus.core.config.settings import AuthSettings
from nexxus.core.errors import NotFound, Unauthenticated
from nexxus.core.models import AppRecord, DeviceRecord, UserRecord

OPERATOR = "nxo_operator-key-for-tests"
T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)


class FakeIdentity:
    """The three lookups the Authenticator uses, counting calls."""

    def __init__(self) -> None:
        self.apps: dict[str, AppRecord] = {}
        self.users: dict[tuple[str, str], UserRecord] = {}
        self.devices: dict[tuple[str, str], DeviceRecord] = {}
        self.calls: list[str] = []

    async def get_app(self, app_id: str) -> AppRecord | None:
        self.calls.append(f"app:{app_id}")
        return self.apps.get(app_id)

    async def get_user(self, app_id: str, user_id: str) -> UserRecord | None:
        self.calls.append(f"user:{user_id}")
        return self.users.get((app_id, user_id))

    async def get_device(self, app_id: str, device_id: str) -> DeviceRecord | None:
        self.calls.append(f"device:{device_id}")
        return self.devices.get((app_id, device_id))


class Clocks:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 0.0


class Env:
    def __init__(self) -> None:
        self.clocks = Clocks()
        self.hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        self.identity = FakeIdentity()
        self.server_key = generate_server_key()
        self.identity.apps["app1"] = AppRecord("app1", "App 1", False, hash_server_key(self.server_key))
        self.identity.apps["open"] = AppRecord("open", "Open", True, "")
        self.identity.users[("app1", "u1")] = UserRecord("app1", "u1", "ada", "a@x.io", "Ada", "")
        self.identity.users[("app1", "u2")] = UserRecord("app1", "u2", "bob", "b@x.io", "Bob", "")
        self.identity.devices[("app1", "d1")] = DeviceRecord("app1", "d1", "u1", "phone", "ios", "grpc")
        self.identity.devices[("app1", "d2")] = DeviceRecord("app1", "d2", "u2", "phone", "ios", "grpc")
        self.tokens = TokenService(AuthSettings(), signing_key="s" * 64, now=lambda: self.clocks.wall)
        self.auth = Authenticator(
            self.identity,  # type: ignore[arg-type]
            self.tokens,
            operator_key=OPERATOR,
            hasher=self.hasher,
            cache_ttl=2.0,
            clock=lambda: self.clocks.mono,
        )

    def token(self, user: str = "u1", device: str = "d1", app: str = "app1") -> str:
        return "Bearer " + self.tokens.issue(app, user, device).access_token


@pytest.fixture
def env() -> Env:
    return Env()


async def fails(env: Env, app_id: str, header: str | None) -> str:
    with pytest.raises(Unauthenticated) as err:
        await env.auth.authenticate(app_id, header)
    return err.value.reason


def test_server_key_format() -> None:
    key = generate_server_key()
    assert key.startswith("nxs_")
    assert len(key) >= 40
    assert generate_server_key() != key


async def test_operator(env: Env) -> None:
    caller = await env.auth.authenticate("app1", f"Bearer {OPERATOR}")
    assert caller == Caller("app1", "operator")
    assert caller.is_privileged
    assert (await env.auth.authenticate("app1", f"bearer   {OPERATOR}  ")).kind == "operator"
    with pytest.raises(NotFound):
        await env.auth.authenticate("nope", f"Bearer {OPERATOR}")
    assert await fails(env, "app1", f"Bearer {OPERATOR}x") == "TOKEN_MALFORMED"  # treated as a JWT
    assert env.auth.authenticate_operator(f"Bearer {OPERATOR}").kind == "operator"
    with pytest.raises(Unauthenticated):
        env.auth.authenticate_operator("Bearer wrong")


async def test_empty_operator_key_never_matches(env: Env) -> None:
    auth = Authenticator(env.identity, env.tokens, operator_key="", hasher=env.hasher)  # type: ignore[arg-type]
    assert not auth.is_operator_key("")
    with pytest.raises(Unauthenticated):
        auth.authenticate_operator("Bearer  ")


async def test_server_key(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_argon2(h: str | None, p: str) -> bool:
        raise AssertionError("a server key of the current scheme never goes through argon2")

    monkeypatch.setattr(env.hasher, "verify", no_argon2)
    callers = await asyncio.gather(
        *(env.auth.authenticate("app1", f"Bearer {env.server_key}") for _ in range(5))
    )
    assert {c.kind for c in callers} == {"server"}
    assert callers[0].is_privileged
    assert await fails(env, "app1", "Bearer nxs_wrong") == "SERVER_KEY_INVALID"
    assert await fails(env, "app1", f"Bearer {generate_server_key()}") == "SERVER_KEY_INVALID"
    assert await fails(env, "open", f"Bearer {env.server_key}") == "SERVER_KEY_INVALID"  # no key set
    with pytest.raises(NotFound):
        await env.auth.authenticate("nope", f"Bearer {env.server_key}")


def test_server_key_hash_is_not_the_key_and_matches_only_it() -> None:
    key = generate_server_key()
    stored = hash_server_key(key)
    assert key not in stored
    assert key_matches(stored, key)
    assert not key_matches(stored, generate_server_key())
    assert not key_matches(stored, key + "x")  # not a key's shape: refused before hashing
    assert not key_matches("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", key)


async def test_legacy_argon2_server_key_still_verifies(env: Env) -> None:
    env.identity.apps["app1"] = AppRecord("app1", "App 1", False, env.hasher.hash(env.server_key))
    env.clocks.mono += 3  # app cache expired
    assert (await env.auth.authenticate("app1", f"Bearer {env.server_key}")).kind == "server"
    assert await fails(env, "app1", f"Bearer {generate_server_key()}") == "SERVER_KEY_INVALID"


async def test_server_key_rotation_applies_after_app_cache(env: Env) -> None:
    assert (await env.auth.authenticate("app1", f"Bearer {env.server_key}")).kind == "server"
    new_key = generate_server_key()
    env.identity.apps["app1"] = AppRecord("app1", "App 1", False, hash_server_key(new_key))
    env.clocks.mono += 3  # app cache expired
    assert await fails(env, "app1", f"Bearer {env.server_key}") == "SERVER_KEY_INVALID"
    assert (await env.auth.authenticate("app1", f"Bearer {new_key}")).kind == "server"


async def test_user_token(env: Env) -> None:
    caller = await env.auth.authenticate("app1", env.token())
    assert (caller.kind, caller.user_id, caller.device_id) == ("user", "u1", "d1")
    assert caller.token_id
    assert not caller.is_privileged
    assert caller.auth_context().user_id == "u1"
    unbound = await env.auth.authenticate("app1", env.token(device=""))
    assert unbound.device_id == ""


async def test_token_reasons(env: Env) -> None:
    assert await fails(env, "app1", None) == "TOKEN_MISSING"
    assert await fails(env, "app1", "Bearer ") == "TOKEN_MISSING"
    assert await fails(env, "app1", "Basic abc") == "TOKEN_MALFORMED"
    assert await fails(env, "app1", "Bearer abc.def") == "TOKEN_MALFORMED"
    assert await fails(env, "app2", env.token()) == "TOKEN_WRONG_APPLICATION"
    expired = env.token()
    env.clocks.wall += timedelta(hours=1)
    assert await fails(env, "app1", expired) == "TOKEN_EXPIRED"


async def test_unknown_app_is_not_revealed_to_tokens(env: Env) -> None:
    token = env.token(app="ghost", user="u1", device="")
    assert await fails(env, "ghost", token) == "TOKEN_REVOKED"
    assert await fails(env, "ghost", None) == "TOKEN_MISSING"


async def test_anonymous_only_with_optional_auth(env: Env) -> None:
    assert await env.auth.authenticate("open", None) == Caller("open", "anonymous")
    assert await env.auth.authenticate("open", "  ") == Caller("open", "anonymous")
    assert await fails(env, "app1", None) == "TOKEN_MISSING"


async def test_revoked_via_user_tokens_valid_after(env: Env) -> None:
    before = env.token()
    env.clocks.wall += timedelta(microseconds=1)
    env.identity.users[("app1", "u1")].tokens_valid_after = env.clocks.wall
    env.auth.invalidate_user("app1", "u1")
    assert await fails(env, "app1", before) == "TOKEN_REVOKED"
    # a token issued at the very instant of the revocation (or later) is valid
    after = env.token()
    assert (await env.auth.authenticate("app1", after)).user_id == "u1"


async def test_revoked_via_device(env: Env) -> None:
    token = env.token()
    env.clocks.wall += timedelta(seconds=1)
    env.identity.devices[("app1", "d1")].tokens_valid_after = env.clocks.wall
    env.auth.invalidate_device("app1", "d1")
    assert await fails(env, "app1", token) == "TOKEN_REVOKED"
    # other devices of the user are unaffected
    env.identity.devices[("app1", "d3")] = DeviceRecord("app1", "d3", "u1", "tab", "web", "ws")
    assert (await env.auth.authenticate("app1", env.token(device="d3"))).device_id == "d3"


async def test_deleted_device_or_user_and_foreign_device(env: Env) -> None:
    assert await fails(env, "app1", env.token(user="u1", device="d2")) == "TOKEN_REVOKED"  # d2 is u2's
    token = env.token()
    del env.identity.devices[("app1", "d1")]
    env.auth.invalidate_device("app1", "d1")
    assert await fails(env, "app1", token) == "TOKEN_REVOKED"
    token2 = env.token(user="u2", device="")
    del env.identity.users[("app1", "u2")]
    env.auth.invalidate_app("app1")
    assert await fails(env, "app1", token2) == "TOKEN_REVOKED"


async def test_lookups_cached_for_ttl_only(env: Env) -> None:
    token = env.token()
    await env.auth.authenticate("app1", token)
    n = len(env.identity.calls)
    await env.auth.authenticate("app1", token)
    assert len(env.identity.calls) == n  # app, user and device cached
    # revocation without invalidation takes effect once the cache TTL passed
    env.clocks.wall += timedelta(seconds=1)
    key = ("app1", "u1")
    env.identity.users[key] = replace(env.identity.users[key], tokens_valid_after=env.clocks.wall)
    assert (await env.auth.authenticate("app1", token)).user_id == "u1"  # still cached
    env.clocks.mono += 2.0
    assert await fails(env, "app1", token) == "TOKEN_REVOKED"
    assert len(env.identity.calls) > n


async def test_naive_valid_after_is_utc(env: Env) -> None:
    token = env.token()
    env.identity.users[("app1", "u1")].tokens_valid_after = (T0 + timedelta(seconds=1)).replace(tzinfo=None)
    assert await fails(env, "app1", token) == "TOKEN_REVOKED"


def test_subscriber_caller() -> None:
    assert Caller.subscriber("a", "u1", "d1", privileged=True).kind == "server"
    assert Caller.subscriber("a", "u1", "d1") == Caller("a", "user", "u1", "d1")
    assert Caller.subscriber("a", "", "d1").kind == "anonymous"
    assert "u1" in repr(Caller.user("a", "u1"))
