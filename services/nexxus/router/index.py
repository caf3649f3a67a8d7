"""The router's in-memory match index of one (application, model).

Subscriptions with identical restrictions (object id, owner user id, filter)
share one `Predicate`, evaluated once per object state; each predicate is filed
in exactly one place, by its most selective restriction:

    object id   → by_object[object_id]
    owner id    → by_user[user_id]
    filter      → by_value[path][key]  (eq / in / or-of-eq anchors, see anchors.py)
                → ranges[path]         (numeric range anchors, see ranges.py)
                → residual             (no anchor: ne, or-of-ranges, timestamps…)
    nothing     → whole-model

Matching one object state looks up a handful of buckets (one per anchored
path) and evaluates only the predicates found there plus the residual list, so
its cost follows the number of candidates, not the number of subscriptions.
Every candidate is then checked in full (object id, owner, compiled matcher),
except a value-anchor hit on a scalar when the filter is exactly its anchor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nexxus.core.filterquery import FilterNode, compile_matcher
from nexxus.router.anchors import RangeAnchor, ValueAnchor, choose_anchor, value_key
from nexxus.router.ranges import RangeIndex
from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = ["ModelIndex", "ObjectState", "Predicate"]

Matcher = Callable[[Mapping[str, Any]], bool]
Path = tuple[str, ...]
Bucket = dict[int, "Predicate"]

_MISSING = object()


@dataclass(slots=True)
class ObjectState:
    """One side (before or after) of a change, as the matcher sees it."""

    object_id: str
    owner_id: str
    data: Mapping[str, Any]


@dataclass(eq=False, slots=True)
class Predicate:
    """The restrictions shared by one or more subscriptions."""

    key: tuple[str, str, str]
    object_id: str
    user_id: str
    matcher: Matcher | None
    # A value-anchor hit on a scalar proves the filter (no matcher call needed).
    exact: bool = False
    # True for subscriptions with a filter (they see ENTERED / LEFT).
    filtered: bool = False
    subs: dict[str, Subscription] = field(default_factory=dict)
    # Where it is filed: (container, container key) pairs, for removal.
    places: list[tuple[dict[Any, Bucket], Any]] = field(default_factory=list)
    range_place: tuple[RangeIndex[Predicate], RangeAnchor] | None = None
    # (subscription, id, device id) of `subs`, rebuilt on change (hot loop input).
    _members: tuple[tuple[Subscription, str, str], ...] | None = None

    @property
    def members(self) -> tuple[tuple[Subscription, str, str], ...]:
        m = self._members
        if m is None:
            m = self._members = tuple((s, s.id, s.device_id) for s in self.subs.values())
        return m

    def test(self, state: ObjectState, exact_hit: bool = False) -> bool:
        if self.object_id and self.object_id != state.object_id:
            return False
        if self.user_id and self.user_id != state.owner_id:
            return False
        if self.matcher is None or (exact_hit and self.exact):
            return True
        return self.matcher(state.data)


def _values_at(data: Mapping[str, Any], path: Path) -> tuple[list[Any], bool]:
    """The scalars at `path` and whether the lookup was a plain scalar (exact).

    Arrays on the way are expanded (a superset of what any array semantics of
    the matcher could accept); such hits are never treated as exact.
    """
    current: list[Any] = [data]
    exact = True
    for part in path:
        nxt: list[Any] = []
        for node in current:
            if isinstance(node, Mapping):
                value = node.get(part, _MISSING)
                if value is not _MISSING:
                    nxt.append(value)
            elif isinstance(node, list):
                exact = False
                for item in node:
                    if isinstance(item, Mapping) and part in item:
                        nxt.append(item[part])
        if not nxt:
            return [], exact
        current = nxt
    out: list[Any] = []
    for value in current:
        if isinstance(value, list):
            exact = False
            out.extend(value)
        else:
            out.append(value)
    return out, exact


class ModelIndex:
    """Subscriptions of one (application, model), filed for fast matching."""

    def __init__(self) -> None:
        self._whole: dict[Any, Bucket] = {}
        self._by_object: dict[Any, Bucket] = {}
        self._by_user: dict[Any, Bucket] = {}
        self._by_value: dict[Path, dict[Any, Bucket]] = {}
        self._ranges: dict[Path, RangeIndex[Predicate]] = {}
        self._residual: dict[Any, Bucket] = {}
        self._predicates: dict[tuple[str, str, str], Predicate] = {}
        self._sub_pred: dict[str, Predicate] = {}

    # ------------------------------------------------------------------ updates

    def __len__(self) -> int:
        return len(self._sub_pred)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._sub_pred

    def subscriptions(self) -> Iterator[Subscription]:
        for pred in self._predicates.values():
            yield from pred.subs.values()

    @property
    def predicate_count(self) -> int:
        return len(self._predicates)

    def add(self, sub: Subscription, node: FilterNode | None, *, matcher: Matcher | None = None) -> None:
        """File a subscription; `node` is its parsed filter (None: no filter).

        Identical trees share one predicate and one compiled matcher (`matcher`
        overrides the compiled one, for tests). Re-adding an id replaces it.
        """
        if sub.id in self._sub_pred:
            self.remove(sub.id)
        fkey = "" if node is None else repr(node)
        key = (sub.object_id, sub.user_id, fkey)
        pred = self._predicates.get(key)
        if pred is None:
            if node is not None and matcher is None:
                matcher = compile_matcher(node)
            pred = Predicate(
                key=key,
                object_id=sub.object_id,
                user_id=sub.user_id,
                matcher=matcher if node is not None else None,
                filtered=node is not None,
            )
            self._file(pred, node)
            self._predicates[key] = pred
        pred.subs[sub.id] = sub
        pred._members = None
        self._sub_pred[sub.id] = pred

    def remove(self, subscription_id: str) -> Subscription | None:
        pred = self._sub_pred.pop(subscription_id, None)
        if pred is None:
            return None
        sub = pred.subs.pop(subscription_id)
        pred._members = None
        if not pred.subs:
            self._unfile(pred)
            del self._predicates[pred.key]
        return sub

    def _place(self, pred: Predicate, container: dict[Any, Bucket], ckey: Any) -> None:
        container.setdefault(ckey, {})[id(pred)] = pred
        pred.places.append((container, ckey))

    def _file(self, pred: Predicate, node: FilterNode | None) -> None:
        if pred.object_id:
            self._place(pred, self._by_object, pred.object_id)
            return
        if pred.user_id:
            self._place(pred, self._by_user, pred.user_id)
            return
        if node is None:
            self._place(pred, self._whole, "")
            return
        anchor = choose_anchor(node)
        if isinstance(anchor, ValueAnchor):
            pred.exact = anchor.exact
            for path, vkey in anchor.pairs:
                self._place(pred, self._by_value.setdefault(path, {}), vkey)
        elif isinstance(anchor, RangeAnchor):
            ranges = self._ranges.setdefault(anchor.path, RangeIndex())
            ranges.add(anchor.low, anchor.high, pred)
            pred.range_place = (ranges, anchor)
        else:
            self._place(pred, self._residual, "")

    def _unfile(self, pred: Predicate) -> None:
        for container, ckey in pred.places:
            bucket = container[ckey]
            del bucket[id(pred)]
            if not bucket:
                del container[ckey]
        pred.places.clear()
        if pred.range_place is not None:
            ranges, anchor = pred.range_place
            ranges.remove(anchor.low, anchor.high, pred)
            if not len(ranges):
                self._ranges.pop(anchor.path, None)
            pred.range_place = None
        for path in [p for p, values in self._by_value.items() if not values]:
            del self._by_value[path]

    # ------------------------------------------------------------------ matching

    def match(self, state: ObjectState) -> set[Predicate]:
        """Every predicate the object state satisfies."""
        out: set[Predicate] = set()
        add = out.add
        bucket = self._whole.get("")
        if bucket:
            out.update(bucket.values())
        bucket = self._by_object.get(state.object_id)
        if bucket:
            for pred in bucket.values():
                if pred.test(state):
                    add(pred)
        if state.owner_id:
            bucket = self._by_user.get(state.owner_id)
            if bucket:
                for pred in bucket.values():
                    if pred.test(state):
                        add(pred)
        # Filter-anchored predicates have no object / owner restriction (those
        # are filed by object or owner), so only their matcher is called.
        data = state.data
        for path, buckets in self._by_value.items():
            values, exact = _values_at(data, path)
            for value in values:
                vkey = value_key(value)
                if vkey is None:
                    continue
                bucket = buckets.get(vkey)
                if bucket:
                    for pred in bucket.values():
                        if (exact and pred.exact) or (pred not in out and pred.matcher(data)):  # type: ignore[misc]
                            add(pred)
        for path, ranges in self._ranges.items():
            values, _ = _values_at(data, path)
            for value in values:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                for pred in ranges.stab(value):
                    if pred not in out and pred.matcher(data):  # type: ignore[misc]
                        add(pred)
        bucket = self._residual.get("")
        if bucket:
            for pred in bucket.values():
                if pred.matcher(data):  # type: ignore[misc]
                    add(pred)
        return out
