"""Router pieces around the index: anchors, the range index, node grouping,
the read gate, and applying change-log entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nexxus.core.convert import dict_to_struct
from nexxus.core.filterquery import And, Compare, In, Or
from nexxus.core.schema import FieldKind, ModelSchema
from nexxus.router.anchors import RangeAnchor, ValueAnchor, choose_anchor, value_key
from nexxus.router.index import ModelIndex
from nexxus.router.matching import route_event, route_event_bytes
from nexxus.router.ranges import RangeIndex
from nexxus.router.state import AppState, FilterParser
from nexxus.v1.common_pb2 import Object
from nexxus.v1.events_pb2 import (
    EVENT_KIND_CREATED,
    EVENT_KIND_DELETED,
    EVENT_KIND_LEFT,
    EVENT_KIND_UPDATED,
)
from nexxus.v1.internal_pb2 import Delivery, ModelEvent, SubscriptionChange
from nexxus.v1.subscriptions_pb2 import Subscription

S = FieldKind.STRING
N = FieldKind.NUMBER


def test_value_key_normalisation() -> None:
    assert value_key(2) == value_key(2.0)
    assert value_key(True) != value_key(1)
    assert value_key(False) != value_key(0)
    assert value_key(None) is None
    assert value_key(float("nan")) is None
    assert value_key({"a": 1}) is None


def test_choose_anchor_shapes() -> None:
    eq = Compare(("a",), "eq", "x", S)
    inn = In(("b",), ("p", "q", "r"), S)
    rng = Compare(("n",), "gte", 3, N)
    assert choose_anchor(eq) == ValueAnchor(((("a",), "x"),), True)
    both = choose_anchor(And((inn, eq, rng)))
    assert both == ValueAnchor(((("a",), "x"),), False)
    either = choose_anchor(Or((eq, Compare(("c",), "eq", "y", S))))
    assert isinstance(either, ValueAnchor)
    assert either.exact
    assert len(either.pairs) == 2
    assert choose_anchor(Or((eq, rng))) is None
    assert choose_anchor(Compare(("a",), "ne", "x", S)) is None
    assert choose_anchor(Compare(("t",), "eq", "2024-01-01T00:00:00.000000Z", FieldKind.DATETIME)) is None
    assert choose_anchor(And((rng, Compare(("n",), "lt", 9, N)))) == RangeAnchor(("n",), 3, 9)
    assert choose_anchor(And((Compare(("n",), "gt", 9, N), Compare(("n",), "lt", 3, N)))) is None


intervals = st.tuples(
    st.one_of(st.none(), st.integers(-20, 20)), st.one_of(st.none(), st.integers(-20, 20))
).filter(lambda lh: lh != (None, None))


@given(items=st.lists(intervals, max_size=30), drop=st.sets(st.integers(0, 29)), v=st.integers(-25, 25))
def test_range_index_stab_is_a_superset_of_containment(
    items: list[tuple[int | None, int | None]], drop: set[int], v: int
) -> None:
    index: RangeIndex[int] = RangeIndex()
    for i, (lo, hi) in enumerate(items):
        index.add(lo, hi, i)
    for i in drop:
        if i < len(items):
            assert index.remove(*items[i], i)
    got = set(index.stab(v))
    want = {
        i
        for i, (lo, hi) in enumerate(items)
        if i not in drop and (lo is None or lo <= v) and (hi is None or v <= hi)
    }
    assert want <= got
    assert all(i not in drop for i in got)


def _obj(data: Mapping[str, Any], owner: str = "u1") -> Object:
    return Object(id="o1", model="task", owner_id=owner, version=1, data=dict_to_struct(dict(data)))


def _event(kind: int, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> ModelEvent:
    ev = ModelEvent(event_id="e1", app_id="app", model="task", object_id="o1", kind=kind, owner_id="u1")  # type: ignore[arg-type]
    if before is not None:
        ev.before.CopyFrom(_obj(before))
    if after is not None:
        ev.after.CopyFrom(_obj(after))
    return ev


def _sub(sid: str, device: str, **kw: Any) -> Subscription:
    return Subscription(id=sid, model="task", device_id=device, **kw)


def test_route_event_groups_devices_by_node_and_skips_offline_devices() -> None:
    index = ModelIndex()
    index.add(_sub("s1", "d1"), Compare(("status",), "eq", "open", S))
    index.add(_sub("s2", "d2"), None)
    index.add(_sub("s3", "d3"), None)  # offline
    index.add(_sub("s4", "d4", user_id="u1"), None)
    nodes = {"d1": ["n1"], "d2": ["n2"], "d4": ["n1", "n2"]}
    out = route_event(index, _event(EVENT_KIND_CREATED, None, {"status": "open"}), nodes)
    assert [d.node for d in out] == ["n1", "n2"]
    assert [(t.device_id, list(t.subscription_ids)) for t in out[0].targets] == [
        ("d1", ["s1"]),
        ("d4", ["s4"]),
    ]
    assert [t.device_id for t in out[1].targets] == ["d2", "d4"]
    assert all(t.kind == EVENT_KIND_CREATED for d in out for t in d.targets)
    assert out[0].event.event_id == "e1"
    assert out[0].app_id == "app"

    encoded = route_event_bytes(index, _event(EVENT_KIND_CREATED, None, {"status": "open"}), nodes)
    assert [(n, Delivery.FromString(b)) for n, b in encoded] == [(d.node, d) for d in out]

    deleted = route_event(index, _event(EVENT_KIND_DELETED, {"status": "closed"}, None), nodes)
    assert {t.device_id for d in deleted for t in d.targets} == {"d2", "d4"}
    assert all(t.kind == EVENT_KIND_DELETED for d in deleted for t in d.targets)
    assert route_event(index, _event(EVENT_KIND_CREATED, None, {"status": "x"}), {}) == []


class OwnerOnly:
    """A read rule: subscribers read only their own objects."""

    def __init__(self) -> None:
        self.apps_seen: set[str] = set()

    async def prepare(self, app_id: str, model: str) -> None:
        return None

    def allows(
        self, sub: Subscription, sub_user_id: str, obj_owner_id: str, data: Mapping[str, Any], app_id: str
    ) -> bool:
        self.apps_seen.add(app_id)
        return sub_user_id == obj_owner_id and not data.get("hidden")


def test_read_gate_filters_and_turns_unreadable_into_left() -> None:
    index = ModelIndex()
    index.add(_sub("mine", "d1", subscriber_user_id="u1"), None)
    index.add(_sub("other", "d2", subscriber_user_id="u2"), None)
    index.add(_sub("admin", "d3", subscriber_user_id="", privileged=True), None)
    nodes = {"d1": ["n"], "d2": ["n"], "d3": ["n"]}
    gate = OwnerOnly()
    event = _event(EVENT_KIND_UPDATED, {"v": 1}, {"v": 2, "hidden": True})
    out = route_event(index, event, nodes, gate)
    kinds = {t.device_id: t.kind for t in out[0].targets}
    assert kinds == {"d1": EVENT_KIND_LEFT, "d3": EVENT_KIND_UPDATED}
    assert gate.apps_seen == {event.app_id}  # the gate is asked per application


async def test_apply_change_log_entries() -> None:
    schema = ModelSchema.from_dict(
        {"fields": {"priority": {"type": "string", "filterable": True}}}, name="task"
    )
    calls: list[tuple[str, str]] = []

    async def lookup(app_id: str, model: str) -> ModelSchema | None:
        calls.append((app_id, model))
        return schema if model == "task" else None

    parser = FilterParser(lookup)
    state = AppState("app")
    C = SubscriptionChange
    flt = dict_to_struct({"priority": {"eq": "high"}})
    changes = [
        C(
            kind=C.KIND_SUBSCRIPTION_ADDED,
            subscription=Subscription(id="s1", model="task", device_id="d1", filter=flt),
        ),
        C(kind=C.KIND_SUBSCRIPTION_ADDED, subscription=Subscription(id="s2", model="task", device_id="d1")),
        C(
            kind=C.KIND_SUBSCRIPTION_ADDED,
            subscription=Subscription(id="bad", model="nope", device_id="d1", filter=flt),
        ),
        C(kind=C.KIND_DEVICE_CONNECTED, device_id="d1", node="n1"),
        C(kind=C.KIND_DEVICE_CONNECTED, device_id="d1", node="n2"),
        C(kind=C.KIND_DEVICE_CONNECTED, device_id="d2", node="n1"),
        C(kind=C.KIND_DEVICE_DISCONNECTED, device_id="d2", node="n1"),
        C(kind=C.KIND_SUBSCRIPTION_REMOVED, subscription_id="s2", model="task"),
    ]
    for change in changes:
        await parser.apply_change(state, change)
    index = state.index("task")
    assert index is not None
    assert "s1" in index
    assert "s2" not in index
    assert len(index) == 1
    assert state.index("nope") is None
    assert state.nodes == {"d1": ("n1", "n2")}  # d1 held on two nodes; d2 gone
    await parser.apply_change(state, C(kind=C.KIND_DEVICE_DISCONNECTED, device_id="d1", node="n1"))
    assert state.nodes == {"d1": ("n2",)}
    assert calls.count(("app", "task")) == 1  # cached
    out = route_event(index, _event(EVENT_KIND_CREATED, None, {"priority": "high"}), state.nodes)
    assert [(d.node, [t.device_id for t in d.targets]) for d in out] == [("n2", ["d1"])]


def test_encoded_delivery_targets_are_protobuf_bytes() -> None:
    """encode_deliveries writes Delivery.targets by hand (cached per device): the
    bytes must be exactly protobuf's, and the parsed Delivery build_deliveries'."""
    from nexxus.router.matching import DeviceMatch, _target_field, build_deliveries, encode_deliveries
    from nexxus.v1.internal_pb2 import Delivery, DeliveryTarget, ModelEvent

    for kind in range(6):
        for sids in (("s1",), ("b", "a"), (), ("é" * 70, "x" * 200)):
            for dev in ("d1", "", "ü" * 130):
                target = DeliveryTarget(device_id=dev, kind=kind, subscription_ids=sorted(sids))  # type: ignore[arg-type]
                key = sids[0] if len(sids) == 1 else tuple(sorted(sids))
                assert _target_field(dev, kind, key) == Delivery(targets=[target]).SerializeToString()  # type: ignore[arg-type]

    event = ModelEvent(app_id="a", model="m", object_id="o", kind=1)  # type: ignore[arg-type]
    devices = {}
    for i in range(50):
        dm = DeviceMatch()
        dm.after = True
        dm.subscription_ids = [f"s{i}", f"r{i}"] if i % 3 == 0 else [f"s{i}"]
        devices[f"d{i:03}"] = dm
    nodes = {f"d{i:03}": ["n1"] if i % 2 else ["n2", "n1"] for i in range(50) if i != 7}
    encoded = encode_deliveries(event, devices, nodes)
    built = build_deliveries(event, devices, nodes)
    assert [n for n, _ in encoded] == [d.node for d in built]
    for (_, data), delivery in zip(encoded, built, strict=True):
        assert Delivery.FromString(data) == delivery
