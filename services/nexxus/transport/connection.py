"""A live client connection with an outbound queue bounded in bytes.

`QueuedConnection` is what the hub pushes to. The transport that owns it (gRPC
stream, WebSocket, SSE) drains it with `next_event()` / `drain()` (Event
objects), or, for an `encoded` connection, `next_encoded()` /
`drain_encoded()` (serialized Events, which the hub pushes with
`push_encoded()` without building a message per device), or, for a connection
with a JSON `encoding` (SSE, WebSocket), `next_json()` / `drain_json()` (each
Event's proto JSON text, which the hub encodes once per delivery: edge_json.py).

Pushing never blocks. The connection's buffer is what waits in its queue plus
what its socket has not sent yet (`unsent_bytes`, set by the drainer); when a
push would take it past `max_bytes` (and the queue is not empty: one event is
always accepted, however large), the queue is dropped and the connection is
closed with RESOURCE_EXHAUSTED / reason SLOW_CONSUMER and `position`, the
position of the last event the drainer took: what the client will have received
once it reads what was sent. So a connection never holds more than `max_bytes`
plus one event. Closing wakes the drainer (and `wait_closed()`), which then
sends the error frame and ends the connection.

Positions (docs/delivery.md). The hub `offer()`s each live event with its
history sequence and position. The connection drops what it has already
queued (a sequence it queued before: duplicates of a redelivery), and what a
snapshot it sent already shows (same object at a version not newer). While it
is *held* (opening with a resume, a snapshot being sent) live events wait in a
hold list (bounded by `max_bytes` too); `release(after_seq)` then queues those
after `after_seq` (what the replay or snapshot covered is dropped) in arrival
order.

One drainer at a time: a wait is one future (no asyncio.timeout / Event per
event) and the idle timer is re-armed lazily, once per idle period rather than
once per wait. Pushed events are shared between the connections of a device:
treat them as read-only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from google.protobuf import struct_pb2

from nexxus.core.metrics import SLOW_CONSUMER_DROPS
from nexxus.core.ports import Connection
from nexxus.transport.edge_json import JSON_COMPACT, JSON_FULL, event_json
from nexxus.v1 import events_pb2

__all__ = ["BufferStats", "ConnectionClosed", "QueuedConnection"]

log = logging.getLogger("nexxus.transport.connection")

_Event = events_pb2.Event
# Sequences remembered per connection to recognise a redelivered event.
_RECENT = 4096
# How long a snapshot's object versions are used to drop events it already shows.
SNAPSHOT_DEDUP_SECONDS = 60.0

# (sequence, event, its size, position, (model, object id), version) of a held live event.
# An Event, its serialized bytes (`encoding` PROTO) or its JSON text (JSON encodings).
_Payload: TypeAlias = "events_pb2.Event | bytes | str"
_Held = tuple[int, _Payload, int, str, tuple[str, str], int]
PROTO = "proto"
ENCODINGS = ("", PROTO, JSON_FULL, JSON_COMPACT)

SLOW_CONSUMER = "SLOW_CONSUMER"


class ConnectionClosed(Exception):
    """Raised by `next_event()` once the connection was closed server-side.

    `code` is a google.rpc.Code name, `reason` the human-readable message,
    `error_reason` a machine-readable reason (SLOW_CONSUMER, TOKEN_EXPIRED…) and
    `position` the position of the last event handed to the client's socket."""

    def __init__(self, code: str, reason: str, error_reason: str = "", position: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.error_reason = error_reason
        self.position = position

    def stream_error(self) -> events_pb2.StreamError:
        """The `error` frame: `details` carries `reason` and `position` when known."""
        details = struct_pb2.Struct()
        if self.error_reason:
            details["reason"] = self.error_reason
        if self.position:
            details["position"] = self.position
        err = events_pb2.StreamError(code=self.code, message=self.reason, position=self.position)
        if details.fields:
            err.details.CopyFrom(details)
        return err


@dataclass(slots=True)
class BufferStats:
    """Buffer figures of a node's connections (shared by them; read by tests and logs)."""

    # The most bytes any one connection held at once (queue + unsent socket bytes).
    peak_bytes: int = 0
    # Connections closed because their buffer overflowed.
    slow_closed: int = 0


_Item = tuple[_Payload, int, str]  # event, its size, its position


def _as_event(item: events_pb2.Event | bytes | str) -> events_pb2.Event:
    if isinstance(item, str):
        raise TypeError("a JSON-encoded connection's events are read with next_json()")
    return _Event.FromString(item) if isinstance(item, bytes) else item


def _as_bytes(item: events_pb2.Event | bytes | str) -> bytes:
    if isinstance(item, bytes):
        return item
    return _as_event(item).SerializeToString()


def _as_json(item: events_pb2.Event | bytes | str, encoding: str) -> str:
    return item if isinstance(item, str) else event_json(_as_event(item), encoding)


def _no_unsent() -> int:
    return 0


class QueuedConnection(Connection):
    def __init__(
        self,
        app_id: str,
        user_id: str,
        device_id: str,
        *,
        max_bytes: int,
        transport: str,
        connection_id: str | None = None,
        stats: BufferStats | None = None,
        encoding: str = "",
    ) -> None:
        self.app_id = app_id
        self.user_id = user_id
        self.device_id = device_id
        self.connection_id = connection_id or uuid.uuid4().hex
        self.transport = transport
        self.max_bytes = max_bytes
        # What the drainer wants: "" Event objects, PROTO serialized Events (the hub
        # then pushes bytes), JSON_FULL / JSON_COMPACT their JSON text (edge_json.py).
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}")
        self.encoding = encoding
        self.stats = stats if stats is not None else BufferStats()
        # Bytes the drainer's socket holds that the client has not read yet.
        self.unsent_bytes: Callable[[], int] = _no_unsent
        # Position of the last event taken by the drainer.
        self.last_position = ""
        # The credential the connection was opened with, and when it expires
        # (epoch seconds; 0: never): see tokens.py.
        self.authorization: str | None = None
        self.expires_at = 0.0
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._closed: ConnectionClosed | None = None
        self._closed_future: asyncio.Future[None] | None = None
        # Positions: the newest sequence queued, recently queued sequences.
        self.last_seq = 0
        self._recent: set[int] = set()
        self._recent_order: deque[int] = deque()
        self._held: list[_Held] | None = None
        self._held_bytes = 0
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
    def encoded(self) -> bool:
        """Whether the drainer wants serialized Events (bytes)."""
        return self.encoding == PROTO

    @property
    def closed(self) -> ConnectionClosed | None:
        """Why the connection was closed server-side, or None while open."""
        return self._closed

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def buffered_bytes(self) -> int:
        """Queued bytes plus what the socket still holds."""
        return self._queued_bytes + self.unsent_bytes()

    async def push(self, event: events_pb2.Event, position: str = "") -> None:
        position = position or event.position or event.event_id
        item = self._coerce(event)
        self._push(item, len(item) if isinstance(item, bytes | str) else event.ByteSize(), position)

    def push_encoded(self, event: bytes, position: str = "") -> None:
        """Queue a serialized Event (converted here unless the connection is `encoded`)."""
        self._push(self._coerce(event), len(event), position)

    def push_parsed(self, event: events_pb2.Event, size: int, position: str) -> None:
        """Queue an Event already parsed from `size` bytes (shared by a device's connections)."""
        self._push(self._coerce(event), size, position)

    # ------------------------------------------------------------------ positions

    @property
    def sent_position(self) -> str:
        """The position of the last event handed to the client (`last_position`)."""
        return self.last_position

    @sent_position.setter
    def sent_position(self, position: str) -> None:
        self.last_position = position

    @property
    def held(self) -> bool:
        return self._held is not None

    def hold(self) -> None:
        """Keep live events aside (in order) until `release()`."""
        if self._held is None:
            self._held = []
            self._held_bytes = 0

    def offer(
        self,
        seq: int,
        item: events_pb2.Event | bytes | str,
        size: int,
        position: str,
        key: tuple[str, str],
        version: int,
    ) -> None:
        """A live event: held, dropped as a duplicate, or queued."""
        if self._closed is not None:
            return
        held = self._held
        if held is not None:
            if self._held_bytes + size > self.max_bytes and held:
                self._log_slow(self._held_bytes)
                self._held = None
                self.stats.slow_closed += 1
                SLOW_CONSUMER_DROPS.labels(self.transport).inc()
                self._close(
                    "RESOURCE_EXHAUSTED",
                    f"client too slow: more than {self.max_bytes} bytes arrived while it caught up; "
                    "resume from your last position",
                    SLOW_CONSUMER,
                )
                return
            held.append((seq, item, size, position, key, version))
            self._held_bytes += size
            return
        self._queue_live(seq, item, size, position, key, version)

    def _queue_live(
        self,
        seq: int,
        item: events_pb2.Event | bytes | str,
        size: int,
        position: str,
        key: tuple[str, str],
        version: int,
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
        if seq:
            if seq < self.last_seq:
                log.warning(
                    "%r: event at %s arrives after a later one (%d); delivering it late",
                    self,
                    position,
                    self.last_seq,
                )
            self._remember(seq)
        self._push(self._coerce(item), size, position)

    def _coerce(self, item: events_pb2.Event | bytes | str) -> events_pb2.Event | bytes | str:
        """What this connection's drainer wants (see `encoding`)."""
        encoding = self.encoding
        if not encoding:
            return _as_event(item)
        if encoding == PROTO:
            return _as_bytes(item)
        return _as_json(item, encoding)

    def _remember(self, seq: int) -> None:
        self.last_seq = max(self.last_seq, seq)
        self._recent.add(seq)
        self._recent_order.append(seq)
        if len(self._recent_order) > _RECENT:
            self._recent.discard(self._recent_order.popleft())

    def note_sent(self, seq: int, position: str) -> None:
        """An event sent to the client outside the queue (a replay streamed directly)."""
        self._remember(seq)
        self.last_position = position

    def note_snapshot(self, objects: dict[tuple[str, str], int], position: str) -> None:
        """A snapshot was sent: its object versions are not sent again as events."""
        if not self._snapshot_versions or time.monotonic() > self._snapshot_until:
            self._snapshot_versions = {}
        self._snapshot_versions.update(objects)
        self._snapshot_until = time.monotonic() + SNAPSHOT_DEDUP_SECONDS
        if position:
            self.last_position = position

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
        self._held_bytes = 0
        self.last_seq = max(self.last_seq, after_seq)
        if not held or self._closed is not None:
            return 0
        queued = 0
        for seq, item, size, position, key, version in held:
            if seq and seq <= after_seq:
                continue
            self._queue_live(seq, item, size, position, key, version)
            queued += 1
        return queued

    # ------------------------------------------------------------------ queue

    def _log_slow(self, waiting: int) -> None:
        log.warning(
            "closing %r: slow consumer (%d bytes waiting, budget %d; last position sent %s)",
            self,
            waiting,
            self.max_bytes,
            self.last_position or "-",
        )

    def _push(self, item: events_pb2.Event | bytes | str, size: int, position: str) -> None:
        if self._closed is not None:
            return
        total = self._queued_bytes + self.unsent_bytes() + size
        if total > self.max_bytes and self._queue:
            self._log_slow(total - size)
            self._queue.clear()
            self._queued_bytes = 0
            self.stats.slow_closed += 1
            SLOW_CONSUMER_DROPS.labels(self.transport).inc()
            self._close(
                "RESOURCE_EXHAUSTED",
                f"client too slow: more than {self.max_bytes} bytes waiting; resume from your last position",
                SLOW_CONSUMER,
            )
            return
        self._queue.append((item, size, position))
        self._queued_bytes += size
        if total > self.stats.peak_bytes:
            self.stats.peak_bytes = total
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def close(self, code: str, reason: str, error_reason: str = "") -> None:
        self._close(code, reason, error_reason)

    def close_now(self, code: str, reason: str, error_reason: str = "") -> None:
        """`close()` from synchronous code (timers)."""
        self._close(code, reason, error_reason)

    def _close(self, code: str, reason: str, error_reason: str = "") -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason, error_reason, self.last_position)
            self._wake_drained()
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(True)
            if self._closed_future is not None and not self._closed_future.done():
                self._closed_future.set_result(None)

    async def wait_closed(self) -> ConnectionClosed:
        """Wait until the connection is closed server-side; returns why."""
        if self._closed is None:
            if self._closed_future is None:
                self._closed_future = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._closed_future)
        assert self._closed is not None
        self._closed.position = self.last_position
        return self._closed

    def _take(self) -> events_pb2.Event | bytes | str:
        item, size, position = self._queue.popleft()
        self._queued_bytes -= size
        if not self._queue:
            self._wake_drained()
        if position:
            self.last_position = position
        return item

    async def _next(self, idle_seconds: float) -> events_pb2.Event | bytes | str | None:
        while True:
            if self._closed is not None:
                self._closed.position = self.last_position
                raise self._closed
            if self._queue:
                return self._take()
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

    def _drainable(self, max_events: int, max_bytes: int | None) -> int:
        """How many queued events fit in `max_events` and `max_bytes`."""
        if max_bytes is None:
            return min(max_events, len(self._queue))
        count = used = 0
        for _, size, _ in self._queue:
            if count >= max_events or used + size > max_bytes:
                break
            used += size
            count += 1
        return count

    def drain(self, max_events: int, max_bytes: int | None = None) -> list[events_pb2.Event]:
        """Up to `max_events` more events (and `max_bytes` of them) that are already queued (no waiting)."""
        return [_as_event(self._take()) for _ in range(self._drainable(max_events, max_bytes))]

    def drain_encoded(self, max_events: int, max_bytes: int | None = None) -> list[bytes]:
        """`drain()`, serialized."""
        return [_as_bytes(self._take()) for _ in range(self._drainable(max_events, max_bytes))]

    async def next_json(self, idle_seconds: float) -> str | None:
        """`next_event()` as the JSON text of this connection's JSON `encoding`."""
        item = await self._next(idle_seconds)
        return None if item is None else _as_json(item, self.encoding or JSON_COMPACT)

    def drain_json(self, max_events: int, max_bytes: int | None = None) -> list[str]:
        """`drain()` as JSON texts."""
        encoding = self.encoding or JSON_COMPACT
        return [_as_json(self._take(), encoding) for _ in range(self._drainable(max_events, max_bytes))]

    def __repr__(self) -> str:
        return (
            f"QueuedConnection({self.transport} app={self.app_id} device={self.device_id} "
            f"id={self.connection_id})"
        )
