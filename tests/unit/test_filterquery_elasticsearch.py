"""FilterQuery → Elasticsearch query DSL: exact clauses for each operator, the
indexed typed view and mapping, and agreement with the Python matcher through a
small evaluator of the emitted clauses (term / terms / range / bool) over the
typed view, as Elasticsearch indexes it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from nexxus.core.filterquery import PRESENT_FIELD, compile_matcher, parse_filter, to_elasticsearch
from nexxus.core.filterquery.elasticsearch import DYNAMIC_TEMPLATES, mapping_properties, typed_view
from nexxus.core.schema import ModelSchema

from .test_filterquery_differential import cases

SCHEMA = ModelSchema.from_dict(
    {
        "fields": {
            "status": {"type": "string", "filterable": True},
            "age": {"type": "integer", "filterable": True},
            "score": {"type": "number", "filterable": True},
            "done": {"type": "boolean", "filterable": True},
            "due": {"type": "datetime", "filterable": True},
            "tags": {"type": "array", "items": {"type": "string"}},
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


def es(raw: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return to_elasticsearch(parse_filter(raw, SCHEMA), **kw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"status": {"eq": "a"}}, {"term": {"data.status__s": "a"}}),
        ({"status": {"ne": "a"}}, {"bool": {"must_not": [{"term": {"data.status__s": "a"}}]}}),
        ({"age": {"gt": 1}}, {"range": {"data.age__n": {"gt": 1}}}),
        ({"age": {"gte": 1}}, {"range": {"data.age__n": {"gte": 1}}}),
        ({"score": {"lt": 2.5}}, {"range": {"data.score__n": {"lt": 2.5}}}),
        ({"score": {"lte": -1}}, {"range": {"data.score__n": {"lte": -1}}}),
        ({"done": {"eq": False}}, {"term": {"data.done__b": False}}),
        ({"status": {"in": ["a", "b"]}}, {"terms": {"data.status__s": ["a", "b"]}}),
        ({"user.details.age": {"eq": 3}}, {"term": {"data.user.details.age__n": 3}}),
        (
            {"due": {"gte": "2024-01-01T01:00:00+01:00"}},
            {"range": {"data.due__s": {"gte": "2024-01-01T00:00:00.000000Z"}}},
        ),
        ({"status": {"eq": None}}, {"bool": {"must_not": [{"term": {PRESENT_FIELD: "status"}}]}}),
        ({"user.details.age": {"ne": None}}, {"term": {PRESENT_FIELD: "user.details.age"}}),
        (
            {"$and": [{"status": {"eq": "a"}}, {"age": {"lt": 3}}]},
            {"bool": {"filter": [{"term": {"data.status__s": "a"}}, {"range": {"data.age__n": {"lt": 3}}}]}},
        ),
        (
            {"$or": [{"status": {"eq": "a"}}, {"age": {"lt": 3}}]},
            {
                "bool": {
                    "should": [{"term": {"data.status__s": "a"}}, {"range": {"data.age__n": {"lt": 3}}}],
                    "minimum_should_match": 1,
                }
            },
        ),
    ],
)
def test_translation(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    assert es(raw) == expected


def test_field_prefix_and_present_field() -> None:
    assert es({"status": {"eq": None}}, field_prefix="doc.", present_field="p") == {
        "bool": {"must_not": [{"term": {"p": "status"}}]}
    }
    assert es({"status": {"eq": "x"}}, field_prefix="doc.") == {"term": {"doc.status__s": "x"}}


def test_mapping_properties() -> None:
    assert mapping_properties(SCHEMA) == {
        "status__s": {"type": "keyword", "ignore_above": 8191},
        "age__n": {"type": "double"},
        "score__n": {"type": "double"},
        "done__b": {"type": "boolean"},
        "due__s": {"type": "keyword", "ignore_above": 8191},
        "user": {
            "type": "object",
            "properties": {"details": {"type": "object", "properties": {"age__n": {"type": "double"}}}},
        },
    }
    assert [next(iter(t.values()))["match"] for t in DYNAMIC_TEMPLATES] == ["*__s", "*__n", "*__b"]


def test_typed_view_indexes_by_json_type() -> None:
    data = {
        "status": 5,
        "age": 2.5,
        "score": True,
        "done": None,
        "tags": ["x"],
        "user": {"details": {"age": 7}},
    }
    view, present = typed_view(data, SCHEMA)
    # Indexed under the value's actual JSON type; objects, arrays, nulls left out.
    assert view == {"status__n": 5, "age__n": 2.5, "score__b": True, "user": {"details": {"age__n": 7}}}
    assert present == ["status", "age", "score", "user.details.age"]


# ------------------------------------------------------------------ agreement


def _get(doc: dict[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for key in dotted.split("."):
        cur = cur.get(key) if isinstance(cur, dict) else None
    return cur


def _es_eval(q: dict[str, Any], doc: dict[str, Any]) -> bool:
    """Elasticsearch's meaning of the clauses we emit, over one indexed doc."""
    ((kind, body),) = q.items()
    if kind == "bool":
        ok = all(_es_eval(c, doc) for c in body.get("filter", []))
        ok = ok and not any(_es_eval(c, doc) for c in body.get("must_not", []))
        if "should" in body:
            ok = ok and any(_es_eval(c, doc) for c in body["should"])
        return ok
    ((field, arg),) = body.items()
    value = _get(doc, field) if field != PRESENT_FIELD else doc[PRESENT_FIELD]
    if field == PRESENT_FIELD:
        return arg in value
    if value is None:
        return False
    if kind == "term":
        return bool(value == arg)
    if kind == "terms":
        return any(value == a for a in arg)
    ((op, bound),) = arg.items()
    return {"gt": value > bound, "gte": value >= bound, "lt": value < bound, "lte": value <= bound}[op]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_elasticsearch_agrees_with_matcher(case: Any) -> None:
    schema, objs, raw_filters = case
    docs = []
    for o in objs:
        view, present = typed_view(o, schema)
        docs.append({"data": view, PRESENT_FIELD: present})
    for raw in raw_filters:
        node = parse_filter(raw, schema)
        match = compile_matcher(node)
        query = to_elasticsearch(node)
        assert [_es_eval(query, d) for d in docs] == [match(o) for o in objs], (raw, query)
