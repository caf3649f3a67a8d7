"""The pure logic of a model write, shared by every database adapter.

`plan_write(current, cmd, schema, now)` checks a WriteCommand against the
object as stored (existence, optimistic version), validates the new data
against the schema, and returns the object to store (None: delete it) and the
ModelEvent to record and publish. Adapters only read `current` and store
`plan.new` atomically with the operation record.

Versions only grow, deletes and re-creates included: a delete's event carries
the deleted version + 1, which the adapter keeps as the object's *tombstone*;
a create of the same id continues from it (`tombstone_version` + 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from nexxus.core import limits
from nexxus.core.convert import datetime_to_timestamp, stored_to_proto, struct_to_dict
from nexxus.core.errors import AlreadyExists, InvalidArgument, NotFound, VersionConflict
from nexxus.core.jsonpatch import apply_patch, patch_from_proto
from nexxus.core.models import StoredObject
from nexxus.core.schema import ModelSchema
from nexxus.v1 import events_pb2, internal_pb2

__all__ = ["WritePlan", "op_name", "plan_write"]

_OP_NAMES: dict[int, str] = {
    int(op): name.removeprefix("WRITE_OP_").lower() for name, op in internal_pb2.WriteOp.items()
}


def op_name(op: int) -> str:
    """The op's short name, e.g. "create" (metrics labels, span attributes); "" when unknown."""
    return _OP_NAMES.get(op, "")


@dataclass(slots=True)
class WritePlan:
    """What a write does: the object to store (None: delete) and its event."""

    new: StoredObject | None
    event: internal_pb2.ModelEvent


def plan_write(
    current: StoredObject | None,
    cmd: internal_pb2.WriteCommand,
    schema: ModelSchema,
    now: datetime,
    *,
    tombstone_version: int = 0,
) -> WritePlan:
    """Plan `cmd` against `current` (the stored object, or None; then
    `tombstone_version` is the version its last delete left, 0 if none).

    CREATE: AlreadyExists (reason OBJECT_EXISTS) when `current` exists; the data
    is validated; version `tombstone_version` + 1; owner = the actor's user id (`expected_version` is
    ignored). UPDATE / DELETE: NotFound when `current` is missing;
    VersionConflict when `cmd.expected_version > 0` differs from the stored
    version. UPDATE applies the patch (version + 1); DELETE returns `new=None`
    and an event whose version is the deleted version + 1. Raises
    InvalidArgument for a bad command or data that breaks the schema.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if not cmd.object_id:
        raise InvalidArgument("object id is required", field="object_id")
    if cmd.model != schema.name:
        raise InvalidArgument(
            f"command model {cmd.model!r} does not match schema {schema.name!r}", field="model"
        )
    if cmd.op == internal_pb2.WRITE_OP_CREATE:
        return _create(current, cmd, schema, now, tombstone_version)
    if cmd.op not in (internal_pb2.WRITE_OP_UPDATE, internal_pb2.WRITE_OP_DELETE):
        raise InvalidArgument(f"unknown write op {cmd.op}", field="op")
    if current is None:
        raise NotFound(
            f"{cmd.model} {cmd.object_id!r} does not exist",
            reason="OBJECT_NOT_FOUND",
            details={"model": cmd.model, "object_id": cmd.object_id},
        )
    if cmd.expected_version > 0 and cmd.expected_version != current.version:
        raise VersionConflict(
            f"expected version {cmd.expected_version}, but the object is at version {current.version}",
            field="expected_version",
            details={"expected_version": cmd.expected_version, "current_version": current.version},
        )
    if cmd.op == internal_pb2.WRITE_OP_UPDATE:
        return _update(current, cmd, schema, now)
    kind = events_pb2.EVENT_KIND_DELETED
    event = _event(cmd, kind, current.version + 1, current.owner_id, None, current, now)
    return WritePlan(new=None, event=event)


def _create(
    current: StoredObject | None,
    cmd: internal_pb2.WriteCommand,
    schema: ModelSchema,
    now: datetime,
    tombstone_version: int,
) -> WritePlan:
    if current is not None:
        raise AlreadyExists(
            f"{cmd.model} {cmd.object_id!r} already exists",
            reason="OBJECT_EXISTS",
            details={"model": cmd.model, "object_id": cmd.object_id},
        )
    data = schema.validate_object(struct_to_dict(cmd.data))
    limits.current().check_object(data)
    new = StoredObject(
        app_id=cmd.app_id,
        model=cmd.model,
        id=cmd.object_id,
        owner_id=cmd.actor.user_id,
        version=max(tombstone_version, 0) + 1,
        data=data,
        created_at=now,
        updated_at=now,
    )
    event = _event(cmd, events_pb2.EVENT_KIND_CREATED, new.version, new.owner_id, new, None, now)
    return WritePlan(new=new, event=event)


def _update(
    current: StoredObject, cmd: internal_pb2.WriteCommand, schema: ModelSchema, now: datetime
) -> WritePlan:
    patch = patch_from_proto(cmd.patch, schema)
    data = apply_patch(current.data, patch, schema)
    # The api checked the size against the object it saw; a write between may have grown it.
    limits.current().check_object(data, field="patch")
    new = StoredObject(
        app_id=current.app_id,
        model=current.model,
        id=current.id,
        owner_id=current.owner_id,
        version=current.version + 1,
        data=data,
        created_at=current.created_at,
        updated_at=now,
    )
    kind = events_pb2.EVENT_KIND_UPDATED
    return WritePlan(new=new, event=_event(cmd, kind, new.version, new.owner_id, new, current, now))


def _event(
    cmd: internal_pb2.WriteCommand,
    kind: events_pb2.EventKind.ValueType,
    version: int,
    owner_id: str,
    after: StoredObject | None,
    before: StoredObject | None,
    now: datetime,
) -> internal_pb2.ModelEvent:
    event = internal_pb2.ModelEvent(
        event_id=cmd.command_id,
        command_id=cmd.command_id,
        app_id=cmd.app_id,
        model=cmd.model,
        object_id=cmd.object_id,
        kind=kind,
        version=version,
        owner_id=owner_id,
        patch=list(cmd.patch),
        time=datetime_to_timestamp(now),
    )
    if cmd.HasField("actor"):
        event.actor.CopyFrom(cmd.actor)
    if after is not None:
        event.after.CopyFrom(stored_to_proto(after))
    if before is not None:
        event.before.CopyFrom(stored_to_proto(before))
    return event
