"""Router matcher throughput: the index versus brute force, in one run.

    python bench/router_bench.py [--events 20000] [--seed 1]

For each workload it builds a ModelIndex, then times:
  index   ModelIndex.match on pre-converted object states (events/s)
  route   route_event_bytes on ModelEvent protos (Struct conversion, enter/leave,
          device + node grouping, Delivery building), UPDATED events
  brute   every subscription's compiled matcher on every event (events/s)
and prints the mean matched subscriptions per event and index/brute ratio
(it asserts that index and brute force match the same number of subscriptions).

Workloads (a "task" model: room (string, 10k values), status (5), priority (3),
score (number 0..1000), tags.team (string, 50)):
  eq-N    N subscriptions {"room": {"eq": r}}, r uniform over 10k rooms
  mixed   100k: 40% eq room, 15% in (3 rooms), 15% and(eq room, score range),
          10% or(eq room, eq tags.team), 5% two-sided score ranges (width <= 20),
          5% and(eq status, eq priority), 5% owner, 3% object, 2% ne/one-sided
          ranges/whole-model (the residual)
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from nexxus.core.convert import dict_to_struct
from nexxus.core.filterquery import compile_matcher, parse_filter
from nexxus.core.schema import ModelSchema
from nexxus.router.index import ModelIndex, ObjectState
from nexxus.router.matching import route_event_bytes
from nexxus.v1.common_pb2 import Object
from nexxus.v1.events_pb2 import EVENT_KIND_UPDATED
from nexxus.v1.internal_pb2 import ModelEvent
from nexxus.v1.subscriptions_pb2 import Subscription

SCHEMA = ModelSchema.from_dict(
    {
        "fields": {
            "room": {"type": "string", "filterable": True},
            "status": {"type": "string", "filterable": True},
            "priority": {"type": "string", "filterable": True},
            "score": {"type": "number", "filterable": True},
            "tags": {"type": "object", "fields": {"team": {"type": "string", "filterable": True}}},
        }
    },
    name="task",
)
ROOMS = [f"room-{i}" for i in range(10_000)]
STATUSES = ["todo", "doing", "done", "blocked", "review"]
PRIORITIES = ["low", "mid", "high"]
TEAMS = [f"team-{i}" for i in range(50)]
USERS = [f"user-{i}" for i in range(5_000)]
OBJECTS = [f"obj-{i}" for i in range(20_000)]

Filter = dict[str, Any] | None
SubSpec = tuple[str, str, Filter]  # user_id, object_id, filter


def eq_spec(rng: random.Random) -> SubSpec:
    return "", "", {"room": {"eq": rng.choice(ROOMS)}}


def mixed_spec(rng: random.Random) -> SubSpec:
    r = rng.random()
    room = rng.choice(ROOMS)
    lo = rng.uniform(0, 990)
    if r < 0.40:
        return "", "", {"room": {"eq": room}}
    if r < 0.55:
        return "", "", {"room": {"in": rng.sample(ROOMS, 3)}}
    if r < 0.70:
        return "", "", {"$and": [{"room": {"eq": room}}, {"score": {"gte": lo}}]}
    if r < 0.80:
        return "", "", {"$or": [{"room": {"eq": room}}, {"tags.team": {"eq": rng.choice(TEAMS)}}]}
    if r < 0.85:
        return "", "", {"$and": [{"score": {"gte": lo}}, {"score": {"lt": lo + rng.uniform(1, 20)}}]}
    if r < 0.90:
        return (
            "",
            "",
            {
                "$and": [
                    {"status": {"eq": rng.choice(STATUSES)}},
                    {"priority": {"eq": rng.choice(PRIORITIES)}},
                ]
            },
        )
    if r < 0.95:
        return rng.choice(USERS), "", None
    if r < 0.98:
        return "", rng.choice(OBJECTS), None
    if r < 0.99:
        return "", "", {"status": {"ne": rng.choice(STATUSES)}}
    if r < 0.998:
        return "", "", {"score": {"gt": rng.uniform(995, 1000)}}
    return "", "", None


def random_data(rng: random.Random) -> dict[str, Any]:
    return {
        "room": rng.choice(ROOMS),
        "status": rng.choice(STATUSES),
        "priority": rng.choice(PRIORITIES),
        "score": round(rng.uniform(0, 1000), 2),
        "tags": {"team": rng.choice(TEAMS)},
    }


def build(specs: list[SubSpec]) -> tuple[ModelIndex, list[tuple[Subscription, Callable[..., bool] | None]]]:
    index = ModelIndex()
    brute: list[tuple[Subscription, Callable[..., bool] | None]] = []
    for i, (user, obj, flt) in enumerate(specs):
        sub = Subscription(id=f"s{i}", model="task", user_id=user, object_id=obj, device_id=f"d{i % 20_000}")
        node = parse_filter(flt, SCHEMA) if flt else None
        index.add(sub, node)
        brute.append((sub, compile_matcher(node) if node is not None else None))
    return index, brute


def brute_match(brute: list[tuple[Subscription, Callable[..., bool] | None]], st: ObjectState) -> int:
    n = 0
    oid, owner, data = st.object_id, st.owner_id, st.data
    for sub, m in brute:
        if sub.object_id and sub.object_id != oid:
            continue
        if sub.user_id and sub.user_id != owner:
            continue
        if m is None or m(data):
            n += 1
    return n


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f}/s"


def run(name: str, specs: list[SubSpec], n_events: int, rng: random.Random) -> None:
    t0 = time.perf_counter()
    index, brute = build(specs)
    build_s = time.perf_counter() - t0
    states = [ObjectState(rng.choice(OBJECTS), rng.choice(USERS), random_data(rng)) for _ in range(n_events)]
    t0 = time.perf_counter()
    matched = 0
    for st in states:
        for pred in index.match(st):
            matched += len(pred.subs)
    idx_s = time.perf_counter() - t0

    events = []
    for st in states[: max(1, n_events // 4)]:
        ev = ModelEvent(
            event_id="e",
            app_id="bench",
            model="task",
            object_id=st.object_id,
            kind=EVENT_KIND_UPDATED,
            owner_id=st.owner_id,
        )
        before = dict(st.data, score=round(rng.uniform(0, 1000), 2), room=rng.choice(ROOMS))
        ev.before.CopyFrom(Object(id=st.object_id, owner_id=st.owner_id, data=dict_to_struct(before)))
        ev.after.CopyFrom(Object(id=st.object_id, owner_id=st.owner_id, data=dict_to_struct(dict(st.data))))
        events.append(ev)
    nodes = {f"d{i}": [f"node-{i % 8}"] for i in range(20_000)}
    t0 = time.perf_counter()
    deliveries = 0
    for ev in events:
        deliveries += len(route_event_bytes(index, ev, nodes))
    route_s = time.perf_counter() - t0

    n_brute = max(1, min(n_events, 2_000_000 // max(1, len(specs))))
    t0 = time.perf_counter()
    brute_matched = 0
    for st in states[:n_brute]:
        brute_matched += brute_match(brute, st)
    brute_s = time.perf_counter() - t0
    same = sum(len(p.subs) for st in states[:n_brute] for p in index.match(st))
    assert same == brute_matched, (same, brute_matched)
    idx_rate, brute_rate = n_events / idx_s, n_brute / brute_s
    print(
        f"{name:<12} subs={len(specs):>7,} preds={index.predicate_count:>7,} build={build_s:5.1f}s "
        f"index={rate(n_events, idx_s)} route={rate(len(events), route_s)} "
        f"brute={rate(n_brute, brute_s)} ratio={idx_rate / brute_rate:>8,.0f}x "
        f"matched/event={matched / n_events:.1f} "
        f"deliveries/event={deliveries / len(events):.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    for size in (1_000, 10_000, 100_000):
        run(f"eq-{size // 1000}k", [eq_spec(rng) for _ in range(size)], args.events, rng)
    run("mixed-100k", [mixed_spec(rng) for _ in range(100_000)], args.events, rng)


if __name__ == "__main__":
    main()
