"""The connection registry of one transport node, and delivery fan-out.

The hub:
  * registers live connections and records them in the SubscriptionStore
    (`device_connected` / `device_disconnected`); a connection's volatile
    subscriptions go with it, and all the device's volatile subscriptions go
    with its last connection on any node (the node's lease, see lease.py,
    makes this hold when a node dies too);
  * follows the node's deliveries (the DELIVERIES stream, subject
    `<prefix>.<node>.transport`, serialized `nexxus.v1.Delivery`, read in order
    by `bus.consume_deliveries`) and offers each target's Event, stamped with
    its position, to every local connection of that device (which drops
    duplicates by position, see `QueuedConnection.offer`);
  * obeys `nexxus.v1.TransportControl` on `<prefix>.sys.control.<app>`: closes the
    listed devices' connections (token revoked, device deleted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from nexxus.core.config.settings import TransportSettings
from nexxus.core.errors import NexxusError, Unavailable
from nexxus.core.events import build_event
from nexxus.core.metrics import DELIVERIES, WRITE_TO_PUSH_SECONDS
from nexxus.core.ports import BusMessage, BusSubscription, Connection, MessageBus, SubscriptionStore
from nexxus.core.tracing import record_span, sampled_context
from nexxus.transport.connection import PROTO, BufferStats, QueuedConnection
from nexxus.transport.edge_json import event_json_prefix, with_subscription_ids
from nexxus.transport.tokens import TokenWatch
from nexxus.transport.types import CallerT, Subscribe
from nexxus.transport.wire import encode_position, encode_subscription_ids
from nexxus.v1 import events_pb2, internal_pb2
from nexxus.v1.subscriptions_pb2 import CreateSubscriptionRequest, Subscription

__all__ = ["ConnectionHub"]

log = logging.getLogger("nexxus.transport.hub")

DeviceKey = tuple[str, str]
# Connections unregistered at once when the node stops (store calls in flight).
UNREGISTER_CONCURRENCY = 64


def _sequence_of(position: str) -> int:
    """The sequence of `<epoch>.<sequence>` (0 when absent or malformed)."""
    _, _, seq = position.rpartition(".")
    return int(seq) if seq.isdigit() else 0


def _observe_pushes(delivery: internal_pb2.Delivery, by_kind: dict[str, int], started_ns: int) -> None:
    """Deliveries per transport kind, write → push latency, and a `transport.push` span
    per kind when the delivery's trace is sampled."""
    event_time = delivery.event.time
    latency = time.time() - (event_time.seconds + event_time.nanos / 1e9) if event_time.seconds else None
    for kind, count in by_kind.items():
        DELIVERIES.labels(kind).inc(count)
        if latency is not None:
            WRITE_TO_PUSH_SECONDS.labels(kind).observe(max(latency, 0.0))
    parent = sampled_context(delivery.traceparent) if delivery.traceparent else None
    if parent is None:
        return
    for kind, count in by_kind.items():
        attributes = {
            "nexxus.app": delivery.app_id,
            "nexxus.model": delivery.event.model,
            "nexxus.transport": kind,
            "nexxus.connections": count,
            "nexxus.position": delivery.position,
        }
        record_span("transport", "transport.push", parent, started_ns, attributes)


class ConnectionHub:
    def __init__(
        self, node_id: str, store: SubscriptionStore, bus: MessageBus, settings: TransportSettings
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.bus = bus
        self.settings = settings
        self._devices: dict[DeviceKey, dict[str, Connection]] = {}
        # connection id → subscriptions created on it (metrics)
        self._made: dict[str, int] = {}
        self._subscriptions: list[BusSubscription] = []
        self._empty = asyncio.Event()
        self._empty.set()
        self._started = False
        self.buffer_stats = BufferStats()
        # Token expiry and re-checks; TransportService plugs in `authenticate`.
        self.tokens = TokenWatch(self._queued_connections, None, settings.token_check_seconds)

    # ------------------------------------------------------------------ lifecycle

    @property
    def control_subject(self) -> str:
        return self.bus.subjects.all_control

    @property
    def following(self) -> bool:
        """Whether the hub follows its node's deliveries (readiness)."""
        return self._started

    async def start(self) -> None:
        if self._started:
            return
        self._subscriptions.append(
            await self.bus.consume_deliveries(
                self.node_id, self._on_delivery_data, on_loss=self._on_deliveries_lost
            )
        )
        self._subscriptions.append(await self.bus.subscribe(self.control_subject, self._on_control))
        await self.tokens.start()
        self._started = True
        log.info("transport node %s following its deliveries", self.node_id)

    async def close_all(self, code: str, reason: str, error_reason: str = "") -> None:
        """Ask every connection to close (each sends its error frame and unregisters)."""
        for conns in list(self._devices.values()):
            for conn in list(conns.values()):
                await conn.close(code, reason, error_reason)

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop consuming, close every connection, wait up to `grace` seconds for
        their transports to unregister them, then unregister what is left."""
        subs, self._subscriptions = self._subscriptions, []
        for sub in subs:
            await sub.unsubscribe()
        self._started = False
        await self.tokens.stop()
        await self.close_all("UNAVAILABLE", "server shutting down", "SHUTDOWN")
        try:
            async with asyncio.timeout(grace):
                await self._empty.wait()
        except TimeoutError:
            pass
        # What did not unregister itself in time goes now, many at once (a node
        # with 10,000 connections must stop within a supervisor's grace period).
        limit = asyncio.Semaphore(UNREGISTER_CONCURRENCY)

        async def unregister(conn: Connection) -> None:
            async with limit:
                try:
                    await self.unregister(conn)
                except NexxusError as exc:  # the lease expires and another node reaps it
                    log.warning("could not unregister %r on stop: %s", conn, exc)

        await asyncio.gather(*(unregister(conn) for conn in self.connections()))

    # ------------------------------------------------------------------ registry

    def connection(
        self,
        app_id: str,
        user_id: str,
        device_id: str,
        *,
        transport: str,
        encoding: str = "",
    ) -> QueuedConnection:
        """A new connection with this node's byte budget (register it next);
        `encoding`: what its drainer reads (see QueuedConnection)."""
        return QueuedConnection(
            app_id,
            user_id,
            device_id,
            max_bytes=self.settings.max_buffer_bytes,
            transport=transport,
            encoding=encoding,
            stats=self.buffer_stats,
        )

    def connections(self, app_id: str | None = None, device_id: str | None = None) -> list[Connection]:
        if app_id is not None and device_id is not None:
            return list(self._devices.get((app_id, device_id), {}).values())
        return [
            conn
            for (app, _), conns in self._devices.items()
            if app_id is None or app == app_id
            for conn in conns.values()
        ]

    async def register(self, conn: Connection) -> None:
        """Record a connection (locally and in the store). Register before
        creating the connection's subscriptions: see `bound`."""
        key = (conn.app_id, conn.device_id)
        self._devices.setdefault(key, {})[conn.connection_id] = conn
        self._empty.clear()
        try:
            await self.store.device_connected(conn.app_id, conn.device_id, self.node_id, conn.connection_id)
        except BaseException:
            self._forget(conn)
            raise
        if isinstance(conn, QueuedConnection):
            self.tokens.watch(conn)
        log.debug("registered %r", conn)

    def bound(self, conn: Connection, subscribe: Subscribe[CallerT]) -> Subscribe[CallerT]:
        """`subscribe` for subscriptions made on `conn`: the volatile ones are
        tied to the connection in the store and removed with it (also when its
        node dies), never with another connection of the device."""

        async def create(caller: CallerT, request: CreateSubscriptionRequest) -> Subscription:
            sub = await subscribe(caller, request)
            if not sub.persistent and not await self.store.bind_subscription(
                conn.app_id, conn.device_id, conn.connection_id, sub.id
            ):
                raise Unavailable("the connection closed while subscribing", reason="CONNECTION_CLOSED")
            if self._knows(conn):  # `_forget` drops a connection's count with it
                self._made[conn.connection_id] = self._made.get(conn.connection_id, 0) + 1
            return sub

        return create

    async def unregister(self, conn: Connection) -> None:
        """Forget a connection (idempotent). The store removes the volatile
        subscriptions it created, and all the device's volatile subscriptions
        when it was the device's last connection anywhere."""
        if not self._forget(conn):
            return
        if isinstance(conn, QueuedConnection):
            self.tokens.forget(conn)
        remaining = await self.store.device_disconnected(
            conn.app_id, conn.device_id, self.node_id, conn.connection_id
        )
        log.debug("unregistered %r (%d left for the device)", conn, remaining)

    def _queued_connections(self) -> list[QueuedConnection]:
        return [c for c in self.connections() if isinstance(c, QueuedConnection)]

    def _knows(self, conn: Connection) -> bool:
        return conn.connection_id in self._devices.get((conn.app_id, conn.device_id), {})

    def _forget(self, conn: Connection) -> bool:
        self._made.pop(conn.connection_id, None)
        key = (conn.app_id, conn.device_id)
        conns = self._devices.get(key)
        if conns is None or conns.pop(conn.connection_id, None) is None:
            return False
        if not conns:
            del self._devices[key]
        if not self._devices:
            self._empty.set()
        return True

    # ------------------------------------------------------------------ fan-out

    async def deliver(self, delivery: internal_pb2.Delivery) -> int:
        """Push a delivery to the local connections of its targets; returns how
        many connections got an event.

        The Event of each (delivery, kind) is serialized once; a target's Event
        is those bytes plus its encoded `subscription_ids`. Encoded connections
        (gRPC streams) queue the bytes; JSON connections (SSE, WebSocket) queue
        its JSON text, encoded once per (delivery, kind, format) too
        (edge_json.py); others get the parsed Event (one per device, shared by
        its connections)."""
        devices = self._devices
        app_id = delivery.app_id
        base_by_kind: dict[int, bytes] = {}
        json_prefix: dict[tuple[int, str], str] = {}
        position = delivery.position
        seq = _sequence_of(position)
        tail = encode_position(position) if position else b""
        key = (delivery.event.model, delivery.event.object_id)
        version = delivery.event.version
        started_ns = time.time_ns()
        by_kind: dict[str, int] = {}
        for target in delivery.targets:
            conns = devices.get((app_id, target.device_id))
            if not conns:
                continue
            kind = target.kind or delivery.event.kind
            base = base_by_kind.get(kind)
            if base is None:
                base = base_by_kind[kind] = build_event(delivery.event, kind).SerializeToString() + tail
            data = base + encode_subscription_ids(target.subscription_ids)
            size = len(data)
            event: events_pb2.Event | None = None
            texts: dict[str, str] = {}
            for conn in tuple(conns.values()):
                if isinstance(conn, QueuedConnection):
                    encoding = conn.encoding
                    if encoding == PROTO:
                        conn.offer(seq, data, size, position, key, version)
                    elif encoding:
                        text = texts.get(encoding)
                        if text is None:
                            prefix = json_prefix.get((kind, encoding))
                            if prefix is None:
                                one = events_pb2.Event.FromString(base)
                                prefix = json_prefix[kind, encoding] = event_json_prefix(one, encoding)
                            text = texts[encoding] = with_subscription_ids(
                                prefix, target.subscription_ids, encoding
                            )
                        conn.offer(seq, text, len(text), position, key, version)
                    else:
                        event = event or events_pb2.Event.FromString(data)
                        conn.offer(seq, event, size, position, key, version)
                else:
                    await conn.push(events_pb2.Event.FromString(data))
                by_kind[conn.transport] = by_kind.get(conn.transport, 0) + 1
        if by_kind:
            _observe_pushes(delivery, by_kind, started_ns)
        return sum(by_kind.values())

    @property
    def subscriptions_made(self) -> int:
        """Subscriptions created on this node's open connections (the metrics' gauge)."""
        return sum(self._made.values())

    async def close_devices(
        self, app_id: str, device_ids: Iterable[str], code: str, reason: str, error_reason: str = ""
    ) -> int:
        """Close every local connection of these devices; returns how many."""
        closed = 0
        for device_id in device_ids:
            for conn in self.connections(app_id, device_id):
                await conn.close(code, reason, error_reason)
                closed += 1
        return closed

    async def _on_deliveries_lost(self, first: int, last: int) -> None:
        """Deliveries were discarded unread: every connection may have missed
        events. Close them all; their clients resume from their positions and
        the history fills the hole."""
        log.error(
            "node %s lost deliveries %d..%d: closing its connections so they resume",
            self.node_id,
            first,
            last,
        )
        await self.close_all(
            "UNAVAILABLE",
            "the server fell behind: reconnect and resume from your last position",
            "DELIVERIES_LOST",
        )

    async def _on_delivery_data(self, seq: int, data: bytes) -> None:
        delivery = internal_pb2.Delivery()
        try:
            delivery.ParseFromString(data)
        except DecodeError:
            log.error("dropping an undecodable delivery (sequence %d of the deliveries)", seq)
            return
        await self.deliver(delivery)
        # Let the connections' drainers run between deliveries: a fetched batch
        # pushed in one go would fill every queue at once, healthy clients' too.
        await asyncio.sleep(0)

    async def _on_control(self, msg: BusMessage) -> None:
        control = internal_pb2.TransportControl()
        try:
            control.ParseFromString(msg.data)
        except DecodeError:
            log.warning("dropping an undecodable control message on %s", msg.subject)
            return
        app_id = msg.subject.rsplit(".", 1)[-1]
        reason = control.reason or "connection closed by the server"
        await self.close_devices(app_id, control.close_device_ids, "UNAUTHENTICATED", reason, "TOKEN_REVOKED")
