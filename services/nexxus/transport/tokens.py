"""Access tokens on long-lived streams.

A connection is opened with a credential that expires (`expires_at`) and may
be revoked later. `TokenWatch`:

* closes each connection when its token expires (one timer per connection):
  UNAUTHENTICATED, reason TOKEN_EXPIRED; the client refreshes its token and
  resumes from its last position;
* every `check_seconds`, authenticates each distinct credential of the node's
  open connections again, and closes those that no longer pass (reason from the
  authenticator, e.g. TOKEN_REVOKED). Revocation also closes connections at
  once through `TransportControl`; this sweep covers a lost control message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nexxus.core.errors import NexxusError, Unauthenticated
from nexxus.transport.connection import QueuedConnection

__all__ = ["TOKEN_EXPIRED", "TokenWatch"]

log = logging.getLogger("nexxus.transport.tokens")

TOKEN_EXPIRED = "TOKEN_EXPIRED"

Recheck = Callable[[str, str | None], Awaitable[object]]


class TokenWatch:
    def __init__(
        self,
        connections: Callable[[], list[QueuedConnection]],
        authenticate: Recheck | None,
        check_seconds: float,
    ) -> None:
        self._connections = connections
        # Authenticates a credential again (raises Unauthenticated when it no longer passes).
        self.authenticate = authenticate
        self.check_seconds = check_seconds
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, conn: QueuedConnection) -> None:
        """Arm the expiry timer of a registered connection (no-op without expiry)."""
        if conn.expires_at <= 0:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, conn.expires_at - time.time())
        self._timers[conn.connection_id] = loop.call_later(delay, self._expire, conn)

    def forget(self, conn: QueuedConnection) -> None:
        timer = self._timers.pop(conn.connection_id, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, conn: QueuedConnection) -> None:
        self._timers.pop(conn.connection_id, None)
        log.info("closing %r: its access token expired", conn)
        conn.close_now("UNAUTHENTICATED", "the access token expired; refresh it and resume", TOKEN_EXPIRED)

    async def start(self) -> None:
        if self._task is None and self.authenticate is not None:
            self._task = asyncio.create_task(self._run(), name="token-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def check(self) -> int:
        """Authenticate every distinct credential again; close the connections
        whose credential fails. Returns how many were closed."""
        if self.authenticate is None:
            return 0
        by_credential: dict[tuple[str, str | None], list[QueuedConnection]] = {}
        for conn in self._connections():
            if conn.closed is None and conn.authorization is not None:
                by_credential.setdefault((conn.app_id, conn.authorization), []).append(conn)
        closed = 0
        for (app_id, authorization), conns in by_credential.items():
            try:
                await self.authenticate(app_id, authorization)
            except Unauthenticated as err:
                for conn in conns:
                    conn.close_now("UNAUTHENTICATED", err.message, err.reason)
                    closed += 1
            except NexxusError as err:  # the identity store is unreachable: try again later
                log.warning("token re-check for %s failed: %s", app_id, err)
        return closed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            closed = await self.check()
            if closed:
                log.info("closed %d connections whose token no longer authenticates", closed)
