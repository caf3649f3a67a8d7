"""Password hashing (argon2id) and the password policy.

Hashes are PHC strings (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``) so their
parameters travel with them: raising the cost later only makes `needs_rehash`
true for old hashes, which the api re-hashes on the next successful sign-in.

argon2 is deliberately slow (tens of milliseconds, 64 MiB with the defaults):
async code should use `hash_async` / `verify_async`, which run it in a worker
thread (argon2-cffi releases the GIL) instead of blocking the event loop.
"""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from nexxus.core.errors import InvalidArgument

__all__ = ["MAX_PASSWORD_LENGTH", "PasswordHasher", "check_password_policy"]

# Longer inputs are rejected: they buy no security and cost hashing time.
MAX_PASSWORD_LENGTH = 1024


def check_password_policy(password: str, *, min_length: int, field: str = "password") -> None:
    """Raise InvalidArgument(field=`field`, reason WEAK_PASSWORD) unless the
    password has `min_length`..MAX_PASSWORD_LENGTH characters and is not only
    whitespace. The message never contains the password."""
    if not password or not password.strip():
        raise InvalidArgument(
            "the password must not be empty or only whitespace", field=field, reason="WEAK_PASSWORD"
        )
    if len(password) < min_length:
        raise InvalidArgument(
            f"the password must have at least {min_length} characters", field=field, reason="WEAK_PASSWORD"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(
            f"the password must have at most {MAX_PASSWORD_LENGTH} characters",
            field=field,
            reason="INVALID_ARGUMENT",
        )


class PasswordHasher:
    """argon2id hashing. The defaults are RFC 9106's low-memory profile
    (t=3, m=64 MiB, p=4); tests pass cheap parameters, e.g.
    ``PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)``."""

    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_cost: int = 65536,
        parallelism: int = 4,
        min_length: int = 8,
    ) -> None:
        self._ph = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self.min_length = min_length
        self._dummy_hash: str | None = None

    def check_policy(self, password: str, *, min_length: int | None = None, field: str = "password") -> None:
        """`check_password_policy` with `min_length` (default: this hasher's)."""
        check_password_policy(
            password, min_length=self.min_length if min_length is None else min_length, field=field
        )

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches `password_hash`.

        With no hash (unknown user, OIDC-only user) a dummy hash with the same
        parameters is verified anyway, so the answer takes as long as for an
        existing user and timing does not reveal which logins exist. Malformed
        hashes give False. The comparison inside argon2 is constant-time.
        """
        if not password_hash:
            self._verify(self._dummy(), password)
            return False
        return self._verify(password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters (or is not argon2id)."""
        try:
            return bool(self._ph.check_needs_rehash(password_hash))
        except (InvalidHashError, ValueError):
            return True

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._ph.verify(password_hash, password))
        except (VerificationError, InvalidHashError, ValueError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._ph.hash("nexxus-dummy-password")
        return self._dummy_hash
