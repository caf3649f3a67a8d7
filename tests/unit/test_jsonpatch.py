"""nexxus.core.jsonpatch: parsing, applying, partial models, proto."""

from __future__ import annotations

from typing import Any

import pytest

from nexxus.core.errors import FailedPrecondition, InvalidArgument
from nexxus.core.jsonpatch import (
    Operation,
    Patch,
    PatchOp,
    apply_patch,
    parse_patch,
    partial_model,
    patch_from_proto,
    patch_to_dicts,
    patch_to_proto,
)
from nexxus.core.schema import ModelSchema
from nexxus.v1 import common_pb2

SCHEMA = ModelSchema.from_dict(
    {
        "name": "task",
        "fields": {
            "status": {"type": "string", "required": True, "enum_values": ["todo", "completed"]},
            "priority": {"type": "string"},
            "details": {
                "type": "object",
                "fields": {"age": {"type": "integer"}, "when": {"type": "datetime"}},
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "score": {"type": "number"},
            "meta": {"type": "object"},
        },
    }
)
DOC = {"status": "todo", "priority": "high", "details": {"age": 3}, "tags": ["a"]}


def run(ops: list[dict[str, Any]], doc: dict[str, Any] = DOC) -> dict[str, Any]:
    return apply_patch(doc, parse_patch(ops, SCHEMA), SCHEMA)


def test_seed_example() -> None:
    ops = [{"op": "replace", "path": ["status", "priority"], "value": ["completed", "low"]}]
    patch = parse_patch(ops, SCHEMA)
    assert patch == Patch((Operation(PatchOp.REPLACE, ("status", "priority"), ("completed", "low")),))
    assert run(ops) == {**DOC, "status": "completed", "priority": "low"}
    assert partial_model(patch) == {"status": "completed", "priority": "low"}


def test_shorthand_and_normalized_values() -> None:
    patch = parse_patch(
        [
            {"op": "add", "path": "details.when", "value": "2024-05-01T12:00:00+02:00"},
            {"op": "add", "path": "details.age", "value": 4.0},
        ],
        SCHEMA,
    )
    assert patch.operations[0].values == ("2024-05-01T10:00:00.000000Z",)
    assert patch.operations[1].values == (4,)
    assert patch_to_dicts(patch)[0] == {
        "op": "add",
        "path": ["details.when"],
        "value": ["2024-05-01T10:00:00.000000Z"],
    }


def test_add_creates_intermediate_objects() -> None:
    out = run([{"op": "add", "path": "details.age", "value": 9}], {"status": "todo"})
    assert out == {"status": "todo", "details": {"age": 9}}
    out = run([{"op": "add", "path": ["meta.a.b"], "value": [[1]]}], {"status": "todo"})
    assert out["meta"] == {"a": {"b": [1]}}


def test_replace_remove_increment_append() -> None:
    out = run(
        [
            {"op": "replace", "path": "details.age", "value": 5},
            {"op": "remove", "path": ["priority"]},
            {"op": "increment", "path": ["score", "details.age"], "value": [1.5, -2]},
            {"op": "append", "path": "tags", "value": "b"},
        ]
    )
    assert out == {"status": "todo", "details": {"age": 3}, "score": 1.5, "tags": ["a", "b"]}
    assert type(out["details"]["age"]) is int
    assert run([{"op": "append", "path": "tags", "value": "x"}], {"status": "todo"})["tags"] == ["x"]


def test_apply_is_atomic_and_does_not_mutate() -> None:
    doc = {"status": "todo", "tags": ["a"], "details": {"age": 1}}
    patch = parse_patch(
        [
            {"op": "append", "path": "tags", "value": "b"},
            {"op": "add", "path": "details.age", "value": 2},
            {"op": "replace", "path": "priority", "value": "x"},  # missing: fails
        ],
        SCHEMA,
    )
    with pytest.raises(FailedPrecondition) as e:
        apply_patch(doc, patch, SCHEMA)
    assert e.value.field == "patch[2].path[0]"
    assert doc == {"status": "todo", "tags": ["a"], "details": {"age": 1}}


@pytest.mark.parametrize(
    ("ops", "doc", "field"),
    [
        ([{"op": "replace", "path": "details.age", "value": 1}], {"status": "todo"}, "patch[0].path[0]"),
        ([{"op": "remove", "path": "priority"}], {"status": "todo"}, "patch[0].path[0]"),
        ([{"op": "remove", "path": "details.age"}], {"status": "todo"}, "patch[0].path[0]"),
        (
            [{"op": "increment", "path": "meta.n", "value": 1}],
            {"status": "todo", "meta": {"n": "x"}},
            "patch[0].path[0]",
        ),
        (
            [{"op": "append", "path": "meta.l", "value": 1}],
            {"status": "todo", "meta": {"l": {}}},
            "patch[0].path[0]",
        ),
        (
            [{"op": "add", "path": "meta.a.b", "value": 1}],
            {"status": "todo", "meta": {"a": 3}},
            "patch[0].path[0]",
        ),
    ],
)
def test_apply_failed_precondition(ops: list[dict[str, Any]], doc: dict[str, Any], field: str) -> None:
    with pytest.raises(FailedPrecondition) as e:
        run(ops, doc)
    assert e.value.field == field


def test_result_is_validated() -> None:
    with pytest.raises(InvalidArgument) as e:
        run([{"op": "increment", "path": "details.age", "value": 2**53 - 1}])  # valid itself; 3 + it is not
    assert e.value.field == "data.details.age"


@pytest.mark.parametrize(
    ("ops", "field"),
    [
        ("nope", "patch"),
        ([1], "patch[0]"),
        ([{"op": "move", "path": "status", "value": 1}], "patch[0].op"),
        ([{"path": "status", "value": 1}], "patch[0].op"),
        ([{"op": "add", "path": "status", "value": "todo", "from": "x"}], "patch[0].from"),
        ([{"op": "add", "path": [], "value": []}], "patch[0].path"),
        ([{"op": "add", "path": 3, "value": 1}], "patch[0].path"),
        ([{"op": "add", "path": ["status", 3], "value": ["todo", 1]}], "patch[0].path[1]"),
        ([{"op": "add", "path": ["status", "a..b"], "value": ["todo", 1]}], "patch[0].path[1]"),
        ([{"op": "add", "path": ["status", "nope"], "value": ["todo", 1]}], "patch[0].path[1]"),
        ([{"op": "add", "path": "details.nope", "value": 1}], "patch[0].path[0]"),
        ([{"op": "add", "path": "status.x", "value": 1}], "patch[0].path[0]"),
        ([{"op": "add", "path": ["status", "status"], "value": ["todo", "todo"]}], "patch[0].path[1]"),
        ([{"op": "add", "path": ["details", "details.age"], "value": [{}, 1]}], "patch[0].path[1]"),
        ([{"op": "add", "path": ["status", "priority"], "value": ["todo"]}], "patch[0].value"),
        ([{"op": "add", "path": ["status"], "value": "todo"}], "patch[0].value"),
        ([{"op": "add", "path": "status"}], "patch[0].value"),
        ([{"op": "remove", "path": "priority", "value": 1}], "patch[0].value"),
        ([{"op": "remove", "path": "status"}], "patch[0].path[0]"),
        ([{"op": "replace", "path": ["priority", "status"], "value": ["x", "bad"]}], "patch[0].value[1]"),
        ([{"op": "replace", "path": "status", "value": None}], "patch[0].value[0]"),
        ([{"op": "add", "path": "details.age", "value": 1.5}], "patch[0].value[0]"),
        ([{"op": "increment", "path": "priority", "value": 1}], "patch[0].value[0]"),
        ([{"op": "increment", "path": "score", "value": "1"}], "patch[0].value[0]"),
        ([{"op": "increment", "path": "details.age", "value": 0.5}], "patch[0].value[0]"),
        ([{"op": "append", "path": "priority", "value": "x"}], "patch[0].value[0]"),
        ([{"op": "append", "path": "tags", "value": 1}], "patch[0].value[0]"),
        ([{"op": "add", "path": "status", "value": "todo"}] * 101, "patch"),
    ],
)
def test_parse_rejects(ops: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_patch(ops, SCHEMA)
    assert e.value.field == field


def test_parse_custom_path_prefix() -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_patch([{"op": "add", "path": "x", "value": 1}], SCHEMA, path="request.patch")
    assert e.value.field == "request.patch[0].path[0]"


def test_additional_fields_schema() -> None:
    s = ModelSchema.from_dict(
        {"name": "t", "fields": {"n": {"type": "integer"}}, "allow_additional_fields": True}
    )
    patch = parse_patch(
        [{"op": "add", "path": "x.y", "value": 1}, {"op": "increment", "path": "c", "value": 2}], s
    )
    assert apply_patch({"n": 1}, patch, s) == {"n": 1, "x": {"y": 1}, "c": 2}
    with pytest.raises(InvalidArgument):
        parse_patch([{"op": "add", "path": "n.y", "value": 1}], s)


def test_partial_model_rules() -> None:
    patch = parse_patch(
        [
            {"op": "remove", "path": "details"},
            {"op": "add", "path": "details.age", "value": 1},
            {"op": "increment", "path": "score", "value": 2},
            {"op": "append", "path": "tags", "value": "z"},
            {"op": "remove", "path": "priority"},
        ],
        SCHEMA,
    )
    assert partial_model(patch) == {"details": {"age": 1}, "score": 2, "tags": "z", "priority": None}
    assert partial_model(Patch(())) == {}


def test_proto_round_trip() -> None:
    patch = parse_patch(
        [
            {"op": "replace", "path": ["status", "details.age"], "value": ["completed", 7]},
            {"op": "remove", "path": "priority"},
            {"op": "add", "path": "meta", "value": {"a": [1, 2.5, None, True]}},
        ],
        SCHEMA,
    )
    pbs = patch_to_proto(patch)
    assert all(isinstance(p, common_pb2.JsonPatchOperation) for p in pbs)
    assert list(pbs[0].path) == ["status", "details.age"]
    assert len(pbs[1].value) == 0
    back = patch_from_proto(pbs, SCHEMA)
    assert back == patch
    assert type(back.operations[0].values[1]) is int


def test_patch_from_proto_validates() -> None:
    pb = common_pb2.JsonPatchOperation(op="add", path=["status"])
    with pytest.raises(InvalidArgument) as e:
        patch_from_proto([pb], SCHEMA)
    assert e.value.field == "patch[0].value"
