"""DatabaseAdapter contract: apply_writes, get_object, get_operation, persistence."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from nexxus.adapters.database import _sql_base
from nexxus.adapters.database._sql_base import SqlDatabase
from nexxus.adapters.database._sql_writes import WriteRace
from nexxus.core.convert import dict_to_struct, py_to_value
from nexxus.core.errors import AlreadyExists, InvalidArgument, NotFound, VersionConflict
from nexxus.core.ports import WriteOutcome
from nexxus.core.schema import ModelSchema
from nexxus.v1 import common_pb2, events_pb2, internal_pb2

SCHEMA = ModelSchema.from_dict(
    {
        "name": "task",
        "fields": {
            "title": {"type": "string", "required": True, "filterable": True},
            "n": {"type": "integer", "filterable": True},
        },
    }
)
ACTOR = common_pb2.Actor(user_id="u1", device_id="d1")


@pytest.fixture(params=["fast", "slow"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the normal (set-based) path, and again with the fast path
    always losing a race, so every batch goes through the per-command slow path."""
    if request.param == "slow":

        async def lose(*_args: object) -> list[WriteOutcome]:
            raise WriteRace("forced by the test")

        monkeypatch.setattr(_sql_base, "apply_fast", lose)
    return str(request.param)


def create(app_id: str, cid: str, oid: str, **data: object) -> tuple[internal_pb2.WriteCommand, ModelSchema]:
    cmd = internal_pb2.WriteCommand(
        command_id=cid,
        app_id=app_id,
        model="task",
        op=internal_pb2.WRITE_OP_CREATE,
        object_id=oid,
        data=dict_to_struct(data),
        actor=ACTOR,
    )
    return cmd, SCHEMA


def incr(
    app_id: str, cid: str, oid: str, by: int = 1, expected_version: int = 0
) -> tuple[internal_pb2.WriteCommand, ModelSchema]:
    patch = common_pb2.JsonPatchOperation(op="increment", path=["n"], value=[py_to_value(by)])
    cmd = internal_pb2.WriteCommand(
        command_id=cid,
        app_id=app_id,
        model="task",
        op=internal_pb2.WRITE_OP_UPDATE,
        object_id=oid,
        patch=[patch],
        expected_version=expected_version,
        actor=ACTOR,
    )
    return cmd, SCHEMA


def delete(app_id: str, cid: str, oid: str) -> tuple[internal_pb2.WriteCommand, ModelSchema]:
    cmd = internal_pb2.WriteCommand(
        command_id=cid,
        app_id=app_id,
        model="task",
        op=internal_pb2.WRITE_OP_DELETE,
        object_id=oid,
        actor=ACTOR,
    )
    return cmd, SCHEMA


async def test_create_update_delete(db: SqlDatabase, app_id: str, write_path: str) -> None:
    [out] = await db.apply_writes([create(app_id, "c1", "o1", title="a", n=1)])
    assert out.error is None
    assert not out.replayed
    assert out.command_id == "c1"
    assert out.event is not None
    assert out.event.kind == events_pb2.EVENT_KIND_CREATED
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.owner_id, obj.data) == (1, "u1", {"title": "a", "n": 1})
    assert obj.created_at == obj.updated_at
    assert obj.created_at.tzinfo is not None

    [out] = await db.apply_writes([incr(app_id, "c2", "o1", 5, expected_version=1)])
    assert out.error is None
    assert out.event is not None
    assert (out.event.kind, out.event.version) == (events_pb2.EVENT_KIND_UPDATED, 2)
    obj2 = await db.get_object(app_id, "task", "o1")
    assert obj2 is not None
    assert (obj2.version, obj2.data["n"]) == (2, 6)
    assert obj2.created_at == obj.created_at
    assert obj2.updated_at >= obj.updated_at

    [out] = await db.apply_writes([delete(app_id, "c3", "o1")])
    assert out.error is None
    assert out.event is not None
    assert out.event.kind == events_pb2.EVENT_KIND_DELETED
    assert await db.get_object(app_id, "task", "o1") is None
    assert await db.get_object(f"{app_id}-x", "task", "o1") is None


async def test_replay_returns_recorded_event_and_changes_once(
    db: SqlDatabase, app_id: str, write_path: str
) -> None:
    await db.apply_writes([create(app_id, "c1", "o1", title="a", n=0)])
    [first] = await db.apply_writes([incr(app_id, "c2", "o1", 1)])
    [again] = await db.apply_writes([incr(app_id, "c2", "o1", 1)])
    assert again.replayed
    assert not first.replayed
    assert again.event == first.event
    assert again.error is None
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.data["n"]) == (2, 1)
    # The same command twice in one batch applies once too.
    outs = await db.apply_writes([incr(app_id, "c3", "o1", 1), incr(app_id, "c3", "o1", 1)])
    assert [o.replayed for o in outs] == [False, True]
    assert outs[0].event == outs[1].event
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.data["n"]) == (3, 2)


async def test_failures_are_recorded_and_replayed(db: SqlDatabase, app_id: str, write_path: str) -> None:
    await db.apply_writes([create(app_id, "c1", "o1", title="a", n=0)])
    outs = await db.apply_writes(
        [
            incr(app_id, "c2", "o1", 1, expected_version=7),
            incr(app_id, "c3", "missing", 1),
            create(app_id, "c4", "o1", title="dup"),
            create(app_id, "c5", "o2", wrong="field"),
        ]
    )
    assert [type(o.error) for o in outs] == [VersionConflict, NotFound, AlreadyExists, InvalidArgument]
    assert all(o.event is None and not o.replayed for o in outs)
    again = await db.apply_writes([incr(app_id, "c2", "o1", 1, expected_version=1)])
    assert again[0].replayed
    assert isinstance(again[0].error, VersionConflict)
    assert again[0].error.message == outs[0].error.message  # type: ignore[union-attr]
    op = await db.get_operation(app_id, "c3")
    assert op is not None
    assert not op.ok
    assert (op.error_code, op.error_reason, op.object_id) == ("NOT_FOUND", "OBJECT_NOT_FOUND", "missing")
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert obj.version == 1
    assert await db.get_object(app_id, "task", "o2") is None


async def test_batch_with_failure_in_the_middle(db: SqlDatabase, app_id: str, write_path: str) -> None:
    outs = await db.apply_writes(
        [
            create(app_id, "c1", "o1", title="a", n=0),
            incr(app_id, "c2", "o1", 1),
            incr(app_id, "c3", "o1", 1, expected_version=1),  # now at 2: conflict
            incr(app_id, "c4", "o1", 10, expected_version=2),
            create(app_id, "c5", "o2", title="b"),
            delete(app_id, "c6", "o2"),
            create(app_id, "c7", "o3", title="c"),
        ]
    )
    assert [o.error is None for o in outs] == [True, True, False, True, True, True, True]
    assert isinstance(outs[2].error, VersionConflict)
    assert [o.event.version for o in outs if o.event is not None] == [1, 2, 3, 1, 2, 1]
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.data["n"]) == (3, 11)
    assert await db.get_object(app_id, "task", "o2") is None
    assert await db.get_object(app_id, "task", "o3") is not None
    assert await db.apply_writes([]) == []


async def test_get_operation(db: SqlDatabase, app_id: str) -> None:
    [out] = await db.apply_writes([create(app_id, "c1", "o1", title="a")])
    op = await db.get_operation(app_id, "c1")
    assert op is not None
    assert (op.app_id, op.command_id, op.object_id, op.ok, op.version) == (app_id, "c1", "o1", True, 1)
    assert (op.error_code, op.error_message) == ("", "")
    assert internal_pb2.ModelEvent.FromString(op.event) == out.event
    assert await db.get_operation(app_id, "nope") is None
    assert await db.get_operation(f"{app_id}-x", "c1") is None


async def test_concurrent_writers_do_not_lose_updates(
    db: SqlDatabase, app_id: str, db_factory: Callable[[], SqlDatabase]
) -> None:
    """Two adapters (as two writer processes) increment the same object."""
    other = db_factory()
    await other.start()
    try:
        await db.apply_writes([create(app_id, "c0", "o1", title="a", n=0)])

        async def run(adapter: SqlDatabase, prefix: str) -> None:
            for i in range(10):
                batch = [incr(app_id, f"{prefix}{i}-{j}", "o1") for j in range(3)]
                outs = await adapter.apply_writes(batch)
                assert all(o.error is None for o in outs)

        await asyncio.gather(run(db, "a"), run(other, "b"))
    finally:
        await other.stop()
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.data["n"]) == (61, 60)


async def test_concurrent_creates_of_one_id(
    db: SqlDatabase, app_id: str, db_factory: Callable[[], SqlDatabase]
) -> None:
    """Two writers create the same objects with different command ids: each
    object is created once; the loser records AlreadyExists."""
    other = db_factory()
    await other.start()
    try:
        ids = [f"o{i}" for i in range(20)]
        a, b = await asyncio.gather(
            db.apply_writes([create(app_id, f"a-{oid}", oid, title="a") for oid in ids]),
            other.apply_writes([create(app_id, f"b-{oid}", oid, title="b") for oid in ids]),
        )
    finally:
        await other.stop()
    for oa, ob in zip(a, b, strict=True):
        assert (oa.error is None) != (ob.error is None)
        assert isinstance(oa.error or ob.error, AlreadyExists)
    page = await db.search_objects(app_id, "task", None, [], 100, "")
    assert sorted(o.id for o in page.objects) == sorted(ids)


async def test_delete_app_data(db: SqlDatabase, app_id: str) -> None:
    await db.apply_writes(
        [create(app_id, "c1", "o1", title="a"), create(f"{app_id}-2", "c1", "o1", title="a")]
    )
    await db.delete_app_data(app_id)
    assert await db.get_object(app_id, "task", "o1") is None
    assert await db.get_operation(app_id, "c1") is None
    assert await db.get_object(f"{app_id}-2", "task", "o1") is not None


async def test_data_survives_restart(
    db: SqlDatabase, app_id: str, db_factory: Callable[[], SqlDatabase]
) -> None:
    await db.apply_writes([create(app_id, "c1", "o1", title="kept", n=3)])
    await db.stop()
    with pytest.raises(RuntimeError):
        await db.get_object(app_id, "task", "o1")
    again = db_factory()
    async with again:
        obj = await again.get_object(app_id, "task", "o1")
        assert obj is not None
        assert obj.data == {"title": "kept", "n": 3}
        [out] = await again.apply_writes([create(app_id, "c1", "o1", title="kept", n=3)])
        assert out.replayed
    await db.start()  # the fixture stops it again


async def test_versions_continue_after_delete_and_recreate(
    db: SqlDatabase, app_id: str, write_path: str
) -> None:
    """A re-created object continues from its tombstone: versions only grow."""
    outs = await db.apply_writes(
        [create(app_id, "c1", "o1", title="a", n=0), incr(app_id, "c2", "o1"), delete(app_id, "c3", "o1")]
    )
    assert [o.event.version for o in outs if o.event] == [1, 2, 3]
    [again] = await db.apply_writes([create(app_id, "c4", "o1", title="b", n=10)])
    assert again.event is not None
    assert (again.event.kind, again.event.version) == (events_pb2.EVENT_KIND_CREATED, 4)
    [upd] = await db.apply_writes([incr(app_id, "c5", "o1", expected_version=4)])
    assert upd.error is None
    assert upd.event is not None
    assert upd.event.version == 5
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.data["n"]) == (5, 11)
    # Delete and re-create inside one batch, twice.
    outs = await db.apply_writes(
        [
            delete(app_id, "c6", "o1"),
            create(app_id, "c7", "o1", title="c", n=0),
            delete(app_id, "c8", "o1"),
            create(app_id, "c9", "o1", title="d", n=0),
        ]
    )
    assert [o.event.version for o in outs if o.event] == [6, 7, 8, 9]
    obj = await db.get_object(app_id, "task", "o1")
    assert obj is not None
    assert (obj.version, obj.data["title"]) == (9, "d")
    # Another object of the same id in another model or app starts at 1.
    [other] = await db.apply_writes([create(f"{app_id}-x", "c1", "o1", title="x", n=0)])
    assert other.event is not None
    assert other.event.version == 1


async def test_trim_removes_old_operations_and_tombstones(db: SqlDatabase, app_id: str) -> None:
    from datetime import timedelta

    from nexxus.core.models import utcnow

    await db.apply_writes([create(app_id, "c1", "o1", title="a", n=0), delete(app_id, "c2", "o1")])
    # (The database may hold other tests' rows: trimming is not per application.)
    before = utcnow() - timedelta(hours=1)
    await db.trim(operations_before=before, tombstones_before=before)
    assert await db.get_operation(app_id, "c1") is not None
    after = utcnow() + timedelta(seconds=1)
    assert await db.trim(operations_before=after, tombstones_before=before) >= 2
    assert await db.get_operation(app_id, "c1") is None
    assert await db.get_operation(app_id, "c2") is None
    # The tombstone is still there: a re-create continues from it.
    [again] = await db.apply_writes([create(app_id, "c3", "o1", title="b", n=0)])
    assert again.event is not None
    assert again.event.version == 3
    await db.apply_writes([delete(app_id, "c4", "o1")])
    after = utcnow() + timedelta(seconds=1)  # after the delete, however slow the writes were
    assert await db.trim(operations_before=before, tombstones_before=after) >= 1
    [fresh] = await db.apply_writes([create(app_id, "c5", "o1", title="c", n=0)])
    assert fresh.event is not None
    assert fresh.event.version == 1
