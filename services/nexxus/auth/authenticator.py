"""From an ``authorization`` header to a `Caller`.

``authorization: Bearer <credential>`` where the credential is one of:

- the operator key (compared in constant time) → an operator caller, valid for
  every application (NOT_FOUND when the application does not exist);
- an application server key ``nxs_…`` → a server caller (NOT_FOUND for an
  unknown application), checked against the stored hash in constant time
  (`nexxus.auth.server_keys`); rotating the key takes effect with the
  application cache (below);
- an access token (JWT) → a user caller, after `TokenService.verify_access`
  and the revocation checks: the application and user exist and the token was
  issued at or after ``user.tokens_valid_after``; when device-bound, the device
  exists, belongs to the user and the token was issued at or after
  ``device.tokens_valid_after``. Any failure there is UNAUTHENTICATED
  (TOKEN_REVOKED), never NOT_FOUND, so tokens do not reveal which apps exist.

No header: an anonymous caller when the application has optional auth, else
UNAUTHENTICATED (TOKEN_MISSING).

Revocation latency: application, user and device records are cached in this
process for `cache_ttl` seconds (default 2). A logout, password change or
device deletion therefore takes effect everywhere within `cache_ttl`; the
process that performs it calls `invalidate_user` / `invalidate_device` /
`invalidate_app` and sees it at once.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from nexxus.auth._cache import TtlCache
from nexxus.auth.caller import Caller
from nexxus.auth.passwords import PasswordHasher
from nexxus.auth.server_keys import SERVER_KEY_PREFIX, generate_server_key, is_legacy_hash, key_matches
from nexxus.auth.tokens import Claims, TokenService
from nexxus.core.errors import NotFound, Unauthenticated
from nexxus.core.models import AppRecord, DeviceRecord, UserRecord
from nexxus.core.ports import IdentityStore

__all__ = ["SERVER_KEY_PREFIX", "Authenticator", "generate_server_key"]

log = logging.getLogger("nexxus.auth")


def _revoked(message: str) -> Unauthenticated:
    return Unauthenticated(message, reason="TOKEN_REVOKED")


class Authenticator:
    """Authenticates requests of one deployment (all applications)."""

    def __init__(
        self,
        identity: IdentityStore,
        tokens: TokenService,
        *,
        operator_key: str,
        hasher: PasswordHasher,
        cache_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._identity = identity
        self._tokens = tokens
        self._operator_key = operator_key.encode()
        self._hasher = hasher
        self._apps: TtlCache[str, AppRecord | None] = TtlCache(cache_ttl, clock=clock)
        self._users: TtlCache[tuple[str, str], UserRecord | None] = TtlCache(cache_ttl, clock=clock)
        self._devices: TtlCache[tuple[str, str], DeviceRecord | None] = TtlCache(cache_ttl, clock=clock)

    # ---------------------------------------------------------------- public

    async def authenticate(self, app_id: str, authorization: str | None) -> Caller:
        """The caller of a request to `app_id` (see the module docstring)."""
        credential = _bearer(authorization)
        if credential is None:
            app = await self._app(app_id)
            if app is not None and app.optional_auth:
                return Caller.anonymous(app_id)
            raise Unauthenticated("credentials are required", reason="TOKEN_MISSING")
        if self.is_operator_key(credential):
            await self._require_app(app_id)
            return Caller.operator(app_id)
        if credential.startswith(SERVER_KEY_PREFIX):
            app = await self._require_app(app_id)
            if not await self._server_key_valid(app, credential):
                raise Unauthenticated(
                    "the server key is not valid for this application", reason="SERVER_KEY_INVALID"
                )
            return Caller.server(app_id)
        return await self._user(app_id, credential)

    def authenticate_operator(self, authorization: str | None) -> Caller:
        """An operator caller for application-less calls (create / list applications)."""
        credential = _bearer(authorization)
        if credential is None:
            raise Unauthenticated("the operator key is required", reason="TOKEN_MISSING")
        if not self.is_operator_key(credential):
            raise Unauthenticated("the operator key is not valid", reason="OPERATOR_KEY_INVALID")
        return Caller.operator()

    def is_operator_key(self, credential: str) -> bool:
        return bool(self._operator_key) and hmac.compare_digest(credential.encode(), self._operator_key)

    def invalidate_app(self, app_id: str) -> None:
        self._apps.pop(app_id)
        self._users.discard_where(lambda k: k[0] == app_id)
        self._devices.discard_where(lambda k: k[0] == app_id)

    def invalidate_user(self, app_id: str, user_id: str) -> None:
        self._users.pop((app_id, user_id))

    def invalidate_device(self, app_id: str, device_id: str) -> None:
        self._devices.pop((app_id, device_id))

    # ------------------------------------------------------------- internals

    async def _user(self, app_id: str, token: str) -> Caller:
        claims = self._tokens.verify_access(token, app_id=app_id)
        if await self._app(app_id) is None:
            raise _revoked("the access token is no longer valid")
        user = await self._user_record(app_id, claims.user_id)
        if user is None or _before(claims, user.tokens_valid_after):
            raise _revoked("the access token has been revoked")
        if claims.device_id:
            device = await self._device_record(app_id, claims.device_id)
            if device is None or device.user_id != claims.user_id:
                raise _revoked("the access token's device no longer exists")
            if _before(claims, device.tokens_valid_after):
                raise _revoked("the access token's device has been signed out")
        return Caller.user(
            app_id, claims.user_id, claims.device_id, claims.token_id, claims.expires_at.timestamp()
        )

    async def _require_app(self, app_id: str) -> AppRecord:
        app = await self._app(app_id)
        if app is None:
            raise NotFound(f"application {app_id!r} does not exist", reason="APP_NOT_FOUND", field="app_id")
        return app

    async def _app(self, app_id: str) -> AppRecord | None:
        if not app_id:
            return None
        hit, app = self._apps.get(app_id)
        if not hit:
            app = await self._identity.get_app(app_id)
            self._apps.put(app_id, app)
        return app

    async def _user_record(self, app_id: str, user_id: str) -> UserRecord | None:
        key = (app_id, user_id)
        hit, user = self._users.get(key)
        if not hit:
            user = await self._identity.get_user(app_id, user_id)
            self._users.put(key, user)
        return user

    async def _device_record(self, app_id: str, device_id: str) -> DeviceRecord | None:
        key = (app_id, device_id)
        hit, device = self._devices.get(key)
        if not hit:
            device = await self._identity.get_device(app_id, device_id)
            self._devices.put(key, device)
        return device

    async def _server_key_valid(self, app: AppRecord, key: str) -> bool:
        stored = app.server_key_hash
        if not stored:
            return False
        if is_legacy_hash(stored):
            log.warning("application %r keeps an argon2 server key hash: rotate its key", app.id)
            return await self._hasher.verify_async(stored, key)
        return key_matches(stored, key)


def _bearer(authorization: str | None) -> str | None:
    """The credential of ``Bearer <credential>``; None when there is no header."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer":
        raise Unauthenticated("expected 'authorization: Bearer <credential>'", reason="TOKEN_MALFORMED")
    if not credential:
        raise Unauthenticated("the bearer credential is empty", reason="TOKEN_MISSING")
    return credential


def _before(claims: Claims, valid_after: datetime | None) -> bool:
    """True when the token was issued before `valid_after` (naive datetimes are UTC)."""
    if valid_after is None:
        return False
    if valid_after.tzinfo is None:
        valid_after = valid_after.replace(tzinfo=UTC)
    return claims.issued_at < valid_after
