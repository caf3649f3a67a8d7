"""The search-engine adapters against a real server, beyond the shared contract
suite (tests/contract/test_database_*.py): a field whose kind changes in the
schema, replays, tombstones (a re-create continues their version), paging.
OpenSearch runs on the node the suite starts (`opensearch_url`); Elasticsearch
only when NEXXUS_TEST_ELASTICSEARCH_URL is set (e.g. http://127.0.0.1:9200): its
server cannot be started from Maven Central artifacts alone. Every index lives
under a unique prefix, deleted at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from nexxus.adapters.database._engine import SearchEngineDatabase
from nexxus.adapters.database.elasticsearch import ElasticsearchDatabase
from nexxus.adapters.database.opensearch import OpenSearchDatabase
from nexxus.core.config.settings import ElasticsearchSettings, OpenSearchSettings
from nexxus.core.convert import dict_to_struct, py_to_value
from nexxus.core.errors import InvalidArgument, NotFound, VersionConflict
from nexxus.core.filterquery import compile_matcher, parse_filter
from nexxus.core.models import SortKey, UserRecord, utcnow
from nexxus.core.schema import ModelSchema
from nexxus.v1 import common_pb2, events_pb2, internal_pb2

ES_URL = os.environ.get("NEXXUS_TEST_ELASTICSEARCH_URL", "")

SCHEMA = ModelSchema.from_dict(
    {
        "fields": {
            "title": {"type": "string", "required": True, "filterable": True},
            "n": {"type": "integer", "filterable": True},
            "done": {"type": "boolean", "filterable": True},
        }
    },
    name="task",
)
# The same model after `n` became a string: objects written with it hold
# strings where SCHEMA expects integers.
SCHEMA_V2 = ModelSchema.from_dict(
    {"fields": {"title": {"type": "string", "required": True}, "n": {"type": "string"}}}, name="task"
)


def create(
    app: str, cid: str, oid: str, schema: ModelSchema = SCHEMA, *, user: str = "u1", **data: Any
) -> Any:
    cmd = internal_pb2.WriteCommand(
        command_id=cid,
        app_id=app,
        model="task",
        op=internal_pb2.WRITE_OP_CREATE,
        object_id=oid,
        data=dict_to_struct(data),
        actor=common_pb2.Actor(user_id=user),
    )
    return cmd, schema


def incr(app: str, cid: str, oid: str, expected_version: int = 0) -> Any:
    patch = common_pb2.JsonPatchOperation(op="increment", path=["n"], value=[py_to_value(1)])
    cmd = internal_pb2.WriteCommand(
        command_id=cid,
        app_id=app,
        model="task",
        op=internal_pb2.WRITE_OP_UPDATE,
        object_id=oid,
        patch=[patch],
        expected_version=expected_version,
        actor=common_pb2.Actor(user_id="u1"),
    )
    return cmd, SCHEMA


def delete(app: str, cid: str, oid: str) -> Any:
    cmd = internal_pb2.WriteCommand(
        command_id=cid, app_id=app, model="task", op=internal_pb2.WRITE_OP_DELETE, object_id=oid
    )
    return cmd, SCHEMA


@pytest.fixture(
    scope="module", params=[pytest.param("opensearch", marks=pytest.mark.searchengine), "elasticsearch"]
)
def engine_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(engine, URL) of a server of each engine."""
    if request.param == "opensearch":
        return "opensearch", str(request.getfixturevalue("opensearch_url"))
    if not ES_URL:
        print("skipping the Elasticsearch variant: NEXXUS_TEST_ELASTICSEARCH_URL is not set")
        pytest.skip("NEXXUS_TEST_ELASTICSEARCH_URL is not set (e.g. http://127.0.0.1:9200)")
    return "elasticsearch", ES_URL


@pytest.fixture(scope="module")
async def es_db(engine_url: tuple[str, str]) -> AsyncIterator[SearchEngineDatabase]:
    engine, url = engine_url
    prefix = f"nexxus-test-{secrets.token_hex(4)}"
    db: SearchEngineDatabase
    if engine == "opensearch":
        db = OpenSearchDatabase(OpenSearchSettings(hosts=[url], index_prefix=prefix, refresh="wait_for"))
    else:
        db = ElasticsearchDatabase(
            ElasticsearchSettings(hosts=[url], index_prefix=prefix, refresh="wait_for")
        )
    await db.start()
    try:
        yield db
    finally:
        await db._engine.request("DELETE", f"/{prefix}-*", params={"ignore_unavailable": "true"})
        await db.stop()


@pytest.fixture
def app() -> str:
    return f"app{secrets.token_hex(5)}"


async def test_write_lifecycle_and_replay(es_db: SearchEngineDatabase, app: str) -> None:
    [out] = await es_db.apply_writes([create(app, "c1", "o1", title="a", n=1)])
    assert out.error is None
    assert out.event is not None
    assert out.event.kind == events_pb2.EVENT_KIND_CREATED
    assert out.event.version == 1
    obj = await es_db.get_object(app, "task", "o1")
    assert obj is not None
    assert (obj.owner_id, obj.version, obj.data) == ("u1", 1, {"title": "a", "n": 1})

    [again] = await es_db.apply_writes([create(app, "c1", "o1", title="a", n=1)])
    assert again.replayed
    assert again.event == out.event

    outs = await es_db.apply_writes([incr(app, "c2", "o1"), incr(app, "c3", "o1", expected_version=1)])
    assert outs[0].event is not None
    assert outs[0].event.version == 2
    assert isinstance(outs[1].error, VersionConflict)
    op = await es_db.get_operation(app, "c3")
    assert op is not None
    assert not op.ok
    assert op.error_reason == "VERSION_CONFLICT"

    [gone] = await es_db.apply_writes([delete(app, "c4", "o1")])
    assert gone.event is not None
    assert gone.event.kind == events_pb2.EVENT_KIND_DELETED
    assert await es_db.get_object(app, "task", "o1") is None
    assert gone.event.version == 3
    # A create after the delete continues from the tombstone's version.
    [again_created] = await es_db.apply_writes([create(app, "c5", "o1", title="b")])
    assert again_created.event is not None
    assert again_created.event.version == 4
    obj = await es_db.get_object(app, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.data) == (4, {"title": "b"})


async def test_failed_command_is_recorded(es_db: SearchEngineDatabase, app: str) -> None:
    [out] = await es_db.apply_writes([incr(app, "c1", "missing")])
    assert isinstance(out.error, NotFound)
    [replay] = await es_db.apply_writes([incr(app, "c1", "missing")])
    assert replay.replayed
    assert isinstance(replay.error, NotFound)
    assert await es_db.get_operation(app, "nope") is None


async def test_search_agrees_with_matcher(es_db: SearchEngineDatabase, app: str) -> None:
    rows: list[dict[str, Any]] = [
        {"title": "a", "n": 1, "done": True},
        {"title": "b", "n": 2},
        {"title": "B", "n": 3, "done": False},
        {"title": "é", "n": -4},
        {"title": "c"},
    ]
    writes = [create(app, f"c{i}", f"o{i}", **r) for i, r in enumerate(rows)]
    writes.append(create(app, "cx", "ox", SCHEMA_V2, title="x", n="2"))
    writes.append(create(app, "cy", "oy", user="u2", title="y", n=2))
    assert all(o.error is None for o in await es_db.apply_writes(writes))
    data = {f"o{i}": r for i, r in enumerate(rows)} | {
        "ox": {"title": "x", "n": "2"},
        "oy": {"title": "y", "n": 2},
    }
    for raw in [
        {"n": {"eq": 2}},
        {"n": {"ne": 2}},
        {"n": {"gte": 2}},
        {"n": {"eq": None}},
        {"title": {"gt": "Z"}},
        {"done": {"ne": True}},
        {"$or": [{"n": {"in": [1, 3]}}, {"title": {"eq": "c"}}]},
    ]:
        node = parse_filter(raw, SCHEMA)
        match = compile_matcher(node)
        page = await es_db.search_objects(app, "task", node, [], 100, "")
        assert sorted(o.id for o in page.objects) == sorted(k for k, v in data.items() if match(v)), raw
    mine = await es_db.search_objects(app, "task", None, [], 100, "", owner_id="u2")
    assert [o.id for o in mine.objects] == ["oy"]


async def test_sort_and_paging(es_db: SearchEngineDatabase, app: str) -> None:
    writes = [
        create(app, f"c{i}", f"o{i}", title=t, n=n)
        for i, (t, n) in enumerate([("a", 5), ("b", 1), ("c", 3), ("d", 3), ("e", 9)])
    ]
    assert all(o.error is None for o in await es_db.apply_writes(writes))
    ids: list[str] = []
    token = ""
    while True:
        page = await es_db.search_objects(app, "task", None, [SortKey("n", descending=True)], 2, token)
        ids += [o.id for o in page.objects]
        token = page.next_page_token
        if not token:
            break
    assert ids == ["o4", "o0", "o2", "o3", "o1"]
    with pytest.raises(InvalidArgument) as info:
        await es_db.search_objects(app, "task", None, [SortKey("title")], 2, "bogus")
    assert info.value.field == "page_token"


async def test_delete_app_data(es_db: SearchEngineDatabase, app: str) -> None:
    other = app + "z"
    await es_db.apply_writes([create(app, "c1", "o1", title="a"), create(other, "c1", "o1", title="b")])
    await es_db.delete_app_data(app)
    assert await es_db.get_object(app, "task", "o1") is None
    assert await es_db.get_operation(app, "c1") is None
    kept = await es_db.get_object(other, "task", "o1")
    assert kept is not None
    assert kept.data == {"title": "b"}


async def test_an_app_named_like_an_identity_index(es_db: SearchEngineDatabase, app: str) -> None:
    """Application "user" with a model "keys" has its own index: neither writing
    it nor deleting the application's data touches the identity store."""
    keys = ModelSchema.from_dict({"fields": {"title": {"type": "string"}}}, name="keys")
    await es_db.create_user(
        UserRecord(app_id=app, id="u1", username="alice", email="", display_name="A", password_hash="h")
    )
    cmd = internal_pb2.WriteCommand(
        command_id="c1",
        app_id="user",
        model="keys",
        op=internal_pb2.WRITE_OP_CREATE,
        object_id="o1",
        data=dict_to_struct({"title": "x"}),
        actor=common_pb2.Actor(user_id="u1"),
    )
    [out] = await es_db.apply_writes([(cmd, keys)])
    assert out.error is None
    assert await es_db.get_object("user", "keys", "o1") is not None
    await es_db.delete_app_data("user")
    assert await es_db.get_object("user", "keys", "o1") is None
    found = await es_db.find_user_by_login(app, "alice")
    assert found is not None
    assert found.id == "u1"


async def test_trim_stays_under_its_prefix(
    es_db: SearchEngineDatabase, engine_url: tuple[str, str], app: str
) -> None:
    """Trimming one deployment's tombstones never touches those of another whose
    index prefix starts like it (``{prefix}-x``), nor its identity indices."""
    engine, url = engine_url
    longer = f"{es_db._prefix}-x"
    other: SearchEngineDatabase
    if engine == "opensearch":
        other = OpenSearchDatabase(OpenSearchSettings(hosts=[url], index_prefix=longer, refresh="wait_for"))
    else:
        other = ElasticsearchDatabase(
            ElasticsearchSettings(hosts=[url], index_prefix=longer, refresh="wait_for")
        )
    await other.start()
    try:
        for db in (es_db, other):
            outs = await db.apply_writes([create(app, "c1", "o1", title="a"), delete(app, "c2", "o1")])
            assert [o.event.version for o in outs if o.event] == [1, 2]
        now = utcnow()
        removed = await es_db.trim(
            operations_before=now - timedelta(days=1), tombstones_before=now + timedelta(seconds=5)
        )
        assert removed >= 1
        [mine] = await es_db.apply_writes([create(app, "c3", "o1", title="b")])
        [theirs] = await other.apply_writes([create(app, "c3", "o1", title="b")])
        assert mine.event is not None
        assert theirs.event is not None
        assert (mine.event.version, theirs.event.version) == (1, 3)
        assert await es_db.get_operation(app, "c1") is not None  # younger than operations_before
    finally:
        await other.stop()
