"""Coalesced write barriers: at most one barrier in flight per write partition.

Before the api reports an object missing it waits for a barrier through the
object's partition (`nexxus.api.writes.settle`). A barrier is a durable command
the writer answers, so a flood of reads of missing objects must not become a
flood of commands: every miss that arrives while a barrier of its partition is
in flight waits for the *next* one, sent as soon as the current one is
answered. Each waiter's barrier is sent after it asked, so it still covers every
write accepted before its miss; the writer sees at most one barrier per
partition per round trip, however many requests miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

__all__ = ["BarrierCoalescer"]

log = logging.getLogger("nexxus.api.barriers")

Send = Callable[[], Awaitable[bool]]


@dataclass(slots=True)
class _Partition:
    waiting: list[asyncio.Future[bool]] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None


class BarrierCoalescer:
    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}
        self.sent = 0

    async def settle(self, key: Hashable, send: Send) -> bool:
        """Wait for a barrier on partition `key` sent after this call; `send` sends
        one and says whether the writer answered it (the first waiter's is used)."""
        loop = asyncio.get_running_loop()
        part = self._partitions.get(key)
        if part is None:
            part = self._partitions[key] = _Partition()
        waiter: asyncio.Future[bool] = loop.create_future()
        part.waiting.append(waiter)
        if part.runner is None:
            part.runner = asyncio.create_task(self._drive(key, part, send))
        return await waiter

    async def _drive(self, key: Hashable, part: _Partition, send: Send) -> None:
        try:
            while part.waiting:
                batch, part.waiting = part.waiting, []
                if all(w.done() for w in batch):  # every asker went away
                    continue
                ok = False
                try:
                    self.sent += 1
                    ok = await send()
                except Exception:  # the waiters answer "not settled"; the api says 404
                    log.exception("write barrier on %r failed", key)
                for w in batch:
                    if not w.done():
                        w.set_result(ok)
        finally:
            for w in part.waiting:  # cancelled mid-send: nobody left to send for them
                with contextlib.suppress(asyncio.InvalidStateError):
                    w.set_result(False)
            if self._partitions.get(key) is part:
                del self._partitions[key]
