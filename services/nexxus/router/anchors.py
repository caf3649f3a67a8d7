"""Choosing where a filtered subscription is filed in the match index.

An *anchor* is a cheap necessary condition of a filter: if the filter matches an
object, the object satisfies the anchor. Two kinds:

- a value anchor: a set of (path, key) pairs, at least one of which holds
  (`eq` → one pair, `in` → one per value, `or` of value-anchored children →
  the union, `and` → the child with the fewest pairs);
- a range anchor: an interval on one numeric path, from the `gt`/`gte`/`lt`/`lte`
  conjuncts of that path in the top-level conjunction.

Keys are normalised (`value_key`) so that the index agrees with the matcher's
equality: 2 and 2.0 collide, True never collides with 1, strings compare exactly.
Only fields whose kind compares by plain value (`EXACT_KINDS`) are anchored;
anything else (timestamps, unknown kinds) stays in the residual list, where the
compiled matcher decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from nexxus.core.filterquery import And, Compare, FilterNode, In, Or

__all__ = [
    "EXACT_KINDS",
    "NUMERIC_KINDS",
    "Anchor",
    "RangeAnchor",
    "ValueAnchor",
    "choose_anchor",
    "value_key",
]

# Field kinds whose `eq` is plain Python equality on JSON scalars.
EXACT_KINDS = frozenset({"string", "integer", "number", "boolean"})
NUMERIC_KINDS = frozenset({"integer", "number"})

Path = tuple[str, ...]


class _BoolTag:
    """Wraps booleans in keys so that True never collides with 1."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "bool"


_BOOL = _BoolTag()


def value_key(value: Any) -> Any | None:
    """The hashable index key of a scalar, or None when it cannot be indexed.

    int and float keys collide when equal (Python's own hash/eq rule), which is
    the matcher's cross-number equality; booleans are tagged apart.
    """
    if value is True or value is False:
        return (_BOOL, value)
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return None


_KIND_NAMES: dict[Any, str] = {}


def kind_name(kind: Any) -> str:
    """The lower-case name of a FieldKind (an enum member or a plain string)."""
    name = _KIND_NAMES.get(kind)
    if name is None:
        name = str(getattr(kind, "value", kind)).lower()
        if len(_KIND_NAMES) < 64:
            _KIND_NAMES[kind] = name
    return name


@dataclass(frozen=True, slots=True)
class ValueAnchor:
    # (path, normalised key) pairs; the filter implies at least one holds.
    pairs: tuple[tuple[Path, Any], ...]
    # True when the filter is *exactly* the disjunction of its pairs, so a hit
    # on a scalar data value needs no matcher call.
    exact: bool


@dataclass(frozen=True, slots=True)
class RangeAnchor:
    path: Path
    # None = unbounded on that side. Bounds are inclusive here (a superset);
    # the matcher applies strictness.
    low: float | int | None
    high: float | int | None


Anchor = ValueAnchor | RangeAnchor


def _conjuncts(node: FilterNode) -> list[FilterNode]:
    """The flattened top-level conjunction (single-child or's count as their child)."""
    if isinstance(node, And):
        out: list[FilterNode] = []
        for child in node.children:
            out.extend(_conjuncts(child))
        return out
    if isinstance(node, Or) and len(node.children) == 1:
        return _conjuncts(node.children[0])
    return [node]


def _value_anchor(node: FilterNode) -> ValueAnchor | None:
    if isinstance(node, Compare):
        if node.op != "eq" or kind_name(node.kind) not in EXACT_KINDS:
            return None
        key = value_key(node.value)
        return None if key is None else ValueAnchor(((tuple(node.path), key),), True)
    if isinstance(node, In):
        if kind_name(node.kind) not in EXACT_KINDS:
            return None
        keys = [value_key(v) for v in node.values]
        if any(k is None for k in keys):
            return None
        pairs = tuple(dict.fromkeys((tuple(node.path), k) for k in keys))
        return ValueAnchor(pairs, True)
    if isinstance(node, Or):
        union: list[tuple[Path, Any]] = []
        exact = True
        for child in node.children:
            sub = _value_anchor(child)
            if sub is None:
                return None
            union.extend(sub.pairs)
            exact = exact and sub.exact
        if not union:
            return None
        return ValueAnchor(tuple(dict.fromkeys(union)), exact)
    if isinstance(node, And):
        parts = _conjuncts(node)
        best: ValueAnchor | None = None
        for child in parts:
            sub = _value_anchor(child)
            if sub is not None and (best is None or len(sub.pairs) < len(best.pairs)):
                best = sub
        if best is None:
            return None
        return ValueAnchor(best.pairs, best.exact and len(parts) == 1)
    return None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def _range_anchor(parts: list[FilterNode]) -> RangeAnchor | None:
    bounds: dict[Path, list[Any]] = {}
    for node in parts:
        if not isinstance(node, Compare) or node.op not in ("gt", "gte", "lt", "lte"):
            continue
        if kind_name(node.kind) not in NUMERIC_KINDS or not _is_number(node.value):
            continue
        lo_hi = bounds.setdefault(tuple(node.path), [None, None])
        if node.op in ("gt", "gte"):
            lo_hi[0] = node.value if lo_hi[0] is None else max(lo_hi[0], node.value)
        else:
            lo_hi[1] = node.value if lo_hi[1] is None else min(lo_hi[1], node.value)
    best: RangeAnchor | None = None
    for path, (low, high) in bounds.items():
        if low is not None and high is not None and low > high:
            continue  # unsatisfiable: the residual matcher answers False
        cand = RangeAnchor(path, low, high)
        if best is None or ((best.low is None or best.high is None) and low is not None and high is not None):
            best = cand
    return best


def choose_anchor(node: FilterNode) -> Anchor | None:
    """The anchor of a filter: a value anchor when there is one (fewest pairs),
    else a range anchor (two-sided preferred), else None (residual)."""
    value = _value_anchor(node)
    if value is not None:
        return value
    return _range_anchor(_conjuncts(node))


# ---------------------------------------------------------------------- plain conjunctions
#
# Most filters are an OR of conjunctions of simple conditions. Those are filed
# so that a match is decided by set operations alone (index.py): each positive
# condition ("atom") posts the filter's token under its keys or its interval,
# a conjunction of one atom is proven by one hit, one of two atoms by a hit in
# both postings, and a `ne` excludes the token when its key is hit.

# The most conjunctions a filter is expanded into (its DNF); beyond, it is checked.
MAX_CONJUNCTIONS = 8

Number = int | float


class EqAtom(NamedTuple):
    """The value at `path` has one of `keys` (normalised with `value_key`)."""

    path: Path
    keys: tuple[Any, ...]


class IntervalAtom(NamedTuple):
    """The number at `path` is in the interval (None: unbounded on that side)."""

    path: Path
    low: Number | None
    low_strict: bool
    high: Number | None
    high_strict: bool


Atom = EqAtom | IntervalAtom


class Conjunction(NamedTuple):
    """All `positives` hold (one or two atoms, on distinct paths) and no `negatives` does."""

    positives: tuple[Atom, ...]
    negatives: tuple[EqAtom, ...]


class _NotPlain(Exception):
    pass


def _dnf(node: FilterNode) -> list[list[Compare | In]]:
    if isinstance(node, Compare | In):
        return [[node]]
    if isinstance(node, Or):
        out: list[list[Compare | In]] = []
        for child in node.children:
            out.extend(_dnf(child))
            if len(out) > MAX_CONJUNCTIONS:
                raise _NotPlain
        return out
    acc: list[list[Compare | In]] = [[]]
    for child in node.children:
        branches = _dnf(child)
        if len(acc) * len(branches) > MAX_CONJUNCTIONS:
            raise _NotPlain
        acc = [a + b for a in acc for b in branches]
    return acc


def _key_of(kind: Any, value: Any) -> Any:
    if value is None or kind_name(kind) not in EXACT_KINDS:
        raise _NotPlain
    key = value_key(value)
    if key is None:
        raise _NotPlain
    return key


def _conjunction(leaves: list[Compare | In]) -> Conjunction | None:
    """The conjunction of these leaves; None when it can never hold."""
    keys: dict[Path, dict[Any, None]] = {}
    bounds: dict[Path, list[Any]] = {}  # low, low_strict, high, high_strict
    negatives: dict[Path, dict[Any, None]] = {}
    for leaf in leaves:
        path = tuple(leaf.path)
        if isinstance(leaf, In):
            got = dict.fromkeys(_key_of(leaf.kind, v) for v in leaf.values)
        elif leaf.op == "eq":
            got = {_key_of(leaf.kind, leaf.value): None}
        elif leaf.op == "ne":
            negatives.setdefault(path, {})[_key_of(leaf.kind, leaf.value)] = None
            continue
        else:
            if kind_name(leaf.kind) not in NUMERIC_KINDS or not _is_number(leaf.value):
                raise _NotPlain
            b = bounds.setdefault(path, [None, False, None, False])
            v, strict = leaf.value, leaf.op in ("gt", "lt")
            if leaf.op in ("gt", "gte"):
                if b[0] is None or v > b[0] or (v == b[0] and strict):
                    b[0], b[1] = v, strict
            elif b[2] is None or v < b[2] or (v == b[2] and strict):
                b[2], b[3] = v, strict
            continue
        prev = keys.get(path)
        keys[path] = got if prev is None else {k: None for k in prev if k in got}
    if any(path in bounds for path in keys):
        raise _NotPlain  # eq and a range on one path: left to the matcher
    positives: list[Atom] = []
    for path, ks in keys.items():
        if not ks:
            return None
        positives.append(EqAtom(path, tuple(ks)))
    for path, (low, low_strict, high, high_strict) in bounds.items():
        if (
            low is not None
            and high is not None
            and (low > high or (low == high and (low_strict or high_strict)))
        ):
            return None
        positives.append(IntervalAtom(path, low, low_strict, high, high_strict))
    if not 1 <= len(positives) <= 2:
        raise _NotPlain
    return Conjunction(tuple(positives), tuple(EqAtom(p, tuple(ks)) for p, ks in negatives.items()))


def plain_conjunctions(node: FilterNode) -> list[Conjunction] | None:
    """The filter as an OR of plain conjunctions (unsatisfiable ones dropped, so
    the list may be empty), or None when some part needs the matcher: a
    conjunction without a positive eq / in / numeric range, or with three or
    more, null comparisons, timestamps, eq and a range on one path, or a DNF of
    more than MAX_CONJUNCTIONS conjunctions."""
    try:
        if isinstance(node, Compare) and node.op == "eq":  # the common case, fast
            return [Conjunction((EqAtom(tuple(node.path), (_key_of(node.kind, node.value),)),), ())]
        out = [c for c in map(_conjunction, _dnf(node)) if c is not None]
    except _NotPlain:
        return None
    return out if len(out) < 2 else list(dict.fromkeys(out))
