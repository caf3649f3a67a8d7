"""Events as proto JSON, encoded once per delivery and reused for every connection.

SSE and WebSocket clients receive each Event in the proto JSON mapping. A
delivery reaches many devices with one Event that differs per device only in
`subscription_ids`, so the hub encodes the Event once per (delivery, kind,
format) — `event_json_prefix`, the JSON object without its closing brace and
without `subscriptionIds` — and each device's JSON is that prefix plus its
`subscriptionIds` (`with_subscription_ids`). No connection runs
`MessageToDict` for a live event.

Two formats, as the edges always sent them:

* `JSON_FULL` (SSE): fields without presence printed too (`patch: []`, …),
  the form Envoy's gRPC-JSON transcoder gave the stream;
* `JSON_COMPACT` (WebSocket): default values omitted (`json_format` defaults).

`subscriptionIds` comes last in the object (JSON key order carries no meaning).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from google.protobuf import json_format

from nexxus.v1 import events_pb2

__all__ = [
    "JSON_COMPACT",
    "JSON_FULL",
    "batch_json",
    "event_frame_json",
    "event_json",
    "event_json_prefix",
    "with_subscription_ids",
]

JSON_FULL = "json-full"
JSON_COMPACT = "json"

_dumps = json.JSONEncoder(separators=(",", ":")).encode
# Ids that are their own JSON string body (printable ASCII but quote and backslash):
# every id Nexxus makes, and most that clients choose. Others go through the encoder.
_PLAIN_IDS = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def event_json_prefix(event: events_pb2.Event, encoding: str) -> str:
    """The JSON of `event` without `subscriptionIds` and without its closing brace."""
    d = json_format.MessageToDict(event, always_print_fields_with_no_presence=encoding == JSON_FULL)
    d.pop("subscriptionIds", None)
    return _dumps(d)[:-1]


def with_subscription_ids(prefix: str, subscription_ids: Iterable[str], encoding: str) -> str:
    """A prefix of `event_json_prefix` completed with a device's `subscriptionIds`."""
    ids = list(subscription_ids)
    if ids:
        if _PLAIN_IDS.fullmatch("".join(ids)):  # a fan-out to thousands of devices does this for each
            tail = '"subscriptionIds":["' + '","'.join(ids) + '"]}'
        else:
            tail = '"subscriptionIds":' + _dumps(ids) + "}"
    elif encoding == JSON_FULL:
        tail = '"subscriptionIds":[]}'
    else:
        return prefix + "}"
    return prefix + ("," if len(prefix) > 1 else "") + tail


def event_json(event: events_pb2.Event, encoding: str) -> str:
    """One Event as JSON (its own `subscription_ids`)."""
    return with_subscription_ids(event_json_prefix(event, encoding), event.subscription_ids, encoding)


def event_frame_json(event_json_text: str) -> str:
    """``{"event": …}``: a StreamEventsResponse (SSE) or ServerFrame (WebSocket) carrying one event."""
    return '{"event":' + event_json_text + "}"


def batch_json(events: Iterable[str]) -> str:
    """``{"batch": {"events": [...]}}``: a StreamEventsResponse carrying several events."""
    return '{"batch":{"events":[' + ",".join(events) + "]}}"
