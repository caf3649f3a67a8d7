"""PasswordHasher (argon2id, cheap test parameters) and the password policy."""

from __future__ import annotations

import pytest

from nexxus.auth.passwords import MAX_PASSWORD_LENGTH, PasswordHasher, check_password_policy
from nexxus.core.errors import InvalidArgument


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_hash_is_argon2id_and_never_the_password(hasher: PasswordHasher) -> None:
    h = hasher.hash("correct horse")
    assert h.startswith("$argon2id$")
    assert "correct horse" not in h
    assert hasher.hash("correct horse") != h  # salted


def test_verify(hasher: PasswordHasher) -> None:
    h = hasher.hash("correct horse")
    assert hasher.verify(h, "correct horse") is True
    assert hasher.verify(h, "correct hors") is False
    assert hasher.verify(h, "") is False


def test_verify_without_a_hash_runs_a_dummy_verification(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = hasher._verify

    def spy(password_hash: str, password: str) -> bool:
        seen.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(hasher, "_verify", spy)
    assert hasher.verify(None, "whatever") is False
    assert hasher.verify("", "nexxus-dummy-password") is False  # even the dummy's own password
    assert len(seen) == 2
    assert all(h.startswith("$argon2id$") for h in seen)


def test_verify_malformed_hash_is_false(hasher: PasswordHasher) -> None:
    assert hasher.verify("not-a-hash", "x") is False
    assert hasher.verify("$argon2id$garbage", "x") is False


def test_needs_rehash_when_parameters_change(hasher: PasswordHasher) -> None:
    h = hasher.hash("pw-123456")
    assert hasher.needs_rehash(h) is False
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert stronger.needs_rehash(h) is True
    assert hasher.needs_rehash("plain") is True


async def test_async_variants(hasher: PasswordHasher) -> None:
    h = await hasher.hash_async("pw-123456")
    assert await hasher.verify_async(h, "pw-123456") is True
    assert await hasher.verify_async(h, "pw-1234567") is False


@pytest.mark.parametrize("password", ["", "        ", "\t\n  \t\n  ", "short"])
def test_policy_rejects(password: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_password_policy(password, min_length=8)
    assert err.value.field == "password"
    assert err.value.reason == "WEAK_PASSWORD"
    if password.strip():
        assert password not in err.value.message


def test_policy_field_and_bounds(hasher: PasswordHasher) -> None:
    check_password_policy("12345678", min_length=8)
    check_password_policy(" pass phrase ", min_length=8)
    with pytest.raises(InvalidArgument) as err:
        hasher.check_policy("1234567", field="new_password")
    assert err.value.field == "new_password"
    hasher.check_policy("1234", min_length=4)  # explicit minimum wins
    with pytest.raises(InvalidArgument):
        hasher.check_policy("123", min_length=4)
    with pytest.raises(InvalidArgument):
        check_password_policy("x" * (MAX_PASSWORD_LENGTH + 1), min_length=8)
