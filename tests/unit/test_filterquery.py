"""FilterQuery: parsing, validation errors (each naming its `field`), the seed's
examples, every operator through the matcher and SQLite, and the canonical form."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from typing import Any

import pytest

from nexxus.core.errors import InvalidArgument
from nexxus.core.filterquery import (
    And,
    AuthContext,
    Compare,
    FilterNode,
    In,
    Or,
    compile_matcher,
    filter_to_dict,
    parse_filter,
    sql_sort_exprs,
    to_sql,
)
from nexxus.core.schema import FieldKind, ModelSchema

S, INT, N, B, D = FieldKind.STRING, FieldKind.INTEGER, FieldKind.NUMBER, FieldKind.BOOLEAN, FieldKind.DATETIME

SCHEMA = ModelSchema.from_dict(
    {
        "fields": {
            "priority": {"type": "string", "filterable": True},
            "status": {"type": "string", "filterable": True},
            "assignedTo": {"type": "string", "filterable": True},
            "kind": {"type": "string", "filterable": True, "enum_values": ["bug", "feature"]},
            "notes": {"type": "string"},
            "age": {"type": "integer", "filterable": True},
            "score": {"type": "number", "filterable": True},
            "done": {"type": "boolean", "filterable": True},
            "due": {"type": "datetime", "filterable": True},
            "tags": {"type": "array", "filterable": True, "items": {"type": "string"}},
            "meta": {"type": "object", "filterable": True},
            "user": {
                "type": "object",
                "fields": {
                    "details": {"type": "object", "fields": {"age": {"type": "integer", "filterable": True}}}
                },
            },
        }
    },
    name="task",
)


def parse(raw: Any, **kw: Any) -> FilterNode:
    return parse_filter(raw, SCHEMA, **kw)


def sqlite_match(node: FilterNode, data: dict[str, Any]) -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        sql, params = to_sql(node, "sqlite")
        row = conn.execute(f"SELECT {sql} FROM (SELECT ? AS data)", [*params, json.dumps(data)]).fetchone()
    finally:
        conn.close()
    assert row[0] in (0, 1)
    return bool(row[0])


def check(raw: Any, data: dict[str, Any], expected: bool) -> None:
    node = parse(raw)
    assert compile_matcher(node)(data) is expected
    # The SELECT's placeholder for data comes after the filter's own.
    assert sqlite_match(node, data) is expected


# ------------------------------------------------------------------ seed examples


def test_seed_priority_status_and() -> None:
    raw = {"$and": [{"priority": {"eq": "high"}}, {"status": {"in": ["todo", "in_progress"]}}]}
    node = parse(raw)
    assert node == And((Compare(("priority",), "eq", "high", S), In(("status",), ("todo", "in_progress"), S)))
    m = compile_matcher(node)
    assert m({"priority": "high", "status": "todo"})
    assert not m({"priority": "high", "status": "done"})
    assert not m({"priority": "low", "status": "todo"})
    check(raw, {"priority": "high", "status": "in_progress"}, True)


def test_seed_assigned_to_dollar_eq() -> None:
    node = parse({"assignedTo": {"$eq": "user123"}})
    assert node == Compare(("assignedTo",), "eq", "user123", S)
    check({"assignedTo": {"$eq": "user123"}}, {"assignedTo": "user123"}, True)
    check({"assignedTo": {"$eq": "user123"}}, {"assignedTo": "user456"}, False)


def test_seed_status_in_transit() -> None:
    check({"status": {"eq": "in_transit"}}, {"status": "in_transit"}, True)
    check({"status": {"eq": "in_transit"}}, {"status": "parked"}, False)


def test_seed_nested_dot_path() -> None:
    node = parse({"user.details.age": {"gte": 18}})
    assert node == Compare(("user", "details", "age"), "gte", 18, INT)
    check({"user.details.age": {"gte": 18}}, {"user": {"details": {"age": 30}}}, True)
    check({"user.details.age": {"gte": 18}}, {"user": {"details": {"age": 3}}}, False)
    check({"user.details.age": {"gte": 18}}, {"user": "nope"}, False)
    check({"user.details.age": {"gte": 18}}, {}, False)


# ------------------------------------------------------------------ operators

OPERATOR_CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # eq / ne on strings
    ({"status": {"eq": "a"}}, {"status": "a"}, True),
    ({"status": {"eq": "a"}}, {"status": "A"}, False),
    ({"status": {"eq": "1"}}, {"status": 1}, False),
    ({"status": {"ne": "a"}}, {"status": "b"}, True),
    ({"status": {"ne": "a"}}, {"status": "a"}, False),
    ({"status": {"ne": "a"}}, {}, True),  # ne is NOT eq: missing matches
    ({"status": {"ne": "a"}}, {"status": None}, True),
    ({"status": {"ne": "a"}}, {"status": 5}, True),
    # ordering on strings: code points
    ({"status": {"gt": "Z"}}, {"status": "a"}, True),
    ({"status": {"lt": "é"}}, {"status": "z"}, True),
    ({"status": {"gt": "日"}}, {"status": "😀"}, True),
    ({"status": {"gte": "b"}}, {"status": "b"}, True),
    ({"status": {"lte": "b"}}, {"status": "c"}, False),
    ({"status": {"gt": "a"}}, {}, False),
    ({"status": {"gt": "a"}}, {"status": None}, False),
    ({"status": {"gt": "0"}}, {"status": 5}, False),
    # numbers
    ({"age": {"eq": 2}}, {"age": 2.0}, True),
    ({"score": {"eq": 2.0}}, {"score": 2}, True),
    ({"age": {"eq": 1}}, {"age": True}, False),
    ({"done": {"eq": True}}, {"done": 1}, False),
    ({"age": {"ne": 1}}, {"age": True}, True),
    ({"age": {"gt": 1}}, {"age": 2}, True),
    ({"age": {"gt": 1}}, {"age": 1}, False),
    ({"age": {"gte": 1}}, {"age": 1}, True),
    ({"age": {"lt": -5}}, {"age": -9007199254740991}, True),
    ({"age": {"lte": 2}}, {"age": 2.5}, False),
    ({"score": {"gt": 2}}, {"score": 2.5}, True),
    ({"age": {"gt": 1}}, {"age": "5"}, False),
    ({"age": {"lt": 1}}, {"age": False}, False),
    ({"age": {"gte": 1, "lt": 5}}, {"age": 3}, True),
    ({"age": {"gte": 1, "lt": 5}}, {"age": 5}, False),
    # booleans
    ({"done": {"eq": True}}, {"done": True}, True),
    ({"done": {"eq": False}}, {"done": True}, False),
    ({"done": {"ne": False}}, {}, True),
    ({"done": {"in": [True, False]}}, {"done": False}, True),
    ({"done": {"in": [True, False]}}, {"done": 0}, False),
    # in
    ({"status": {"in": ["a", "b"]}}, {"status": "b"}, True),
    ({"status": {"in": ["a", "b"]}}, {"status": "c"}, False),
    ({"status": {"$in": ["a"]}}, {}, False),
    ({"age": {"in": [1, 2]}}, {"age": 2.0}, True),
    ({"age": {"in": [1]}}, {"age": True}, False),
    # null
    ({"status": {"eq": None}}, {}, True),
    ({"status": {"eq": None}}, {"status": None}, True),
    ({"status": {"eq": None}}, {"status": ""}, False),
    ({"status": {"ne": None}}, {"status": ""}, True),
    ({"status": {"ne": None}}, {}, False),
    ({"user.details.age": {"eq": None}}, {"user": 3}, True),
    # datetimes: normalized, compared as strings
    ({"due": {"eq": "2024-01-01T01:00:00+01:00"}}, {"due": "2024-01-01T00:00:00.000000Z"}, True),
    ({"due": {"gt": "2024-01-01T00:00:00Z"}}, {"due": "2024-01-01T00:00:00.000001Z"}, True),
    ({"due": {"lt": "2024-01-01T00:00:00Z"}}, {"due": "2030-01-01T00:00:00.000000Z"}, False),
    # logic
    ({"$or": [{"age": {"eq": 1}}, {"status": {"eq": "x"}}]}, {"status": "x"}, True),
    ({"or": [{"age": {"eq": 1}}, {"status": {"eq": "x"}}]}, {"status": "y"}, False),
    ({"and": [{"age": {"eq": 1}}, {"status": {"eq": "x"}}]}, {"age": 1, "status": "x"}, True),
    ({"age": {"eq": 1}, "status": {"eq": "x"}}, {"age": 1, "status": "y"}, False),
    (
        {"$and": [{"$or": [{"age": {"lt": 0}}, {"age": {"gt": 10}}]}, {"done": {"ne": True}}]},
        {"age": 11},
        True,
    ),
]


@pytest.mark.parametrize(("raw", "data", "expected"), OPERATOR_CASES)
def test_operator(raw: dict[str, Any], data: dict[str, Any], expected: bool) -> None:
    check(raw, data, expected)


# ------------------------------------------------------------------ parsing


def test_parse_shapes() -> None:
    assert parse({"age": {"$gte": 1, "lt": 5}}) == And(
        (Compare(("age",), "gte", 1, INT), Compare(("age",), "lt", 5, INT))
    )
    assert parse({"$or": [{"done": {"eq": True}}]}) == Or((Compare(("done",), "eq", True, B),))
    assert parse({"age": {"eq": 3.0}}) == Compare(("age",), "eq", 3, INT)
    assert isinstance(parse({"age": {"eq": 3.0}}).value, int)  # type: ignore[union-attr]
    assert parse({"score": {"in": [1, 2.5]}}) == In(("score",), (1, 2.5), N)
    assert parse({"due": {"lte": "2024-02-03T04:05:06.7+02:00"}}) == Compare(
        ("due",), "lte", "2024-02-03T02:05:06.700000Z", D
    )


def test_filter_to_dict_is_canonical_and_round_trips() -> None:
    raw = {"priority": {"$eq": "high"}, "or": [{"age": {"gte": 1, "lt": 5}}, {"status": {"$in": ["a"]}}]}
    node = parse(raw)
    canonical = filter_to_dict(node)
    assert canonical == {
        "$and": [
            {"priority": {"eq": "high"}},
            {"$or": [{"$and": [{"age": {"gte": 1}}, {"age": {"lt": 5}}]}, {"status": {"in": ["a"]}}]},
        ]
    }
    assert parse(canonical) == node
    assert json.loads(json.dumps(canonical)) == canonical


def test_auth_values_are_substituted() -> None:
    auth = AuthContext(user_id="u1", device_id="d1")
    assert parse({"assignedTo": {"eq": "$auth.user_id"}}, auth=auth) == Compare(
        ("assignedTo",), "eq", "u1", S
    )
    assert parse({"assignedTo": {"in": ["$auth.device_id", "x"]}}, auth=auth) == In(
        ("assignedTo",), ("d1", "x"), S
    )


ERROR_CASES: list[tuple[Any, str]] = [
    ([], "filter"),
    ("priority", "filter"),
    ({}, "filter"),
    ({"nope": {"eq": 1}}, "filter.nope"),
    ({"user.details.nope": {"eq": 1}}, "filter.user.details.nope"),
    ({"user..age": {"eq": 1}}, "filter.user..age"),
    ({"notes": {"eq": "x"}}, "filter.notes"),
    ({"tags": {"eq": "x"}}, "filter.tags"),
    ({"meta": {"eq": "x"}}, "filter.meta"),
    ({"user": {"eq": "x"}}, "filter.user"),
    ({"priority": "high"}, "filter.priority"),
    ({"priority": {}}, "filter.priority"),
    ({"priority": {"like": "h%"}}, "filter.priority.like"),
    ({"priority": {"$regex": "h"}}, "filter.priority.$regex"),
    ({"$not": [{"priority": {"eq": "x"}}]}, "filter.$not"),
    ({"$and": {"priority": {"eq": "x"}}}, "filter.$and"),
    ({"$and": []}, "filter.$and"),
    ({"or": "x"}, "filter.or"),
    ({"$and": [{"priority": {"eq": "x"}}, "nope"]}, "filter.$and[1]"),
    ({"$and": [{"priority": {"eq": "x"}}, {"status": {"in": "todo"}}]}, "filter.$and[1].status.in"),
    ({"status": {"in": []}}, "filter.status.in"),
    ({"status": {"in": ["a"] * 1001}}, "filter.status.in"),
    ({"status": {"in": ["a", None]}}, "filter.status.in[1]"),
    ({"status": {"in": ["a", 3]}}, "filter.status.in[1]"),
    ({"status": {"eq": 3}}, "filter.status.eq"),
    ({"status": {"eq": "a\x00b"}}, "filter.status.eq"),
    ({"status": {"gt": None}}, "filter.status.gt"),
    ({"kind": {"eq": "chore"}}, "filter.kind.eq"),
    ({"age": {"eq": "3"}}, "filter.age.eq"),
    ({"age": {"eq": 3.5}}, "filter.age.eq"),
    ({"age": {"gt": True}}, "filter.age.gt"),
    ({"age": {"eq": 2**53 + 1}}, "filter.age.eq"),
    ({"age": {"eq": 2**53}}, "filter.age.eq"),  # what 2**53 + 1 becomes as a double
    ({"user.details.age": {"lt": "x"}}, "filter.user.details.age.lt"),
    ({"score": {"eq": float("inf")}}, "filter.score.eq"),
    ({"score": {"eq": float("nan")}}, "filter.score.eq"),
    ({"score": {"eq": False}}, "filter.score.eq"),
    ({"score": {"lte": [1]}}, "filter.score.lte"),
    ({"done": {"gt": True}}, "filter.done.gt"),
    ({"done": {"eq": 1}}, "filter.done.eq"),
    ({"done": {"in": [True, "x"]}}, "filter.done.in[1]"),
    ({"due": {"gt": "yesterday"}}, "filter.due.gt"),
    ({"due": {"gt": "2024-13-01T00:00:00Z"}}, "filter.due.gt"),
    ({"due": {"eq": 1700000000}}, "filter.due.eq"),
    ({"assignedTo": {"eq": "$auth.user_id"}}, "filter.assignedTo.eq"),
    ({"assignedTo": {"eq": "$auth.email"}}, "filter.assignedTo.eq"),
    ({"$or": [{"assignedTo": {"in": ["a", "$auth.device_id"]}}]}, "filter.$or[0].assignedTo.in[1]"),
]


@pytest.mark.parametrize(("raw", "field"), ERROR_CASES)
def test_invalid_filter_names_the_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(raw)
    assert info.value.field == field


def test_error_prefix_and_auth_without_device() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(
            {"assignedTo": {"eq": "$auth.device_id"}},
            path="subscription.filter",
            auth=AuthContext(user_id="u"),
        )
    assert info.value.field == "subscription.filter.assignedTo.eq"


def test_max_depth() -> None:
    raw: dict[str, Any] = {"age": {"eq": 1}}
    for _ in range(3):
        raw = {"$and": [raw]}
    assert isinstance(parse(raw, max_depth=4), And)
    with pytest.raises(InvalidArgument) as info:
        parse(raw, max_depth=3)
    assert info.value.field == "filter.$and[0].$and[0].$and[0]"
    assert info.value.reason == "FILTER_TOO_DEEP"


def test_max_nodes() -> None:
    raw = {"$or": [{"age": {"eq": i}} for i in range(5)]}
    assert isinstance(parse(raw, max_nodes=6), Or)
    with pytest.raises(InvalidArgument) as info:
        parse(raw, max_nodes=5)
    assert info.value.field == "filter.$or"
    with pytest.raises(InvalidArgument) as info:
        parse(raw, max_nodes=3)
    assert info.value.field == "filter.$or[3].age.eq"


# ------------------------------------------------------------------ SQL text


def test_postgres_params_are_numbered_from_param_start() -> None:
    node = parse({"age": {"gt": 1}, "status": {"in": ["a", "b"]}, "score": {"lte": 0.1}})
    sql, params = to_sql(node, "postgres", column="o.data", param_start=3)
    assert params == [Decimal(1), ["a", "b"], Decimal("0.1")]
    assert "$3::numeric" in sql
    assert "$4::text[]" in sql
    assert "$5::numeric" in sql
    assert "o.data->'age'" in sql


def test_sqlite_placeholders_and_bad_column() -> None:
    sql, params = to_sql(parse({"status": {"in": ["a", "b"]}}), "sqlite")
    assert sql.count("?") == 2
    assert params == ["a", "b"]
    with pytest.raises(ValueError, match="unsafe column"):
        to_sql(parse({"age": {"eq": 1}}), "sqlite", column="data; DROP TABLE x")


def test_sqlite_sort_exprs_order_types_then_values() -> None:
    values: list[Any] = ["b", "a", 2, 1.5, True, False, None, "é", {"x": 1}]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER, data TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, json.dumps({"v": v})) for i, v in enumerate(values)])
    conn.execute("INSERT INTO t VALUES (99, '{}')")
    order = ", ".join(sql_sort_exprs(("v",), "sqlite"))
    ids = [r[0] for r in conn.execute(f"SELECT id FROM t ORDER BY {order}, id")]
    conn.close()
    assert ids == [6, 99, 5, 4, 3, 2, 1, 0, 7, 8]
