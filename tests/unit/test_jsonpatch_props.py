"""Property tests: schema round trips, patch atomicity, proto round trips."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nexxus.core.convert import dict_to_struct, struct_to_dict
from nexxus.core.errors import FailedPrecondition, InvalidArgument
from nexxus.core.jsonpatch import apply_patch, parse_patch, partial_model, patch_from_proto, patch_to_proto
from nexxus.core.schema import ModelSchema

SETTINGS = settings(max_examples=200, deadline=None)

SCHEMA = ModelSchema.from_dict(
    {
        "name": "task",
        "fields": {
            "status": {"type": "string", "required": True},
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "d": {"type": "object", "fields": {"a": {"type": "integer"}, "b": {"type": "string"}}},
            "l": {"type": "array", "items": {"type": "integer"}},
        },
    }
)
PATHS = ["status", "n", "x", "d", "d.a", "d.b", "l", "nope"]
ints = st.integers(-(2**40), 2**40)
values = st.one_of(
    st.none(),
    ints,
    st.floats(-1e6, 1e6),
    st.text(max_size=5),
    st.lists(ints, max_size=3),
    st.fixed_dictionaries({}, optional={"a": ints, "b": st.text(max_size=3)}),
)
ops = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["add", "replace", "remove", "increment", "append"]),
        "path": st.sampled_from(PATHS),
    },
    optional={"value": values},
)
docs = st.fixed_dictionaries(
    {"status": st.text(max_size=5)},
    optional={
        "n": ints,
        "x": st.floats(-1e6, 1e6),
        "d": st.fixed_dictionaries({}, optional={"a": ints}),
        "l": st.lists(ints, max_size=3),
    },
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53 - 1), 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(docs, st.lists(ops, max_size=5))
def test_apply_is_all_or_nothing(doc: dict[str, Any], raw_ops: list[dict[str, Any]]) -> None:
    before = repr(doc)
    try:
        patch = parse_patch(raw_ops, SCHEMA)
    except InvalidArgument as e:
        field = e.field
        assert str(field).startswith("patch")
        return
    try:
        out = apply_patch(doc, patch, SCHEMA)
    except (InvalidArgument, FailedPrecondition) as e:
        field = e.field
        assert field is not None
    else:
        assert SCHEMA.validate_object(out) == out  # the result is valid and normalized
        part = partial_model(patch)
        assert set(part) <= set(out) | {p.split(".")[0] for op in patch for p in op.paths}
        assert patch_from_proto(patch_to_proto(patch), SCHEMA) == patch
    assert repr(doc) == before  # never mutated


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_struct_round_trip(d: dict[str, Any]) -> None:
    out = struct_to_dict(dict_to_struct(d))
    assert out == d


@SETTINGS
@given(docs)
def test_validated_objects_survive_struct(doc: dict[str, Any]) -> None:
    valid = SCHEMA.validate_object(doc)
    assert SCHEMA.validate_object(struct_to_dict(dict_to_struct(valid))) == valid


field_specs = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "number", "integer", "boolean", "datetime"])},
        optional={"required": st.booleans(), "filterable": st.booleans()},
    ),
    lambda c: (
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "fields": st.dictionaries(
                    st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), c, max_size=3
                ),
            }
        )
        | st.fixed_dictionaries({"type": st.just("array"), "items": c})
    ),
    max_leaves=8,
)


@SETTINGS
@given(
    st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), field_specs, max_size=4),
    st.booleans(),
)
def test_schema_round_trips(fields: dict[str, Any], extra: bool) -> None:
    try:
        s = ModelSchema.from_dict({"name": "m", "fields": fields, "allow_additional_fields": extra})
    except InvalidArgument as e:
        message = e.message
        assert "deeper than" in message
        return
    assert ModelSchema.from_dict(s.to_dict()) == s
    assert ModelSchema.from_proto(s.to_proto()) == s
