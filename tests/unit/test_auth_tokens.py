"""TokenService: access JWTs, refresh tokens, and generated secrets."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from nexxus.auth.tokens import TokenService, ensure_secret, resolve_secret
from nexxus.core.config.settings import AuthSettings
from nexxus.core.errors import Unauthenticated
from nexxus.core.models import RefreshTokenRecord

KEY = "k" * 64
T0 = datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def svc(clock: Clock) -> TokenService:
    return TokenService(AuthSettings(access_token_ttl_seconds=900), signing_key=KEY, now=clock)


def reason_of(svc: TokenService, token: str | None, app_id: str = "app1") -> str:
    with pytest.raises(Unauthenticated) as err:
        svc.verify_access(token, app_id=app_id)
    assert token is None or token == "" or token not in err.value.message
    return err.value.reason


def test_issue_and_verify(svc: TokenService) -> None:
    issued = svc.issue("app1", "u1", "d1")
    claims = svc.verify_access(issued.access_token, app_id="app1")
    assert (claims.app_id, claims.user_id, claims.device_id) == ("app1", "u1", "d1")
    assert claims.issued_at == T0  # microseconds kept
    assert claims.expires_at == T0.replace(microsecond=0) + timedelta(seconds=900)
    assert claims.token_id == issued.claims.token_id
    assert claims.token_id
    payload = jwt.decode(
        issued.access_token, KEY, algorithms=["HS256"], audience="app1", options={"verify_iat": False}
    )
    assert payload["iss"] == "nexxus"
    assert payload["sub"] == "u1"
    assert payload["did"] == "d1"


def test_not_device_bound(svc: TokenService) -> None:
    issued = svc.issue("app1", "u1")
    assert svc.verify_access(issued.access_token, app_id="app1").device_id == ""


def test_refresh_token_stored_hashed(svc: TokenService) -> None:
    issued = svc.issue("app1", "u1", "d1")
    rec = issued.refresh_record
    assert len(issued.refresh_token) >= 43
    assert rec.token_hash == svc.hash_refresh(issued.refresh_token) != issued.refresh_token
    assert len(rec.token_hash) == 64
    assert (rec.app_id, rec.user_id, rec.device_id, rec.revoked) == ("app1", "u1", "d1", False)
    assert rec.expires_at == T0 + timedelta(days=30) == issued.refresh_expires_at
    assert svc.issue("app1", "u1").refresh_token != issued.refresh_token


def test_missing_and_malformed(svc: TokenService) -> None:
    assert reason_of(svc, None) == "TOKEN_MISSING"
    assert reason_of(svc, "") == "TOKEN_MISSING"
    assert reason_of(svc, "not-a-jwt") == "TOKEN_MALFORMED"
    assert reason_of(svc, "a.b.c") == "TOKEN_MALFORMED"


def test_expired(svc: TokenService, clock: Clock) -> None:
    token = svc.issue("app1", "u1").access_token
    clock.at = T0 + timedelta(seconds=899)
    svc.verify_access(token, app_id="app1")
    clock.at = T0 + timedelta(seconds=900)
    assert reason_of(svc, token) == "TOKEN_EXPIRED"


def test_wrong_application(svc: TokenService) -> None:
    token = svc.issue("app1", "u1").access_token
    assert reason_of(svc, token, app_id="app2") == "TOKEN_WRONG_APPLICATION"


def test_a_cached_token_is_still_checked_for_application_and_expiry(svc: TokenService, clock: Clock) -> None:
    token = svc.issue("app1", "u1").access_token
    assert svc.verify_access(token, app_id="app1").user_id == "u1"  # now cached
    assert reason_of(svc, token, app_id="app2") == "TOKEN_WRONG_APPLICATION"
    clock.at = T0 + timedelta(seconds=901)
    assert reason_of(svc, token) == "TOKEN_EXPIRED"


def test_wrong_key(svc: TokenService, clock: Clock) -> None:
    other = TokenService(AuthSettings(), signing_key="o" * 48, now=clock)
    assert reason_of(svc, other.issue("app1", "u1").access_token) == "TOKEN_INVALID_SIGNATURE"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_payload(svc: TokenService) -> None:
    header, payload, sig = svc.issue("app1", "u1").access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), sig])
    assert reason_of(svc, forged) == "TOKEN_INVALID_SIGNATURE"


def test_alg_none_and_other_algorithms_rejected(svc: TokenService) -> None:
    claims = {"iss": "nexxus", "aud": "app1", "sub": "u1", "did": "", "iat": 1, "exp": 4e9, "jti": "x"}
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert reason_of(svc, unsigned) == "TOKEN_INVALID_SIGNATURE"
    hs512 = jwt.encode(claims, KEY, algorithm="HS512")
    assert reason_of(svc, hs512) == "TOKEN_INVALID_SIGNATURE"


def test_missing_claims_are_malformed(svc: TokenService) -> None:
    good = {"iss": "nexxus", "aud": "app1", "sub": "u1", "did": "", "iat": 1, "exp": 4e9, "jti": "x"}
    assert svc.verify_access(jwt.encode(good, KEY, algorithm="HS256"), app_id="app1").user_id == "u1"
    for drop in ("iss", "aud", "sub", "iat", "exp", "jti"):
        claims = {k: v for k, v in good.items() if k != drop}
        assert reason_of(svc, jwt.encode(claims, KEY, algorithm="HS256")) == "TOKEN_MALFORMED", drop
    bad_iss = dict(good, iss="someone-else")
    assert reason_of(svc, jwt.encode(bad_iss, KEY, algorithm="HS256")) == "TOKEN_MALFORMED"


def test_short_signing_key_refused() -> None:
    with pytest.raises(ValueError, match="signing key"):
        TokenService(AuthSettings(), signing_key="short")


def test_check_refresh(svc: TokenService, clock: Clock) -> None:
    rec = svc.issue("app1", "u1").refresh_record
    assert svc.check_refresh(rec) is rec
    for record, reason in [
        (None, "REFRESH_TOKEN_INVALID"),
        (RefreshTokenRecord("app1", "h", "u1", "", rec.expires_at, revoked=True), "REFRESH_TOKEN_REVOKED"),
    ]:
        with pytest.raises(Unauthenticated) as err:
            svc.check_refresh(record)
        assert err.value.reason == reason
    clock.at = rec.expires_at
    with pytest.raises(Unauthenticated) as err:
        svc.check_refresh(rec)
    assert err.value.reason == "REFRESH_TOKEN_EXPIRED"


def test_ensure_secret_creates_0600_and_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "signing.key"
    first = ensure_secret(path)
    assert len(first) >= 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secret(path) == first
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert ensure_secret(tmp_path / "op.key", prefix="nxo_").startswith("nxo_")


def test_ensure_secret_tightens_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("existing-secret\n")
    os.chmod(path, 0o644)
    assert ensure_secret(path) == "existing-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_resolve_secret_prefers_configured(tmp_path: Path) -> None:
    assert resolve_secret("configured", tmp_path / "k") == "configured"
    assert not (tmp_path / "k").exists()
    assert resolve_secret("", tmp_path / "k") == (tmp_path / "k").read_text().strip()
