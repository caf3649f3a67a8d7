"""Paging of small in-memory lists by an opaque token (the last id seen)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from nexxus.core.errors import InvalidArgument

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def encode_token(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument("page_token is not a token this server issued", field="page_token") from exc


def page_of(
    items: Sequence[T], *, key: Callable[[T], str], page_size: int, page_token: str
) -> tuple[list[T], str]:
    """Items sorted by `key`, after the token's key, at most `page_size`, and the next token."""
    size = page_size or DEFAULT_PAGE_SIZE
    if not 0 < size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be 1..{MAX_PAGE_SIZE}", field="page_size")
    after = decode_token(page_token) if page_token else None
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [i for i in ordered if key(i) > after]
    page = ordered[:size]
    token = encode_token(key(page[-1])) if len(ordered) > size else ""
    return page, token
