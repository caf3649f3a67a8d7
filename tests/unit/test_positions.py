"""Positions (`<epoch>.<sequence>`) and a connection's position bookkeeping:
holding live events while a stream catches up, de-duplication by position and
by snapshot version."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nexxus.core.errors import InvalidArgument
from nexxus.core.positions import HistoryBounds, Position, epoch_of, parse_position
from nexxus.transport.connection import PROTO, ConnectionClosed, QueuedConnection
from nexxus.v1 import events_pb2


def test_positions_round_trip_and_reject_garbage() -> None:
    pos = parse_position("k3x9c2.1042")
    assert pos == Position("k3x9c2", 1042)
    assert str(pos) == "k3x9c2.1042"
    for bad in ("", "1042", "k3x9c2.", ".5", "k3.x9.-1", "K3X.5", "ab.1e3"):
        with pytest.raises(InvalidArgument) as info:
            parse_position(bad, field="resume_from")
        assert info.value.field == "resume_from"
        assert info.value.reason == "BAD_POSITION"


def test_epochs_differ_by_creation_time() -> None:
    a = epoch_of(datetime(2026, 1, 1, tzinfo=UTC))
    b = epoch_of(datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    assert a != b
    assert parse_position(f"{a}.1").epoch == a


def test_what_can_be_resumed() -> None:
    bounds = HistoryBounds(epoch="e", first_seq=100, last_seq=200)
    assert bounds.head == Position("e", 200)
    assert bounds.can_resume(Position("e", 99))  # 100.. still retained
    assert bounds.can_resume(Position("e", 200))
    assert not bounds.can_resume(Position("e", 98))  # 99 is gone
    assert not bounds.can_resume(Position("e", 201))  # from the future
    assert not bounds.can_resume(Position("other", 150))
    empty = HistoryBounds(epoch="e", first_seq=201, last_seq=200)
    assert empty.can_resume(Position("e", 200))


def _event(seq: int, oid: str = "o1", version: int = 1) -> tuple[int, bytes, int, str, tuple[str, str], int]:
    data = events_pb2.Event(event_id=f"e{seq}", object_id=oid, version=version, position=f"p.{seq}")
    raw = data.SerializeToString()
    return seq, raw, len(raw), f"p.{seq}", ("task", oid), version


def _conn(max_bytes: int = 1 << 20) -> QueuedConnection:
    return QueuedConnection("app", "u", "d", max_bytes=max_bytes, transport="grpc", encoding=PROTO)


def _drain(conn: QueuedConnection) -> list[str]:
    return [events_pb2.Event.FromString(b).event_id for b in conn.drain_encoded(1000)]


def test_duplicates_by_position_are_dropped() -> None:
    conn = _conn()
    for seq in (1, 2, 2, 3, 1):
        conn.offer(*_event(seq))
    assert _drain(conn) == ["e1", "e2", "e3"]
    assert conn.dropped_duplicates == 2
    assert conn.last_position == "p.3"


def test_held_events_are_released_after_what_the_replay_covered() -> None:
    conn = _conn()
    conn.hold()
    for seq in (5, 6, 7, 8):
        conn.offer(*_event(seq))
    assert conn.queued == 0
    conn.note_sent(4, "p.4")  # replayed directly
    assert conn.release(6) == 2
    assert _drain(conn) == ["e7", "e8"]
    conn.offer(*_event(8))  # a redelivery
    assert _drain(conn) == []


def test_snapshot_versions_drop_events_it_already_shows() -> None:
    conn = _conn()
    conn.hold()
    conn.offer(*_event(10, "o1", version=3))  # the snapshot shows o1 at 3
    conn.offer(*_event(11, "o2", version=1))  # another object (another subscription)
    conn.offer(*_event(12, "o1", version=4))  # newer than the snapshot
    conn.note_snapshot({("task", "o1"): 3}, "p.11")
    assert conn.release(0) == 3
    assert _drain(conn) == ["e11", "e12"]


async def test_a_hold_that_overflows_closes_with_the_position() -> None:
    conn = _conn(max_bytes=60)
    conn.offer(*_event(1))
    _drain(conn)
    conn.hold()
    for seq in range(2, 10):
        conn.offer(*_event(seq))
    with pytest.raises(ConnectionClosed) as info:
        await conn.next_encoded(1)
    assert info.value.code == "RESOURCE_EXHAUSTED"
    assert info.value.error_reason == "SLOW_CONSUMER"
    assert info.value.stream_error().position == "p.1"
