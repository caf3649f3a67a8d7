"""RouterService over real NATS JetStream and Valkey: ModelEvents in on
`<prefix>.<app>.events.<model>`, Deliveries out on the DELIVERIES stream
(`<prefix>.<node>.transport`), each stamped with its event's position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nexxus.adapters.bus.nats import NatsBus
from nexxus.adapters.store.redis import RedisSubscriptionStore
from nexxus.core.config.settings import Settings
from nexxus.core.convert import dict_to_struct
from nexxus.core.schema import ModelSchema
from nexxus.router import RouterService
from nexxus.v1.common_pb2 import Object
from nexxus.v1.events_pb2 import (
    EVENT_KIND_CREATED,
    EVENT_KIND_ENTERED,
    EVENT_KIND_LEFT,
    EVENT_KIND_UPDATED,
)
from nexxus.v1.internal_pb2 import Delivery, ModelEvent
from nexxus.v1.subscriptions_pb2 import Subscription

pytestmark = pytest.mark.e2e

APP = "app1"
SCHEMA = ModelSchema.from_dict(
    {"fields": {"priority": {"type": "string", "filterable": True}, "n": {"type": "integer"}}}, name="task"
)
# Guards against a hang only; nothing here asserts on timing.
WAIT = 20.0


async def schema_lookup(app_id: str, model: str) -> ModelSchema | None:
    return SCHEMA if model == "task" else None


class Inbox:
    """Deliveries received on every transport subject, by node."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(self, seq: int, data: bytes) -> None:
        self.queue.put_nowait(Delivery.FromString(data))

    async def take(self, count: int) -> dict[str, Delivery]:
        out: dict[str, Delivery] = {}
        for _ in range(count):
            d = await asyncio.wait_for(self.queue.get(), WAIT)
            assert d.node not in out
            out[d.node] = d
        return out


def _sub(sid: str, device: str, flt: dict[str, Any] | None = None) -> Subscription:
    sub = Subscription(id=sid, model="task", device_id=device)
    if flt is not None:
        sub.filter.CopyFrom(dict_to_struct(flt))
    return sub


_seq = 0


def _event(kind: int, before: dict[str, Any] | None, after: dict[str, Any] | None) -> ModelEvent:
    global _seq
    _seq += 1
    ev = ModelEvent(event_id=f"e{_seq}", app_id=APP, model="task", object_id="o1", kind=kind, owner_id="u1")  # type: ignore[arg-type]
    for field, data in (("before", before), ("after", after)):
        if data is not None:
            getattr(ev, field).CopyFrom(
                Object(id="o1", model="task", owner_id="u1", data=dict_to_struct(data))
            )
    return ev


@pytest.fixture
async def inbox(bus: NatsBus) -> AsyncIterator[Inbox]:
    box = Inbox()
    subs = [await bus.consume_deliveries(node, box.handle) for node in ("n1", "n2", "n3", "n4")]
    try:
        yield box
    finally:
        for sub in subs:
            await sub.unsubscribe()


@pytest.fixture
async def router(bus: NatsBus, store: RedisSubscriptionStore) -> AsyncIterator[RouterService]:
    settings = Settings()
    settings.router.batch_size = 8
    service = RouterService(settings, bus, store, schema_lookup)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def publish(bus: NatsBus, event: ModelEvent) -> None:
    await bus.publish(bus.subjects.events(APP, "task"), event.SerializeToString(), msg_id=event.event_id)


async def test_routes_events_to_nodes_with_enter_and_leave(
    bus: NatsBus, store: RedisSubscriptionStore, inbox: Inbox, router: RouterService
) -> None:
    await store.add_subscription(APP, _sub("high", "dA", {"priority": {"eq": "high"}}))
    await store.add_subscription(APP, _sub("all", "dB"))
    await store.add_subscription(APP, _sub("offline", "dZ"))
    await store.device_connected(APP, "dA", "n1", "c1")
    await store.device_connected(APP, "dB", "n2", "c2")

    await publish(bus, _event(EVENT_KIND_CREATED, None, {"priority": "high"}))
    got = await inbox.take(2)
    assert [(t.device_id, t.kind, list(t.subscription_ids)) for t in got["n1"].targets] == [
        ("dA", EVENT_KIND_CREATED, ["high"])
    ]
    assert [(t.device_id, t.kind) for t in got["n2"].targets] == [("dB", EVENT_KIND_CREATED)]
    assert got["n1"].event.after.data["priority"] == "high"
    assert got["n1"].app_id == APP
    bounds = await bus.history_bounds()
    assert got["n1"].position == got["n2"].position == str(bounds.head)

    await publish(bus, _event(EVENT_KIND_UPDATED, {"priority": "high"}, {"priority": "low"}))
    got = await inbox.take(2)
    assert [(t.device_id, t.kind) for t in got["n1"].targets] == [("dA", EVENT_KIND_LEFT)]
    assert [(t.device_id, t.kind) for t in got["n2"].targets] == [("dB", EVENT_KIND_UPDATED)]

    await publish(bus, _event(EVENT_KIND_UPDATED, {"priority": "low"}, {"priority": "high"}))
    got = await inbox.take(2)
    assert [(t.device_id, t.kind) for t in got["n1"].targets] == [("dA", EVENT_KIND_ENTERED)]


async def test_subscription_added_just_before_an_event_is_seen(
    bus: NatsBus, store: RedisSubscriptionStore, inbox: Inbox, router: RouterService
) -> None:
    await store.add_subscription(APP, _sub("all", "dB"))
    await store.device_connected(APP, "dB", "n2", "c2")
    await publish(bus, _event(EVENT_KIND_CREATED, None, {"priority": "low"}))
    assert list(await inbox.take(1)) == ["n2"]  # the app is now loaded in the router

    # Committed to the store, then the event: the router must see both.
    await store.device_connected(APP, "dC", "n3", "c3")
    await store.add_subscription(APP, _sub("late", "dC", {"priority": {"eq": "low"}}))
    await publish(bus, _event(EVENT_KIND_UPDATED, {"priority": "low"}, {"priority": "low", "n": 1}))
    got = await inbox.take(2)
    assert [(t.device_id, t.kind, list(t.subscription_ids)) for t in got["n3"].targets] == [
        ("dC", EVENT_KIND_UPDATED, ["late"])
    ]

    # Removed: no longer routed. A device on two nodes gets its events on both;
    # once it left one, only on the other.
    await store.remove_subscription(APP, "late")
    await store.device_connected(APP, "dB", "n4", "c4")
    await publish(bus, _event(EVENT_KIND_CREATED, None, {"priority": "low"}))
    assert sorted(await inbox.take(2)) == ["n2", "n4"]
    await store.device_disconnected(APP, "dB", "n2", "c2")
    await publish(bus, _event(EVENT_KIND_CREATED, None, {"priority": "low"}))
    got = await inbox.take(1)
    assert list(got) == ["n4"]


async def test_unparsable_event_is_termed_and_the_next_one_routed(
    bus: NatsBus, store: RedisSubscriptionStore, inbox: Inbox, router: RouterService
) -> None:
    await store.add_subscription(APP, _sub("all", "dB"))
    await store.device_connected(APP, "dB", "n2", "c2")
    await bus.publish(bus.subjects.events(APP, "task"), b"\xff\xff not a proto", msg_id="junk")
    event = _event(EVENT_KIND_CREATED, None, {"priority": "x"})
    await publish(bus, event)
    got = await inbox.take(1)
    assert got["n2"].event.event_id == event.event_id
    assert inbox.queue.empty()
