"""What the seed and docs/schema.md show works over REST through Envoy:
schemas with short type names, and channels naming their object `modelId`."""

from __future__ import annotations

import uuid

import pytest

from tests.edge.conftest import World
from tests.edge.rest import Rest

pytestmark = pytest.mark.edge

# docs/schema.md's example, as written there (short names, snake_case keys).
DOCS_SCHEMA = {
    "fields": {
        "status": {
            "type": "string",
            "required": True,
            "filterable": True,
            "enum_values": ["todo", "doing", "done"],
        },
        "priority": {"type": "string", "filterable": True},
        "due": {"type": "datetime", "filterable": True},
        "details": {"type": "object", "fields": {"age": {"type": "integer"}}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object"},
    },
    "access": {"delete": {"kind": "owner"}},
    "allow_additional_fields": False,
}


async def test_docs_schema_with_short_names_is_accepted(rest: Rest) -> None:
    app_id = f"seed-{uuid.uuid4().hex[:10]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id})
    put = await rest.ok("PUT", f"/v1/apps/{app_id}/models/task", DOCS_SCHEMA)
    fields = put["schema"]["fields"]
    assert fields["due"]["type"] == "FIELD_TYPE_DATETIME"
    assert fields["details"]["fields"]["age"]["type"] == "FIELD_TYPE_INTEGER"
    assert put["schema"]["access"]["delete"]["kind"] == "KIND_OWNER"
    # The answer's `document` is the schema in the form it was written: it round-trips.
    assert put["document"] == DOCS_SCHEMA
    listed = await rest.ok("GET", f"/v1/apps/{app_id}/models")
    assert listed["documents"] == [DOCS_SCHEMA]
    again = await rest.ok("PUT", f"/v1/apps/{app_id}/models/task", listed["documents"][0])
    assert again["document"] == DOCS_SCHEMA
    # The enum names and camelCase keys (the proto JSON mapping) still work.
    enum_form = {
        "fields": {"n": {"type": "FIELD_TYPE_NUMBER", "filterable": True}},
        "allowAdditionalFields": True,
    }
    await rest.ok("PUT", f"/v1/apps/{app_id}/models/other", enum_form)
    # The documented types are enforced on writes.
    created = await rest.call(
        "POST",
        f"/v1/apps/{app_id}/models/task/objects",
        {"data": {"status": "todo", "due": "2024-05-01T12:00:00+02:00"}},
    )
    assert created.status == 200, created.body
    bad = await rest.call(
        "POST", f"/v1/apps/{app_id}/models/task/objects", {"data": {"status": "todo", "due": 5}}
    )
    assert bad.status == 400
    assert bad.error_field().endswith("due")


async def test_a_bad_schema_document_names_its_field(rest: Rest) -> None:
    app_id = f"seed-{uuid.uuid4().hex[:10]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id})
    reply = await rest.call("PUT", f"/v1/apps/{app_id}/models/task", {"fields": {"x": {"type": "strng"}}})
    assert reply.status == 400, reply.body
    assert reply.error_field() == "schema.fields.x.type"
    assert "strng" in reply.json["message"]


async def test_channel_model_id_is_the_object_id(world: World) -> None:
    base = f"/v1/apps/{world.app_id}/subscriptions"
    sub = (await world.device.ok("POST", base, {"model": "task", "modelId": "task-456"}))["subscription"]
    assert sub["objectId"] == "task-456"  # not a whole-model subscription
    same = await world.device.ok("POST", base, {"model": "task", "modelId": "t1", "objectId": "t1"})
    assert same["subscription"]["objectId"] == "t1"
    clash = await world.device.call("POST", base, {"model": "task", "modelId": "a", "objectId": "b"})
    assert clash.status == 400
    assert clash.error_field() == "model_id"
