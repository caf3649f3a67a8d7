"""DatabaseAdapter.search_objects contract: filters (agreeing with the Python
matcher), owner scope, sort order with missing values, keyset paging."""

from __future__ import annotations

from typing import Any

import pytest

from nexxus.adapters.database._sql_base import SqlDatabase
from nexxus.core.convert import dict_to_struct
from nexxus.core.errors import InvalidArgument
from nexxus.core.filterquery import compile_matcher, parse_filter
from nexxus.core.models import SortKey, StoredObject
from nexxus.core.schema import ModelSchema
from nexxus.v1 import common_pb2, internal_pb2

SCHEMA = ModelSchema.from_dict(
    {
        "name": "task",
        "fields": {
            "title": {"type": "string", "required": True, "filterable": True},
            "priority": {"type": "string", "filterable": True},
            "n": {"type": "number", "filterable": True},
            "done": {"type": "boolean", "filterable": True},
            "details": {"type": "object", "fields": {"age": {"type": "integer", "filterable": True}}},
        },
    }
)

DOCS: list[dict[str, Any]] = [
    {"title": "b", "priority": "high", "n": 3, "done": False},
    {"title": "a", "priority": "low", "n": -1.5, "done": True, "details": {"age": 4}},
    {"title": "Z", "priority": "high", "done": True},
    {"title": "é", "n": 3, "details": {"age": 40}},
    {"title": "c", "priority": "mid", "n": 10, "done": False, "details": {}},
    {"title": "a", "priority": "low", "n": 0, "details": {"age": 4}},
    {"title": "d", "priority": None, "n": 2.25, "done": True},
    {"title": "B", "priority": "high", "n": 3, "details": {"age": -7}},
]


@pytest.fixture
async def objects(db: SqlDatabase, app_id: str) -> list[StoredObject]:
    writes = []
    for i, doc in enumerate(DOCS):
        cmd = internal_pb2.WriteCommand(
            command_id=f"c{i}",
            app_id=app_id,
            model="task",
            op=internal_pb2.WRITE_OP_CREATE,
            object_id=f"o{i:02d}",
            data=dict_to_struct(doc),
            actor=common_pb2.Actor(user_id=f"u{i % 2}"),
        )
        writes.append((cmd, SCHEMA))
    outs = await db.apply_writes(writes)
    assert all(o.error is None for o in outs)
    found = [await db.get_object(app_id, "task", f"o{i:02d}") for i in range(len(DOCS))]
    assert all(o is not None for o in found)
    return [o for o in found if o is not None]


def _rank(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1 + value, 0)
    if isinstance(value, int | float):
        return (3, value)
    return (4, value)


def expected(objs: list[StoredObject], field: str, descending: bool) -> list[str]:
    out = sorted(objs, key=lambda o: o.id)
    path = field.split(".")

    def key(o: StoredObject) -> tuple[int, Any]:
        value: Any = o.data
        for p in path:
            value = value.get(p) if isinstance(value, dict) else None
        return _rank(value)

    out.sort(key=key, reverse=descending)
    return [o.id for o in out]


async def search_all(
    db: SqlDatabase, app_id: str, sort: list[SortKey], page_size: int, **kw: Any
) -> list[str]:
    ids: list[str] = []
    token = ""
    for _ in range(100):
        page = await db.search_objects(
            app_id, "task", kw.get("filter"), sort, page_size, token, owner_id=kw.get("owner")
        )
        assert len(page.objects) <= page_size
        ids += [o.id for o in page.objects]
        token = page.next_page_token
        if not token:
            return ids
    raise AssertionError("paging never ended")


FILTERS: list[dict[str, Any]] = [
    {"priority": {"eq": "high"}},
    {"priority": {"eq": None}},
    {"priority": {"ne": "high"}},
    {"n": {"gte": 3}},
    {"n": {"lt": 2.25}},
    {"done": {"eq": True}},
    {"details.age": {"eq": 4}},
    {"details.age": {"ne": 4}},
    {"title": {"in": ["a", "B", "é"]}},
    {"title": {"gt": "a"}},
    {"$or": [{"done": {"eq": False}}, {"details.age": {"lt": 0}}]},
    {"$and": [{"priority": {"in": ["high", "low"]}}, {"n": {"gt": 0}}]},
]


@pytest.mark.parametrize("raw", FILTERS, ids=[str(f) for f in FILTERS])
async def test_filters_agree_with_the_matcher(
    db: SqlDatabase, app_id: str, objects: list[StoredObject], raw: dict[str, Any]
) -> None:
    node = parse_filter(raw, SCHEMA)
    match = compile_matcher(node)
    want = sorted(o.id for o in objects if match(o.data))
    assert await search_all(db, app_id, [], 100, filter=node) == want
    assert await search_all(db, app_id, [], 2, filter=node) == want


@pytest.mark.parametrize("field", ["n", "title", "priority", "done", "details.age"])
@pytest.mark.parametrize("descending", [False, True])
async def test_sort_by_field_with_missing_values(
    db: SqlDatabase, app_id: str, objects: list[StoredObject], field: str, descending: bool
) -> None:
    want = expected(objects, field, descending)
    sort = [SortKey(field, descending)]
    assert await search_all(db, app_id, sort, 1000) == want
    # Keyset paging walks the same order, whatever the page size.
    for size in (1, 3):
        assert await search_all(db, app_id, sort, size) == want


async def test_sort_by_columns_and_several_keys(
    db: SqlDatabase, app_id: str, objects: list[StoredObject]
) -> None:
    by_id = sorted(o.id for o in objects)
    assert await search_all(db, app_id, [SortKey("id", True)], 3) == by_id[::-1]
    assert await search_all(db, app_id, [SortKey("create_time"), SortKey("version", True)], 3) == by_id
    assert await search_all(db, app_id, [SortKey("update_time", True)], 2) == by_id
    # Several keys: priority descending, then n ascending, then id.
    rows = sorted(objects, key=lambda o: o.id)
    rows.sort(key=lambda o: _rank(o.data.get("n")))
    rows.sort(key=lambda o: _rank(o.data.get("priority")), reverse=True)
    sort = [SortKey("priority", True), SortKey("n")]
    assert await search_all(db, app_id, sort, 2) == [o.id for o in rows]


async def test_owner_scope_and_isolation(db: SqlDatabase, app_id: str, objects: list[StoredObject]) -> None:
    mine = sorted(o.id for o in objects if o.owner_id == "u1")
    assert mine
    assert await search_all(db, app_id, [], 3, owner="u1") == mine
    assert await search_all(db, app_id, [], 3, owner="nobody") == []
    assert await search_all(db, f"{app_id}-other", [], 3) == []
    page = await db.search_objects(app_id, "note", None, [], 10, "")
    assert page.objects == []
    assert page.next_page_token == ""


async def test_page_objects_are_complete(db: SqlDatabase, app_id: str, objects: list[StoredObject]) -> None:
    page = await db.search_objects(app_id, "task", None, [], 0, "")
    assert page.objects == sorted(objects, key=lambda o: o.id)
    assert page.next_page_token == ""


async def test_bad_page_tokens(db: SqlDatabase, app_id: str, objects: list[StoredObject]) -> None:
    page = await db.search_objects(app_id, "task", None, [SortKey("n")], 2, "")
    assert page.next_page_token
    for token in ("garbage!", "e30", page.next_page_token[:-3] + "abc"):
        with pytest.raises(InvalidArgument) as info:
            await db.search_objects(app_id, "task", None, [SortKey("n")], 2, token)
        assert info.value.field == "page_token"
    # A token belongs to its query: another sort or filter rejects it.
    with pytest.raises(InvalidArgument):
        await db.search_objects(app_id, "task", None, [SortKey("title")], 2, page.next_page_token)
    node = parse_filter({"done": {"eq": True}}, SCHEMA)
    with pytest.raises(InvalidArgument):
        await db.search_objects(app_id, "task", node, [SortKey("n")], 2, page.next_page_token)
    with pytest.raises(InvalidArgument) as info:
        await db.search_objects(app_id, "task", None, [], -1, "")
    assert info.value.field == "page_size"
    with pytest.raises(InvalidArgument):
        await db.search_objects(app_id, "task", None, [SortKey("n; DROP TABLE objects")], 2, "")
