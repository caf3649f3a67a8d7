"""Access tokens (JWT, HS256) and refresh tokens (opaque, stored hashed).

An access token is bound to (application, user, device)::

    {"iss": "nexxus", "aud": <app id>, "sub": <user id>, "did": <device id or "">,
     "iat": <issue time, seconds, microsecond fraction>, "exp": <expiry, seconds>,
     "jti": <random id>}

`iat` keeps its fractional part on purpose: revocation compares it with
`tokens_valid_after`, and a token issued in the same second right after a
revocation (password change, then new tokens) must stay valid.

`TokenService.verify_access` checks only format, signature, audience and expiry;
revocation (user / device `tokens_valid_after`, deleted device) is the
`Authenticator`'s job because it needs the identity store.

A refresh token is `secrets.token_urlsafe(32)`; only its sha256 hex is stored
(`RefreshTokenRecord.token_hash`), so a database leak yields no usable tokens.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

import jwt

from nexxus.core.config.settings import MIN_SIGNING_KEY_LENGTH, AuthSettings
from nexxus.core.errors import Unauthenticated
from nexxus.core.models import RefreshTokenRecord, utcnow

__all__ = [
    "ISSUER",
    "Claims",
    "IssuedTokens",
    "TokenService",
    "ensure_secret",
    "resolve_secret",
]

log = logging.getLogger("nexxus.auth")

ISSUER = "nexxus"
ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of an access token."""

    app_id: str
    user_id: str
    # "" when the token is not bound to a device.
    device_id: str
    token_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    access_expires_at: datetime
    # The opaque refresh token, handed to the client once and never stored.
    refresh_token: str
    refresh_expires_at: datetime
    # What to store (`IdentityStore.store_refresh_token`): the token's sha256, not the token.
    refresh_record: RefreshTokenRecord
    claims: Claims


def _fail(message: str, reason: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


# Verified tokens kept per process (oldest evicted first).
VERIFIED_CACHE_SIZE = 10_000


class TokenService:
    """Issues and verifies access tokens; hashes refresh tokens."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        signing_key: str,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if len(signing_key) < MIN_SIGNING_KEY_LENGTH:
            raise ValueError(f"the signing key must have at least {MIN_SIGNING_KEY_LENGTH} characters")
        self._settings = settings
        self._key = signing_key
        self._now = now
        # Tokens whose signature was verified: the same token on every call of a
        # session costs a dict lookup, not a JWT decode. Expiry and application
        # are still checked on every hit; revocation is the Authenticator's job.
        self._verified: dict[str, Claims] = {}

    @property
    def access_ttl(self) -> timedelta:
        return timedelta(seconds=self._settings.access_token_ttl_seconds)

    @property
    def refresh_ttl(self) -> timedelta:
        return timedelta(seconds=self._settings.refresh_token_ttl_seconds)

    # ------------------------------------------------------------------ issue

    def issue(self, app_id: str, user_id: str, device_id: str = "") -> IssuedTokens:
        """A new access token and refresh token for (app, user, device)."""
        if not app_id or not user_id:
            raise ValueError("tokens need an application id and a user id")
        now = self._now()
        iat = round(now.timestamp(), 6)
        access_exp = now + self.access_ttl
        exp = int(access_exp.timestamp())
        claims = Claims(
            app_id=app_id,
            user_id=user_id,
            device_id=device_id,
            token_id=secrets.token_urlsafe(16),
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC),
        )
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": app_id,
            "sub": user_id,
            "did": device_id,
            "iat": iat,
            "exp": exp,
            "jti": claims.token_id,
        }
        access = jwt.encode(payload, self._key, algorithm=ALGORITHM)
        refresh = secrets.token_urlsafe(32)
        refresh_exp = now + self.refresh_ttl
        record = RefreshTokenRecord(
            app_id=app_id,
            token_hash=self.hash_refresh(refresh),
            user_id=user_id,
            device_id=device_id,
            expires_at=refresh_exp,
            created_at=now,
        )
        return IssuedTokens(
            access_token=access,
            access_expires_at=claims.expires_at,
            refresh_token=refresh,
            refresh_expires_at=refresh_exp,
            refresh_record=record,
            claims=claims,
        )

    # ----------------------------------------------------------------- verify

    def verify_access(self, token: str | None, *, app_id: str) -> Claims:
        """The claims of a valid access token for `app_id`.

        Raises Unauthenticated with reason TOKEN_MISSING, TOKEN_MALFORMED,
        TOKEN_INVALID_SIGNATURE, TOKEN_WRONG_APPLICATION or TOKEN_EXPIRED,
        checked in that order (nothing is trusted before the signature).
        """
        if not token:
            raise _fail("an access token is required", "TOKEN_MISSING")
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))  # the oldest entry
            self._verified[token] = claims
        if claims.app_id != app_id:
            raise _fail("the access token belongs to another application", "TOKEN_WRONG_APPLICATION")
        if self._now() >= claims.expires_at:
            self._verified.pop(token, None)
            raise _fail("the access token has expired", "TOKEN_EXPIRED")
        return claims

    def check(self, token: str) -> Claims:
        """Format, signature and expiry, for any application (the interceptor's
        early check; `verify_access` then binds the token to the call's app)."""
        claims = self._verified.get(token) or self._decode(token)
        if self._now() >= claims.expires_at:
            raise _fail("the access token has expired", "TOKEN_EXPIRED")
        return claims

    def _decode(self, token: str) -> Claims:
        """Check the format and the signature; the claims, not yet checked."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise _fail("the access token is malformed", "TOKEN_MALFORMED") from exc
        if header.get("alg") != ALGORITHM:
            raise _fail("the access token is not signed by this server", "TOKEN_INVALID_SIGNATURE")
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise _fail("the access token's signature is invalid", "TOKEN_INVALID_SIGNATURE") from exc
        except jwt.InvalidTokenError as exc:
            raise _fail("the access token is malformed", "TOKEN_MALFORMED") from exc
        return _claims_from(payload)

    @staticmethod
    def hash_refresh(token: str) -> str:
        """The sha256 hex of a refresh token: what the store keeps and looks up."""
        return hashlib.sha256(token.encode()).hexdigest()

    def check_refresh(self, record: RefreshTokenRecord | None) -> RefreshTokenRecord:
        """The stored record of a presented refresh token, if still usable.

        Raises Unauthenticated: REFRESH_TOKEN_INVALID (unknown),
        REFRESH_TOKEN_REVOKED (already used or revoked: a reuse may mean theft),
        REFRESH_TOKEN_EXPIRED."""
        if record is None:
            raise _fail("the refresh token is not valid", "REFRESH_TOKEN_INVALID")
        if record.revoked:
            raise _fail("the refresh token has been revoked", "REFRESH_TOKEN_REVOKED")
        if self._now() >= record.expires_at:
            raise _fail("the refresh token has expired", "REFRESH_TOKEN_EXPIRED")
        return record


def _claims_from(payload: Mapping[str, Any]) -> Claims:
    iss, aud, sub, did = payload.get("iss"), payload.get("aud"), payload.get("sub"), payload.get("did", "")
    iat, exp, jti = payload.get("iat"), payload.get("exp"), payload.get("jti")
    if (
        iss != ISSUER
        or not isinstance(aud, str)
        or not aud
        or not isinstance(sub, str)
        or not sub
        or not isinstance(did, str)
        or not isinstance(jti, str)
        or not _is_number(iat)
        or not _is_number(exp)
    ):
        raise _fail("the access token is malformed", "TOKEN_MALFORMED")
    try:
        issued = datetime.fromtimestamp(float(iat), UTC)
        expires = datetime.fromtimestamp(float(exp), UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _fail("the access token is malformed", "TOKEN_MALFORMED") from exc
    return Claims(app_id=aud, user_id=sub, device_id=did, token_id=jti, issued_at=issued, expires_at=expires)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- secrets


def ensure_secret(path: Path, *, prefix: str = "") -> str:
    """The secret stored in `path`, created (mode 0600, parent 0700) when missing.

    Creation is atomic and race-free between processes: the secret is written to
    a private temporary file and hard-linked into place; whoever loses the race
    reads the winner's secret. A group/world-readable existing file is tightened
    to 0600 with a warning. The secret itself is never logged.
    """
    path = Path(path)
    existing = _read_secret(path)
    if existing:
        return existing
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = prefix + secrets.token_urlsafe(48)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            winner = _read_secret(path)
            if winner:
                return winner
            os.replace(tmp, path)
            return secret
    finally:
        tmp.unlink(missing_ok=True)
    log.info("generated a new secret in %s", path)
    return secret


def resolve_secret(configured: str, path: Path, *, prefix: str = "") -> str:
    """`configured` when set, else the secret persisted at `path` (see `ensure_secret`)."""
    return configured or ensure_secret(path, prefix=prefix)


def _read_secret(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return ""
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s was readable by others; restricting it to 0600", path)
        os.chmod(path, 0o600)
    return path.read_text(encoding="utf-8").strip()
