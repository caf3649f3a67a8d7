"""Throttling of failed sign-ins per (application, login).

The store only offers an atomic increment-and-read (`SubscriptionStore.hit`,
a fixed window), so there is no way to read the failure count without counting.
The throttle therefore works in units, all in one counter per (app, login) and
minute:

- `check` counts one unit for the attempt *before* the password is verified,
  and refuses when the units before it already reach 2 * `max_per_minute`;
- `failed` counts a second unit for an attempt that failed.

A failed attempt costs 2 units, a successful one 1: with failures only, exactly
`max_per_minute` failures are allowed per minute (the next check is refused),
and because the attempt is counted before verification, even a burst of
concurrent guesses gets at most 2 * `max_per_minute` attempts through.
Legitimate users can sign in successfully up to 2 * `max_per_minute` times a
minute. Refused checks count too, but the window is fixed, so hammering does
not extend the block beyond the current minute.

Keys hold a sha256 of the normalized login (``strip().lower()``), not the login
(an e-mail address) itself.
"""

from __future__ import annotations

import hashlib

from nexxus.core.errors import ResourceExhausted
from nexxus.core.ports import SubscriptionStore

__all__ = ["LoginThrottle"]

WINDOW_SECONDS = 60


class LoginThrottle:
    """`max_per_minute` <= 0 disables throttling."""

    def __init__(self, store: SubscriptionStore, max_per_minute: int) -> None:
        self._store = store
        self.max_per_minute = max_per_minute

    @staticmethod
    def key(app_id: str, login: str) -> str:
        digest = hashlib.sha256(login.strip().lower().encode()).hexdigest()[:32]
        return f"{app_id}:login-throttle:{digest}"

    async def check(self, app_id: str, login: str) -> None:
        """Count this attempt; ResourceExhausted (LOGIN_THROTTLED) when the
        failures of (app, login) in the current minute reached the limit."""
        if self.max_per_minute <= 0:
            return
        units = await self._store.hit(self.key(app_id, login), WINDOW_SECONDS)
        if units - 1 >= 2 * self.max_per_minute:
            raise ResourceExhausted(
                "too many failed sign-ins; try again in a minute",
                reason="LOGIN_THROTTLED",
                details={"retry_after_seconds": WINDOW_SECONDS},
            )

    async def failed(self, app_id: str, login: str) -> None:
        """Count one failed attempt of (app, login)."""
        if self.max_per_minute <= 0:
            return
        await self._store.hit(self.key(app_id, login), WINDOW_SECONDS)
