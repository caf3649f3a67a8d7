"""WebSocket frames: the proto JSON mapping of `nexxus.v1.ClientFrame` (in) and
`nexxus.v1.ServerFrame` (out). Keys are accepted in lowerCamelCase (as
json_format emits them) and in the proto's snake_case; the server emits
lowerCamelCase."""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf import json_format

from nexxus.core.errors import InvalidArgument
from nexxus.v1 import events_pb2

__all__ = ["CLIENT_FRAMES", "BadFrame", "dump_server_frame", "parse_client_frame"]

CLIENT_FRAMES = ("auth", "subscribe", "unsubscribe", "ack", "ping", "resume")

_UNKNOWN_FIELD = re.compile(r'has no field named "(?P<name>[^"]+)" at "(?P<at>[^"]*)"')
_BAD_FIELD = re.compile(r"^Failed to parse (?P<name>\w+) field: (?P<why>.*?)(?: at (?P<at>[\w.\[\]]+))?\.?$")
_MULTIPLE_ONEOF = re.compile(r'should not have multiple "(?P<oneof>\w+)" oneof fields')


class BadFrame(InvalidArgument):
    """A frame that could not be parsed; `frame_id` is its `id` when readable."""

    frame_id: str = ""


def _path(at: str | None) -> str:
    """``ClientFrame.subscribe.filter`` → ``subscribe.filter``."""
    if not at:
        return ""
    _, _, rest = at.rstrip(".").partition(".")
    return rest


def _parse_error(exc: json_format.ParseError) -> BadFrame:
    text = str(exc).splitlines()[0].strip()
    if m := _UNKNOWN_FIELD.search(text):
        parent = _path(m["at"])
        field = f"{parent}.{m['name']}" if parent else m["name"]
        return BadFrame(f"unknown field {field!r}", reason="UNKNOWN_FIELD", field=field)
    if m := _BAD_FIELD.search(text):
        field = _path(m["at"]) or m["name"]
        return BadFrame(f"bad value for {field!r}: {m['why']}", field=field)
    if m := _MULTIPLE_ONEOF.search(text):
        return BadFrame(
            f"a frame carries exactly one of {', '.join(CLIENT_FRAMES)}",
            reason="MULTIPLE_FRAMES",
            field="frame",
        )
    return BadFrame(text or "malformed frame", field="frame")


def parse_client_frame(raw: str | bytes) -> events_pb2.ClientFrame:
    """Parse one client frame. Raises BadFrame naming the offending field
    (`field`), e.g. ``subscribe.nope`` for an unknown key, with the frame's `id`
    when one could be read (so the error frame can reply to it)."""
    if isinstance(raw, bytes):
        raise BadFrame("binary frames are not supported: send JSON text", reason="BINARY_FRAME")
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise BadFrame(f"invalid JSON: {exc}", reason="INVALID_JSON") from exc
    except RecursionError:
        raise BadFrame("the frame nests too deeply", reason="TOO_DEEP") from None
    if not isinstance(data, dict):
        raise BadFrame("a frame is a JSON object", reason="INVALID_JSON")
    frame_id = data.get("id")
    frame = events_pb2.ClientFrame()
    try:
        json_format.ParseDict(data, frame)
    except json_format.ParseError as exc:
        err = _parse_error(exc)
        if isinstance(frame_id, str):
            err.frame_id = frame_id
        raise err from exc
    if frame.WhichOneof("frame") is None:
        err = BadFrame(
            f"a frame needs one of {', '.join(CLIENT_FRAMES)}", reason="MISSING_FRAME", field="frame"
        )
        err.frame_id = frame.id
        raise err
    return frame


def dump_server_frame(frame: events_pb2.ServerFrame) -> str:
    return json.dumps(json_format.MessageToDict(frame), separators=(",", ":"))
