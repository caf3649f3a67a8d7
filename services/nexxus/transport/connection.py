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

Positions (docs/delivery.md). The hub `offer()`s each live event with its
history sequence and position. The connection drops what it has already
queued (a sequence it queued before: duplicates of a redelivery), and what a
snapshot it sent already shows (same object at a version not newer). While it
is *held* (opening with a resume, a snapshot being sent) live events wait in a
hold list; `release(after_seq)` then queues those after `after_seq` (what the
replay or snapshot covered is dropped) in arrival order. `sent_position` is the
position of the last event handed to the client: the one an error frame names.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque

from nexxus.core.ports import Connection
from nexxus.v1 import events_pb2

__all__ = ["ConnectionClosed", "QueuedConnection"]

log = logging.getLogger("nexxus.transport.connection")

_Event = events_pb2.Event
# Sequences remembered per connection to recognise a redelivered event.
_RECENT = 4096
# How long a snapshot's object versions are used to drop events it already shows.
SNAPSHOT_DEDUP_SECONDS = 60.0

# (sequence, event, position, (model, object id), version) of a held live event.
_Held = tuple[int, "events_pb2.Event | bytes", str, tuple[str, str], int]


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
        self._queue: deque[tuple[events_pb2.Event | bytes, str]] = deque()
        self._closed: ConnectionClosed | None = None
        # Positions: the newest sequence queued, recently queued sequences,
        # the position of the last event handed to the client.
        self.last_seq = 0
        self._recent: set[int] = set()
        self._recent_order: deque[int] = deque()
        self.sent_position = ""
        self._held: list[_Held] | None = None
        self._snapshot_versions: dict[tuple[str, str], int] = {}
        self._snapshot_until = 0.0
        self.dropped_duplicates = 0
        self._drained: asyncio.Future[None] | None = None
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
        """Queue an event as is (no position bookkeeping)."""
        self._push(event.SerializeToString() if self.encoded else event, event.position)

    def push_encoded(self, event: bytes, position: str = "") -> None:
        """Queue a serialized Event (parsed here unless the connection is `encoded`)."""
        self._push(event if self.encoded else _Event.FromString(event), position)

    # ------------------------------------------------------------------ positions

    @property
    def held(self) -> bool:
        return self._held is not None

    def hold(self) -> None:
        """Keep live events aside (in order) until `release()`."""
        if self._held is None:
            self._held = []

    def offer(
        self,
        seq: int,
        item: events_pb2.Event | bytes,
        position: str,
        key: tuple[str, str],
        version: int,
    ) -> None:
        """A live event: held, dropped as a duplicate, or queued."""
        if self._closed is not None:
            return
        held = self._held
        if held is not None:
            if len(held) >= self.max_queue:
                self._held = None
                self._close("RESOURCE_EXHAUSTED", "client too slow (events arrived faster than it caught up)")
                return
            held.append((seq, item, position, key, version))
            return
        self._queue_live(seq, item, position, key, version)

    def _queue_live(
        self, seq: int, item: events_pb2.Event | bytes, position: str, key: tuple[str, str], version: int
    ) -> None:
        if seq and seq in self._recent:
            self.dropped_duplicates += 1
            return
        if self._snapshot_versions:
            if time.monotonic() > self._snapshot_until:
                self._snapshot_versions = {}
            elif self._snapshot_versions.get(key, -1) >= version:
                self.dropped_duplicates += 1
                return
        if not seq:  # no position (not from the router): nothing to order by
            self._push(
                item if self.encoded or not isinstance(item, bytes) else _Event.FromString(item), position
            )
            return
        if seq < self.last_seq:
            log.warning(
                "%r: event at %s arrives after a later one (%d); delivering it late",
                self,
                position,
                self.last_seq,
            )
        self._remember(seq)
        self._push(self._coerce(item), position)

    def _coerce(self, item: events_pb2.Event | bytes) -> events_pb2.Event | bytes:
        """What this connection's drainer wants: bytes when `encoded`, else an Event."""
        if self.encoded:
            return _as_bytes(item)
        return _as_event(item)

    def _remember(self, seq: int) -> None:
        self.last_seq = max(self.last_seq, seq)
        self._recent.add(seq)
        self._recent_order.append(seq)
        if len(self._recent_order) > _RECENT:
            self._recent.discard(self._recent_order.popleft())

    def push_replayed(self, seq: int, event: events_pb2.Event) -> None:
        """Queue an event of a replay (bypasses the hold)."""
        self._remember(seq)
        self._push(event.SerializeToString() if self.encoded else event, event.position)

    def note_sent(self, seq: int, position: str) -> None:
        """An event sent to the client outside the queue (a replay streamed directly)."""
        self._remember(seq)
        self.sent_position = position

    def note_snapshot(self, objects: dict[tuple[str, str], int], position: str) -> None:
        """A snapshot was sent: its object versions are not sent again as events."""
        if not self._snapshot_versions or time.monotonic() > self._snapshot_until:
            self._snapshot_versions = {}
        self._snapshot_versions.update(objects)
        self._snapshot_until = time.monotonic() + SNAPSHOT_DEDUP_SECONDS
        if position:
            self.sent_position = position

    async def wait_drained(self) -> None:
        """Until the drainer took every queued event (or the connection closed)."""
        if not self._queue or self._closed is not None:
            return
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        await self._drained

    def _wake_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def release(self, after_seq: int) -> int:
        """Stop holding: queue the held events after `after_seq`, in order; returns how many."""
        held, self._held = self._held, None
        self.last_seq = max(self.last_seq, after_seq)
        if not held or self._closed is not None:
            return 0
        queued = 0
        for seq, item, position, key, version in held:
            if seq and seq <= after_seq:
                continue
            self._queue_live(seq, item, position, key, version)
            queued += 1
        return queued

    # ------------------------------------------------------------------ queue

    def _push(self, item: events_pb2.Event | bytes, position: str = "") -> None:
        if self._closed is not None:
            return
        if len(self._queue) >= self.max_queue:
            self._queue.clear()
            self._close("RESOURCE_EXHAUSTED", "client too slow")
            return
        self._queue.append((item, position))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def close(self, code: str, reason: str) -> None:
        self._close(code, reason)

    def _close(self, code: str, reason: str) -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason)
            self._wake_drained()
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(True)

    def _pop(self) -> events_pb2.Event | bytes:
        item, position = self._queue.popleft()
        if not self._queue:
            self._wake_drained()
        if position:
            self.sent_position = position
        return item

    async def _next(self, idle_seconds: float) -> events_pb2.Event | bytes | None:
        while True:
            if self._closed is not None:
                raise self._closed
            if self._queue:
                return self._pop()
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
        count = min(max_events, len(self._queue))
        return [_as_event(self._pop()) for _ in range(count)]

    def drain_encoded(self, max_events: int) -> list[bytes]:
        """`drain()`, serialized."""
        count = min(max_events, len(self._queue))
        return [_as_bytes(self._pop()) for _ in range(count)]

    def __repr__(self) -> str:
        return (
            f"QueuedConnection({self.transport} app={self.app_id} device={self.device_id} "
            f"id={self.connection_id})"
        )
