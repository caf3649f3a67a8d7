"""A small stabbing index for numeric range anchors (the residual list's helper).

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

__all__ = ["RangeIndex"]

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
