"""nexxus.core.schema: parsing, round trips, validation."""

from __future__ import annotations

from typing import Any

import pytest

from nexxus.core.errors import InvalidArgument
from nexxus.core.schema import FieldKind, FieldSpec, ModelSchema, format_datetime, parse_datetime
from nexxus.v1 import schema_pb2

PROTO_JSON: dict[str, Any] = {
    "name": "task",
    "fields": {
        "status": {
            "type": "FIELD_TYPE_STRING",
            "required": True,
            "filterable": True,
            "enumValues": ["todo", "done"],
        },
        "priority": {"type": "string", "filterable": True},
        "details": {
            "type": "FIELD_TYPE_OBJECT",
            "fields": {"age": {"type": "integer"}, "when": {"type": "datetime"}},
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "anything": {"type": "array"},
        "meta": {"type": "object"},
        "score": {"type": "number"},
        "done": {"type": "boolean"},
    },
    "access": {
        "read": {"kind": "KIND_FILTER", "filter": {"owner": {"eq": "$auth.user_id"}}},
        "delete": {"kind": "owner"},
    },
    "allowAdditionalFields": False,
}


@pytest.fixture
def schema() -> ModelSchema:
    return ModelSchema.from_dict(PROTO_JSON)


def test_from_dict_reads_enum_names_and_camel_case(schema: ModelSchema) -> None:
    status = schema.fields["status"]
    assert status == FieldSpec(FieldKind.STRING, required=True, filterable=True, enum_values=("todo", "done"))
    assert schema.fields["details"].fields["age"].kind is FieldKind.INTEGER
    assert schema.fields["tags"].items == FieldSpec(FieldKind.STRING)
    assert schema.access["read"]["kind"] == "filter"
    assert schema.access["delete"] == {"kind": "owner"}
    assert schema.rule("update") == {"kind": "authenticated"}
    assert schema.allow_additional_fields is False


def test_to_dict_is_canonical_and_round_trips(schema: ModelSchema) -> None:
    d = schema.to_dict()
    assert d["fields"]["status"] == {
        "type": "string",
        "required": True,
        "filterable": True,
        "enum_values": ["todo", "done"],
    }
    assert d["access"]["read"] == {"kind": "filter", "filter": {"owner": {"eq": "$auth.user_id"}}}
    assert "allow_additional_fields" in d
    assert ModelSchema.from_dict(d) == schema
    assert ModelSchema.from_dict(d).to_dict() == d


def test_proto_round_trip(schema: ModelSchema) -> None:
    pb = schema.to_proto()
    assert isinstance(pb, schema_pb2.ModelSchema)
    assert pb.fields["status"].type == schema_pb2.FIELD_TYPE_STRING
    assert pb.access.delete.kind == schema_pb2.AccessRule.KIND_OWNER
    back = ModelSchema.from_proto(pb)
    assert back == schema
    # integers in access filters survive the Struct (double) round trip
    s2 = ModelSchema.from_dict({"name": "m", "access": {"read": {"kind": "filter", "filter": {"n": 3}}}})
    assert ModelSchema.from_proto(s2.to_proto()).access["read"]["filter"] == {"n": 3}


def test_name_keyword() -> None:
    assert ModelSchema.from_dict({"fields": {}}, name="note").name == "note"
    assert ModelSchema.from_dict({"name": "note"}, name="note").name == "note"
    with pytest.raises(InvalidArgument) as e:
        ModelSchema.from_dict({"name": "note"}, name="task")
    assert e.value.field == "schema.name"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"name": "Task"}, "schema.name"),
        ({"name": "1task"}, "schema.name"),
        ({}, "schema.name"),
        ({"name": "t", "bogus": 1}, "schema.bogus"),
        ({"name": "t", "fields": {"a": {"type": "color"}}}, "schema.fields.a.type"),
        ({"name": "t", "fields": {"a": {}}}, "schema.fields.a.type"),
        ({"name": "t", "fields": {"a": {"type": "FIELD_TYPE_UNSPECIFIED"}}}, "schema.fields.a.type"),
        ({"name": "t", "fields": {"a.b": {"type": "string"}}}, "schema.fields.a.b"),
        ({"name": "t", "fields": {"9a": {"type": "string"}}}, "schema.fields.9a"),
        ({"name": "t", "fields": {"a" * 65: {"type": "string"}}}, "schema.fields." + "a" * 65),
        (
            {"name": "t", "fields": {"a": {"type": "string", "fields": {"b": {"type": "string"}}}}},
            "schema.fields.a.fields",
        ),
        (
            {"name": "t", "fields": {"a": {"type": "string", "items": {"type": "string"}}}},
            "schema.fields.a.items",
        ),
        (
            {"name": "t", "fields": {"a": {"type": "integer", "enum_values": ["x"]}}},
            "schema.fields.a.enum_values",
        ),
        ({"name": "t", "fields": {"a": {"type": "string", "required": "yes"}}}, "schema.fields.a.required"),
        ({"name": "t", "fields": {"a": {"type": "string", "colour": 1}}}, "schema.fields.a.colour"),
        ({"name": "t", "fields": []}, "schema.fields"),
        ({"name": "t", "access": {"read": {"kind": "filter"}}}, "schema.access.read.filter"),
        ({"name": "t", "access": {"read": {"kind": "filter", "filter": [1]}}}, "schema.access.read.filter"),
        ({"name": "t", "access": {"read": {"kind": "owner", "filter": {}}}}, "schema.access.read.filter"),
        ({"name": "t", "access": {"list": {"kind": "owner"}}}, "schema.access.list"),
        ({"name": "t", "access": {"read": {"kind": "admins"}}}, "schema.access.read.kind"),
        ({"name": "t", "allow_additional_fields": "no"}, "schema.allow_additional_fields"),
    ],
)
def test_from_dict_rejects(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        ModelSchema.from_dict(raw)
    assert e.value.field == field


def _nested(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        spec = {"type": "object", "fields": {"x": spec}}
    return {"name": "t", "fields": {"x": spec}}


def test_schema_depth_limit() -> None:
    assert ModelSchema.from_dict(_nested(8)).field_at(("x",) * 8) == FieldSpec(FieldKind.STRING)
    with pytest.raises(InvalidArgument, match="deeper than 8"):
        ModelSchema.from_dict(_nested(9))


def test_access_kinds_accept_all_spellings() -> None:
    s = ModelSchema.from_dict(
        {"name": "t", "access": {"read": {"kind": "PUBLIC"}, "create": {"kind": 5}, "update": {}}}
    )
    assert s.access == {"read": {"kind": "public"}, "create": {"kind": "server"}}
    assert s.rule("update")["kind"] == "authenticated"


def test_field_at(schema: ModelSchema) -> None:
    assert schema.field_at(("details", "age")) == FieldSpec(FieldKind.INTEGER)
    assert schema.field_at(("details",)) is schema.fields["details"]
    assert schema.field_at(("details", "nope")) is None
    assert schema.field_at(("status", "x")) is None
    assert schema.field_at(("nope",)) is None
    assert schema.field_at(()) is None


def test_validate_object_normalizes(schema: ModelSchema) -> None:
    data = {
        "status": "todo",
        "details": {"age": 3.0, "when": "2024-01-01T10:00:00.5+02:00"},
        "tags": ["a", "b"],
        "anything": [1, "x", {"y": None}],
        "meta": {"free": [1, {"form": True}]},
        "score": 1.5,
        "done": None,
    }
    out = schema.validate_object(data)
    assert out["details"] == {"age": 3, "when": "2024-01-01T08:00:00.500000Z"}
    assert type(out["details"]["age"]) is int
    assert out["meta"] == data["meta"]
    assert out["done"] is None
    out["tags"].append("c")
    assert data["tags"] == ["a", "b"]  # a deep copy


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "data.status"),
        ({"status": None}, "data.status"),
        ({"status": "nope"}, "data.status"),
        ({"status": 1}, "data.status"),
        ({"status": "todo", "extra": 1}, "data.extra"),
        ({"status": "todo", "details": {"age": 1.5}}, "data.details.age"),
        ({"status": "todo", "details": {"age": True}}, "data.details.age"),
        ({"status": "todo", "details": {"age": "1"}}, "data.details.age"),
        ({"status": "todo", "details": {"age": 2**53 + 1}}, "data.details.age"),
        ({"status": "todo", "details": {"age": 2**53}}, "data.details.age"),
        ({"status": "todo", "details": {"age": 1e300}}, "data.details.age"),
        ({"status": "todo", "details": {"when": "2024-01-01"}}, "data.details.when"),
        ({"status": "todo", "details": {"when": "2024-13-01T00:00:00Z"}}, "data.details.when"),
        ({"status": "todo", "details": {"when": "2024-01-01T00:00:00"}}, "data.details.when"),
        ({"status": "todo", "details": {"zip": 1}}, "data.details.zip"),
        ({"status": "todo", "details": []}, "data.details"),
        ({"status": "todo", "tags": "a"}, "data.tags"),
        ({"status": "todo", "tags": ["a", 2]}, "data.tags[1]"),
        ({"status": "todo", "score": True}, "data.score"),
        ({"status": "todo", "score": float("nan")}, "data.score"),
        ({"status": "todo", "done": 0}, "data.done"),
        ({"status": "todo", "meta": {"x": {1, 2}}}, "data.meta.x"),
        ({"status": "todo", "anything": [2**60]}, "data.anything[0]"),
    ],
)
def test_validate_object_rejects(schema: ModelSchema, data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        schema.validate_object(data)
    assert e.value.field == field


def test_validate_object_custom_path(schema: ModelSchema) -> None:
    with pytest.raises(InvalidArgument) as e:
        schema.validate_object({"status": 3}, path="object.data")
    assert e.value.field == "object.data.status"


def test_additional_fields_allowed() -> None:
    s = ModelSchema.from_dict(
        {"name": "t", "fields": {"a": {"type": "integer"}}, "allow_additional_fields": True}
    )
    assert s.validate_object({"a": 1, "b": {"c": [1, "x"]}}) == {"a": 1, "b": {"c": [1, "x"]}}
    with pytest.raises(InvalidArgument):
        s.validate_object({"a": "x"})


def test_document_limits() -> None:
    s = ModelSchema.from_dict({"name": "t", "fields": {"x": {"type": "object"}, "s": {"type": "string"}}})
    doc: Any = {}
    for _ in range(30):
        doc = {"k": doc}
    assert s.validate_object({"x": doc})["x"] == doc  # depth 32 in all
    with pytest.raises(InvalidArgument, match="deeper than 32"):
        s.validate_object({"x": {"k": doc}})
    s.validate_object({"s": "a" * (1024 * 1024)})
    with pytest.raises(InvalidArgument, match="longer than") as e:
        s.validate_object({"s": "é" * (512 * 1024 + 1)})
    assert e.value.field == "data.s"


def test_datetime_helpers() -> None:
    dt = parse_datetime("1999-12-31t23:59:59.1234567-01:30")
    assert format_datetime(dt) == "2000-01-01T01:29:59.123456Z"
    assert format_datetime(parse_datetime("0001-01-01T00:00:00Z")) == "0001-01-01T00:00:00.000000Z"
    for bad in ("0001-01-01T00:00:00+01:00", "2024-01-01T00:00:60Z", "2024-01-01T00:00:00+24:00"):
        with pytest.raises(ValueError, match=r"range|offset|must be in"):
            parse_datetime(bad)
