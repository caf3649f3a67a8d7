"""nexxus.core.writes.plan_write: every branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nexxus.core import limits
from nexxus.core.convert import dict_to_struct, py_to_value, struct_to_dict
from nexxus.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, VersionConflict
from nexxus.core.limits import MIN_OBJECT_BYTES, Limits
from nexxus.core.models import StoredObject
from nexxus.core.schema import ModelSchema
from nexxus.core.writes import WritePlan, plan_write
from nexxus.v1 import common_pb2, events_pb2, internal_pb2

SCHEMA = ModelSchema.from_dict(
    {"name": "task", "fields": {"title": {"type": "string", "required": True}, "n": {"type": "integer"}}}
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
ACTOR = common_pb2.Actor(user_id="u1", device_id="d1")


def cmd(op: internal_pb2.WriteOp.ValueType, **kw: object) -> internal_pb2.WriteCommand:
    base: dict[str, object] = {
        "command_id": "c1",
        "app_id": "app",
        "model": "task",
        "op": op,
        "object_id": "o1",
        "actor": ACTOR,
    }
    base.update(kw)
    return internal_pb2.WriteCommand(**base)  # type: ignore[arg-type]


def stored(version: int = 3) -> StoredObject:
    return StoredObject("app", "task", "o1", "owner", version, {"title": "a", "n": 1}, T0, T0)


def inc(value: int) -> common_pb2.JsonPatchOperation:
    return common_pb2.JsonPatchOperation(op="increment", path=["n"], value=[py_to_value(value)])


def test_create() -> None:
    plan = plan_write(
        None, cmd(internal_pb2.WRITE_OP_CREATE, data=dict_to_struct({"title": "x", "n": 2.0})), SCHEMA, NOW
    )
    assert isinstance(plan, WritePlan)
    assert plan.new == StoredObject("app", "task", "o1", "u1", 1, {"title": "x", "n": 2}, NOW, NOW)
    ev = plan.event
    assert (ev.event_id, ev.command_id, ev.app_id, ev.model, ev.object_id) == (
        "c1",
        "c1",
        "app",
        "task",
        "o1",
    )
    assert ev.kind == events_pb2.EVENT_KIND_CREATED
    assert (ev.version, ev.owner_id) == (1, "u1")
    assert ev.HasField("after")
    assert not ev.HasField("before")
    assert struct_to_dict(ev.after.data) == {"title": "x", "n": 2}
    assert ev.actor == ACTOR
    assert ev.time.ToDatetime(tzinfo=UTC) == NOW
    assert len(ev.patch) == 0


def test_create_existing_fails() -> None:
    with pytest.raises(AlreadyExists) as e:
        plan_write(
            stored(), cmd(internal_pb2.WRITE_OP_CREATE, data=dict_to_struct({"title": "x"})), SCHEMA, NOW
        )
    assert e.value.reason == "OBJECT_EXISTS"


def test_create_invalid_data() -> None:
    with pytest.raises(InvalidArgument) as e:
        plan_write(None, cmd(internal_pb2.WRITE_OP_CREATE, data=dict_to_struct({"n": 1})), SCHEMA, NOW)
    assert e.value.field == "data.title"


def test_update() -> None:
    c = cmd(internal_pb2.WRITE_OP_UPDATE, patch=[inc(4)], expected_version=3)
    plan = plan_write(stored(), c, SCHEMA, NOW)
    assert plan.new is not None
    assert (plan.new.version, plan.new.data, plan.new.owner_id) == (4, {"title": "a", "n": 5}, "owner")
    assert (plan.new.created_at, plan.new.updated_at) == (T0, NOW)
    ev = plan.event
    assert ev.kind == events_pb2.EVENT_KIND_UPDATED
    assert (ev.version, ev.owner_id) == (4, "owner")
    assert struct_to_dict(ev.before.data) == {"title": "a", "n": 1}
    assert ev.before.version == 3
    assert struct_to_dict(ev.after.data) == {"title": "a", "n": 5}
    assert list(ev.patch) == [inc(4)]


def test_update_without_expected_version() -> None:
    plan = plan_write(stored(7), cmd(internal_pb2.WRITE_OP_UPDATE, patch=[inc(1)]), SCHEMA, NOW)
    assert plan.event.version == 8


def test_update_missing_and_conflict() -> None:
    with pytest.raises(NotFound):
        plan_write(None, cmd(internal_pb2.WRITE_OP_UPDATE, patch=[inc(1)]), SCHEMA, NOW)
    with pytest.raises(VersionConflict, match=r"expected version 2.*version 3") as e:
        plan_write(
            stored(3), cmd(internal_pb2.WRITE_OP_UPDATE, patch=[inc(1)], expected_version=2), SCHEMA, NOW
        )
    assert e.value.reason == "VERSION_CONFLICT"


def test_update_bad_patch() -> None:
    bad = common_pb2.JsonPatchOperation(op="replace", path=["nope"], value=[py_to_value(1)])
    with pytest.raises(InvalidArgument) as e:
        plan_write(stored(), cmd(internal_pb2.WRITE_OP_UPDATE, patch=[bad]), SCHEMA, NOW)
    assert e.value.field == "patch[0].path[0]"
    rm = common_pb2.JsonPatchOperation(op="remove", path=["n"])
    obj = stored()
    obj.data = {"title": "a"}
    with pytest.raises(FailedPrecondition):
        plan_write(obj, cmd(internal_pb2.WRITE_OP_UPDATE, patch=[rm]), SCHEMA, NOW)


def test_delete() -> None:
    plan = plan_write(stored(3), cmd(internal_pb2.WRITE_OP_DELETE, expected_version=3), SCHEMA, NOW)
    assert plan.new is None
    ev = plan.event
    assert ev.kind == events_pb2.EVENT_KIND_DELETED
    assert (ev.version, ev.owner_id) == (4, "owner")
    assert not ev.HasField("after")
    assert ev.before.version == 3


def test_delete_missing_and_conflict() -> None:
    with pytest.raises(NotFound):
        plan_write(None, cmd(internal_pb2.WRITE_OP_DELETE), SCHEMA, NOW)
    with pytest.raises(VersionConflict):
        plan_write(stored(3), cmd(internal_pb2.WRITE_OP_DELETE, expected_version=5), SCHEMA, NOW)


@pytest.mark.parametrize(
    ("c", "field"),
    [
        (cmd(internal_pb2.WRITE_OP_UNSPECIFIED), "op"),
        (cmd(internal_pb2.WRITE_OP_DELETE, object_id=""), "object_id"),
        (cmd(internal_pb2.WRITE_OP_DELETE, model="note"), "model"),
    ],
)
def test_bad_commands(c: internal_pb2.WriteCommand, field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        plan_write(stored(), c, SCHEMA, NOW)
    assert e.value.field == field


def test_naive_now_is_utc() -> None:
    plan = plan_write(
        None,
        cmd(internal_pb2.WRITE_OP_CREATE, data=dict_to_struct({"title": "x"})),
        SCHEMA,
        NOW.replace(tzinfo=None),
    )
    assert plan.new is not None
    assert plan.new.created_at == NOW


def test_create_continues_from_the_tombstone_version() -> None:
    c = cmd(internal_pb2.WRITE_OP_CREATE, data=dict_to_struct({"title": "again", "n": 1}))
    plan = plan_write(None, c, SCHEMA, NOW, tombstone_version=7)
    assert plan.new is not None
    assert (plan.new.version, plan.event.version) == (8, 8)
    assert plan_write(None, c, SCHEMA, NOW).event.version == 1


def test_the_writer_refuses_an_object_past_the_limit() -> None:
    """The api checked the patch against the object it read; the writer checks the object it patches."""
    small = Limits(max_object_bytes=MIN_OBJECT_BYTES)
    limits.configure(small)
    try:
        grow = common_pb2.JsonPatchOperation(
            op="replace", path=["title"], value=[py_to_value("x" * MIN_OBJECT_BYTES)]
        )
        with pytest.raises(InvalidArgument) as e:
            plan_write(stored(), cmd(internal_pb2.WRITE_OP_UPDATE, patch=[grow]), SCHEMA, NOW)
        assert e.value.reason == "OBJECT_TOO_LARGE"
        assert e.value.field == "patch"
        big = dict_to_struct({"title": "x" * MIN_OBJECT_BYTES})
        with pytest.raises(InvalidArgument):
            plan_write(None, cmd(internal_pb2.WRITE_OP_CREATE, data=big), SCHEMA, NOW)
        fits = dict_to_struct({"title": "x" * (MIN_OBJECT_BYTES - 64)})
        assert plan_write(None, cmd(internal_pb2.WRITE_OP_CREATE, data=fits), SCHEMA, NOW).new is not None
    finally:
        limits.configure(Limits())
