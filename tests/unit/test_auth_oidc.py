"""OidcVerifier with locally generated keys (no network)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from nexxus.auth.oidc import OidcVerifier
from nexxus.core.config.settings import OidcProviderSettings
from nexxus.core.errors import FailedPrecondition, Unauthenticated, Unavailable

ISSUER = "https://accounts.example.com"
AUDIENCE = "client-123"


# PyJWT checks exp / iat against the real clock: tokens are made relative to it, per use.
class _Now:
    def timestamp(self) -> float:
        return datetime.now(UTC).timestamp()


NOW = _Now()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        out = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        out = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**out, "kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return {"keys": [jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1")]}


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": "ada@example.com",
        "email_verified": True,
        "name": "Ada",
        "iat": int(NOW.timestamp()) - 10,
        "exp": int(NOW.timestamp()) + 3600,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, kid: str | None = "rsa-1", alg: str = "RS256", **over: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**over), key, algorithm=alg, headers=headers)


def verifier(jwks_source: str, **kw: Any) -> OidcVerifier:
    ps = OidcProviderSettings(issuer=ISSUER, jwks=jwks_source, audience=AUDIENCE)
    return OidcVerifier({"google": ps}, **kw)


async def reason(v: OidcVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        await v.verify("google", token)
    return err.value.reason


async def test_valid_rsa_token_inline_jwks(rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any]) -> None:
    ident = await verifier(json.dumps(jwks)).verify("google", sign(rsa_key))
    assert (ident.subject, ident.email, ident.email_verified, ident.name) == (
        "1234567890",
        "ada@example.com",
        True,
        "Ada",
    )


async def test_valid_es256_token_from_file(
    ec_key: ec.EllipticCurvePrivateKey, jwks: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    token = sign(ec_key, kid="ec-1", alg="ES256", email_verified="true", name=None)
    ident = await verifier(str(path)).verify("google", token)
    assert ident.email_verified is True
    assert ident.name == ""


async def test_bare_host_issuer_accepted(rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any]) -> None:
    ident = await verifier(json.dumps(jwks)).verify("google", sign(rsa_key, iss="accounts.example.com"))
    assert ident.subject == "1234567890"


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"iss": "https://evil.example.com"}, "TOKEN_WRONG_ISSUER"),
        ({"aud": "someone-else"}, "TOKEN_WRONG_AUDIENCE"),
        ({"aud": ["a", "b"]}, "TOKEN_WRONG_AUDIENCE"),
        ({"exp": int(NOW.timestamp()) - 61}, "TOKEN_EXPIRED"),
        ({"exp": None}, "TOKEN_MALFORMED"),
        ({"sub": ""}, "TOKEN_MALFORMED"),
        ({"iat": int(NOW.timestamp()) + 3600}, "TOKEN_MALFORMED"),
    ],
)
async def test_bad_claims(
    rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any], over: dict[str, Any], expected: str
) -> None:
    assert await reason(verifier(json.dumps(jwks)), sign(rsa_key, **over)) == expected


async def test_audience_list_and_leeway(rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any]) -> None:
    v = verifier(json.dumps(jwks))
    assert (await v.verify("google", sign(rsa_key, aud=["x", AUDIENCE]))).subject
    # expired 30 s ago: within the 60 s clock-skew leeway
    assert (await v.verify("google", sign(rsa_key, exp=int(NOW.timestamp()) - 30))).subject


async def test_wrong_key_and_unknown_kid(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any]
) -> None:
    v = verifier(json.dumps(jwks))
    assert await reason(v, sign(other_rsa_key, kid="rsa-1")) == "TOKEN_INVALID_SIGNATURE"
    assert await reason(v, sign(other_rsa_key, kid="rsa-9")) == "TOKEN_INVALID_SIGNATURE"
    # an RS256 token naming the EC key's kid
    assert await reason(v, sign(rsa_key, kid="ec-1")) == "TOKEN_INVALID_SIGNATURE"


async def test_tampered(rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any]) -> None:
    header, _payload, sig = sign(rsa_key).split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims(sub="victim")).encode()).decode()
    v = verifier(json.dumps(jwks))
    assert await reason(v, f"{header}.{forged_payload}.{sig}") == "TOKEN_INVALID_SIGNATURE"
    assert await reason(v, "garbage") == "TOKEN_MALFORMED"
    assert await reason(v, "") == "TOKEN_MISSING"


async def test_hs256_and_none_rejected(jwks: dict[str, Any]) -> None:
    v = verifier(json.dumps(jwks))
    assert await reason(v, jwt.encode(claims(), "s" * 64, algorithm="HS256")) == "TOKEN_INVALID_SIGNATURE"
    assert await reason(v, jwt.encode(claims(), None, algorithm="none")) == "TOKEN_INVALID_SIGNATURE"


async def test_no_kid_with_a_single_key(rsa_key: rsa.RSAPrivateKey) -> None:
    single = {"keys": [jwk(rsa_key, "only")]}
    assert (await verifier(json.dumps(single)).verify("google", sign(rsa_key, kid=None))).subject


async def test_unknown_provider(jwks: dict[str, Any]) -> None:
    with pytest.raises(FailedPrecondition) as err:
        await verifier(json.dumps(jwks)).verify("github", "x")
    assert err.value.reason == "OIDC_PROVIDER_NOT_CONFIGURED"


def test_misconfigured_provider_refused() -> None:
    with pytest.raises(ValueError, match="audience"):
        OidcVerifier({"g": OidcProviderSettings(issuer=ISSUER, jwks="{}")})


class FakeFetch:
    def __init__(self, *responses: Mapping[str, Any] | Exception) -> None:
        self.responses = list(responses)
        self.urls: list[str] = []

    async def __call__(self, url: str) -> Mapping[str, Any]:
        self.urls.append(url)
        r = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(r, Exception):
            raise r
        return r


class Tick:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_url_jwks_cached_and_refreshed_on_rotation(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    old = {"keys": [jwk(rsa_key, "k1")]}
    rotated = {"keys": [jwk(rsa_key, "k1"), jwk(other_rsa_key, "k2")]}
    fetch, tick = FakeFetch(old, rotated), Tick()
    v = verifier("https://example.com/jwks", fetch=fetch, clock=tick, refresh_interval_seconds=30)
    await v.verify("google", sign(rsa_key, kid="k1"))
    await v.verify("google", sign(rsa_key, kid="k1"))
    assert fetch.urls == ["https://example.com/jwks"]  # cached
    tick.t = 1.0
    # unknown kid shortly after the last fetch: no re-fetch (rate limit)
    assert await reason(v, sign(other_rsa_key, kid="k2")) == "TOKEN_INVALID_SIGNATURE"
    assert len(fetch.urls) == 1
    tick.t = 31.0
    assert (await v.verify("google", sign(other_rsa_key, kid="k2"))).subject
    assert len(fetch.urls) == 2


async def test_url_fetch_failure(rsa_key: rsa.RSAPrivateKey) -> None:
    tick = Tick()
    fetch = FakeFetch(Unavailable("down"))
    v = verifier("https://example.com/jwks", fetch=fetch, clock=tick)
    with pytest.raises(Unavailable):
        await v.verify("google", sign(rsa_key, kid="k1"))
    # once keys are known, a failing refresh keeps them
    fetch.responses = [{"keys": [jwk(rsa_key, "k1")]}]
    tick.t = 100.0
    assert (await v.verify("google", sign(rsa_key, kid="k1"))).subject
    fetch.responses = [Unavailable("down")]
    tick.t = 10_000.0  # past the TTL
    assert (await v.verify("google", sign(rsa_key, kid="k1"))).subject
    assert len(fetch.urls) == 3
