"""Operation ids the api can recognize as its own.

A write's operation id (= its command id, its event id) is a ULID followed by a
short HMAC of (application, ULID) under the deployment's signing key:
``01jd…x3-k7d2m9q4pz``. The api hands it out only after the command is stored
on the write queue, so an id that carries a valid tag and has no operation
record yet names an accepted write that is still PENDING — never "unknown",
whatever the writer is doing. The ULID's time tells when the record would have
been trimmed by the operations retention.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from nexxus.core.ids import new_id

__all__ = ["issued_at", "new_operation_id", "verify_operation_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_TAG_CHARS = 12  # 60 bits


def _tag(app_id: str, ulid: str, key: str) -> str:
    digest = hmac.new(key.encode(), f"{app_id}/{ulid}".encode(), hashlib.sha256).digest()
    value = int.from_bytes(digest[:8], "big")
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in range(_TAG_CHARS))


def new_operation_id(app_id: str, key: str) -> str:
    ulid = new_id()
    return f"{ulid}-{_tag(app_id, ulid, key)}"


def verify_operation_id(app_id: str, operation_id: str, key: str) -> bool:
    """True when an api of this deployment issued `operation_id` for `app_id`."""
    ulid, _, tag = operation_id.partition("-")
    if len(ulid) != 26 or len(tag) != _TAG_CHARS:
        return False
    return hmac.compare_digest(tag, _tag(app_id, ulid, key))


def issued_at(operation_id: str) -> datetime | None:
    """The time in the id's ULID (None when it is not a ULID)."""
    ulid = operation_id.partition("-")[0].lower()
    if len(ulid) != 26:
        return None
    value = 0
    for ch in ulid[:10]:
        index = _ALPHABET.find(ch)
        if index < 0:
            return None
        value = value * 32 + index
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None
