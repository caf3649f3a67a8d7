"""Unit tests of the transport's pure parts and of the hub over in-memory fakes
of the bus and the store (the real ones run in tests/e2e/test_transport_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from nexxus.core.config.settings import TransportSettings
from nexxus.core.events import build_event
from nexxus.core.ports import (
    BusMessage,
    BusSubscription,
    HeldConnection,
    MessageBus,
    NodeConnections,
    SequencedHandler,
    SubscriptionStore,
)
from nexxus.core.subjects import Subjects
from nexxus.transport.connection import ConnectionClosed, QueuedConnection
from nexxus.transport.hub import ConnectionHub
from nexxus.v1 import common_pb2, events_pb2, internal_pb2, subscriptions_pb2

# --------------------------------------------------------------------------- fakes


class FakeMessage(BusMessage):
    def __init__(self, subject: str, data: bytes) -> None:
        self.subject, self.data, self.headers = subject, data, {}

    @property
    def num_delivered(self) -> int:
        return 1

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def term(self) -> None: ...


def subject_matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


class FakeSub(BusSubscription):
    def __init__(self, bus: FakeBus, key: object) -> None:
        self.bus, self.key = bus, key

    async def unsubscribe(self) -> None:
        self.bus.subs.pop(id(self.key), None)


class FakeBus(MessageBus):
    """Core pub/sub only; handlers run inline in `publish_volatile`."""

    def __init__(self, prefix: str = "nexxus") -> None:
        self.prefix = prefix
        self.subs: dict[int, tuple[str, object]] = {}

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        raise NotImplementedError

    async def publish_volatile(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        for pattern, handler in list(self.subs.values()):
            if subject_matches(pattern, subject):
                await handler(FakeMessage(subject, data))  # type: ignore[operator]

    async def consume(
        self,
        subject_filter: str,
        durable: str,
        handler: object,
        *,
        batch: int = 256,
        max_deliver: int = 10,
        ack_wait: float = 30.0,
    ) -> BusSubscription:
        raise NotImplementedError

    async def subscribe(self, subject: str, handler: object, *, queue: str | None = None) -> BusSubscription:
        key = object()
        self.subs[id(key)] = (subject, handler)
        return FakeSub(self, key)

    async def consume_deliveries(
        self, node: str, handler: SequencedHandler, *, on_loss: object = None
    ) -> BusSubscription:
        """Deliveries published (volatile) on `<prefix>.sys.transport.<node>`, numbered."""
        count = 0

        async def on_message(msg: BusMessage) -> None:
            nonlocal count
            count += 1
            await handler(count, msg.data)

        return await self.subscribe(self.subjects.delivery(node), on_message)

    async def request(self, subject: str, data: bytes, *, timeout: float) -> bytes:
        raise NotImplementedError


class FakeStore(SubscriptionStore):
    """Subscriptions and device connections in dicts."""

    def __init__(self) -> None:
        self.subscriptions: dict[tuple[str, str], subscriptions_pb2.Subscription] = {}
        self.conns: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.bound: dict[tuple[str, str], set[str]] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def add_subscription(self, app_id: str, subscription: subscriptions_pb2.Subscription) -> None:
        self.subscriptions[(app_id, subscription.id)] = subscription

    async def get_subscription(
        self, app_id: str, subscription_id: str
    ) -> subscriptions_pb2.Subscription | None:
        return self.subscriptions.get((app_id, subscription_id))

    async def remove_subscription(self, app_id: str, subscription_id: str) -> bool:
        return self.subscriptions.pop((app_id, subscription_id), None) is not None

    async def list_device_subscriptions(
        self, app_id: str, device_id: str
    ) -> list[subscriptions_pb2.Subscription]:
        return [s for (a, _), s in self.subscriptions.items() if a == app_id and s.device_id == device_id]

    async def remove_device_subscriptions(self, app_id: str, device_id: str, *, volatile_only: bool) -> int:
        gone = [
            k
            for k, s in self.subscriptions.items()
            if k[0] == app_id and s.device_id == device_id and not (volatile_only and s.persistent)
        ]
        for k in gone:
            del self.subscriptions[k]
        return len(gone)

    async def iter_subscriptions(  # type: ignore[override]
        self, app_id: str | None = None
    ) -> AsyncIterator[tuple[str, subscriptions_pb2.Subscription]]:
        for (a, _), s in list(self.subscriptions.items()):
            yield a, s

    async def changes_since(
        self, cursors: Mapping[str, str]
    ) -> dict[str, tuple[list[internal_pb2.SubscriptionChange], str]]:
        raise NotImplementedError

    async def log_cursor(self, app_id: str) -> str:
        raise NotImplementedError

    async def device_connected(self, app_id: str, device_id: str, node: str, connection_id: str) -> None:
        self.conns.setdefault((app_id, device_id), set()).add((node, connection_id))

    async def bind_subscription(
        self, app_id: str, device_id: str, connection_id: str, subscription_id: str
    ) -> bool:
        if not any(c == connection_id for _, c in self.conns.get((app_id, device_id), set())):
            self.subscriptions.pop((app_id, subscription_id), None)
            return False
        self.bound.setdefault((app_id, connection_id), set()).add(subscription_id)
        return True

    async def device_disconnected(self, app_id: str, device_id: str, node: str, connection_id: str) -> int:
        conns = self.conns.get((app_id, device_id), set())
        if (node, connection_id) not in conns:
            return len(conns)
        conns.discard((node, connection_id))
        doomed = self.bound.pop((app_id, connection_id), set())
        if not conns:
            mine = self.subscriptions.items()
            doomed |= {s.id for (a, _), s in mine if a == app_id and s.device_id == device_id}
        for sid in doomed:
            sub = self.subscriptions.get((app_id, sid))
            if sub is not None and not sub.persistent:
                del self.subscriptions[(app_id, sid)]
        return len(conns)

    async def device_nodes(self, app_id: str) -> dict[str, tuple[str, ...]]:
        return {d: tuple(sorted({n for n, _ in c})) for (a, d), c in self.conns.items() if a == app_id and c}

    async def transport_nodes(self, app_id: str = "") -> list[NodeConnections]:
        held: dict[str, list[HeldConnection]] = {}
        for (a, d), conns in sorted(self.conns.items()):
            for node, conn in sorted(conns):
                if not app_id or a == app_id:
                    held.setdefault(node, []).append(HeldConnection(a, conn, d))
        return [NodeConnections(n, True, tuple(c)) for n, c in sorted(held.items())]

    async def renew_node_lease(self, node: str, ttl_seconds: float) -> bool:
        return True

    async def release_node_lease(self, node: str) -> None: ...

    async def dead_nodes(self) -> list[str]:
        return []

    async def reap_node(self, node: str) -> int:
        return 0

    async def hit(self, key: str, window_seconds: int) -> int:
        raise NotImplementedError

    async def delete_app(self, app_id: str) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- helpers


def model_event(kind: int = events_pb2.EVENT_KIND_UPDATED) -> internal_pb2.ModelEvent:
    ev = internal_pb2.ModelEvent(
        event_id="ev1",
        command_id="op1",
        app_id="app",
        model="task",
        object_id="t1",
        kind=kind,
        version=3,
        actor=common_pb2.Actor(user_id="u1", device_id="d9"),
    )
    ev.after.id, ev.after.version = "t1", 3
    ev.after.data.update({"status": "done"})
    ev.before.id, ev.before.version = "t1", 2
    ev.before.data.update({"status": "todo"})
    ev.patch.add(op="replace", path=["status"]).value.add(string_value="done")
    ev.time.FromSeconds(1_700_000_000)
    return ev


def delivery(node: str, *targets: tuple[str, int, list[str]]) -> internal_pb2.Delivery:
    return internal_pb2.Delivery(
        app_id="app",
        node=node,
        event=model_event(),
        targets=[internal_pb2.DeliveryTarget(device_id=d, kind=k, subscription_ids=s) for d, k, s in targets],
    )


def conn(device: str, user: str = "u1", max_bytes: int = 1 << 16) -> QueuedConnection:
    return QueuedConnection("app", user, device, max_bytes=max_bytes, transport="test")


async def drain(c: QueuedConnection) -> list[events_pb2.Event]:
    out = []
    while c.queued:
        ev = await c.next_event(0)
        assert ev is not None
        out.append(ev)
    return out


@pytest.fixture
async def hub() -> AsyncIterator[ConnectionHub]:
    h = ConnectionHub("n1", FakeStore(), FakeBus(), TransportSettings())
    await h.start()
    yield h
    await h.stop(grace=0)


# --------------------------------------------------------------------------- events


def test_build_event_updated_carries_after_and_patch() -> None:
    ev = build_event(model_event(), events_pb2.EVENT_KIND_UPDATED)
    assert (ev.event_id, ev.operation_id, ev.model, ev.object_id, ev.version) == (
        "ev1",
        "op1",
        "task",
        "t1",
        3,
    )
    assert ev.object.data["status"] == "done"
    assert [p.op for p in ev.patch] == ["replace"]
    assert ev.actor.user_id == "u1"
    assert ev.time.seconds == 1_700_000_000
    assert not ev.subscription_ids


def test_build_event_deleted_carries_before() -> None:
    ev = build_event(model_event(events_pb2.EVENT_KIND_DELETED), events_pb2.EVENT_KIND_DELETED)
    assert ev.kind == events_pb2.EVENT_KIND_DELETED
    assert ev.object.data["status"] == "todo"


def test_build_event_left_has_no_object_nor_patch() -> None:
    ev = build_event(model_event(), events_pb2.EVENT_KIND_LEFT)
    assert not ev.HasField("object")
    assert not ev.patch
    assert ev.object_id == "t1"


def test_build_event_entered_carries_after() -> None:
    ev = build_event(model_event(), events_pb2.EVENT_KIND_ENTERED)
    assert ev.kind == events_pb2.EVENT_KIND_ENTERED
    assert ev.object.version == 3


# --------------------------------------------------------------------------- connection


async def test_buffer_past_its_byte_budget_closes_as_slow_consumer() -> None:
    c = conn("d1", max_bytes=1000)
    big = events_pb2.Event(event_id="e0", object_id="x" * 400, position="ep.1")
    size = big.ByteSize()
    await c.push(big)
    first = await c.next_event(0)  # the drainer took one: it is the client's position
    assert first is not None
    assert c.sent_position == "ep.1"
    for i in range(1, 3):
        await c.push(events_pb2.Event(event_id=f"e{i}", object_id="x" * 400, position=f"ep.{i + 1}"))
    assert c.closed is None
    assert c.stats.peak_bytes == 2 * size
    await c.push(events_pb2.Event(event_id="e3", object_id="x" * 400, position="ep.4"))  # 3 x ~400 > 1000
    assert c.closed is not None
    assert c.queued == 0  # the backlog is dropped at once
    with pytest.raises(ConnectionClosed) as info:
        await c.next_event(1)
    assert info.value.code == "RESOURCE_EXHAUSTED"
    assert info.value.error_reason == "SLOW_CONSUMER"
    assert info.value.position == "ep.1"
    frame = info.value.stream_error()
    assert frame.details["reason"] == "SLOW_CONSUMER"
    assert frame.position == "ep.1"
    assert c.stats.slow_closed == 1


async def test_socket_backlog_counts_against_the_budget() -> None:
    c = conn("d1", max_bytes=1000)
    c.unsent_bytes = lambda: 900
    await c.push(events_pb2.Event(event_id="a", object_id="x" * 50))  # one event is always accepted
    assert c.closed is None
    await c.push(events_pb2.Event(event_id="b", object_id="x" * 50))
    assert c.closed is not None
    assert c.closed.error_reason == "SLOW_CONSUMER"


async def test_one_event_larger_than_the_budget_still_goes_out() -> None:
    c = conn("d1", max_bytes=100)
    await c.push(events_pb2.Event(event_id="huge", object_id="x" * 500))
    assert c.closed is None
    got = await c.next_event(0)
    assert got is not None
    assert got.event_id == "huge"


async def test_wait_closed_returns_the_reason() -> None:
    c = conn("d1")
    waiter = asyncio.create_task(c.wait_closed())
    await asyncio.sleep(0)
    assert not waiter.done()
    c.close_now("UNAUTHENTICATED", "expired", "TOKEN_EXPIRED")
    closed = await asyncio.wait_for(waiter, 1)
    assert (closed.code, closed.error_reason) == ("UNAUTHENTICATED", "TOKEN_EXPIRED")


async def test_next_event_returns_none_when_idle() -> None:
    assert await conn("d1").next_event(0.01) is None


async def test_close_wakes_a_waiting_reader() -> None:
    c = conn("d1")
    waiter = asyncio.create_task(c.next_event(300))
    await asyncio.sleep(0)
    await c.close("UNAVAILABLE", "bye")
    with pytest.raises(ConnectionClosed):
        await waiter


# --------------------------------------------------------------------------- hub


async def test_register_and_unregister_track_the_device_in_the_store(hub: ConnectionHub) -> None:
    store = hub.store
    assert isinstance(store, FakeStore)
    c1, c2 = conn("d1"), conn("d1")
    await hub.register(c1)
    await hub.register(c2)
    assert await store.device_nodes("app") == {"d1": ("n1",)}
    assert len(hub.connections("app", "d1")) == 2
    await hub.unregister(c1)
    await hub.unregister(c1)  # idempotent
    assert await store.device_nodes("app") == {"d1": ("n1",)}
    await hub.unregister(c2)
    assert await store.device_nodes("app") == {}
    assert hub.connections() == []


async def test_last_connection_gone_removes_only_volatile_subscriptions(hub: ConnectionHub) -> None:
    store = hub.store
    await store.add_subscription("app", subscriptions_pb2.Subscription(id="v", device_id="d1", model="task"))
    await store.add_subscription(
        "app", subscriptions_pb2.Subscription(id="p", device_id="d1", model="task", persistent=True)
    )
    c1, c2 = conn("d1"), conn("d1")
    await hub.register(c1)
    await hub.register(c2)
    await hub.unregister(c1)
    assert {s.id for s in await store.list_device_subscriptions("app", "d1")} == {"v", "p"}
    await hub.unregister(c2)
    assert {s.id for s in await store.list_device_subscriptions("app", "d1")} == {"p"}


async def test_delivery_fans_out_per_device_and_connection(hub: ConnectionHub) -> None:
    a1, a2, b1, other = conn("dA"), conn("dA"), conn("dB"), conn("dC")
    for c in (a1, a2, b1, other):
        await hub.register(c)
    d = delivery(
        "n1",
        ("dA", events_pb2.EVENT_KIND_UPDATED, ["s1"]),
        ("dB", events_pb2.EVENT_KIND_LEFT, ["s2", "s3"]),
        ("gone", events_pb2.EVENT_KIND_UPDATED, ["s4"]),
    )
    await hub.bus.publish_volatile("nexxus.sys.transport.n1", d.SerializeToString())
    (ea1,), (ea2,), (eb1,) = await drain(a1), await drain(a2), await drain(b1)
    assert await drain(other) == []
    assert list(ea1.subscription_ids) == ["s1"]
    assert ea1 == ea2
    assert ea1.kind == events_pb2.EVENT_KIND_UPDATED
    assert ea1.object.data["status"] == "done"
    assert list(eb1.subscription_ids) == ["s2", "s3"]
    assert eb1.kind == events_pb2.EVENT_KIND_LEFT
    assert not eb1.HasField("object")


async def test_delivery_for_another_node_is_ignored(hub: ConnectionHub) -> None:
    c = conn("dA")
    await hub.register(c)
    d = delivery("n2", ("dA", events_pb2.EVENT_KIND_UPDATED, ["s1"]))
    await hub.bus.publish_volatile("nexxus.sys.transport.n2", d.SerializeToString())
    await hub.bus.publish_volatile("nexxus.sys.transport.n1", b"\xff\xff not a delivery")
    assert await drain(c) == []


async def test_control_closes_the_listed_devices_of_that_app(hub: ConnectionHub) -> None:
    a, b = conn("dA"), conn("dB")
    elsewhere = QueuedConnection("app2", "u1", "dA", max_bytes=1 << 16, transport="test")
    for c in (a, b, elsewhere):
        await hub.register(c)
    control = internal_pb2.TransportControl(close_device_ids=["dA"], reason="token revoked")
    await hub.bus.publish_volatile("nexxus.sys.control.app", control.SerializeToString())
    assert a.closed is not None
    assert a.closed.code == "UNAUTHENTICATED"
    assert a.closed.reason == "token revoked"
    assert b.closed is None
    assert elsewhere.closed is None


async def test_lost_deliveries_close_every_connection_so_clients_resume(hub: ConnectionHub) -> None:
    a, b = conn("dA"), conn("dB")
    for c in (a, b):
        await hub.register(c)
    await hub._on_deliveries_lost(10, 20)
    for c in (a, b):
        assert c.closed is not None
        assert c.closed.code == "UNAVAILABLE"
        assert c.closed.error_reason == "DELIVERIES_LOST"


async def test_stop_closes_and_unregisters_every_connection() -> None:
    store = FakeStore()
    h = ConnectionHub("n1", store, FakeBus(), TransportSettings())
    await h.start()
    c = conn("d1")
    await h.register(c)
    await h.stop(grace=0)
    assert c.closed is not None
    assert c.closed.reason == "server shutting down"
    assert h.connections() == []
    assert await store.device_nodes("app") == {}


async def test_drain_takes_what_is_queued_without_waiting() -> None:
    from nexxus.transport.connection import QueuedConnection
    from nexxus.v1 import events_pb2

    conn = QueuedConnection("app", "u", "d", max_bytes=1 << 16, transport="grpc")
    for i in range(5):
        await conn.push(events_pb2.Event(event_id=str(i)))
    first = await conn.next_event(1.0)
    assert first is not None
    assert first.event_id == "0"
    assert [e.event_id for e in conn.drain(3)] == ["1", "2", "3"]
    assert [e.event_id for e in conn.drain(10)] == ["4"]
    assert conn.drain(10) == []


async def test_json_connections_get_the_edge_json_of_the_event_they_would_have_parsed(
    hub: ConnectionHub,
) -> None:
    """SSE (JSON_FULL) and WebSocket (JSON_COMPACT) connections get each event's
    JSON encoded once by the hub: the same JSON object `json_format` gives for the
    Event a plain connection gets (subscription ids per device, the position)."""
    import json

    from google.protobuf import json_format

    from nexxus.transport.edge_json import JSON_COMPACT, JSON_FULL

    plain = conn("dA")
    full = QueuedConnection("app", "u1", "dA", max_bytes=1 << 16, transport="sse", encoding=JSON_FULL)
    compact = QueuedConnection("app", "u1", "dA", max_bytes=1 << 16, transport="ws", encoding=JSON_COMPACT)
    no_ids = QueuedConnection("app", "u1", "dB", max_bytes=1 << 16, transport="ws", encoding=JSON_FULL)
    for c in (plain, full, compact, no_ids):
        await hub.register(c)
    d = delivery(
        "n1",
        ("dA", events_pb2.EVENT_KIND_UPDATED, ["s1", "s2"]),
        ("dB", events_pb2.EVENT_KIND_LEFT, []),
    )
    d.position = "ep.7"
    await hub.bus.publish_volatile("nexxus.sys.transport.n1", d.SerializeToString())
    (event,) = await drain(plain)
    assert event.position == "ep.7"
    text_full = await full.next_json(0)
    text_compact = await compact.next_json(0)
    text_left = await no_ids.next_json(0)
    assert text_full is not None
    assert text_compact is not None
    assert text_left is not None
    full_dict = json_format.MessageToDict(event, always_print_fields_with_no_presence=True)
    assert json.loads(text_full) == full_dict
    assert json.loads(text_compact) == json_format.MessageToDict(event)
    assert json.loads(text_left)["subscriptionIds"] == []
    assert json.loads(text_left)["kind"] == "EVENT_KIND_LEFT"
    assert full.last_position == compact.last_position == "ep.7"


async def test_json_connection_converts_events_pushed_as_messages() -> None:
    """A replayed Event (pushed as a message) reaches a JSON connection as its JSON."""
    import json

    from google.protobuf import json_format

    from nexxus.transport.edge_json import JSON_COMPACT

    c = QueuedConnection("app", "u1", "dA", max_bytes=1 << 16, transport="ws", encoding=JSON_COMPACT)
    ev = events_pb2.Event(event_id="e1", object_id="o1", subscription_ids=["s"], position="ep.2")
    await c.push(ev)
    await c.push(events_pb2.Event(event_id="e2", position="ep.3"))
    first = await c.next_json(0)
    assert first is not None
    assert json.loads(first) == json_format.MessageToDict(ev)
    assert [json.loads(t)["eventId"] for t in c.drain_json(5)] == ["e2"]
    assert c.last_position == "ep.3"
