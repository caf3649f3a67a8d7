"""Small helpers shared by the Redis store modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import exceptions as redis_errors

from nexxus.core.errors import Unavailable

__all__ = ["text", "translate"]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def translate(what: str) -> Iterator[None]:
    """Redis errors → Unavailable (driver errors never leave the adapter)."""
    try:
        yield
    except redis_errors.RedisError as exc:
        raise Unavailable(f"redis: cannot {what}: {exc!r}") from exc
