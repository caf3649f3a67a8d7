"""Interval indexes on one numeric field.

`IntervalIndex` (below) is exact and serves plain filters. `RangeIndex` is a
small stabbing index for the range *anchors* of checked filters:

Three sorted lists per field path:

- lower-only intervals ``[low, +inf)`` sorted by low: a value v hits the prefix
  with ``low <= v``;
- upper-only intervals ``(-inf, high]`` sorted by high: the suffix with ``high >= v``;
- two-sided intervals sorted by low, with ``max_width`` the widest interval seen:
  only those with ``v - max_width <= low <= v`` can contain v.

Candidates are a superset (bounds are treated as inclusive); the caller's
matcher decides. Insert and remove are a bisect plus a list shift (O(n) memmove,
microseconds at 100k).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["IntervalIndex", "RangeIndex"]

T = TypeVar("T")
Number = int | float


class _SortedBucket(Generic[T]):
    __slots__ = ("items", "keys")

    def __init__(self) -> None:
        self.keys: list[Number] = []
        self.items: list[T] = []

    def insert(self, key: Number, item: T) -> None:
        i = bisect_right(self.keys, key)
        self.keys.insert(i, key)
        self.items.insert(i, item)

    def remove(self, key: Number, item: T) -> bool:
        i = bisect_left(self.keys, key)
        n = len(self.keys)
        while i < n and self.keys[i] == key:
            if self.items[i] is item:
                del self.keys[i]
                del self.items[i]
                return True
            i += 1
        return False

    def __len__(self) -> int:
        return len(self.keys)


class RangeIndex(Generic[T]):
    """Intervals on one numeric field, each holding an item (a predicate group)."""

    __slots__ = ("_both", "_lower", "_max_width", "_upper")

    def __init__(self) -> None:
        self._lower: _SortedBucket[T] = _SortedBucket()
        self._upper: _SortedBucket[T] = _SortedBucket()
        self._both: _SortedBucket[T] = _SortedBucket()
        self._max_width: Number = 0

    def add(self, low: Number | None, high: Number | None, item: T) -> None:
        if low is None and high is None:
            raise ValueError("a range needs at least one bound")
        if high is None:
            assert low is not None
            self._lower.insert(low, item)
        elif low is None:
            self._upper.insert(high, item)
        else:
            self._both.insert(low, item)
            self._max_width = max(self._max_width, high - low)

    def remove(self, low: Number | None, high: Number | None, item: T) -> bool:
        if high is None:
            assert low is not None
            return self._lower.remove(low, item)
        if low is None:
            return self._upper.remove(high, item)
        done = self._both.remove(low, item)
        if not self._both:
            self._max_width = 0
        return done

    def __len__(self) -> int:
        return len(self._lower) + len(self._upper) + len(self._both)

    def stab(self, value: Number) -> Iterator[T]:
        """Items whose interval may contain `value` (a superset)."""
        if isinstance(value, float) and math.isnan(value):
            return
        lower = self._lower
        if lower.keys:
            yield from lower.items[: bisect_right(lower.keys, value)]
        upper = self._upper
        if upper.keys:
            yield from upper.items[bisect_left(upper.keys, value) :]
        both = self._both
        if both.keys:
            lo = bisect_left(both.keys, value - self._max_width)
            hi = bisect_right(both.keys, value)
            yield from both.items[lo:hi]


# ---------------------------------------------------------------------- exact intervals


def _bucket_of(value: Number, level: int) -> int | None:
    """floor(value / 2**level), exactly; None when it does not fit (inf, overflow)."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value >> level if level >= 0 else value << -level
    try:
        scaled = math.ldexp(value, -level)
    except OverflowError:
        return None
    if not math.isfinite(scaled):
        return None
    if scaled == 0 and value < 0:
        return -1  # underflowed: the exact quotient is a tiny negative number
    return math.floor(scaled)


class _Edges(Generic[T]):
    """Interval ends sorted by value, each inclusive or strict."""

    __slots__ = ("items", "keys", "strict")

    def __init__(self) -> None:
        self.keys: list[Number] = []
        self.items: list[T] = []
        self.strict: list[bool] = []

    def insert(self, key: Number, strict: bool, item: T) -> None:
        i = bisect_right(self.keys, key)
        self.keys.insert(i, key)
        self.items.insert(i, item)
        self.strict.insert(i, strict)

    def remove(self, key: Number, strict: bool, item: T) -> bool:
        keys = self.keys
        i = bisect_left(keys, key)
        while i < len(keys) and keys[i] == key:
            if self.items[i] is item and self.strict[i] == strict:
                del keys[i], self.items[i], self.strict[i]
                return True
            i += 1
        return False

    def starts_into(self, value: Number, out: set[T]) -> None:
        """Items whose start (low) admits `value`: low < value, or low == value inclusive."""
        keys = self.keys
        i = bisect_left(keys, value)
        if i:
            out.update(self.items[:i])
        n = len(keys)
        while i < n and keys[i] == value:
            if not self.strict[i]:
                out.add(self.items[i])
            i += 1

    def ends_into(self, value: Number, out: set[T]) -> None:
        """Items whose end (high) admits `value`: high > value, or high == value inclusive."""
        keys = self.keys
        j = bisect_right(keys, value)
        if j < len(keys):
            out.update(self.items[j:])
        j -= 1
        while j >= 0 and keys[j] == value:
            if not self.strict[j]:
                out.add(self.items[j])
            j -= 1

    def __len__(self) -> int:
        return len(self.keys)


class _Cell(Generic[T]):
    """One bucket of one level: intervals starting in it, ending in it, covering it
    (None when there are none)."""

    __slots__ = ("ends", "full", "starts")

    def __init__(self) -> None:
        self.starts: _Edges[T] | None = None
        self.ends: _Edges[T] | None = None
        # item → how many of its intervals cover the whole cell (one item may file
        # several intervals, e.g. the branches of an `or` on one field)
        self.full: dict[T, int] | None = None


# A two-sided interval of width w sits on the level k (a multiple of _LEVEL_STEP)
# with 4 * 2**k <= w < 16 * 2**k, whose buckets are 2**k wide: it starts in one
# bucket, ends in another and covers the 3..15 buckets between them. A value
# looks up one bucket per level in use: widths spanning a factor of 16 share one.
_MIN_SPAN = 2
_LEVEL_STEP = 2


class IntervalIndex(Generic[T]):
    """Exact stabbing of intervals on one numeric field.

    `stab_into(v, out)` adds every item whose interval contains v, with each
    bound's strictness applied, and nothing else, so no matcher call is needed:

    - lower-only intervals: one sorted list of lows (a prefix hits);
    - upper-only intervals: one sorted list of highs (a suffix hits);
    - two-sided intervals: bucketed per width level (see `_MIN_SPAN`); a value
      looks up one bucket per level in use, adds that bucket's covering set and
      the matching prefix / suffix of the intervals starting / ending in it;
    - degenerate ones (zero width, or beyond the levels' exact range): a list
      compared one by one.

    Add and remove cost a bisect and a few set operations.
    """

    __slots__ = ("_levels", "_lower", "_narrow", "_scales", "_size", "_upper")

    def __init__(self) -> None:
        self._lower: _Edges[T] = _Edges()
        self._upper: _Edges[T] = _Edges()
        self._levels: dict[int, dict[int, _Cell[T]]] = {}
        # level → 2**-level (multiplying a float by it is exact, barring over/underflow)
        self._scales: dict[int, float] = {}
        self._narrow: list[tuple[Number, bool, Number, bool, T]] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @staticmethod
    def _place(low: Number, high: Number) -> tuple[int, int, int] | None:
        width = high - low
        if not width > 0 or not math.isfinite(width):
            return None
        try:
            # 2**(level + 2) <= width < 2**(level + 2 + _LEVEL_STEP)
            level = (math.frexp(width)[1] - 1 - _MIN_SPAN) // _LEVEL_STEP * _LEVEL_STEP
        except OverflowError:
            return None
        if level < -1000:
            return None  # a subnormal width: its scale 2**-level would overflow
        first, last = _bucket_of(low, level), _bucket_of(high, level)
        if first is None or last is None or abs(first) > 2**62 or abs(last) > 2**62:
            return None
        return level, first, last

    def add(
        self, low: Number | None, low_strict: bool, high: Number | None, high_strict: bool, item: T
    ) -> None:
        self._apply(low, low_strict, high, high_strict, item, True)
        self._size += 1

    def remove(
        self, low: Number | None, low_strict: bool, high: Number | None, high_strict: bool, item: T
    ) -> bool:
        done = self._apply(low, low_strict, high, high_strict, item, False)
        if done:
            self._size -= 1
        return done

    def _apply(
        self, low: Number | None, low_strict: bool, high: Number | None, high_strict: bool, item: T, add: bool
    ) -> bool:
        if low is None and high is None:
            raise ValueError("an interval needs at least one bound")
        if high is None:
            assert low is not None
            if add:
                self._lower.insert(low, low_strict, item)
                return True
            return self._lower.remove(low, low_strict, item)
        if low is None:
            if add:
                self._upper.insert(high, high_strict, item)
                return True
            return self._upper.remove(high, high_strict, item)
        spot = self._place(low, high)
        if spot is None:
            entry = (low, low_strict, high, high_strict, item)
            if add:
                self._narrow.append(entry)
                return True
            for i, other in enumerate(self._narrow):
                if other[4] is item and other[:4] == entry[:4]:
                    del self._narrow[i]
                    return True
            return False
        level, first, last = spot
        cells = self._levels.get(level)
        if cells is None:
            if not add:
                return False
            cells = self._levels[level] = {}
            self._scales[level] = math.ldexp(1.0, -level)
        if add:
            cell = cells.get(first) or cells.setdefault(first, _Cell())
            if cell.starts is None:
                cell.starts = _Edges()
            cell.starts.insert(low, low_strict, item)
            cell = cells.get(last) or cells.setdefault(last, _Cell())
            if cell.ends is None:
                cell.ends = _Edges()
            cell.ends.insert(high, high_strict, item)
            for j in range(first + 1, last):
                mid = cells.get(j) or cells.setdefault(j, _Cell())
                if mid.full is None:
                    mid.full = {}
                mid.full[item] = mid.full.get(item, 0) + 1
            return True
        head = cells.get(first)
        if head is None or head.starts is None or not head.starts.remove(low, low_strict, item):
            return False
        if not head.starts.keys:
            head.starts = None
        tail = cells[last]
        assert tail.ends is not None
        tail.ends.remove(high, high_strict, item)
        if not tail.ends.keys:
            tail.ends = None
        for j in range(first + 1, last):
            mid = cells[j]
            full = mid.full
            assert full is not None
            if full[item] > 1:
                full[item] -= 1
            else:
                del full[item]
            if not full:
                mid.full = None
                if mid.starts is None and mid.ends is None:
                    del cells[j]
        if head.starts is None and head.ends is None and head.full is None:
            del cells[first]
        if tail.starts is None and tail.ends is None and tail.full is None:
            del cells[last]
        if not cells:
            del self._levels[level]
            del self._scales[level]
        return True

    def stab_into(self, value: Number, out: set[T]) -> None:
        """Add to `out` every item whose interval contains `value` (int or float, not bool)."""
        if value != value:  # NaN is in no interval
            return
        if self._lower.keys:
            self._lower.starts_into(value, out)
        if self._upper.keys:
            self._upper.ends_into(value, out)
        if self._levels:
            self._stab_levels(value, out)
        for low, low_strict, high, high_strict, item in self._narrow:
            if (low < value or (low == value and not low_strict)) and (
                value < high or (value == high and not high_strict)
            ):
                out.add(item)

    def _stab_levels(self, value: Number, out: set[T]) -> None:
        if type(value) is int:
            shifted = True
        elif -math.inf < value < math.inf:
            shifted = False
        else:
            return  # ±inf: in no two-sided interval
        scales = self._scales
        for level, cells in self._levels.items():
            if shifted:
                j = value >> level if level >= 0 else value << -level  # type: ignore[operator]
            else:
                x = value * scales[level]
                try:
                    j = math.floor(x)
                except OverflowError:
                    continue  # far beyond every bucket of this level
                if x == 0 and value < 0:
                    j = -1  # underflowed: the exact quotient is a tiny negative number
            cell = cells.get(j)
            if cell is None:
                continue
            if cell.full:
                out.update(cell.full)
            starts = cell.starts
            if starts is not None:
                keys = starts.keys
                i = bisect_left(keys, value)
                if i:
                    out.update(starts.items[:i])
                if i < len(keys) and keys[i] == value:
                    starts.starts_into(value, out)
            ends = cell.ends
            if ends is not None:
                keys = ends.keys
                i = bisect_right(keys, value)
                if i < len(keys):
                    out.update(ends.items[i:])
                if i and keys[i - 1] == value:
                    ends.ends_into(value, out)
