"""The router's in-memory match index of one (application, model).

Subscriptions with identical restrictions (object id, owner user id, filter)
share one `Predicate`. Each predicate is filed once, by its most selective part:

    object id   → by_object[object_id]            (checked in full)
    owner id    → by_user[user_id]                (checked in full)
    nothing     → whole-model                     (always matches)
    filter      → plain: posted per atom, decided by set operations (below)
                → else: by an anchor (anchors.py), the compiled matcher decides
                  (value anchor, range anchor, or the residual list)

A *plain* filter is an OR of conjunctions of one or two positive atoms (eq / in
on a path, a numeric interval on a path) and any number of `ne` (see
`plain_conjunctions`). Each conjunction has a token (the predicate itself, or a
`Branch` of it when sharing one token could mix its conjunctions up) posted in
the path index of each of its atoms, by role:

    paths[path].buckets[key].one             tokens of 1-atom conjunctions
    paths[path].buckets[key].first / second  the primary / secondary atom of
                                             2-atom conjunctions (rarer first)
    paths[path].buckets[key].neg             tokens a `ne key` excludes
    paths[path].{one,first,second}_ranges    intervals (ranges.IntervalIndex, exact)

Matching one object state reads the value of each indexed path once, looks up
its bucket and stabs its intervals. A `one` token in any hit posting matches
(set union); a 2-atom token matches when it is among the primary hits and in a
hit secondary posting (set intersections: an object has one value per path, so
each atom has at most one hit posting); then the tokens of every hit `neg`
posting are removed. All of it runs in C set operations; no matcher is called
for plain filters. Only the checked predicates found by their anchor (and the
residual list) call their matcher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from nexxus.core.filterquery import Compare, FilterNode, compile_matcher
from nexxus.router.anchors import (
    Atom,
    Conjunction,
    EqAtom,
    IntervalAtom,
    RangeAnchor,
    ValueAnchor,
    choose_anchor,
    plain_conjunctions,
    value_key,
)
from nexxus.router.ranges import IntervalIndex, RangeIndex
from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = ["Branch", "ModelIndex", "ObjectState", "Predicate"]

Matcher = Callable[[Mapping[str, Any]], bool]
Path = tuple[str, ...]
Bucket = dict[int, "Predicate"]

_MISSING = object()
_TRUE_KEY = value_key(True)
_FALSE_KEY = value_key(False)


@dataclass(slots=True)
class ObjectState:
    """One side (before or after) of a change, as the matcher sees it."""

    object_id: str
    owner_id: str
    data: Mapping[str, Any]


@dataclass(eq=False, slots=True)
class Predicate:
    """The restrictions shared by one or more subscriptions."""

    key: tuple[str, str, FilterNode | None]
    object_id: str
    user_id: str
    node: FilterNode | None
    # Compiled for the predicates that need it (checked ones); see `ensure_matcher`.
    matcher: Matcher | None = None
    # True for subscriptions with a filter (they see ENTERED / LEFT).
    filtered: bool = False
    subs: dict[str, Subscription] = field(default_factory=dict)
    # How it is filed (for removal): "object", "user", "whole", "plain", "value",
    # "range" or "residual"; plain ones keep their branch tokens (if any).
    filed: str = ""
    plan: list[Conjunction] | None = None
    branches: tuple[Branch | None, ...] = ()
    # (subscription, id, device id) of `subs`, rebuilt on change (hot loop input).
    _members: tuple[tuple[Subscription, str, str], ...] | None = None

    @property
    def members(self) -> tuple[tuple[Subscription, str, str], ...]:
        m = self._members
        if m is None:
            m = self._members = tuple((s, s.id, s.device_id) for s in self.subs.values())
        return m

    def ensure_matcher(self) -> Matcher | None:
        if self.matcher is None and self.node is not None:
            self.matcher = compile_matcher(self.node)
        return self.matcher

    def test(self, state: ObjectState) -> bool:
        """The full check: object id, owner and filter."""
        if self.object_id and self.object_id != state.object_id:
            return False
        if self.user_id and self.user_id != state.owner_id:
            return False
        matcher = self.ensure_matcher()
        return matcher is None or matcher(state.data)


class Branch:
    """The token of one conjunction of a predicate whose conjunctions cannot share
    the predicate as their token (shapes differ, or a `ne` is involved)."""

    __slots__ = ("pred",)

    def __init__(self, pred: Predicate) -> None:
        self.pred = pred


class _Postings:
    """The tokens filed under one (path, key)."""

    __slots__ = ("check", "first", "neg", "one", "second")

    def __init__(self) -> None:
        self.one: set[Any] | None = None
        self.first: set[Any] | None = None
        self.second: set[Any] | None = None
        self.neg: set[Any] | None = None
        self.check: dict[int, Predicate] | None = None


class _PathIndex:
    """Everything filed under one path."""

    __slots__ = (
        "buckets",
        "check_ranges",
        "first_ranges",
        "name",
        "numeric",
        "one_ranges",
        "path",
        "second_ranges",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        # The key of a one-part path (read with one dict lookup), else None.
        self.name = path[0] if len(path) == 1 else None
        self.buckets: dict[Any, _Postings] = {}
        self.one_ranges: IntervalIndex[Any] | None = None
        self.first_ranges: IntervalIndex[Any] | None = None
        self.second_ranges: IntervalIndex[Any] | None = None
        self.check_ranges: RangeIndex[Predicate] | None = None
        self.numeric = False

    def empty(self) -> bool:
        return not (
            self.buckets or self.one_ranges or self.first_ranges or self.second_ranges or self.check_ranges
        )

    def refresh(self) -> None:
        self.numeric = bool(self.one_ranges or self.first_ranges or self.second_ranges or self.check_ranges)


def _value_at(data: Mapping[str, Any], path: Path) -> Any:
    """The value at `path` as the matcher reads it, or _MISSING."""
    cur: Any = data
    for part in path:
        if not isinstance(cur, Mapping):
            return _MISSING
        cur = cur.get(part, _MISSING)
        if cur is _MISSING:
            return _MISSING
    return cur


# The posting roles of a conjunction's atoms, by its number of positive atoms.
_ROLES = {1: ("one",), 2: ("first", "second")}


class ModelIndex:
    """Subscriptions of one (application, model), filed for fast matching."""

    def __init__(self) -> None:
        self._whole: dict[int, Predicate] = {}
        self._by_object: dict[str, Bucket] = {}
        self._by_user: dict[str, Bucket] = {}
        self._paths: dict[Path, _PathIndex] = {}
        self._residual: dict[int, Predicate] = {}
        self._branches: set[Branch] = set()
        self._predicates: dict[tuple[str, str, FilterNode | None], Predicate] = {}
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

        Identical trees share one predicate. `matcher` (for tests) replaces the
        compiled matcher and forces the checked path. Re-adding an id replaces it.
        """
        if sub.id in self._sub_pred:
            self.remove(sub.id)
        key = (sub.object_id, sub.user_id, node)
        pred = self._predicates.get(key)
        if pred is None:
            pred = Predicate(
                key=key,
                object_id=sub.object_id,
                user_id=sub.user_id,
                node=node,
                matcher=matcher if node is not None else None,
                filtered=node is not None,
            )
            self._file(pred)
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

    def _path(self, path: Path) -> _PathIndex:
        pidx = self._paths.get(path)
        if pidx is None:
            pidx = self._paths[path] = _PathIndex(path)
        return pidx

    def _file(self, pred: Predicate) -> None:
        node = pred.node
        if pred.object_id:
            pred.filed = "object"
            pred.ensure_matcher()
            self._by_object.setdefault(pred.object_id, {})[id(pred)] = pred
            return
        if pred.user_id:
            pred.filed = "user"
            pred.ensure_matcher()
            self._by_user.setdefault(pred.user_id, {})[id(pred)] = pred
            return
        if node is None:
            pred.filed = "whole"
            self._whole[id(pred)] = pred
            return
        conjs = plain_conjunctions(node) if pred.matcher is None else None
        if conjs is not None:
            pred.filed = "plain"
            conjs = [self._order(c) for c in conjs]
            # Kept for removal, except a lone eq's (cheap to re-plan; saves memory).
            pred.plan = None if isinstance(node, Compare) and node.op == "eq" else conjs
            # The predicate is the token of all its conjunctions unless that could
            # mix them up: two 2-atom conjunctions (their atoms would pair across),
            # or a `ne` (it would exclude the other conjunctions' hits too).
            shared = len(conjs) <= 1 or (
                not any(c.negatives for c in conjs) and sum(len(c.positives) == 2 for c in conjs) <= 1
            )
            if not shared:
                pred.branches = tuple(
                    None if len(c.positives) == 1 and not c.negatives else Branch(pred) for c in conjs
                )
                self._branches.update(b for b in pred.branches if b is not None)
            for i, conj in enumerate(conjs):
                token = pred if shared else (pred.branches[i] or pred)
                self._post(conj, token, True)
            return
        pred.ensure_matcher()
        anchor = choose_anchor(node)
        if isinstance(anchor, ValueAnchor):
            pred.filed = "value"
            for path, vkey in anchor.pairs:
                postings = self._bucket(self._path(path), vkey)
                if postings.check is None:
                    postings.check = {}
                postings.check[id(pred)] = pred
        elif isinstance(anchor, RangeAnchor):
            pred.filed = "range"
            pidx = self._path(anchor.path)
            if pidx.check_ranges is None:
                pidx.check_ranges = RangeIndex()
            pidx.check_ranges.add(anchor.low, anchor.high, pred)
            pidx.refresh()
        else:
            pred.filed = "residual"
            self._residual[id(pred)] = pred

    def _order(self, conj: Conjunction) -> Conjunction:
        """A 2-atom conjunction with its likely rarer atom first (the primary: its
        hits are intersected with the secondary's). Only speed depends on it."""
        if len(conj.positives) != 2:
            return conj
        a, b = conj.positives
        if self._cost(b) < self._cost(a):
            return Conjunction((b, a), conj.negatives)
        return conj

    def _cost(self, atom: Atom) -> int:
        """How many tokens a hit on `atom` is expected to bring (a rough guess)."""
        if isinstance(atom, IntervalAtom):
            # A two-sided interval is taken as rarer than any eq (it usually is).
            return -1 if atom.low is not None and atom.high is not None else 1 << 30
        pidx = self._paths.get(atom.path)
        if pidx is None:
            return 0
        total = 0
        for key in atom.keys:
            postings = pidx.buckets.get(key)
            if postings is not None:
                total += len(postings.first or ()) + len(postings.second or ()) + len(postings.one or ())
        return total

    @staticmethod
    def _bucket(pidx: _PathIndex, key: Any) -> _Postings:
        postings = pidx.buckets.get(key)
        if postings is None:
            postings = pidx.buckets[key] = _Postings()
        return postings

    def _post(self, conj: Conjunction, token: Any, add: bool) -> None:
        """Post (or withdraw) one conjunction's token under each of its atoms."""
        roles = _ROLES[len(conj.positives)]
        for atom, role in zip(conj.positives, roles, strict=True):
            pidx = self._path(atom.path)
            if isinstance(atom, EqAtom):
                for key in atom.keys:
                    if add:
                        postings = self._bucket(pidx, key)
                        target: set[Any] | None = getattr(postings, role)
                        if target is None:
                            target = set()
                            setattr(postings, role, target)
                        target.add(token)
                        continue
                    # Removal never creates a bucket: two atoms of one filter may share a
                    # key (eq true, in [true, false]), and the first removal pruned it.
                    found = pidx.buckets.get(key)
                    if found is not None:
                        if (target := getattr(found, role)) is not None:
                            target.discard(token)
                        self._prune(pidx, key, found)
            else:
                attr = role + "_ranges"
                ranges: IntervalIndex[Any] | None = getattr(pidx, attr)
                bounds = (atom.low, atom.low_strict, atom.high, atom.high_strict)
                if add:
                    if ranges is None:
                        ranges = IntervalIndex()
                        setattr(pidx, attr, ranges)
                    ranges.add(*bounds, token)
                elif ranges is not None:
                    ranges.remove(*bounds, token)
                    if not ranges:
                        setattr(pidx, attr, None)
                pidx.refresh()
            if add or not pidx.buckets:
                self._drop_if_empty(pidx)
        for atom in conj.negatives:
            pidx = self._path(atom.path)
            for key in atom.keys:
                if add:
                    postings = self._bucket(pidx, key)
                    if postings.neg is None:
                        postings.neg = set()
                    postings.neg.add(token)
                elif (found := pidx.buckets.get(key)) is not None:
                    if found.neg is not None:
                        found.neg.discard(token)
                    self._prune(pidx, key, found)
            self._drop_if_empty(pidx)

    @staticmethod
    def _prune(pidx: _PathIndex, key: Any, postings: _Postings) -> None:
        if not postings.one:
            postings.one = None
        if not postings.first:
            postings.first = None
        if not postings.second:
            postings.second = None
        if not postings.neg:
            postings.neg = None
        if not postings.check:
            postings.check = None
        if not (postings.one or postings.first or postings.second or postings.neg or postings.check):
            del pidx.buckets[key]

    def _drop_if_empty(self, pidx: _PathIndex) -> None:
        if pidx.empty():
            self._paths.pop(pidx.path, None)

    def _unfile(self, pred: Predicate) -> None:
        filed, node = pred.filed, pred.node
        if filed == "object":
            self._drop(self._by_object, pred.object_id, pred)
        elif filed == "user":
            self._drop(self._by_user, pred.user_id, pred)
        elif filed == "whole":
            del self._whole[id(pred)]
        elif filed == "residual":
            del self._residual[id(pred)]
        elif filed == "plain":
            plan = pred.plan
            if plan is None:
                assert node is not None
                plan = plain_conjunctions(node)
                assert plan is not None
            for i, conj in enumerate(plan):
                branch = pred.branches[i] if pred.branches else None
                self._post(conj, branch or pred, False)
            if pred.branches:
                self._branches.difference_update(b for b in pred.branches if b is not None)
                pred.branches = ()
            pred.plan = None
        elif filed == "value":
            assert node is not None
            anchor = choose_anchor(node)
            assert isinstance(anchor, ValueAnchor)
            for path, vkey in anchor.pairs:
                pidx = self._paths[path]
                postings = pidx.buckets[vkey]
                assert postings.check is not None
                del postings.check[id(pred)]
                self._prune(pidx, vkey, postings)
                self._drop_if_empty(pidx)
        elif filed == "range":
            assert node is not None
            anchor = choose_anchor(node)
            assert isinstance(anchor, RangeAnchor)
            pidx = self._paths[anchor.path]
            assert pidx.check_ranges is not None
            pidx.check_ranges.remove(anchor.low, anchor.high, pred)
            if not len(pidx.check_ranges):
                pidx.check_ranges = None
            pidx.refresh()
            self._drop_if_empty(pidx)
        pred.filed = ""

    @staticmethod
    def _drop(container: dict[str, Bucket], ckey: str, pred: Predicate) -> None:
        bucket = container[ckey]
        del bucket[id(pred)]
        if not bucket:
            del container[ckey]

    # ------------------------------------------------------------------ matching

    def match(self, state: ObjectState) -> set[Predicate]:
        """Every predicate the object state satisfies."""
        out: set[Any] = set(self._whole.values()) if self._whole else set()
        bucket = self._by_object.get(state.object_id)
        if bucket:
            for pred in bucket.values():
                if pred.test(state):
                    out.add(pred)
        if state.owner_id:
            bucket = self._by_user.get(state.owner_id)
            if bucket:
                for pred in bucket.values():
                    if pred.test(state):
                        out.add(pred)
        data = state.data
        firsts: set[Any] | None = None
        seconds: list[set[Any]] = []
        negs: list[set[Any]] = []
        checks: list[Any] = []
        for pidx in self._paths.values():
            name = pidx.name
            value = data.get(name, _MISSING) if name is not None else _value_at(data, pidx.path)
            if value is _MISSING:
                continue
            t = type(value)
            buckets = pidx.buckets
            if buckets:
                if t is str or t is int:
                    postings = buckets.get(value)
                elif t is float:
                    postings = buckets.get(value) if value == value else None
                elif t is bool:
                    postings = buckets.get(_TRUE_KEY if value else _FALSE_KEY)
                else:
                    vkey = value_key(value)
                    postings = buckets.get(vkey) if vkey is not None else None
                if postings is not None:
                    if postings.one:
                        out |= postings.one
                    if postings.first:
                        if firsts is None:
                            firsts = set(postings.first)
                        else:
                            firsts |= postings.first
                    if postings.second:
                        seconds.append(postings.second)
                    if postings.neg:
                        negs.append(postings.neg)
                    if postings.check:
                        checks.append(postings.check.values())
            if pidx.numeric and (
                t is float or t is int or (isinstance(value, int | float) and not isinstance(value, bool))
            ):
                if pidx.one_ranges is not None:
                    pidx.one_ranges.stab_into(value, out)
                if pidx.first_ranges is not None:
                    if firsts is None:
                        firsts = set()
                    pidx.first_ranges.stab_into(value, firsts)
                if pidx.second_ranges is not None:
                    hits: set[Any] = set()
                    pidx.second_ranges.stab_into(value, hits)
                    if hits:
                        seconds.append(hits)
                if pidx.check_ranges is not None:
                    checks.append(pidx.check_ranges.stab(value))
        # A 2-atom token matches when its primary atom hit (firsts) and its
        # secondary atom hit (one of seconds).
        if firsts and seconds:
            for hits in seconds:
                out |= firsts & hits
        if negs:
            out.difference_update(*negs)
        if self._branches:
            found = out & self._branches
            if found:
                out -= found
                out.update(b.pred for b in found)
        if checks:
            for pred in chain.from_iterable(checks):
                if pred not in out and pred.matcher(data):
                    out.add(pred)
        if self._residual:
            for pred in self._residual.values():
                if pred.matcher(data):  # type: ignore[misc]
                    out.add(pred)
        return out
