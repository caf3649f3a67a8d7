"""A tiny bounded in-process TTL cache (no I/O, not thread-safe: one event loop)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries expire `ttl` seconds after they were stored. When `max_size` is
    reached the oldest entry is evicted (insertion order)."""

    def __init__(
        self, ttl: float, *, max_size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, value) for a fresh entry, else (False, None)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return False, None
        return True, value

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self._clock() + self.ttl, value)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def discard_where(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
