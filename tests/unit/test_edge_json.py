"""Events as proto JSON for the edges: the per-device `subscriptionIds` tail is
exactly what a JSON encoder writes, for any id a client may choose."""

from __future__ import annotations

import json

import pytest

from nexxus.transport.edge_json import JSON_COMPACT, JSON_FULL, event_json, with_subscription_ids
from nexxus.v1 import events_pb2

IDS = [
    [],
    ["01jb2k9x7q"],
    ["a", "b-c_d.e:f"],
    [" ~!#$%&'()*+,/;<=>?@[]^`{|}"],
    ['with"quote'],
    ["back\\slash"],
    ["new\nline", "tab\t"],
    ["del\x7f"],
    ["é", "\u2028"],
    ["😀"],
    ["plain", 'mixed"'],
]


@pytest.mark.parametrize("ids", IDS)
@pytest.mark.parametrize("encoding", [JSON_COMPACT, JSON_FULL])
def test_subscription_ids_are_encoded_as_json_would(ids: list[str], encoding: str) -> None:
    text = with_subscription_ids('{"objectId":"x"', ids, encoding)
    assert json.loads(text) == {
        "objectId": "x",
        **({"subscriptionIds": ids} if ids or encoding == JSON_FULL else {}),
    }
    if ids:
        expected = json.dumps(ids, separators=(",", ":"))
        assert text == '{"objectId":"x","subscriptionIds":' + expected + "}"


def test_an_event_round_trips_through_its_json() -> None:
    event = events_pb2.Event(object_id="o1", model="task", version=3, subscription_ids=["s1", 'q"2'])
    for encoding in (JSON_COMPACT, JSON_FULL):
        back = json.loads(event_json(event, encoding))
        assert back["objectId"] == "o1"
        assert back["subscriptionIds"] == ["s1", 'q"2']
