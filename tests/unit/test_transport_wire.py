"""The gRPC fan-out's hand-built wire bytes (nexxus.transport.wire) against the
message-object path they replace: each must parse back to exactly the Event /
StreamEventsResponse the objects would give, and the hub must queue exactly
those bytes on encoded connections (and equal Events on the others)."""

from __future__ import annotations

import asyncio
import time
from typing import TypeAlias

import pytest
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexxus.core.config.settings import TransportSettings
from nexxus.core.events import build_event
from nexxus.transport.connection import PROTO, ConnectionClosed, QueuedConnection
from nexxus.transport.hub import ConnectionHub
from nexxus.transport.wire import batch_frame, encode_subscription_ids, encode_varint, event_frame
from nexxus.v1 import common_pb2, events_pb2, internal_pb2

from .test_transport_hub import FakeBus, FakeStore

Kind: TypeAlias = events_pb2.EventKind.ValueType
KINDS: list[Kind] = [
    events_pb2.EVENT_KIND_CREATED,
    events_pb2.EVENT_KIND_UPDATED,
    events_pb2.EVENT_KIND_DELETED,
    events_pb2.EVENT_KIND_ENTERED,
    events_pb2.EVENT_KIND_LEFT,
]
# A target's kind may be unset: the model event's kind then applies.
TARGET_KINDS: list[Kind] = [events_pb2.EVENT_KIND_UNSPECIFIED, *KINDS]

texts = st.text(max_size=40)
# Short ids and ones whose UTF-8 length needs a 2-byte varint (>= 128 bytes).
subscription_ids = st.lists(st.one_of(texts, st.text(min_size=60, max_size=300)), max_size=6)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False, width=32), texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
data_dicts = st.dictionaries(texts, json_values, max_size=6)


@st.composite
def model_events(draw: st.DrawFn) -> internal_pb2.ModelEvent:
    ev = internal_pb2.ModelEvent(
        event_id=draw(texts),
        command_id=draw(texts),
        app_id="app",
        model=draw(texts),
        object_id=draw(texts),
        kind=draw(st.sampled_from(KINDS)),
        version=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    )
    if draw(st.booleans()):
        ev.after.id, ev.after.version = ev.object_id, ev.version
        ev.after.data.update(draw(data_dicts))
    if draw(st.booleans()):
        ev.before.id, ev.before.version = ev.object_id, ev.version - 1 if ev.version > -(2**63) else 0
        ev.before.data.update(draw(data_dicts))
    for _ in range(draw(st.integers(0, 3))):
        op = ev.patch.add(op=draw(st.sampled_from(["add", "replace", "remove"])), path=draw(st.lists(texts)))
        op.value.add(string_value=draw(texts))
    if draw(st.booleans()):
        ev.actor.CopyFrom(common_pb2.Actor(user_id=draw(texts), device_id=draw(texts)))
    if draw(st.booleans()):
        ev.time.FromSeconds(draw(st.integers(0, 253402300799)))
    return ev


def object_event(ev: internal_pb2.ModelEvent, kind: Kind, sids: list[str]) -> events_pb2.Event:
    """What the hub built per target before the bytes path."""
    out = events_pb2.Event()
    out.CopyFrom(build_event(ev, kind))
    out.subscription_ids.extend(sids)
    return out


def encoded_event(ev: internal_pb2.ModelEvent, kind: Kind, sids: list[str]) -> bytes:
    return build_event(ev, kind).SerializeToString() + encode_subscription_ids(sids)


Item = tuple[internal_pb2.ModelEvent, Kind, list[str]]
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_matches_protobuf(n: int) -> None:
    assert encode_varint(n) == _VarintBytes(n)


@PROPS
@given(model_events(), st.sampled_from(KINDS), subscription_ids)
def test_appended_subscription_ids_parse_to_the_object_event(
    ev: internal_pb2.ModelEvent, kind: Kind, sids: list[str]
) -> None:
    expected = object_event(ev, kind, sids)
    parsed = events_pb2.Event.FromString(encoded_event(ev, kind, sids))
    assert parsed == expected
    assert list(parsed.subscription_ids) == sids
    # Same message, only field 9 moved: re-serializing gives the object path's bytes.
    assert parsed.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


@PROPS
@given(st.lists(st.tuples(model_events(), st.sampled_from(KINDS), subscription_ids), min_size=1, max_size=70))
def test_frames_parse_to_the_object_frames(items: list[Item]) -> None:
    objects = [object_event(*item) for item in items]
    encoded = [encoded_event(*item) for item in items]
    single = events_pb2.StreamEventsResponse.FromString(event_frame(encoded[0]))
    assert single == events_pb2.StreamEventsResponse(event=objects[0])
    assert single.WhichOneof("frame") == "event"
    batch = events_pb2.StreamEventsResponse.FromString(batch_frame(encoded))
    assert batch == events_pb2.StreamEventsResponse(batch=events_pb2.EventBatch(events=objects))
    assert batch.WhichOneof("frame") == "batch"


def test_large_frames_use_multi_byte_lengths() -> None:
    big = events_pb2.Event(event_id="x" * 20_000, subscription_ids=["s"])
    data = big.SerializeToString()
    assert events_pb2.StreamEventsResponse.FromString(event_frame(data)).event == big
    batch = events_pb2.StreamEventsResponse.FromString(batch_frame([data] * 10))
    assert list(batch.batch.events) == [big] * 10


@PROPS
@given(
    model_events(),
    st.lists(
        st.tuples(st.sampled_from(["d1", "d2", "d3", "d4"]), st.sampled_from(TARGET_KINDS), subscription_ids),
        max_size=8,
    ),
)
def test_hub_pushes_the_object_paths_events(
    ev: internal_pb2.ModelEvent, targets: list[tuple[str, Kind, list[str]]]
) -> None:
    async def run() -> None:
        hub = ConnectionHub("n1", FakeStore(), FakeBus(), TransportSettings())
        conns: dict[str, list[QueuedConnection]] = {}
        for device in ("d1", "d2", "d3"):  # d4 has no connection here
            for encoding in (PROTO, ""):
                c = QueuedConnection("app", "u", device, max_bytes=1 << 20, transport="t", encoding=encoding)
                await hub.register(c)
                conns.setdefault(device, []).append(c)
        delivery = internal_pb2.Delivery(
            app_id="app",
            node="n1",
            event=ev,
            targets=[
                internal_pb2.DeliveryTarget(device_id=d, kind=k, subscription_ids=s) for d, k, s in targets
            ],
        )
        pushed = await hub.deliver(delivery)
        expected = {
            d: [object_event(ev, k or ev.kind, s) for dd, k, s in targets if dd == d]
            for d in ("d1", "d2", "d3")
        }
        assert pushed == 2 * sum(len(v) for v in expected.values())
        for device, (enc, obj) in conns.items():
            assert [events_pb2.Event.FromString(b) for b in enc.drain_encoded(100)] == expected[device]
            assert obj.drain(100) == expected[device]

    asyncio.run(run())


# --------------------------------------------------------------------------- connection


async def test_encoded_and_plain_connections_convert_what_they_are_pushed() -> None:
    ev = events_pb2.Event(event_id="e1", subscription_ids=["s"])
    enc = QueuedConnection("app", "u", "d", max_bytes=1 << 16, transport="grpc", encoding=PROTO)
    await enc.push(ev)
    enc.push_encoded(ev.SerializeToString())
    assert await enc.next_encoded(1) == ev.SerializeToString()
    assert await enc.next_event(1) == ev
    plain = QueuedConnection("app", "u", "d", max_bytes=1 << 16, transport="ws")
    plain.push_encoded(ev.SerializeToString())
    await plain.push(ev)
    assert await plain.next_event(1) == ev
    assert plain.drain_encoded(5) == [ev.SerializeToString()]


async def test_push_encoded_on_a_full_queue_closes_as_too_slow() -> None:
    c = QueuedConnection("app", "u", "d", max_bytes=2048, transport="grpc", encoding=PROTO)
    for _ in range(3):
        c.push_encoded(b"x" * 1000)
    with pytest.raises(ConnectionClosed) as info:
        await c.next_encoded(1)
    assert info.value.code == "RESOURCE_EXHAUSTED"


async def test_a_push_wakes_a_waiting_reader_and_idle_still_times_out() -> None:
    c = QueuedConnection("app", "u", "d", max_bytes=1 << 16, transport="grpc", encoding=PROTO)
    reader = asyncio.create_task(c.next_encoded(0.3))
    await asyncio.sleep(0.1)
    c.push_encoded(b"\x0a\x01x")
    assert await reader == b"\x0a\x01x"
    # The timer armed by the first wait (due ~0.2 s from now) must not end this
    # wait early: it is re-armed for this wait's own deadline.
    start = time.monotonic()
    assert await c.next_encoded(0.3) is None
    assert time.monotonic() - start >= 0.28
    # A shorter idle than the armed timer's is honoured too.
    reader = asyncio.create_task(c.next_encoded(5))
    await asyncio.sleep(0.01)
    c.push_encoded(b"")
    assert await reader == b""
    start = time.monotonic()
    assert await c.next_encoded(0.05) is None
    assert time.monotonic() - start < 1


async def test_cancelled_reader_leaves_the_connection_usable() -> None:
    c = QueuedConnection("app", "u", "d", max_bytes=1 << 16, transport="grpc", encoding=PROTO)
    reader = asyncio.create_task(c.next_encoded(5))
    await asyncio.sleep(0.01)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    c.push_encoded(b"a")
    assert await c.next_encoded(0.1) == b"a"
    assert await c.next_encoded(0.05) is None
