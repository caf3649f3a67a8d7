"""`apply_writes` on SQL: the writer's batch loop, shared by SQLite and PostgreSQL.

A batch runs in ONE transaction, on one of two paths:

fast path (the normal case): read every operation row and every current object
of the batch with two queries per (app, model) (``FOR UPDATE`` on PostgreSQL,
so no other writer can change them until commit; SQLite holds the database
write lock from ``BEGIN IMMEDIATE``), plan each command in memory in order
with `nexxus.core.writes.plan_write` (a later command sees the earlier ones'
results), then write the net object changes and every operation row with a
few ``executemany`` calls. Updates and deletes stay guarded by
``WHERE version = <read version>``.

slow path: when the fast path meets a concurrent writer (a unique violation on
an object or operation row another process inserted meanwhile, a guarded
statement matching fewer rows, a deadlock), its transaction is rolled back and
the batch is redone command by command, each under its own SAVEPOINT: read the
operation and the object, plan, write guarded; on a lost race roll back to the
savepoint, re-read and re-plan (a few times, then Unavailable).

A command whose plan raises a NexxusError gets a failed operation row, so a
redelivery returns the same failure (``replayed=True``).

A delete leaves a tombstone row (the delete event's version); a create of an
object that does not exist continues from its tombstone, so versions only grow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from nexxus.core.errors import AlreadyExists, NexxusError, Unavailable, error_from_code
from nexxus.core.models import OperationRecord, StoredObject, utcnow
from nexxus.core.ports import WriteOutcome
from nexxus.core.writes import plan_write
from nexxus.v1.internal_pb2 import WRITE_OP_CREATE, ModelEvent

from ._sql_common import (
    OBJECT_COLUMNS,
    OPERATION_COLUMNS,
    Dialect,
    Session,
    TransientConflict,
    dumps,
    object_params,
    operation_params,
    row_to_object,
    row_to_operation,
)

if TYPE_CHECKING:
    from nexxus.core.schema import ModelSchema
    from nexxus.v1.internal_pb2 import WriteCommand

__all__ = ["MAX_ATTEMPTS", "WriteRace", "apply_fast", "apply_slow"]

# Re-plans of one command that keeps losing races before giving up (Unavailable).
MAX_ATTEMPTS = 8

Writes = Sequence[tuple["WriteCommand", "ModelSchema"]]
ObjKey = tuple[str, str, str]

INSERT_OBJECT = f"INSERT INTO {{t}}objects ({OBJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
UPDATE_OBJECT = (
    "UPDATE {t}objects SET owner_id = ?, version = ?, data = ?, created_at = ?, updated_at = ?"
    " WHERE app_id = ? AND model = ? AND id = ? AND version = ?"
)
UPSERT_TOMBSTONE = (
    "INSERT INTO {t}tombstones (app_id, model, id, version, deleted_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (app_id, model, id)"
    " DO UPDATE SET version = excluded.version, deleted_at = excluded.deleted_at"
)
SELECT_TOMBSTONE = "SELECT version FROM {t}tombstones WHERE app_id = ? AND model = ? AND id = ?"
DELETE_OBJECT = "DELETE FROM {t}objects WHERE app_id = ? AND model = ? AND id = ? AND version = ?"
INSERT_OPERATION = f"INSERT INTO {{t}}operations ({OPERATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_OPERATION = f"SELECT {OPERATION_COLUMNS} FROM {{t}}operations WHERE app_id = ? AND command_id = ?"
SELECT_OBJECT = f"SELECT {OBJECT_COLUMNS} FROM {{t}}objects WHERE app_id = ? AND model = ? AND id = ?"


class WriteRace(Exception):
    """A concurrent writer changed what the fast path read: redo on the slow path."""


def outcome_from_record(rec: OperationRecord, *, replayed: bool) -> WriteOutcome:
    if rec.ok:
        return WriteOutcome(rec.command_id, ModelEvent.FromString(rec.event), None, replayed)
    err = error_from_code(rec.error_code, rec.error_message, reason=rec.error_reason)
    return WriteOutcome(rec.command_id, None, err, replayed)


def _record(
    cmd: WriteCommand, event: ModelEvent | None, err: NexxusError | None, version: int, now: datetime
) -> OperationRecord:
    return OperationRecord(
        app_id=cmd.app_id,
        command_id=cmd.command_id,
        object_id=cmd.object_id,
        ok=err is None,
        error_code=err.code if err else "",
        error_message=err.message if err else "",
        error_reason=err.reason if err else "",
        version=event.version if event is not None else version,
        event=event.SerializeToString() if event is not None else b"",
        created_at=now,
    )


def _plan(
    cmd: WriteCommand, schema: ModelSchema, current: StoredObject | None, now: datetime, tombstone: int
) -> tuple[StoredObject | None, OperationRecord, WriteOutcome]:
    """Plan one command: (object to store, operation row, outcome). A failed plan
    stores `current` unchanged."""
    try:
        plan = plan_write(current, cmd, schema, now, tombstone_version=tombstone)
    except NexxusError as err:
        rec = _record(cmd, None, err, current.version if current else 0, now)
        return current, rec, WriteOutcome(cmd.command_id, None, err)
    rec = _record(cmd, plan.event, None, 0, now)
    return plan.new, rec, WriteOutcome(cmd.command_id, plan.event, None)


# --------------------------------------------------------------------------- fast path


async def apply_fast(s: Session, d: Dialect, writes: Writes) -> list[WriteOutcome]:
    """The whole batch with set-based reads and writes; raises WriteRace when a
    concurrent writer interferes (the caller rolls back and uses `apply_slow`)."""
    now = utcnow()
    commands: dict[str, set[str]] = defaultdict(set)
    objects: dict[tuple[str, str], set[str]] = defaultdict(set)
    for cmd, _schema in writes:
        commands[cmd.app_id].add(cmd.command_id)
        objects[(cmd.app_id, cmd.model)].add(cmd.object_id)

    ops: dict[tuple[str, str], OperationRecord] = {}
    sql = d.q(
        f"SELECT {OPERATION_COLUMNS} FROM {{t}}operations WHERE app_id = ? AND "
        + d.in_list("command_id", "?")
    )
    for app_id in sorted(commands):
        for r in await s.fetch(sql, (app_id, d.list_param(sorted(commands[app_id])))):
            rec = row_to_operation(d, r)
            ops[(rec.app_id, rec.command_id)] = rec

    original: dict[ObjKey, StoredObject | None] = {}
    sql = d.q(
        f"SELECT {OBJECT_COLUMNS} FROM {{t}}objects WHERE app_id = ? AND model = ? AND "
        + d.in_list("id", "?")
        + (" ORDER BY id FOR UPDATE" if d.is_pg else "")
    )
    for (app_id, model), ids in sorted(objects.items()):
        for oid in ids:
            original[(app_id, model, oid)] = None
        for r in await s.fetch(sql, (app_id, model, d.list_param(sorted(ids)))):
            obj = row_to_object(d, r)
            original[(obj.app_id, obj.model, obj.id)] = obj

    tombstones = await _read_tombstones(s, d, writes, original)
    state = dict(original)
    outcomes: list[WriteOutcome] = []
    new_ops: list[OperationRecord] = []
    deleted: set[ObjKey] = set()
    for cmd, schema in writes:
        done = ops.get((cmd.app_id, cmd.command_id))
        if done is not None:
            outcomes.append(outcome_from_record(done, replayed=True))
            continue
        key = (cmd.app_id, cmd.model, cmd.object_id)
        state[key], rec, outcome = _plan(cmd, schema, state[key], now, tombstones.get(key, 0))
        if outcome.event is not None and state[key] is None:
            tombstones[key] = outcome.event.version
            deleted.add(key)
        ops[(cmd.app_id, cmd.command_id)] = rec
        new_ops.append(rec)
        outcomes.append(outcome)

    inserts: list[tuple[object, ...]] = []
    updates: list[tuple[object, ...]] = []
    deletes: list[tuple[object, ...]] = []
    for key, new in state.items():
        old = original[key]
        if new is old:
            continue
        if old is None:
            assert new is not None
            inserts.append(object_params(d, new))
        elif new is None:
            deletes.append((*key, old.version))
        else:
            updates.append(_update_params(d, new, old))
    try:
        if deletes:
            await _guarded_many(s, d.q(DELETE_OBJECT), deletes)
        if updates:
            await _guarded_many(s, d.q(UPDATE_OBJECT), updates)
        if inserts:
            await s.executemany(d.q(INSERT_OBJECT), inserts)
        if deleted:
            rows = [(*key, tombstones[key], d.ts_in(now)) for key in sorted(deleted)]
            await s.executemany(d.q(UPSERT_TOMBSTONE), rows)
        if new_ops:
            await s.executemany(d.q(INSERT_OPERATION), [operation_params(d, op) for op in new_ops])
    except (AlreadyExists, TransientConflict) as exc:
        raise WriteRace(str(exc)) from exc
    return outcomes


def _update_params(d: Dialect, new: StoredObject, old: StoredObject) -> tuple[object, ...]:
    return (
        new.owner_id,
        new.version,
        dumps(new.data),
        d.ts_in(new.created_at),
        d.ts_in(new.updated_at),
        old.app_id,
        old.model,
        old.id,
        old.version,
    )


async def _read_tombstones(
    s: Session, d: Dialect, writes: Writes, original: dict[ObjKey, StoredObject | None]
) -> dict[ObjKey, int]:
    """The tombstone versions of the objects the batch creates and that do not exist."""
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for cmd, _schema in writes:
        if cmd.op == WRITE_OP_CREATE and original.get((cmd.app_id, cmd.model, cmd.object_id)) is None:
            wanted[(cmd.app_id, cmd.model)].add(cmd.object_id)
    found: dict[ObjKey, int] = {}
    if not wanted:
        return found
    where = "WHERE app_id = ? AND model = ? AND " + d.in_list("id", "?")
    sql = d.q("SELECT id, version FROM {t}tombstones " + where)
    for (app_id, model), ids in sorted(wanted.items()):
        for r in await s.fetch(sql, (app_id, model, d.list_param(sorted(ids)))):
            found[(app_id, model, r[0])] = int(r[1])
    return found


async def _guarded_many(s: Session, sql: str, rows: Sequence[Sequence[object]]) -> None:
    changed = await s.executemany_count(sql, rows)
    if changed is not None and changed != len(rows):
        raise WriteRace(f"{len(rows) - changed} guarded row(s) changed concurrently")


# --------------------------------------------------------------------------- slow path


async def apply_slow(s: Session, d: Dialect, writes: Writes) -> list[WriteOutcome]:
    """Command by command, each under a SAVEPOINT, re-planning after a lost race."""
    now = utcnow()
    outcomes: list[WriteOutcome] = []
    for cmd, schema in writes:
        outcomes.append(await _apply_one(s, d, cmd, schema, now))
    return outcomes


async def _apply_one(
    s: Session, d: Dialect, cmd: WriteCommand, schema: ModelSchema, now: datetime
) -> WriteOutcome:
    for _attempt in range(MAX_ATTEMPTS):
        r = await s.fetchrow(d.q(SELECT_OPERATION), (cmd.app_id, cmd.command_id))
        if r is not None:
            return outcome_from_record(row_to_operation(d, r), replayed=True)
        r = await s.fetchrow(d.q(SELECT_OBJECT), (cmd.app_id, cmd.model, cmd.object_id))
        current = row_to_object(d, r) if r is not None else None
        tombstone = 0
        if current is None and cmd.op == WRITE_OP_CREATE:
            t = await s.fetchrow(d.q(SELECT_TOMBSTONE), (cmd.app_id, cmd.model, cmd.object_id))
            tombstone = int(t[0]) if t is not None else 0
        new, rec, outcome = _plan(cmd, schema, current, now, tombstone)
        await s.execute("SAVEPOINT nexxus_write")
        try:
            if new is not current:
                await _write_object(s, d, current, new)
            if new is None and current is not None and outcome.event is not None:
                key = (cmd.app_id, cmd.model, cmd.object_id)
                await s.execute(d.q(UPSERT_TOMBSTONE), (*key, outcome.event.version, d.ts_in(now)))
            await s.execute(d.q(INSERT_OPERATION), operation_params(d, rec))
        except (WriteRace, AlreadyExists, TransientConflict):
            await s.execute("ROLLBACK TO SAVEPOINT nexxus_write")
            await s.execute("RELEASE SAVEPOINT nexxus_write")
            continue
        await s.execute("RELEASE SAVEPOINT nexxus_write")
        return outcome
    raise Unavailable(
        f"command {cmd.command_id!r} kept conflicting with concurrent writers", reason="WRITE_CONTENTION"
    )


async def _write_object(
    s: Session, d: Dialect, current: StoredObject | None, new: StoredObject | None
) -> None:
    if current is None:
        assert new is not None
        await s.execute(d.q(INSERT_OBJECT), object_params(d, new))
        return
    key = (current.app_id, current.model, current.id)
    if new is None:
        changed = await s.execute(d.q(DELETE_OBJECT), (*key, current.version))
    else:
        changed = await s.execute(d.q(UPDATE_OBJECT), _update_params(d, new, current))
    if changed != 1:
        raise WriteRace("the object changed concurrently")
