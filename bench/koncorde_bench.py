"""The router's match index against Koncorde 4.7, on identical filters and documents.

    python bench/koncorde_bench.py [--workload mixed-10k mixed-100k eq-100k] [--seed 1]

Koncorde is installed from npm into bench/koncorde/ (`npm ci`, pinned by its
package-lock.json) the first time; Node runs bench/koncorde/run.js on the same
filters and documents, written to a temporary JSON file. Per workload it prints,
for both engines in the same run: registration time (Nexxus: parse_filter +
ModelIndex.add, as the router does), memory growth, docs/s and distinct
matches/s of the bare match (Koncorde `test()`, Nexxus `ModelIndex.match`;
the fastest of --rounds passes over the documents), removal time, and the
Nexxus/Koncorde ratios. Times are CPU seconds of each engine's process (Node's
process.cpuUsage, Python's process_time), so that time spent descheduled on a
shared machine does not count; ratios of one run are the figures to compare.
Beside the bare match it prints the full route path: `route_event_bytes` on
UPDATED ModelEvents (Struct conversion, before and after matched, enter/leave,
device → node grouping, Delivery encoding).

The two engines must find the same filters on every document (as sets of the
generated filters: identical filters count once per engine, each engine
deduplicating its own way); the run stops with a diff otherwise.

Workload (issue 14), seeded: documents {priority (4 values), status (5),
assignee (100,000 users), score uniform in [0, 100)}; filters:
  mixed  50 % single-field eq (80 % assignee, 10 % status, 10 % priority);
         10 % and(priority eq, score in [a, a+w)); 15 % in (70 % assignee in 5
         users, 30 % status in 2 values); 5 % or(assignee eq, and(priority eq
         urgent, status eq S)); 15 % score in [a, a+w), w in [0.5, 5);
         5 % and(score in [a, a+w), status ne S)
  eq     100 % single-field eq (80 % assignee, 10 % status, 10 % priority)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexxus.core.convert import dict_to_struct
from nexxus.core.filterquery import parse_filter
from nexxus.core.schema import ModelSchema
from nexxus.router.index import ModelIndex, ObjectState, Predicate
from nexxus.router.matching import route_event_bytes
from nexxus.v1.common_pb2 import Object
from nexxus.v1.events_pb2 import EVENT_KIND_UPDATED
from nexxus.v1.internal_pb2 import ModelEvent
from nexxus.v1.subscriptions_pb2 import Subscription

HERE = Path(__file__).resolve().parent
KONCORDE_DIR = HERE / "koncorde"

SCHEMA = ModelSchema.from_dict(
    {
        "fields": {
            "priority": {"type": "string", "filterable": True},
            "status": {"type": "string", "filterable": True},
            "assignee": {"type": "string", "filterable": True},
            "score": {"type": "number", "filterable": True},
        }
    },
    name="task",
)
PRIORITIES = ["low", "normal", "high", "urgent"]
STATUSES = ["todo", "doing", "review", "done", "blocked"]
USERS = [f"user-{i}" for i in range(100_000)]
DEVICES = 20_000
NODES = 8

# (kind, filters, documents, routed events) — sized for a few seconds per engine.
WORKLOADS = {
    "mixed-10k": ("mixed", 10_000, 5_000, 300),
    "mixed-100k": ("mixed", 100_000, 1_000, 100),
    "eq-100k": ("eq", 100_000, 50_000, 100),
}

Pair = tuple[dict[str, Any], dict[str, Any]]  # (Nexxus filter, Koncorde filter)


# ---------------------------------------------------------------------- workload


def _eq(field: str, value: Any) -> Pair:
    return {field: {"eq": value}}, {"equals": {field: value}}


def _in(field: str, values: list[Any]) -> Pair:
    return {field: {"in": values}}, {"in": {field: values}}


def _score(rng: random.Random) -> Pair:
    a = round(rng.uniform(0, 100), 3)
    w = round(rng.uniform(0.5, 5), 3)
    return {"score": {"gte": a, "lt": round(a + w, 3)}}, {
        "range": {"score": {"gte": a, "lt": round(a + w, 3)}}
    }


def _and(*parts: Pair) -> Pair:
    return {"$and": [p[0] for p in parts]}, {"and": [p[1] for p in parts]}


def _or(*parts: Pair) -> Pair:
    return {"$or": [p[0] for p in parts]}, {"or": [p[1] for p in parts]}


def _single_eq(rng: random.Random) -> Pair:
    r = rng.random()
    if r < 0.8:
        return _eq("assignee", rng.choice(USERS))
    if r < 0.9:
        return _eq("status", rng.choice(STATUSES))
    return _eq("priority", rng.choice(PRIORITIES))


def mixed_filter(rng: random.Random) -> Pair:
    r = rng.random()
    if r < 0.50:
        return _single_eq(rng)
    if r < 0.60:
        return _and(_eq("priority", rng.choice(PRIORITIES)), _score(rng))
    if r < 0.75:
        if rng.random() < 0.7:
            return _in("assignee", rng.sample(USERS, 5))
        return _in("status", rng.sample(STATUSES, 2))
    if r < 0.80:
        return _or(
            _eq("assignee", rng.choice(USERS)),
            _and(_eq("priority", "urgent"), _eq("status", rng.choice(STATUSES))),
        )
    if r < 0.95:
        return _score(rng)
    ne = {"status": {"ne": (s := rng.choice(STATUSES))}}, {"not": {"equals": {"status": s}}}
    return _and(_score(rng), ne)


def document(rng: random.Random) -> dict[str, Any]:
    return {
        "priority": rng.choice(PRIORITIES),
        "status": rng.choice(STATUSES),
        "assignee": rng.choice(USERS),
        "score": round(rng.uniform(0, 100), 3),
    }


# ---------------------------------------------------------------------- engines


def heap_growth(filters: list[dict[str, Any]], subs: list[Subscription]) -> int:
    """Python heap growth (tracemalloc) of a second, untimed index of the same
    filters: the analogue of V8's heapUsed (RSS deltas of a process that has
    freed earlier workloads are not)."""
    index = ModelIndex()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for sub, raw in zip(subs, filters, strict=True):
        index.add(sub, parse_filter(raw, SCHEMA))
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del index
    return grown


def ensure_koncorde() -> None:
    if (KONCORDE_DIR / "node_modules" / "koncorde").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed (Node.js 18+) to install Koncorde")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=KONCORDE_DIR, check=True)


def run_koncorde(filters: list[dict[str, Any]], docs: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps({"filters": filters, "docs": docs}))
        subprocess.run(
            [
                "node",
                "--expose-gc",
                "--max-old-space-size=8192",
                str(KONCORDE_DIR / "run.js"),
                str(src),
                str(out),
                str(rounds),
            ],
            check=True,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result


@dataclass
class NexxusRun:
    register_s: float
    match_s: float
    match_wall_s: float
    remove_s: float
    heap_bytes: int
    distinct: int
    matches: list[set[Predicate]]
    members: dict[Predicate, tuple[int, ...]]
    route_s: float
    route_events: int
    deliveries: int


def run_nexxus(
    filters: list[dict[str, Any]],
    docs: list[dict[str, Any]],
    rng: random.Random,
    route_events: int,
    rounds: int,
) -> NexxusRun:
    subs = [
        Subscription(id=f"s{i}", model="task", device_id=f"d{i % DEVICES}", subscriber_user_id="bench")
        for i in range(len(filters))
    ]
    states = [ObjectState(f"o{i}", "", d) for i, d in enumerate(docs)]
    index = ModelIndex()
    t0 = time.process_time()
    for sub, raw in zip(subs, filters, strict=True):
        index.add(sub, parse_filter(raw, SCHEMA))
    register_s = time.process_time() - t0
    grown = heap_growth(filters, subs)

    match = index.match
    for st in states[:200]:
        match(st)
    match_s = match_wall_s = math.inf
    for _ in range(rounds):
        t0, w0 = time.process_time(), time.perf_counter()
        matches = [match(st) for st in states]
        match_s = min(match_s, time.process_time() - t0)
        match_wall_s = min(match_wall_s, time.perf_counter() - w0)

    # The full route path: UPDATED events, `before` another document.
    nodes = {f"d{i}": (f"node-{i % NODES}",) for i in range(DEVICES)}
    events = []
    for i, d in enumerate(docs[: max(1, min(len(docs) // 2, route_events))]):
        before = docs[(i * 7919 + 1) % len(docs)]
        ev = ModelEvent(
            event_id=f"e{i}", app_id="bench", model="task", object_id=f"o{i}", kind=EVENT_KIND_UPDATED
        )
        ev.before.CopyFrom(Object(id=f"o{i}", data=dict_to_struct(before)))
        ev.after.CopyFrom(Object(id=f"o{i}", data=dict_to_struct(d)))
        events.append(ev)
    t0 = time.process_time()
    deliveries = 0
    for ev in events:
        deliveries += len(route_event_bytes(index, ev, nodes))
    route_s = time.process_time() - t0

    distinct = index.predicate_count
    # Which generated filters each matched predicate stands for (removal empties it).
    index_of = {s.id: i for i, s in enumerate(subs)}
    members = {p: tuple(index_of[sid] for sid in p.subs) for p in set().union(*matches)}
    order = list(range(len(subs)))
    rng.shuffle(order)
    t0 = time.process_time()
    for i in order:
        index.remove(subs[i].id)
    remove_s = time.process_time() - t0
    assert len(index) == 0
    assert index.predicate_count == 0
    return NexxusRun(
        register_s,
        match_s,
        match_wall_s,
        remove_s,
        grown,
        distinct,
        matches,
        members,
        route_s,
        len(events),
        deliveries,
    )


# ---------------------------------------------------------------------- checks and report


def agree(nexxus: NexxusRun, koncorde: dict[str, Any], n_filters: int) -> list[int]:
    """Distinct matched filters per document; exits on the first disagreement."""
    members: dict[int, list[int]] = {}
    for i, first in enumerate(koncorde["first"]):
        members.setdefault(first, []).append(i)
    counts = []
    for d, (ours, theirs) in enumerate(zip(nexxus.matches, koncorde["matches"], strict=True)):
        got = {i for pred in ours for i in nexxus.members[pred]}
        want = {i for first in theirs for i in members[first]}
        if got != want:
            extra, missing = sorted(got - want)[:5], sorted(want - got)[:5]
            sys.exit(f"document {d}: engines disagree; only Nexxus {extra}, only Koncorde {missing}")
        assert len(got) <= n_filters
        counts.append(len(theirs))
    return counts


def fmt_rate(x: float) -> str:
    return f"{x:>12,.0f}"


def report(
    name: str, n: int, n_docs: int, ours: NexxusRun, theirs: dict[str, Any], matched: list[int]
) -> None:
    total = sum(matched)
    k_docs = n_docs / theirs["test_s"]
    n_rate = n_docs / ours.match_s
    ratio: Callable[[float, float], str] = lambda a, b: f"{a / b:6.2f}x"  # noqa: E731
    print(
        f"\n== {name}: {n:,} filters ({ours.distinct:,} distinct in Nexxus, "
        f"{theirs['distinct']:,} in Koncorde), "
        f"{n_docs:,} documents; distinct matches per document: median {statistics.median(matched):,.0f}, "
        f"mean {total / n_docs:,.1f}; engines agree on every document",
        flush=True,
    )
    print(f"{'':24}{'Koncorde 4.7':>16}{'Nexxus':>16}{'Nexxus/Koncorde':>18}")
    print(f"{'match docs/s':24}{fmt_rate(k_docs):>16}{fmt_rate(n_rate):>16}{ratio(n_rate, k_docs):>18}")
    k_wall, n_wall = n_docs / theirs["test_wall_s"], n_docs / ours.match_wall_s
    print(
        f"{'match docs/s (wall)':24}{fmt_rate(k_wall):>16}{fmt_rate(n_wall):>16}{ratio(n_wall, k_wall):>18}"
        "  (elapsed time, best round: noisier)"
    )
    print(
        f"{'matches/s':24}{fmt_rate(total / theirs['test_s']):>16}{fmt_rate(total / ours.match_s):>16}"
        f"{ratio(n_rate, k_docs):>18}"
    )
    k_reg, n_reg = theirs["register_s"] / n * 1e6, ours.register_s / n * 1e6
    print(f"{'register µs/filter':24}{k_reg:>16.1f}{n_reg:>16.1f}{ratio(k_reg, n_reg):>18}  (speed)")
    k_rm, n_rm = theirs["remove_s"] / n * 1e6, ours.remove_s / n * 1e6
    print(f"{'remove µs/filter':24}{k_rm:>16.1f}{n_rm:>16.1f}{ratio(k_rm, n_rm):>18}  (speed)")
    k_mem, n_mem = theirs["heap_bytes"] / n, ours.heap_bytes / n
    print(
        f"{'memory bytes/filter':24}{k_mem:>16,.0f}{n_mem:>16,.0f}{ratio(k_mem, n_mem):>18}  "
        f"(V8 / Python heap growth; Koncorde RSS growth {theirs['rss_bytes'] / n:,.0f})"
    )
    route_rate = ours.route_events / ours.route_s
    print(
        f"{'route events/s':24}{'':>16}{fmt_rate(route_rate):>16}{'':>18}  (UPDATED ModelEvent → "
        f"Delivery bytes, before+after matched; {ours.deliveries / ours.route_events:.1f} deliveries/event)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--docs", type=int, default=0, help="documents per workload (default: per workload)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="timed passes over the documents (best kept)")
    args = ap.parse_args()
    ensure_koncorde()
    for name in args.workload:
        kind, n, n_docs, n_route = WORKLOADS[name]
        n_docs = args.docs or n_docs
        rng = random.Random(f"{args.seed}-{name}")
        make = mixed_filter if kind == "mixed" else _single_eq
        pairs = [make(rng) for _ in range(n)]
        docs = [document(rng) for _ in range(n_docs)]
        theirs = run_koncorde([p[1] for p in pairs], docs, args.rounds)
        ours = run_nexxus([p[0] for p in pairs], docs, rng, n_route, args.rounds)
        matched = agree(ours, theirs, n)
        report(name, n, n_docs, ours, theirs, matched)


if __name__ == "__main__":
    main()
