"""Differential property test: the Python matcher, the router's match index,
SQLite (JSON text column), PostgreSQL (JSONB, on the server the suite starts)
and OpenSearch (the query DSL on the adapter's typed view and mapping, on the
node the suite starts) select exactly the same objects for random schemas,
objects and valid filters."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexxus.adapters.database._engine_docs import OBJECT_PROPERTIES, object_mappings
from nexxus.core.filterquery import (
    PRESENT_FIELD,
    compile_matcher,
    filter_to_dict,
    iter_leaves,
    parse_filter,
    to_elasticsearch,
    to_sql,
)
from nexxus.core.filterquery.elasticsearch import mapping_properties, typed_view
from nexxus.core.schema import MAX_SAFE_INTEGER, FieldKind, ModelSchema
from nexxus.router.index import ModelIndex, ObjectState
from nexxus.v1.subscriptions_pb2 import Subscription

SCALAR_KINDS = [FieldKind.STRING, FieldKind.INTEGER, FieldKind.NUMBER, FieldKind.BOOLEAN, FieldKind.DATETIME]

# Small pools make equalities likely; the wide draws cover the rest.
STRINGS = st.one_of(
    st.sampled_from(["", "a", "b", "ab", "B", "é", "e\u0301", "日本", "😀", "1", "true", "null", "2", "a b"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
)
INTS = st.one_of(
    st.sampled_from([0, 1, 2, -1, -2, 3, 10, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**31, -(2**31) - 1]),
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
)
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 2.5, -2.5, 0.1, 1e-7, 1e300, -1e300, 3.0000000000000004]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-(2.0**52), max_value=2.0**52),
    st.floats(allow_nan=False, allow_infinity=False),
)
DATETIMES = st.sampled_from(
    [
        "2024-01-01T00:00:00.000000Z",
        "2024-01-01T00:00:00.000001Z",
        "2024-06-30T12:30:00.000000Z",
        "1999-12-31T23:59:59.999999Z",
        "2030-01-01T00:00:00.000000Z",
    ]
)
# Filter operand spellings that normalize onto the pool above.
DATETIME_INPUTS = st.one_of(
    DATETIMES,
    st.sampled_from(["2024-01-01T01:00:00+01:00", "2024-06-30 12:30:00Z", "2024-01-01T00:00:00.0000015Z"]),
)

ANY_SCALAR: st.SearchStrategy[Any] = st.one_of(st.none(), st.booleans(), INTS, FLOATS, STRINGS, DATETIMES)
ANY_VALUE = st.one_of(
    ANY_SCALAR,
    st.lists(ANY_SCALAR, max_size=2),
    st.dictionaries(st.sampled_from(["x", "age", "v"]), ANY_SCALAR, max_size=2),
)
OPS_BY_KIND = {
    FieldKind.BOOLEAN: ["eq", "ne", "in"],
}
ALL_OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in"]


@st.composite
def schemas(draw: st.DrawFn) -> tuple[ModelSchema, list[tuple[tuple[str, ...], FieldKind]]]:
    """A schema with a few scalar fields and one nested object; returns the
    schema and its filterable leaf paths."""
    leaves: list[tuple[tuple[str, ...], FieldKind]] = []
    fields: dict[str, Any] = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(SCALAR_KINDS), min_size=1, max_size=6))):
        name = f"f{i}_{kind.value}"
        fields[name] = {"type": kind.value, "filterable": True}
        leaves.append(((name,), kind))
    inner: dict[str, Any] = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(SCALAR_KINDS), max_size=3))):
        inner[f"g{i}"] = {"type": kind.value, "filterable": True}
        leaves.append((("obj", f"g{i}"), kind))
    if inner:
        fields["obj"] = {"type": "object", "fields": inner}
    return ModelSchema.from_dict({"fields": fields}, name="thing"), leaves


def fitting(kind: FieldKind) -> st.SearchStrategy[Any]:
    return {
        FieldKind.STRING: STRINGS,
        FieldKind.INTEGER: INTS,
        FieldKind.NUMBER: st.one_of(INTS, FLOATS),
        FieldKind.BOOLEAN: st.booleans(),
        FieldKind.DATETIME: DATETIMES,
    }[kind]


def operand(kind: FieldKind) -> st.SearchStrategy[Any]:
    if kind is FieldKind.DATETIME:
        return DATETIME_INPUTS
    if kind is FieldKind.INTEGER:
        # Integral floats are accepted for integer fields (protobuf Struct numbers).
        return st.one_of(INTS, INTS.map(float).filter(lambda f: abs(f) <= MAX_SAFE_INTEGER))
    return fitting(kind)


@st.composite
def objects(draw: st.DrawFn, leaves: list[tuple[tuple[str, ...], FieldKind]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for path, kind in leaves:
        choice = draw(st.sampled_from(["missing", "null", "fit", "fit", "fit", "other"]))
        if choice == "missing":
            continue
        value = None if choice == "null" else draw(fitting(kind) if choice == "fit" else ANY_VALUE)
        if len(path) == 1:
            data[path[0]] = value
        else:
            parent = data.get(path[0])
            if parent is None and path[0] not in data:
                # Sometimes the parent object itself is wrong-typed or null.
                parent = draw(st.sampled_from([{}, {}, {}, None, "obj", 3, [1]]))
                data[path[0]] = parent
            if isinstance(parent, dict):
                parent[path[1]] = value
    return data


@st.composite
def leaf_filters(draw: st.DrawFn, leaves: list[tuple[tuple[str, ...], FieldKind]]) -> dict[str, Any]:
    path, kind = draw(st.sampled_from(leaves))
    op = draw(st.sampled_from(OPS_BY_KIND.get(kind, ALL_OPS)))
    if op == "in":
        value: Any = draw(st.lists(operand(kind), min_size=1, max_size=4))
    elif op in ("eq", "ne") and draw(st.integers(0, 5)) == 0:
        value = None
    else:
        value = draw(operand(kind))
    op_key = draw(st.sampled_from([op, "$" + op]))
    ops = {op_key: value}
    if op in ("gt", "gte") and kind is not FieldKind.BOOLEAN and draw(st.booleans()):
        ops[draw(st.sampled_from(["lt", "$lte"]))] = draw(operand(kind))
    return {".".join(path): ops}


def filters(leaves: list[tuple[tuple[str, ...], FieldKind]]) -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        logic = st.sampled_from(["$and", "$or", "and", "or"])
        return st.one_of(
            st.builds(lambda k, cs: {k: cs}, logic, st.lists(children, min_size=1, max_size=3)),
            st.lists(children, min_size=2, max_size=3).map(_merge),
        )

    return st.recursive(leaf_filters(leaves), extend, max_leaves=6)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several clauses in one object (implicit AND) when their keys differ."""
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if k in out:
                return {"$and": parts}
            out[k] = v
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[ModelSchema, list[dict[str, Any]], list[dict[str, Any]]]:
    schema, leaves = draw(schemas())
    objs = draw(st.lists(objects(leaves), min_size=1, max_size=12))
    raw_filters = draw(st.lists(filters(leaves), min_size=1, max_size=3))
    return schema, objs, raw_filters


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


@pytest.fixture(scope="module")
def sqlite_db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE objs (id INTEGER PRIMARY KEY, data TEXT NOT NULL)")
    yield conn
    conn.close()


def _sqlite_ids(conn: sqlite3.Connection, objs: list[dict[str, Any]], node: Any) -> set[int]:
    sql, params = to_sql(node, "sqlite")
    return {row[0] for row in conn.execute(f"SELECT id FROM objs WHERE {sql}", params)}


HYPOTHESIS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@HYPOTHESIS
@given(case=cases())
def test_matcher_and_sqlite_agree(sqlite_db: sqlite3.Connection, case: Any) -> None:
    schema, objs, raw_filters = case
    sqlite_db.execute("DELETE FROM objs")
    for escape in (False, True):
        sqlite_db.execute("DELETE FROM objs")
        sqlite_db.executemany(
            "INSERT INTO objs (id, data) VALUES (?, ?)",
            [(i, json.dumps(o, ensure_ascii=escape, allow_nan=False)) for i, o in enumerate(objs)],
        )
        for raw in raw_filters:
            node = parse_filter(raw, schema)
            assert parse_filter(filter_to_dict(node), schema) == node
            match = compile_matcher(node)
            expected = {i for i, o in enumerate(objs) if match(o)}
            assert _sqlite_ids(sqlite_db, objs, node) == expected, (raw, to_sql(node, "sqlite"))
            assert _index_ids(objs, node) == expected, raw


def _index_ids(objs: list[dict[str, Any]], node: Any) -> set[int]:
    """The objects the router's match index finds for one filter, filed among
    decoys (other subscriptions on the same paths) so that its postings are shared."""
    index = ModelIndex()
    index.add(Subscription(id="it", model="thing", device_id="d"), node)
    for i, leaf in enumerate(iter_leaves(node)):
        index.add(Subscription(id=f"decoy{i}", model="thing", device_id="d"), leaf)
    return {
        i for i, o in enumerate(objs) if any("it" in p.subs for p in index.match(ObjectState("o", "", o)))
    }


# ------------------------------------------------------------------ PostgreSQL


class _Pg:
    def __init__(self, dsn: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(dsn))
        self.table = f"nexxus_fq_{uuid.uuid4().hex[:12]}"
        self.run(f"CREATE TEMP TABLE {self.table} (id int PRIMARY KEY, data jsonb NOT NULL)")

    def run(self, sql: str, *args: Any) -> Any:
        return self.loop.run_until_complete(self.conn.execute(sql, *args))

    def load(self, objs: list[dict[str, Any]]) -> None:
        async def go() -> None:
            await self.conn.execute(f"TRUNCATE {self.table}")
            await self.conn.executemany(
                f"INSERT INTO {self.table} (id, data) VALUES ($1, $2::jsonb)",
                [(i, _dumps(o)) for i, o in enumerate(objs)],
            )

        self.loop.run_until_complete(go())

    def ids(self, node: Any) -> set[int]:
        sql, params = to_sql(node, "postgres", param_start=1)
        rows = self.loop.run_until_complete(
            self.conn.fetch(f"SELECT id FROM {self.table} WHERE {sql}", *params)
        )
        return {r["id"] for r in rows}

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


@pytest.fixture(scope="module")
def pg(postgres_dsn: str) -> Iterator[_Pg]:
    db = _Pg(postgres_dsn)
    yield db
    db.close()


@pytest.mark.postgres
@HYPOTHESIS
@given(case=cases())
def test_matcher_and_postgres_agree(pg: _Pg, case: Any) -> None:
    schema, objs, raw_filters = case
    pg.load(objs)
    for raw in raw_filters:
        node = parse_filter(raw, schema)
        match = compile_matcher(node)
        expected = {i for i, o in enumerate(objs) if match(o)}
        assert pg.ids(node) == expected, (raw, to_sql(node, "postgres"))


# ------------------------------------------------------------------ OpenSearch


class _Engine:
    """One index with the adapter's object mapping; each case's documents carry
    a case id that every query filters on, so cases never see each other."""

    def __init__(self, url: str) -> None:
        from opensearchpy import OpenSearch

        self.client = OpenSearch(hosts=[url])
        self.index = f"nexxus-fq-{uuid.uuid4().hex[:12]}"
        props = {
            **OBJECT_PROPERTIES,
            "case": {"type": "keyword"},
            "n": {"type": "integer"},
            "data": {"type": "object", "dynamic": True, "properties": {}},
        }
        self.client.indices.create(index=self.index, body={"mappings": object_mappings(props)})
        self.case = ""

    def load(self, schema: ModelSchema, objs: list[dict[str, Any]]) -> None:
        self.case = uuid.uuid4().hex
        data_props = mapping_properties(schema)
        self.client.indices.put_mapping(
            index=self.index, body={"properties": {"data": {"properties": data_props}}}
        )
        lines: list[dict[str, Any]] = []
        for i, obj in enumerate(objs):
            view, present = typed_view(obj, schema)
            lines.append({"index": {"_index": self.index}})
            lines.append({"case": self.case, "n": i, "data": view, PRESENT_FIELD: present})
        resp = self.client.bulk(body=lines, refresh="true")
        assert not resp["errors"], resp

    def ids(self, node: Any) -> set[int]:
        query = {"bool": {"filter": [to_elasticsearch(node), {"term": {"case": self.case}}]}}
        resp = self.client.search(index=self.index, body={"query": query, "size": 100, "_source": ["n"]})
        return {hit["_source"]["n"] for hit in resp["hits"]["hits"]}

    def close(self) -> None:
        self.client.indices.delete(index=self.index)
        self.client.close()


@pytest.fixture(scope="module")
def engine(opensearch_url: str) -> Iterator[_Engine]:
    db = _Engine(opensearch_url)
    yield db
    db.close()


@pytest.mark.searchengine
@HYPOTHESIS
@given(case=cases())
def test_matcher_and_opensearch_agree(engine: _Engine, case: Any) -> None:
    schema, objs, raw_filters = case
    engine.load(schema, objs)
    for raw in raw_filters:
        node = parse_filter(raw, schema)
        match = compile_matcher(node)
        expected = {i for i, o in enumerate(objs) if match(o)}
        assert engine.ids(node) == expected, (raw, to_elasticsearch(node))
