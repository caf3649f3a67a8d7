"""Hand-built protobuf wire bytes for the gRPC fan-out path.

A delivery's Event is serialized once per (delivery, kind); each device's
Event is those bytes followed by its `subscription_ids` entries (appending
repeated-field entries to a serialized message is valid protobuf: the parsed
message is the one with the entries appended). A gRPC stream frames queued
event bytes as a `StreamEventsResponse` (`event`, or `batch` of events) by
hand and hands them to grpc as is (no message objects, no re-serialization).

The bytes differ from `SerializeToString()` only in field order
(`subscription_ids`, field 9, comes last); they parse to equal messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["batch_frame", "encode_position", "encode_subscription_ids", "encode_varint", "event_frame"]

# (field number << 3) | wire type 2 (length-delimited)
_EVENT_SUBSCRIPTION_ID = b"\x4a"  # Event.subscription_ids = 9
_EVENT_POSITION = b"\x62"  # Event.position = 12
_RESPONSE_EVENT = b"\x12"  # StreamEventsResponse.event = 2
_RESPONSE_BATCH = b"\x2a"  # StreamEventsResponse.batch = 5
_BATCH_EVENT = 0x0A  # EventBatch.events = 1

_ONE_BYTE = [bytes((n,)) for n in range(128)]


def encode_varint(value: int) -> bytes:
    """A non-negative int as a protobuf base-128 varint."""
    if value < 128:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_subscription_ids(subscription_ids: Iterable[str]) -> bytes:
    """`Event.subscription_ids` entries, to append to a serialized Event."""
    parts = []
    for sid in subscription_ids:
        raw = sid.encode()
        size = len(raw)
        parts.append(_EVENT_SUBSCRIPTION_ID + (_ONE_BYTE[size] if size < 128 else encode_varint(size)) + raw)
    return b"".join(parts)


def encode_position(position: str) -> bytes:
    """`Event.position`, to append to a serialized Event."""
    raw = position.encode()
    return _EVENT_POSITION + encode_varint(len(raw)) + raw


def event_frame(event: bytes) -> bytes:
    """`StreamEventsResponse(event=...)` from a serialized Event."""
    return _RESPONSE_EVENT + encode_varint(len(event)) + event


def batch_frame(events: Sequence[bytes]) -> bytes:
    """`StreamEventsResponse(batch=EventBatch(events=[...]))` from serialized Events."""
    body = bytearray()
    for event in events:
        body.append(_BATCH_EVENT)
        body += encode_varint(len(event))
        body += event
    return _RESPONSE_BATCH + encode_varint(len(body)) + body
