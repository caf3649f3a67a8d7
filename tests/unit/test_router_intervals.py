"""The exact interval index (ranges.IntervalIndex) and the plain-conjunction
plans (anchors.plain_conjunctions) the router's index is built on."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nexxus.core.filterquery import And, Compare, In, Or
from nexxus.core.schema import FieldKind
from nexxus.router.anchors import Conjunction, EqAtom, IntervalAtom, plain_conjunctions, value_key
from nexxus.router.ranges import IntervalIndex

S = FieldKind.STRING
N = FieldKind.NUMBER

# Bounds and values: small integers (ties with strict / inclusive bounds), floats
# of every magnitude (bucket levels from 2**-1070 to 2**1020), huge integers.
NUMBERS = st.one_of(
    st.integers(-12, 12),
    st.sampled_from(
        [0.0, -0.0, 0.5, -0.5, 2.75, 1e-300, -1e-300, 5e-324, 1e300, -1e300, 2.0**53, 2.0**53 + 2]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-100, 100, allow_nan=False),
    st.integers(-(2**70), 2**70),
)
VALUES = st.one_of(NUMBERS, st.sampled_from([math.inf, -math.inf, math.nan, 2**53 + 1, -(2**60) - 1]))
Bound = tuple[Any, bool]
INTERVALS = st.tuples(
    st.one_of(st.none(), st.tuples(NUMBERS, st.booleans())),
    st.one_of(st.none(), st.tuples(NUMBERS, st.booleans())),
).filter(lambda lh: lh != (None, None))


def _contains(low: Bound | None, high: Bound | None, v: Any) -> bool:
    if low is not None and not (low[0] < v or (low[0] == v and not low[1])):
        return False
    return high is None or high[0] > v or (high[0] == v and not high[1])


def _args(low: Bound | None, high: Bound | None) -> tuple[Any, bool, Any, bool]:
    lo, lo_strict = low if low is not None else (None, False)
    hi, hi_strict = high if high is not None else (None, False)
    return lo, lo_strict, hi, hi_strict


@settings(max_examples=400, deadline=None)
@given(
    items=st.lists(INTERVALS, max_size=40),
    drop=st.sets(st.integers(0, 39), max_size=15),
    values=st.lists(VALUES, min_size=1, max_size=8),
)
def test_interval_index_stabs_exactly_the_containing_intervals(
    items: list[tuple[Bound | None, Bound | None]], drop: set[int], values: list[Any]
) -> None:
    index: IntervalIndex[int] = IntervalIndex()
    for i, (low, high) in enumerate(items):
        index.add(*_args(low, high), i)
    drop = {i for i in drop if i < len(items)}
    for i in drop:
        assert index.remove(*_args(*items[i]), i)
        assert not index.remove(*_args(*items[i]), i)
    assert len(index) == len(items) - len(drop)
    for v in values:
        got: set[int] = set()
        index.stab_into(v, got)
        want = {i for i, (low, high) in enumerate(items) if i not in drop and _contains(low, high, v)}
        assert got == want, v
    for i, (low, high) in enumerate(items):
        if i not in drop:
            assert index.remove(*_args(low, high), i)
    assert len(index) == 0
    assert not index._levels
    assert not index._narrow


def test_interval_index_bounds_and_strictness() -> None:
    index: IntervalIndex[str] = IntervalIndex()
    index.add(1, False, 5, True, "[1,5)")
    index.add(1, True, 5, False, "(1,5]")
    index.add(2.5, False, None, False, "[2.5,inf)")
    index.add(None, False, 0.5, True, "(-inf,0.5)")
    index.add(3, False, 3, False, "[3,3]")

    def stab(v: Any) -> set[str]:
        out: set[str] = set()
        index.stab_into(v, out)
        return out

    assert stab(1) == {"[1,5)"}
    assert stab(1.0000001) == {"[1,5)", "(1,5]"}
    assert stab(3) == {"[1,5)", "(1,5]", "[2.5,inf)", "[3,3]"}
    assert stab(5) == {"(1,5]", "[2.5,inf)"}
    assert stab(0.5) == set()
    assert stab(-1e308) == {"(-inf,0.5)"}
    assert stab(math.inf) == {"[2.5,inf)"}
    assert stab(math.nan) == set()


def test_one_item_with_two_intervals_over_the_same_cells_is_removed_one_at_a_time() -> None:
    """An item may file several intervals (the branches of an `or` on one field): each
    removal takes away one of them, the other still matches, the second leaves nothing."""
    index: IntervalIndex[str] = IntervalIndex()
    for high in (1_000_000.0, 1_000_000.5):
        index.add(0, True, high, False, "p")

    def stab(v: Any) -> set[str]:
        out: set[str] = set()
        index.stab_into(v, out)
        return out

    assert stab(500_000) == {"p"}
    assert index.remove(0, True, 1_000_000.0, False, "p")
    assert stab(500_000) == {"p"}
    assert stab(1_000_000.25) == {"p"}
    assert index.remove(0, True, 1_000_000.5, False, "p")
    assert stab(500_000) == set()
    assert len(index) == 0


def test_plain_conjunctions_shapes() -> None:
    eq = Compare(("a",), "eq", "x", S)
    rng = And((Compare(("n",), "gte", 1, N), Compare(("n",), "lt", 4.5, N)))
    ne = Compare(("b",), "ne", "y", S)
    assert plain_conjunctions(eq) == [Conjunction((EqAtom(("a",), ("x",)),), ())]
    assert plain_conjunctions(In(("a",), ("x", "y", "x"), S)) == [
        Conjunction((EqAtom(("a",), ("x", "y")),), ())
    ]
    assert plain_conjunctions(And((eq, rng, ne))) == [
        Conjunction(
            (EqAtom(("a",), ("x",)), IntervalAtom(("n",), 1, False, 4.5, True)), (EqAtom(("b",), ("y",)),)
        )
    ]
    # eq and in on one path intersect; an empty intersection never matches.
    assert plain_conjunctions(And((eq, In(("a",), ("x", "z"), S)))) == [
        Conjunction((EqAtom(("a",), ("x",)),), ())
    ]
    assert plain_conjunctions(And((eq, Compare(("a",), "eq", "z", S)))) == []
    assert plain_conjunctions(And((Compare(("n",), "gt", 3, N), Compare(("n",), "lt", 3, N)))) == []
    # OR distributes over AND.
    got = plain_conjunctions(And((Or((eq, Compare(("c",), "eq", 1, N))), Compare(("d",), "eq", 2, N))))
    assert got is not None
    assert len(got) == 2
    # Left to the matcher: no positive atom, three atoms, null, timestamps, eq + range on one path.
    assert plain_conjunctions(ne) is None
    three = And((eq, Compare(("c",), "eq", 1, N), Compare(("d",), "eq", 2, N)))
    assert plain_conjunctions(three) is None
    assert plain_conjunctions(Compare(("a",), "eq", None, S)) is None
    assert (
        plain_conjunctions(Compare(("t",), "eq", "2024-01-01T00:00:00.000000Z", FieldKind.DATETIME)) is None
    )
    assert plain_conjunctions(And((Compare(("n",), "eq", 2, N), Compare(("n",), "gt", 1, N)))) is None
    assert value_key(True) not in {value_key(1)}
