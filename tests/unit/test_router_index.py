"""The router's match index against brute force (every subscription's matcher)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexxus.core.filterquery import And, Compare, FilterNode, In, Or, compile_matcher
from nexxus.core.schema import FieldKind
from nexxus.router.index import ModelIndex, ObjectState
from nexxus.router.matching import device_kind, match_devices
from nexxus.v1.events_pb2 import (
    EVENT_KIND_CREATED,
    EVENT_KIND_DELETED,
    EVENT_KIND_ENTERED,
    EVENT_KIND_LEFT,
    EVENT_KIND_UPDATED,
)
from nexxus.v1.subscriptions_pb2 import Subscription

# field path → (kind, filter values, extra data values the schema would not produce)
FIELDS: dict[tuple[str, ...], tuple[FieldKind, list[Any], list[Any]]] = {
    ("a",): (FieldKind.STRING, ["x", "y", "z", ""], [1, True, ["x", "q"]]),
    ("n",): (FieldKind.INTEGER, [0, 1, 2, 5, -3], [2.0, True, False, "2", 1.5]),
    ("f",): (FieldKind.NUMBER, [0, 1.5, 2, 2.0, 7.25], [True, "1.5", 2.5]),
    ("b",): (FieldKind.BOOLEAN, [True, False], [1, 0, 1.0, "true"]),
    ("d", "e"): (FieldKind.STRING, ["x", "y"], [3]),
    ("t",): (FieldKind.DATETIME, ["2024-01-01T00:00:00.000000Z", "2025-06-01T00:00:00.000000Z"], []),
}
PATHS = list(FIELDS)
OPS = ["eq", "ne", "gt", "gte", "lt", "lte"]


@st.composite
def leaves(draw: st.DrawFn) -> FilterNode:
    path = draw(st.sampled_from(PATHS))
    kind, values, _ = FIELDS[path]
    if draw(st.booleans()):
        vals = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
        return In(path, tuple(vals), kind)
    op = draw(st.sampled_from(OPS if kind != FieldKind.BOOLEAN else ["eq", "ne"]))
    return Compare(path, op, draw(st.sampled_from(values)), kind)


@st.composite
def ranges(draw: st.DrawFn) -> FilterNode:
    """A two-sided interval on a numeric field (the range index's main case)."""
    path = draw(st.sampled_from([("n",), ("f",)]))
    kind, values, _ = FIELDS[path]
    lo, hi = draw(st.sampled_from(values)), draw(st.sampled_from(values))
    low = Compare(path, draw(st.sampled_from(["gt", "gte"])), lo, kind)
    high = Compare(path, draw(st.sampled_from(["lt", "lte"])), hi, kind)
    return And((low, high))


@st.composite
def booleans_eq(draw: st.DrawFn) -> FilterNode:
    """eq on booleans and on 0 / 1: keys that must never collide."""
    if draw(st.booleans()):
        return Compare(("b",), "eq", draw(st.booleans()), FieldKind.BOOLEAN)
    return Compare(("n",), "eq", draw(st.sampled_from([0, 1])), FieldKind.INTEGER)


filters: st.SearchStrategy[FilterNode] = st.recursive(
    st.one_of(leaves(), ranges(), booleans_eq()),
    lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=3).map(lambda c: And(tuple(c))),
        st.lists(kids, min_size=1, max_size=3).map(lambda c: Or(tuple(c))),
    ),
    max_leaves=6,
)

USERS = ["u0", "u1", "u2"]
OBJECTS = ["o0", "o1", "o2"]
DEVICES = ["d0", "d1", "d2", "d3"]


@st.composite
def subscriptions(draw: st.DrawFn) -> tuple[Subscription, FilterNode | None]:
    shape = draw(st.sampled_from(["model", "user", "object", "filter", "user+filter", "object+filter"]))
    sub = Subscription(id="", model="task", device_id=draw(st.sampled_from(DEVICES)))
    if "user" in shape:
        sub.user_id = draw(st.sampled_from(USERS))
    if "object" in shape:
        sub.object_id = draw(st.sampled_from(OBJECTS))
    node = draw(filters) if "filter" in shape else None
    return sub, node


def _value(draw: st.DrawFn, path: tuple[str, ...]) -> Any:
    _, values, odd = FIELDS[path]
    return draw(st.sampled_from([*values, *odd, None]))


@st.composite
def states(draw: st.DrawFn) -> ObjectState:
    data: dict[str, Any] = {}
    for path in PATHS:
        if draw(st.booleans()):
            continue
        value = _value(draw, path)
        if path == ("d", "e"):
            data["d"] = draw(st.sampled_from([{"e": value}, [{"e": value}, {"e": "y"}], {}, None]))
        else:
            data[path[0]] = value
    return ObjectState(
        object_id=draw(st.sampled_from(OBJECTS)), owner_id=draw(st.sampled_from([*USERS, ""])), data=data
    )


def _brute(sub: Subscription, node: FilterNode | None, state: ObjectState | None) -> bool:
    if state is None:
        return False
    if sub.object_id and sub.object_id != state.object_id:
        return False
    if sub.user_id and sub.user_id != state.owner_id:
        return False
    return node is None or compile_matcher(node)(state.data)


def _build(subs: list[tuple[Subscription, FilterNode | None]], drop: set[int]) -> ModelIndex:
    index = ModelIndex()
    for i, (sub, node) in enumerate(subs):
        sub.id = f"s{i}"
        index.add(sub, node)
    for i in drop:
        assert index.remove(f"s{i}") is not None
    return index


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subs=st.lists(subscriptions(), max_size=25),
    drop=st.sets(st.integers(0, 24), max_size=6),
    state=states(),
)
def test_match_equals_brute_force(
    subs: list[tuple[Subscription, FilterNode | None]], drop: set[int], state: ObjectState
) -> None:
    drop = {i for i in drop if i < len(subs)}
    index = _build(subs, drop)
    got = {sid for pred in index.match(state) for sid in pred.subs}
    want = {sub.id for i, (sub, node) in enumerate(subs) if i not in drop and _brute(sub, node, state)}
    assert got == want
    assert len(index) == len(subs) - len(drop)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 11), subscriptions()), max_size=40),
    probes=st.lists(states(), min_size=1, max_size=4),
)
def test_churn_keeps_index_equal_to_brute_force_and_leaves_nothing_behind(
    ops: list[tuple[bool, int, tuple[Subscription, FilterNode | None]]], probes: list[ObjectState]
) -> None:
    """Subscriptions come and go (ids reused: re-adding replaces); after every
    few changes the index still equals brute force, and once every subscription
    is gone no posting, interval or branch token is left."""
    index = ModelIndex()
    live: dict[str, tuple[Subscription, FilterNode | None]] = {}
    for step, (adding, slot, (sub, node)) in enumerate(ops):
        sid = f"s{slot}"
        if adding:
            sub.id = sid
            index.add(sub, node)
            live[sid] = (sub, node)
        else:
            assert (index.remove(sid) is None) == (sid not in live)
            live.pop(sid, None)
        if step % 5 == 4 or step == len(ops) - 1:
            for state in probes:
                got = {sid for pred in index.match(state) for sid in pred.subs}
                assert got == {sid for sid, (sub, node) in live.items() if _brute(sub, node, state)}
    assert len(index) == len(live)
    for sid in list(live):
        assert index.remove(sid) is not None
    assert index.predicate_count == 0
    assert not index._paths
    assert not index._branches
    assert not index._residual
    assert not index._whole
    assert not index._by_object
    assert not index._by_user


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subs=st.lists(subscriptions(), max_size=20),
    kind=st.sampled_from([EVENT_KIND_CREATED, EVENT_KIND_UPDATED, EVENT_KIND_DELETED]),
    before=states(),
    after=states(),
)
def test_device_kinds_equal_brute_force(
    subs: list[tuple[Subscription, FilterNode | None]], kind: int, before: ObjectState, after: ObjectState
) -> None:
    after.object_id = before.object_id
    index = _build(subs, set())
    got = {
        device: (device_kind(kind, dm), sorted(dm.subscription_ids))  # type: ignore[arg-type]
        for device, dm in match_devices(index, kind, before, after).items()  # type: ignore[arg-type]
    }
    want: dict[str, tuple[int, list[str]]] = {}
    for device in DEVICES:
        mine = [(sub, node) for sub, node in subs if sub.device_id == device]
        was = {s.id for s, n in mine if kind != EVENT_KIND_CREATED and _brute(s, n, before)}
        now = {s.id for s, n in mine if kind != EVENT_KIND_DELETED and _brute(s, n, after)}
        if not was and not now:
            continue
        k: int = kind
        if kind == EVENT_KIND_UPDATED:
            k = EVENT_KIND_UPDATED if was and now else EVENT_KIND_ENTERED if now else EVENT_KIND_LEFT
        want[device] = (k, sorted(was | now))
    assert got == want


def _sub(sid: str, device: str = "d1", **kw: Any) -> Subscription:
    return Subscription(id=sid, model="task", device_id=device, **kw)


def _eq(field: str, value: Any, kind: FieldKind = FieldKind.STRING) -> Compare:
    return Compare((field,), "eq", value, kind)


def test_identical_filters_share_one_predicate_and_removal_prunes() -> None:
    index = ModelIndex()
    for i in range(3):
        index.add(_sub(f"s{i}", f"d{i}"), _eq("priority", "high"))
    index.add(_sub("r", "d9"), Compare(("n",), "gt", 3, FieldKind.INTEGER))
    assert index.predicate_count == 2
    hit = index.match(ObjectState("o", "", {"priority": "high", "n": 4}))
    assert {s for p in hit for s in p.subs} == {"s0", "s1", "s2", "r"}
    for sid in ["s0", "s1", "s2", "r"]:
        index.remove(sid)
    assert index.predicate_count == 0
    assert not index.match(ObjectState("o", "", {"priority": "high", "n": 4}))
    assert index.remove("s0") is None


def test_number_keys_collide_but_booleans_do_not() -> None:
    index = ModelIndex()
    index.add(_sub("int"), _eq("n", 2, FieldKind.NUMBER))
    index.add(_sub("bool"), _eq("n", True, FieldKind.BOOLEAN))
    index.add(_sub("one"), _eq("n", 1, FieldKind.NUMBER))

    def ids(data: Mapping[str, Any]) -> set[str]:
        return {s for p in index.match(ObjectState("o", "", data)) for s in p.subs}

    assert ids({"n": 2.0}) == {"int"}
    assert ids({"n": True}) == {"bool"}
    assert ids({"n": 1}) == {"one"}


def test_updated_kinds_for_filter_and_model_subscriptions() -> None:
    index = ModelIndex()
    index.add(_sub("f", "d1"), _eq("status", "open"))
    index.add(_sub("m", "d2"), None)
    index.add(_sub("f2", "d3"), _eq("status", "done"))
    before = ObjectState("o", "u", {"status": "open"})
    after = ObjectState("o", "u", {"status": "done"})
    got = {
        d: device_kind(EVENT_KIND_UPDATED, dm)
        for d, dm in match_devices(index, EVENT_KIND_UPDATED, before, after).items()
    }
    assert got == {"d1": EVENT_KIND_LEFT, "d2": EVENT_KIND_UPDATED, "d3": EVENT_KIND_ENTERED}


def test_one_device_with_left_and_entered_subscriptions_gets_updated() -> None:
    index = ModelIndex()
    index.add(_sub("open", "d1"), _eq("status", "open"))
    index.add(_sub("done", "d1"), _eq("status", "done"))
    devices = match_devices(
        index,
        EVENT_KIND_UPDATED,
        ObjectState("o", "", {"status": "open"}),
        ObjectState("o", "", {"status": "done"}),
    )
    assert device_kind(EVENT_KIND_UPDATED, devices["d1"]) == EVENT_KIND_UPDATED
    assert sorted(devices["d1"].subscription_ids) == ["done", "open"]
