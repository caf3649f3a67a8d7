"""Compile a filter tree into an Elasticsearch query (bool / term / terms /
range clauses, filter context only: no scoring).

The Elasticsearch adapter indexes a *typed view* of each object under
`field_prefix` (``data.``): every declared scalar field path holding a string,
number or boolean is indexed under its path plus a suffix naming the value's
**actual JSON type** — ``__s`` (keyword), ``__n`` (double), ``__b`` (boolean)
— e.g. ``data.user.details.age__n``. A filter on a field queries the suffix of
the field's schema kind (string/datetime → ``__s``, integer/number → ``__n``,
boolean → ``__b``), so a wrong-typed value never compares, exactly as in the
matcher and SQL, and a schema change of a field's kind never conflicts with
the index mapping. Objects, arrays and nulls are not indexed in the view.

`PRESENT_FIELD` lists the declared scalar paths holding any non-null value; it
answers ``eq null`` ("missing or null") exactly, whatever the value's type.

Numbers are ``double``: the schema bounds integers to +-2**53, so every valid
integer is exact, and integers compare with floats numerically. Lucene orders
-0.0 below 0.0 where JSON, SQL and the matcher see one number, so -0.0 becomes
0.0 both in the view and in query operands (`_number`).

`typed_view`, `mapping_properties` and `DYNAMIC_TEMPLATES` build the view and
its mapping; the adapter (nexxus.adapters.database.elasticsearch) uses them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from nexxus.core.filterquery.ast import And, Compare, FilterNode, In, Or
from nexxus.core.schema import FieldKind, FieldSpec, ModelSchema

__all__ = [
    "DYNAMIC_TEMPLATES",
    "MAX_KEYWORD_CHARS",
    "PRESENT_FIELD",
    "es_field",
    "mapping_properties",
    "scalar_leaves",
    "to_elasticsearch",
    "typed_view",
]

# Keyword field listing the dotted paths (e.g. "user.details.age") that hold a
# non-null value in the object's data.
PRESENT_FIELD = "nx_present"
# Lucene cannot index terms over 32766 bytes (8191 characters of up to 4 UTF-8
# bytes); longer strings are left out of the view.
MAX_KEYWORD_CHARS = 8191

_SUFFIX = {
    FieldKind.STRING: "__s",
    FieldKind.DATETIME: "__s",
    FieldKind.INTEGER: "__n",
    FieldKind.NUMBER: "__n",
    FieldKind.BOOLEAN: "__b",
}
_MAPPING: dict[str, dict[str, Any]] = {
    "__s": {"type": "keyword", "ignore_above": MAX_KEYWORD_CHARS},
    "__n": {"type": "double"},
    "__b": {"type": "boolean"},
}
# Map any suffixed field under `data` (e.g. a value whose type differs from its
# field's kind) by its suffix. Top-level `dynamic_templates` of the index mapping.
DYNAMIC_TEMPLATES: list[dict[str, Any]] = [
    {f"nx{suffix}": {"path_match": "data.*", "match": f"*{suffix}", "mapping": mapping}}
    for suffix, mapping in _MAPPING.items()
]


def es_field(path: tuple[str, ...], kind: FieldKind, field_prefix: str = "data.") -> str:
    """The indexed field a filter on `path` of schema kind `kind` queries."""
    return field_prefix + ".".join(path) + _SUFFIX[kind]


def to_elasticsearch(
    node: FilterNode, *, field_prefix: str = "data.", present_field: str = PRESENT_FIELD
) -> dict[str, Any]:
    """An Elasticsearch query dict (the value of a search's ``query``)."""
    if isinstance(node, Compare):
        return _compare(node, field_prefix, present_field)
    if isinstance(node, In):
        return {"terms": {es_field(node.path, node.kind, field_prefix): [_number(v) for v in node.values]}}
    children = [
        to_elasticsearch(c, field_prefix=field_prefix, present_field=present_field) for c in node.children
    ]
    if isinstance(node, And):
        return {"bool": {"filter": children}}
    assert isinstance(node, Or)
    return {"bool": {"should": children, "minimum_should_match": 1}}


def _compare(node: Compare, prefix: str, present_field: str) -> dict[str, Any]:
    if node.value is None:
        present = {"term": {present_field: ".".join(node.path)}}
        # eq null: missing or null, i.e. not a present path; ne null: present.
        return present if node.op == "ne" else {"bool": {"must_not": [present]}}
    field = es_field(node.path, node.kind, prefix)
    value = _number(node.value)
    if node.op == "eq":
        return {"term": {field: value}}
    if node.op == "ne":
        return {"bool": {"must_not": [{"term": {field: value}}]}}
    return {"range": {field: {node.op: value}}}


def _number(value: Any) -> Any:
    """-0.0 as 0.0 (one number for JSON, two for Lucene); anything else unchanged."""
    return 0.0 if isinstance(value, float) and value == 0 else value


# ---------------------------------------------------------------- indexed view


def scalar_leaves(
    fields: Mapping[str, FieldSpec], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldKind]]:
    """Every declared scalar field path of a schema (through declared objects)."""
    for name, spec in fields.items():
        path = (*prefix, name)
        if spec.kind is FieldKind.OBJECT:
            yield from scalar_leaves(spec.fields, path)
        elif spec.kind is not FieldKind.ARRAY:
            yield path, spec.kind


def mapping_properties(schema: ModelSchema) -> dict[str, Any]:
    """Explicit `properties` under ``data`` for the schema's declared scalar
    fields (their kind's suffix); other suffixes map through DYNAMIC_TEMPLATES."""
    out: dict[str, Any] = {}
    for path, kind in scalar_leaves(schema.fields):
        props = out
        for key in path[:-1]:
            props = props.setdefault(key, {"type": "object", "properties": {}})["properties"]
        suffix = _SUFFIX[kind]
        props[path[-1] + suffix] = dict(_MAPPING[suffix])
    return out


def _suffix_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "__b"
    if isinstance(value, int | float):
        return "__n"
    if isinstance(value, str) and len(value) <= MAX_KEYWORD_CHARS:
        return "__s"
    return None


def typed_view(data: Mapping[str, Any], schema: ModelSchema) -> tuple[dict[str, Any], list[str]]:
    """(the typed view of `data` to index under ``data``, the present paths).

    Strings longer than MAX_KEYWORD_CHARS are left out of the view (so they
    never compare in Elasticsearch; they still count as present)."""
    view: dict[str, Any] = {}
    present: list[str] = []
    for path, _kind in scalar_leaves(schema.fields):
        cur: Any = data
        for key in path:
            cur = cur.get(key) if isinstance(cur, Mapping) else None
        if cur is None:
            continue
        present.append(".".join(path))
        suffix = _suffix_of(cur)
        if suffix is None:
            continue
        target = view
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1] + suffix] = _number(cur)
    return view, present
