"""WebSocket frame parsing / dumping and the shared rpc error helpers."""

from __future__ import annotations

import json

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from nexxus.core.errors import InvalidArgument, NexxusError, NotFound, VersionConflict
from nexxus.rpc.errors import STATUS_BY_CODE, error_to_status, error_to_stream_error, grpc_status_code
from nexxus.transport.frames import BadFrame, dump_server_frame, parse_client_frame
from nexxus.transport.session import resolve_heartbeat
from nexxus.transport.websocket import close_code_for, parse_ws_target
from nexxus.v1 import events_pb2


def test_parse_accepts_camel_and_snake_case() -> None:
    camel = parse_client_frame('{"id": "1", "unsubscribe": {"subscriptionId": "s"}}')
    snake = parse_client_frame('{"id": "1", "unsubscribe": {"subscription_id": "s"}}')
    assert camel == snake
    assert camel.unsubscribe.subscription_id == "s"


@pytest.mark.parametrize(
    ("raw", "field", "reason", "frame_id"),
    [
        ("nope", None, "INVALID_JSON", ""),
        ('"a string"', None, "INVALID_JSON", ""),
        ('{"id": "7", "zzz": {}}', "zzz", "UNKNOWN_FIELD", "7"),
        ('{"id": "7", "ping": {"payload": [1]}}', "ping.payload", "INVALID_ARGUMENT", "7"),
        ('{"id": "7", "ack": {"eventId": "e"}, "ping": {}}', "frame", "MULTIPLE_FRAMES", "7"),
        ('{"id": "7"}', "frame", "MISSING_FRAME", "7"),
        ('{"id": 7, "ping": {}}', "id", "INVALID_ARGUMENT", ""),
    ],
)
def test_parse_errors_name_the_field(raw: str, field: str | None, reason: str, frame_id: str) -> None:
    with pytest.raises(BadFrame) as info:
        parse_client_frame(raw)
    assert (info.value.field, info.value.reason, info.value.frame_id) == (field, reason, frame_id)
    assert info.value.code == "INVALID_ARGUMENT"


def test_binary_frames_are_refused() -> None:
    with pytest.raises(BadFrame, match="binary"):
        parse_client_frame(b"{}")


def test_dump_uses_camel_case_and_enum_names() -> None:
    frame = events_pb2.ServerFrame(
        reply_to="r",
        event=events_pb2.Event(event_id="e", kind=events_pb2.EVENT_KIND_LEFT, subscription_ids=["s"]),
    )
    assert json.loads(dump_server_frame(frame)) == {
        "replyTo": "r",
        "event": {"eventId": "e", "kind": "EVENT_KIND_LEFT", "subscriptionIds": ["s"]},
    }


def test_ws_target_parses_app_token_and_heartbeat() -> None:
    target = parse_ws_target("/v1/apps/my-app/ws?access_token=abc&heartbeat_seconds=5")
    assert (target.app_id, target.access_token, target.heartbeat_seconds) == ("my-app", "abc", 5)
    assert parse_ws_target("/v1/apps/a/ws").access_token is None
    with pytest.raises(InvalidArgument):
        parse_ws_target("/v1/apps/a/events")


def test_heartbeat_bounds() -> None:
    assert resolve_heartbeat(0, 15) == 15
    assert resolve_heartbeat(300, 15) == 300
    for bad in (-1, 301):
        with pytest.raises(InvalidArgument):
            resolve_heartbeat(bad, 15)


def test_close_codes() -> None:
    assert close_code_for("UNAUTHENTICATED") == 4401
    assert close_code_for("RESOURCE_EXHAUSTED") == 4429
    assert close_code_for("SOMETHING_ELSE") == 1011


def test_status_table_covers_every_domain_error() -> None:
    assert grpc_status_code(NotFound("x")) == grpc.StatusCode.NOT_FOUND
    assert grpc_status_code(VersionConflict("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert grpc_status_code(NexxusError("x")) == grpc.StatusCode.INTERNAL
    assert all(STATUS_BY_CODE[name].name == name for name in STATUS_BY_CODE)


def test_rich_status_carries_error_info() -> None:
    err = InvalidArgument("bad filter", reason="BAD_FILTER", field="filter.a", details={"op": "eq"})
    status = error_to_status(err)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    ((key, raw),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    rich = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    assert (rich.code, rich.message) == (3, "bad filter")
    assert (info.reason, info.domain) == ("BAD_FILTER", "nexxus.dev")
    assert dict(info.metadata) == {"field": "filter.a", "op": "eq"}


def test_stream_error_details() -> None:
    frame = error_to_stream_error(VersionConflict("stale", field="expected_version"))
    assert (frame.code, frame.message) == ("FAILED_PRECONDITION", "stale")
    assert dict(frame.details) == {"reason": "VERSION_CONFLICT", "field": "expected_version"}


@pytest.mark.parametrize("depth", [60, 5000])
def test_deeply_nested_frames_are_bad_frames_not_crashes(depth: int) -> None:
    raw = '{"id": "7", "ping": {"payload": {"x": ' + "[" * depth + "]" * depth + "}}}"
    with pytest.raises(BadFrame) as bad:
        parse_client_frame(raw)
    assert bad.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_hand_built_text_frames_are_the_frames_websockets_builds(size: int) -> None:
    from websockets.frames import Frame, Opcode

    from nexxus.transport.websocket import text_frame

    payload = b"x" * size
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
