"""The writer: applies WriteCommands through the DatabaseAdapter and publishes ModelEvents.

The write queue is split into `writer.partitions` partitions
(`<prefix>.<app>.write.<p>`, p = hash of app, model, object id: every command
of one object is in one partition). Each writer copy holds a fair share of the
partitions by lease (`PartitionOwner`) and consumes each of them strictly in
order (`bus.consume_ordered`): a command is never applied after a later command
of its partition, whatever crashes, redeliveries or copies happen. Batches of
the partitions a copy holds are applied together (group commit): while one
database transaction runs, the batches fetched meanwhile queue up for the next.

For each batch:

1. decode the commands; an undecodable message is parked (see below) and termed;
2. look up each command's model schema; a command for an unknown model fails
   with NOT_FOUND like any other command that cannot apply;
3. `db.apply_writes` applies them in order, idempotently: a redelivered command
   id returns the recorded outcome (`replayed`), so nothing changes twice and
   the very same event (same event id) is published again — JetStream drops the
   duplicate by its message id;
4. publish every event on `<prefix>.<app>.events.<model>` (msg id = event id)
   and wait for the stream's acks;
5. answer waiting callers (WriteResult on the command's reply subject);
6. ack the messages — only now, so a crash anywhere above redelivers them, to
   whichever copy takes the partition over, before anything later.

A command that fails as a command (version conflict, missing object, schema
violation) is recorded as a failed operation: the caller learns why through
`wait` or GetOperation. A *poison* message — undecodable, or failing again and
again (`max_deliver` attempts) — is published with its reason on
`<prefix>.<app>.parked` (stream NEXXUS_PARKED) and termed: never retried
forever, never dropped silently. Backend outages (Unavailable) leave the batch
unsettled: its partition restarts from it after a second (order kept).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from opentelemetry.trace import Span

from nexxus.core.config.settings import WriterSettings
from nexxus.core.errors import NexxusError, NotFound, Unavailable
from nexxus.core.ids import new_id
from nexxus.core.metrics import (
    WRITER_COMMIT_SECONDS,
    WRITES_APPLIED,
    WRITES_FAILED,
    WRITES_PARKED,
)
from nexxus.core.ports import (
    BusMessage,
    BusSubscription,
    DatabaseAdapter,
    IdentityStore,
    MessageBus,
    WriteOutcome,
)
from nexxus.core.schema import ModelSchema
from nexxus.core.schema_registry import SchemaRegistry
from nexxus.core.tracing import begin_span, sampled_context, traceparent_of
from nexxus.core.writes import op_name
from nexxus.v1.internal_pb2 import WRITE_OP_BARRIER, ModelEvent, WriteCommand, WriteResult
from nexxus.writer.partitions import PartitionOwner
from nexxus.writer.retention import RetentionJob

log = logging.getLogger("nexxus.writer")

LEASES = "WRITER_LEASES"
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_=-]")


@dataclass(slots=True)
class _Item:
    msg: BusMessage
    cmd: WriteCommand
    schema: ModelSchema | None


class WriterService:
    def __init__(
        self,
        settings: WriterSettings,
        bus: MessageBus,
        db: DatabaseAdapter,
        schemas: SchemaRegistry,
        *,
        identity: IdentityStore | None = None,
        holder: str = "",
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._db = db
        self._schemas = schemas
        # This copy's name in the partition leases (unique per process start).
        self.holder = _UNSAFE_KEY_CHARS.sub("_", f"{holder or 'writer'}-{new_id()[-8:]}")
        self.partitions: PartitionOwner | None = None
        self.retention = RetentionJob(settings, db, identity)
        self._failures: dict[str, int] = {}
        self._queue: list[tuple[list[_Item], asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.applied = 0

    async def start(self) -> None:
        await self._schemas.listen(self._bus)
        leases = await self._bus.leases(LEASES, self._settings.lease_ttl_seconds)
        self.partitions = PartitionOwner(leases, self.holder, self._settings.partitions, self._consume)
        await self.partitions.start()
        self.retention.start()
        log.info(
            "writer %s consuming %d partitions of %s (holds %s)",
            self.holder,
            self._settings.partitions,
            self._bus.subjects.writes,
            sorted(self.partitions.owned),
        )

    async def _consume(self, partition: int) -> BusSubscription:
        return await self._bus.consume_ordered(
            self._bus.write_partition_filter(partition),
            f"writer-p{partition}",
            self.handle_batch,
            batch=self._settings.batch_size,
        )

    async def stop(self) -> None:
        await self.retention.stop()
        if self.partitions is not None:
            await self.partitions.stop()
            self.partitions = None

    async def handle_batch(self, messages: Sequence[BusMessage]) -> None:
        """One partition's batch, in order; returns when it is applied and acked
        (or left unsettled, to come again before anything later)."""
        items: list[_Item] = []
        for msg in messages:
            cmd = WriteCommand()
            try:
                cmd.ParseFromString(msg.data)
            except DecodeError:
                await self._park(msg, "undecodable WriteCommand", app_id=self._app_of(msg))
                continue
            if not cmd.command_id or not cmd.app_id or not cmd.model or not cmd.object_id:
                await self._park(
                    msg,
                    "WriteCommand without command_id/app_id/model/object_id",
                    app_id=self._app_of(msg),
                )
                continue
            items.append(_Item(msg, cmd, None))
        if not items:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((items, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="writer-group-commit")
        await fut

    async def _drain(self) -> None:
        """Group commit: every batch queued while a transaction ran goes into the next."""
        while self._queue:
            groups, self._queue = self._queue, []
            try:
                await self._process([items for items, _ in groups])
            except Exception as exc:  # a bug: the batches stay unsettled and come again
                log.exception("writer batch failed")
                for _, fut in groups:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in groups:
                if not fut.done():
                    fut.set_result(None)

    async def _process(self, groups: list[list[_Item]]) -> None:
        items = [item for group in groups for item in group]
        try:
            await self._apply_and_finish(items)
            return
        except Unavailable as exc:
            log.warning("backend unavailable, %d commands come again: %s", len(items), exc)
            return
        except Exception:
            log.exception("batch of %d failed; retrying one by one", len(items))
        for group in groups:
            await self._one_by_one(group)

    async def _one_by_one(self, group: list[_Item]) -> None:
        """Isolate a poison command in one partition's batch: those before it apply,
        it is retried (then parked after `max_deliver` attempts), later ones wait."""
        for item in group:
            try:
                await self._apply_and_finish([item])
                continue
            except Unavailable as exc:
                log.warning("backend unavailable: %s", exc)
                return
            except Exception as exc:
                command_id = item.cmd.command_id
                attempts = self._failures.get(command_id, 0) + 1
                log.exception("command %s failed (attempt %d)", command_id, attempts)
                if attempts < self._settings.max_deliver:
                    self._failures[command_id] = attempts
                    return
                self._failures.pop(command_id, None)
                await self._park(item.msg, f"failed {attempts} times: {exc!r}", app_id=item.cmd.app_id)

    async def _apply_and_finish(self, items: list[_Item]) -> None:
        for item in items:
            if item.cmd.op != WRITE_OP_BARRIER:
                item.schema = await self._schemas.lookup(item.cmd.app_id, item.cmd.model)
        started = time.perf_counter()
        spans = self._begin_spans(items)
        try:
            outcomes = await self._apply(items)
            if spans:
                self._link_events(spans, outcomes)
            await self._publish_events(outcomes)
        finally:
            for span in spans.values():
                span.end()
        WRITER_COMMIT_SECONDS.observe(time.perf_counter() - started)
        for item, outcome in zip(items, outcomes, strict=True):
            self._count(item.cmd, outcome)
            await self._reply(item.cmd, outcome)
            await item.msg.ack()
        if self._failures:
            for item in items:
                self._failures.pop(item.cmd.command_id, None)
        self.applied += len(items)

    @staticmethod
    def _begin_spans(items: Sequence[_Item]) -> dict[int, Span]:
        """A `writer.commit` span per traced command (index in the batch → span)."""
        spans: dict[int, Span] = {}
        for i, item in enumerate(items):
            cmd = item.cmd
            parent = sampled_context(cmd.traceparent) if cmd.traceparent else None
            if parent is None:
                continue
            attributes = {
                "nexxus.app": cmd.app_id,
                "nexxus.model": cmd.model,
                "nexxus.op": op_name(cmd.op),
                "nexxus.command_id": cmd.command_id,
                "nexxus.batch_size": len(items),
            }
            span = begin_span("writer", "writer.commit", parent, attributes)
            if span is not None:
                spans[i] = span
        return spans

    @staticmethod
    def _link_events(spans: dict[int, Span], outcomes: Sequence[WriteOutcome]) -> None:
        """Each traced command's event carries its commit span's context on to the router."""
        for i, span in spans.items():
            outcome = outcomes[i]
            if outcome.event is not None:
                outcome.event.traceparent = traceparent_of(span)
                span.set_attribute("nexxus.version", outcome.event.version)
            if outcome.error is not None:
                span.set_attribute("nexxus.error", outcome.error.reason or outcome.error.code)

    @staticmethod
    def _count(cmd: WriteCommand, outcome: WriteOutcome) -> None:
        if outcome.replayed or cmd.op == WRITE_OP_BARRIER:
            return
        if outcome.error is None:
            WRITES_APPLIED.labels(cmd.app_id, cmd.model, op_name(cmd.op)).inc()
        else:
            WRITES_FAILED.labels(cmd.app_id, cmd.model, outcome.error.reason or outcome.error.code).inc()

    async def _apply(self, items: Sequence[_Item]) -> list[WriteOutcome]:
        """Apply the batch; commands for unknown models fail without touching the database."""
        outcomes: list[WriteOutcome | None] = [None] * len(items)
        known: list[tuple[int, _Item]] = []
        for i, item in enumerate(items):
            if item.cmd.op == WRITE_OP_BARRIER:  # nothing to write: answered after the batch commits
                outcomes[i] = WriteOutcome(item.cmd.command_id, event=None, error=None)
            elif item.schema is None:
                outcomes[i] = WriteOutcome(
                    item.cmd.command_id,
                    event=None,
                    error=NotFound(f"model {item.cmd.model!r} is not defined", reason="MODEL_NOT_FOUND"),
                )
            else:
                known.append((i, item))
        if known:
            applied = await self._db.apply_writes(
                [(item.cmd, item.schema) for _, item in known if item.schema]
            )
            for (i, _), outcome in zip(known, applied, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    async def _publish_events(self, outcomes: Sequence[WriteOutcome]) -> None:
        batch: list[tuple[str, bytes, str | None]] = []
        for outcome in outcomes:
            event = outcome.event
            if event is None:
                continue
            batch.append((self.event_subject(event), event.SerializeToString(), event.event_id))
        if batch:
            await self._bus.publish_many(batch)

    def event_subject(self, event: ModelEvent) -> str:
        return self._bus.subjects.events(event.app_id, event.model)

    async def _reply(self, cmd: WriteCommand, outcome: WriteOutcome) -> None:
        if not cmd.reply_subject:
            return
        result = WriteResult(command_id=cmd.command_id, ok=outcome.error is None)
        if outcome.error is not None:
            result.error_code = outcome.error.code
            result.error_message = outcome.error.message
            result.error_reason = outcome.error.reason
        elif outcome.event is not None:
            source = outcome.event.after if outcome.event.HasField("after") else outcome.event.before
            result.object.CopyFrom(source)
            result.object.version = outcome.event.version
        try:
            await self._bus.publish_volatile(cmd.reply_subject, result.SerializeToString())
        except NexxusError as exc:  # the caller falls back to PENDING; the write is done
            log.warning("could not answer %s: %s", cmd.command_id, exc)

    def _app_of(self, msg: BusMessage) -> str:
        """The application a write subject names (<prefix>.app.<app>.write.<partition>)."""
        return self._bus.subjects.app_of(msg.subject) or "unknown"

    async def _park(self, msg: BusMessage, reason: str, *, app_id: str) -> None:
        log.error("parking message on %s: %s", msg.subject, reason)
        WRITES_PARKED.inc()
        await self._bus.publish(
            self._bus.parked_subject(app_id),
            msg.data,
            headers={"Nexxus-Park-Reason": reason, "Nexxus-Original-Subject": msg.subject},
        )
        await msg.term()
