"""A live client connection with a bounded outbound queue.

`QueuedConnection` is what the hub pushes to. The transport that owns it (gRPC
stream, WebSocket) drains it with `next_event()` / `drain()` (Event objects),
or, for an `encoded` connection (the gRPC stream), `next_encoded()` /
`drain_encoded()` (serialized Events, which the hub pushes with
`push_encoded()` without building a message per device). Pushing never
blocks: when `max_queue` events are already waiting, the connection is closed
with RESOURCE_EXHAUSTED ("client too slow"). Closing wakes the drainer, which
then sends the error frame and ends the connection. One drainer at a time: a
wait is one future (no asyncio.timeout / Event per event) and the idle timer
is re-armed lazily, once per idle period rather than once per wait.

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

_Event = events_pb2.Event


class ConnectionClosed(Exception):
    """Raised by `next_event()` once the connection was closed server-side."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def _as_event(item: events_pb2.Event | bytes) -> events_pb2.Event:
    return _Event.FromString(item) if isinstance(item, bytes) else item


def _as_bytes(item: events_pb2.Event | bytes) -> bytes:
    return item if isinstance(item, bytes) else item.SerializeToString()


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
        encoded: bool = False,
    ) -> None:
        self.app_id = app_id
        self.user_id = user_id
        self.device_id = device_id
        self.connection_id = connection_id or uuid.uuid4().hex
        self.transport = transport
        self.max_queue = max_queue
        # Whether the drainer wants serialized Events (the hub then pushes bytes).
        self.encoded = encoded
        self._queue: deque[events_pb2.Event | bytes] = deque()
        self._closed: ConnectionClosed | None = None
        # The drainer's pending wait (True: woken, False: idle for its deadline).
        self._waiter: asyncio.Future[bool] | None = None
        self._deadline = 0.0
        # One idle timer, re-armed lazily: not one timer per wait.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def closed(self) -> ConnectionClosed | None:
        """Why the connection was closed server-side, or None while open."""
        return self._closed

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def push(self, event: events_pb2.Event) -> None:
        self._push(event.SerializeToString() if self.encoded else event)

    def push_encoded(self, event: bytes) -> None:
        """Queue a serialized Event (parsed here unless the connection is `encoded`)."""
        self._push(event if self.encoded else _Event.FromString(event))

    def _push(self, item: events_pb2.Event | bytes) -> None:
        if self._closed is not None:
            return
        if len(self._queue) >= self.max_queue:
            self._queue.clear()
            self._close("RESOURCE_EXHAUSTED", "client too slow")
            return
        self._queue.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def close(self, code: str, reason: str) -> None:
        self._close(code, reason)

    def _close(self, code: str, reason: str) -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(True)

    async def _next(self, idle_seconds: float) -> events_pb2.Event | bytes | None:
        while True:
            if self._closed is not None:
                raise self._closed
            if self._queue:
                return self._queue.popleft()
            if not await self._wait(idle_seconds):
                return None

    async def _wait(self, idle_seconds: float) -> bool:
        """Wait for a push or a close: True; False after `idle_seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + idle_seconds
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
        try:
            return await waiter
        finally:
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waiting: the next wait arms a timer again
        if self._deadline <= self._timer_at:  # this wait's deadline has come
            waiter.set_result(False)
        else:  # the wait started after this timer was armed: its own deadline is later
            self._timer = asyncio.get_running_loop().call_at(self._deadline, self._on_timer)
            self._timer_at = self._deadline

    async def next_event(self, idle_seconds: float) -> events_pb2.Event | None:
        """The next queued event; None when none arrived within `idle_seconds`
        seconds (time for a heartbeat). Raises ConnectionClosed once closed."""
        item = await self._next(idle_seconds)
        return None if item is None else _as_event(item)

    async def next_encoded(self, idle_seconds: float) -> bytes | None:
        """`next_event()`, serialized."""
        item = await self._next(idle_seconds)
        return None if item is None else _as_bytes(item)

    def drain(self, max_events: int) -> list[events_pb2.Event]:
        """Up to `max_events` more events that are already queued (no waiting)."""
        queue = self._queue
        count = min(max_events, len(queue))
        return [_as_event(queue.popleft()) for _ in range(count)]

    def drain_encoded(self, max_events: int) -> list[bytes]:
        """`drain()`, serialized."""
        queue = self._queue
        count = min(max_events, len(queue))
        return [_as_bytes(queue.popleft()) for _ in range(count)]

    def __repr__(self) -> str:
        return (
            f"QueuedConnection({self.transport} app={self.app_id} device={self.device_id} "
            f"id={self.connection_id})"
        )
