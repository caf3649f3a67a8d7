"""Small helpers shared by the Redis store modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import exceptions as redis_errors

from nexxus.core.errors import Unavailable

__all__ = ["store_down", "text", "translate"]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def store_down(internal: str) -> Unavailable:
    """The client's view of a store failure; the details go to the operator's log only."""
    return Unavailable(
        "the subscription store is unavailable; retry later", reason="STORE_UNAVAILABLE", internal=internal
    )


@contextlib.contextmanager
def translate(what: str) -> Iterator[None]:
    """Redis errors → Unavailable (driver errors never leave the adapter)."""
    try:
        yield
    except redis_errors.RedisError as exc:
        raise store_down(f"redis: cannot {what}: {exc!r}") from exc
