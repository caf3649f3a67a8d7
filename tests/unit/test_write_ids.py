"""Write partitions and operation ids (pure)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from nexxus.core.operations import issued_at, new_operation_id, verify_operation_id
from nexxus.core.partitions import write_partition


def test_partition_is_stable_and_spreads() -> None:
    # Fixed values: the hash must never change between releases (queued commands).
    assert write_partition("app1", "task", "t1", 16) == write_partition("app1", "task", "t1", 16)
    assert [write_partition("a", "m", str(i), 16) for i in range(5)] == [
        write_partition("a", "m", str(i), 16) for i in range(5)
    ]
    assert write_partition("app1", "task", "t1", 1) == 0
    counts = Counter(write_partition("app", "task", f"o{i}", 8) for i in range(8000))
    assert set(counts) == set(range(8))
    assert min(counts.values()) > 800  # roughly even
    # The three ids are separated: ("a", "bc") and ("ab", "c") are different objects.
    keys = {write_partition(a, m, "x", 1024) for a, m in (("a", "bc"), ("ab", "c"))}
    assert len(keys) == 2
    with pytest.raises(ValueError, match="at least 1"):
        write_partition("a", "m", "o", 0)


def test_crc32_partition_values_are_pinned() -> None:
    import zlib

    assert write_partition("app1", "task", "t1", 16) == zlib.crc32(b"app1\x00task\x00t1") % 16


def test_operation_ids_verify_for_their_app_and_key_only() -> None:
    op = new_operation_id("app1", "secret")
    assert verify_operation_id("app1", op, "secret")
    assert not verify_operation_id("app2", op, "secret")
    assert not verify_operation_id("app1", op, "other-secret")
    assert not verify_operation_id("app1", op[:-1] + ("a" if op[-1] != "a" else "b"), "secret")
    assert not verify_operation_id("app1", "not-an-id", "secret")
    assert not verify_operation_id("app1", "", "secret")
    # Usable as a NATS subject token and as a client id.
    assert "." not in op
    assert " " not in op


def test_operation_id_carries_its_issue_time() -> None:
    op = new_operation_id("app1", "k")
    when = issued_at(op)
    assert when is not None
    assert abs(when - datetime.now(UTC)) < timedelta(seconds=5)
    assert issued_at("zz") is None
    assert issued_at("!" * 26) is None
