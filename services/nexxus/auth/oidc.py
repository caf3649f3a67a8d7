"""OpenID Connect ID token verification (sign-in with Google and other providers).

Each provider is configured with its issuer, the audience (this deployment's
OAuth client id) and its JWKS, one of:

- an ``https://`` (or ``http://``) URL, fetched with aiohttp and cached for
  `jwks_ttl_seconds`; an unknown ``kid`` triggers a re-fetch (key rotation), at
  most once per `refresh_interval_seconds`; when a re-fetch fails, the keys
  already known keep working;
- inline JSON (``{"keys": [...]}``), for tests and air-gapped setups;
- a file path holding that JSON (re-read on an unknown ``kid``, rate-limited).

Only RS256 (RSA keys) and ES256 (P-256 keys) are accepted. PyJWT checks the
signature against the key named by ``kid`` and the claims: ``iss`` (exactly;
for an ``https://host`` issuer the bare ``host`` form is accepted too, as Google
issues both), ``aud`` (string or list containing the audience), ``exp``,
``iat`` and ``nbf`` with `leeway_seconds` of clock skew, all of ``iss``,
``aud``, ``exp``, ``iat`` and ``sub`` required; a non-empty ``sub`` is checked
here. Keys are fetched here rather than by PyJWT's `PyJWKClient`, which reads
URLs synchronously (it would block the event loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from nexxus.core.config.settings import OidcProviderSettings
from nexxus.core.errors import FailedPrecondition, Unauthenticated, Unavailable

__all__ = ["JwksFetcher", "OidcIdentity", "OidcVerifier"]

log = logging.getLogger("nexxus.auth")

JwksFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]
_ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    subject: str
    email: str
    email_verified: bool
    name: str


@dataclass(slots=True)
class _Provider:
    name: str
    settings: OidcProviderSettings
    source: str  # "url" | "file" | "inline"
    # (kid, alg) -> public key
    keys: dict[tuple[str, str], Any] = field(default_factory=dict)
    loaded_at: float | None = None
    refreshed_at: float = float("-inf")
    # Bumped by every load attempt, so tasks queued on the lock skip a duplicate load.
    generation: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _source_of(jwks: str) -> str:
    text = jwks.strip()
    if text.startswith(("https://", "http://")):
        return "url"
    if text.startswith("{"):
        return "inline"
    return "file"


class OidcVerifier:
    """Verifies ID tokens of the configured providers (name → settings)."""

    def __init__(
        self,
        providers: Mapping[str, OidcProviderSettings],
        *,
        fetch: JwksFetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        leeway_seconds: float = 60.0,
        jwks_ttl_seconds: float = 3600.0,
        refresh_interval_seconds: float = 30.0,
        http_timeout_seconds: float = 5.0,
    ) -> None:
        self._providers: dict[str, _Provider] = {}
        for name, ps in providers.items():
            missing = [k for k in ("issuer", "audience", "jwks") if not getattr(ps, k)]
            if missing:
                raise ValueError(f"OIDC provider {name!r} needs {', '.join(missing)}")
            self._providers[name] = _Provider(name=name, settings=ps, source=_source_of(ps.jwks))
        self._fetch = fetch or self._http_fetch
        self._clock = clock
        self._leeway = leeway_seconds
        self._ttl = jwks_ttl_seconds
        self._refresh_interval = refresh_interval_seconds
        self._http_timeout = http_timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    @property
    def providers(self) -> list[str]:
        return sorted(self._providers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ verify

    async def verify(self, provider: str, id_token: str) -> OidcIdentity:
        """The identity in a valid ID token of `provider`.

        FailedPrecondition (OIDC_PROVIDER_NOT_CONFIGURED) for an unknown provider;
        Unauthenticated (TOKEN_MISSING, TOKEN_MALFORMED, TOKEN_INVALID_SIGNATURE,
        TOKEN_EXPIRED, TOKEN_WRONG_ISSUER, TOKEN_WRONG_AUDIENCE) for a bad token;
        Unavailable when the provider's keys cannot be fetched at all."""
        p = self._providers.get(provider)
        if p is None:
            raise FailedPrecondition(
                f"no OIDC provider {provider!r} is configured",
                reason="OIDC_PROVIDER_NOT_CONFIGURED",
                field="provider",
            )
        if not id_token:
            raise Unauthenticated("an ID token is required", reason="TOKEN_MISSING")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.DecodeError as exc:
            raise Unauthenticated("the ID token is malformed", reason="TOKEN_MALFORMED") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in _ALGORITHMS:
            raise Unauthenticated(
                f"ID tokens must be signed with {' or '.join(_ALGORITHMS)}", reason="TOKEN_INVALID_SIGNATURE"
            )
        key = await self._key(p, kid if isinstance(kid, str) else "", alg)
        ps = p.settings
        issuers = [ps.issuer]
        if ps.issuer.startswith("https://"):
            issuers.append(ps.issuer.removeprefix("https://"))
        try:
            claims = jwt.decode(
                id_token,
                key,
                algorithms=[alg],
                audience=ps.audience,
                issuer=issuers,
                leeway=self._leeway,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            message, reason = _refusal(exc)
            raise Unauthenticated(message, reason=reason) from exc
        return _identity(claims)

    # -------------------------------------------------------------------- keys

    async def _key(self, p: _Provider, kid: str, alg: str) -> Any:
        now = self._clock()
        may_refresh = p.source != "inline" and now - p.refreshed_at >= self._refresh_interval
        if p.loaded_at is None:
            await self._load(p, required=True)
        elif may_refresh and now - p.loaded_at >= self._ttl:
            await self._load(p, required=False)
            may_refresh = False
        key = _find(p.keys, kid, alg)
        if key is None and may_refresh:
            await self._load(p, required=False)  # the provider may have rotated its keys
            key = _find(p.keys, kid, alg)
        if key is None:
            raise Unauthenticated(
                "the ID token is signed with an unknown key", reason="TOKEN_INVALID_SIGNATURE"
            )
        return key

    async def _load(self, p: _Provider, *, required: bool) -> None:
        generation = p.generation
        async with p.lock:
            if p.generation != generation and p.loaded_at is not None:
                return  # another task loaded them while this one waited
            p.generation += 1
            started = p.refreshed_at = self._clock()
            try:
                raw = await self._read_jwks(p)
                keys = _parse_jwks(raw)
            except (Unavailable, ValueError, OSError) as exc:
                if required or not p.keys:
                    raise Unavailable(
                        f"cannot load the keys of OIDC provider {p.name!r}", reason="OIDC_KEYS_UNAVAILABLE"
                    ) from exc
                log.warning("keeping the cached keys of OIDC provider %s: %s", p.name, exc)
                return
            p.keys = keys
            p.loaded_at = started

    async def _read_jwks(self, p: _Provider) -> Mapping[str, Any]:
        jwks = p.settings.jwks.strip()
        if p.source == "url":
            return await self._fetch(jwks)
        text = jwks if p.source == "inline" else await asyncio.to_thread(Path(jwks).read_text, "utf-8")
        data = json.loads(text)
        if not isinstance(data, Mapping):
            raise ValueError("a JWKS must be a JSON object")
        return data

    async def _http_fetch(self, url: str) -> Mapping[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._http_timeout))
        try:
            async with self._session.get(url) as resp:
                resp.raise_for_status()
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"fetching {url} failed: {type(exc).__name__}") from exc
        if not isinstance(data, Mapping):
            raise ValueError("a JWKS must be a JSON object")
        return data


# PyJWT's refusals → (message, reason), most specific first; anything else is malformed.
_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], str, str], ...] = (
    (jwt.InvalidSignatureError, "the ID token's signature is invalid", "TOKEN_INVALID_SIGNATURE"),
    (jwt.ExpiredSignatureError, "the ID token has expired", "TOKEN_EXPIRED"),
    (jwt.InvalidIssuerError, "the ID token comes from another issuer", "TOKEN_WRONG_ISSUER"),
    (jwt.InvalidAudienceError, "the ID token is for another client", "TOKEN_WRONG_AUDIENCE"),
    (jwt.ImmatureSignatureError, "the ID token is not valid yet", "TOKEN_MALFORMED"),
)


def _refusal(exc: jwt.InvalidTokenError) -> tuple[str, str]:
    for kind, message, reason in _REFUSALS:
        if isinstance(exc, kind):
            return message, reason
    return f"the ID token is malformed: {exc}", "TOKEN_MALFORMED"


def _identity(claims: Mapping[str, Any]) -> OidcIdentity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthenticated("the ID token has no subject", reason="TOKEN_MALFORMED")
    email = claims.get("email")
    verified = claims.get("email_verified")
    name = claims.get("name")
    return OidcIdentity(
        subject=sub,
        email=email if isinstance(email, str) else "",
        # Some providers send "true" as a string.
        email_verified=verified is True or (isinstance(verified, str) and verified.lower() == "true"),
        name=name if isinstance(name, str) else "",
    )


def _parse_jwks(raw: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """(kid, alg) → public key for the usable signing keys; ValueError when none."""
    entries = raw.get("keys")
    if not isinstance(entries, list):
        raise ValueError("a JWKS needs a 'keys' list")
    out: dict[tuple[str, str], Any] = {}
    for jwk_data in entries:
        if not isinstance(jwk_data, dict) or jwk_data.get("use", "sig") != "sig":
            continue
        kty, crv, alg = jwk_data.get("kty"), jwk_data.get("crv"), jwk_data.get("alg")
        if kty == "RSA":
            expected = "RS256"
        elif kty == "EC" and crv == "P-256":
            expected = "ES256"
        else:
            continue
        if alg not in (None, expected):
            continue
        try:
            key = jwt.PyJWK(jwk_data, algorithm=expected).key
        except jwt.PyJWTError:
            continue
        kid = jwk_data.get("kid")
        out[(kid if isinstance(kid, str) else "", expected)] = key
    if not out:
        raise ValueError("the JWKS holds no usable RS256 / ES256 key")
    return out


def _find(keys: Mapping[tuple[str, str], Any], kid: str, alg: str) -> Any:
    key = keys.get((kid, alg))
    if key is None and not kid:
        # No kid in the token: acceptable only when the set has a single key of that type.
        candidates = [k for (_, a), k in keys.items() if a == alg]
        if len(candidates) == 1:
            return candidates[0]
    return key
