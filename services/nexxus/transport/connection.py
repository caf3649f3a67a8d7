"""A live client connection with a bounded outbound queue.

`QueuedConnection` is what the hub pushes to. The transport that owns it (gRPC
stream, WebSocket) drains it with `next_event()`. Pushing never blocks: when
`max_queue` events are already waiting, the connection is closed with
RESOURCE_EXHAUSTED ("client too slow"). Closing wakes the drainer, which then
sends the error frame and ends the connection.

Pushed events are shared between the connections of a device: treat them as
read-only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

from nexxus.core.ports import Connection
from nexxus.v1 import events_pb2

__all__ = ["ConnectionClosed", "QueuedConnection"]


class ConnectionClosed(Exception):
    """Raised by `next_event()` once the connection was closed server-side."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class QueuedConnection(Connection):
    def __init__(
        self,
        app_id: str,
        user_id: str,
        device_id: str,
        *,
        max_queue: int,
        transport: str,
        connection_id: str | None = None,
    ) -> None:
        self.app_id = app_id
        self.user_id = user_id
        self.device_id = device_id
        self.connection_id = connection_id or uuid.uuid4().hex
        self.transport = transport
        self.max_queue = max_queue
        self._queue: deque[events_pb2.Event] = deque()
        self._wake = asyncio.Event()
        self._closed: ConnectionClosed | None = None

    @property
    def closed(self) -> ConnectionClosed | None:
        """Why the connection was closed server-side, or None while open."""
        return self._closed

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def push(self, event: events_pb2.Event) -> None:
        if self._closed is not None:
            return
        if len(self._queue) >= self.max_queue:
            self._queue.clear()
            await self.close("RESOURCE_EXHAUSTED", "client too slow")
            return
        self._queue.append(event)
        self._wake.set()

    async def close(self, code: str, reason: str) -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason)
            self._wake.set()

    async def next_event(self, idle_seconds: float) -> events_pb2.Event | None:
        """The next queued event; None when none arrived within `idle_seconds`
        seconds (time for a heartbeat). Raises ConnectionClosed once closed."""
        while True:
            if self._closed is not None:
                raise self._closed
            if self._queue:
                return self._queue.popleft()
            self._wake.clear()
            try:
                async with asyncio.timeout(idle_seconds):
                    await self._wake.wait()
            except TimeoutError:
                return None

    def drain(self, max_events: int) -> list[events_pb2.Event]:
        """Up to `max_events` more events that are already queued (no waiting)."""
        queue = self._queue
        count = min(max_events, len(queue))
        return [queue.popleft() for _ in range(count)]

    def __repr__(self) -> str:
        return (
            f"QueuedConnection({self.transport} app={self.app_id} device={self.device_id} "
            f"id={self.connection_id})"
        )
