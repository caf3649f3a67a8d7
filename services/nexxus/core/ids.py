"""Identifiers: time-ordered, URL-safe, 26-character ULIDs (Crockford base32)."""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def new_id() -> str:
    """A new ULID: 48 bits of milliseconds then 80 random bits; sorts by creation time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def is_valid_id(value: str) -> bool:
    """Client-chosen ids: 1-128 chars of letters, digits and _ . : - (not starting with a symbol)."""
    return bool(_ID_RE.match(value))
