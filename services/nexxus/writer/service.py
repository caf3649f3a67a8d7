"""The writer: applies WriteCommands through the DatabaseAdapter and publishes ModelEvents.

Consumes `<prefix>.*.write` with the durable consumer "writer" (every writer
copy shares it: more copies, more throughput). For each batch:

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
6. ack the messages — only now, so a crash anywhere above redelivers them.

A command that fails as a command (version conflict, missing object, schema
violation) is recorded as a failed operation: the caller learns why through
`wait` or GetOperation. A *poison* message — undecodable, or crashing the
writer again and again (`max_deliver` deliveries) — is published with its
reason on `<prefix>.<app>.parked` (stream NEXXUS_PARKED) and termed: never
retried forever, never dropped silently. Backend outages (Unavailable) nak the
batch with a delay instead: they are not the command's fault.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from nexxus.core.config.settings import WriterSettings
from nexxus.core.errors import NexxusError, NotFound, Unavailable
from nexxus.core.ports import BusMessage, BusSubscription, DatabaseAdapter, MessageBus, WriteOutcome
from nexxus.core.schema import ModelSchema
from nexxus.core.schema_registry import SchemaRegistry
from nexxus.v1.internal_pb2 import ModelEvent, WriteCommand, WriteResult

log = logging.getLogger("nexxus.writer")

RETRY_DELAY_SECONDS = 1.0


@dataclass(slots=True)
class _Item:
    msg: BusMessage
    cmd: WriteCommand
    schema: ModelSchema | None


class WriterService:
    def __init__(
        self, settings: WriterSettings, bus: MessageBus, db: DatabaseAdapter, schemas: SchemaRegistry
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._db = db
        self._schemas = schemas
        self._sub: BusSubscription | None = None
        self.applied = 0

    async def start(self) -> None:
        await self._schemas.listen(self._bus)
        self._sub = await self._bus.consume(
            self._bus.subject("*", "write"),
            "writer",
            self.handle_batch,
            batch=self._settings.batch_size,
            # Poison detection is ours (we park before the server gives up).
            max_deliver=self._settings.max_deliver + 5,
        )
        log.info("writer consuming %s", self._bus.subject("*", "write"))

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def handle_batch(self, messages: Sequence[BusMessage]) -> None:
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
            if msg.num_delivered > self._settings.max_deliver:
                await self._park(msg, f"failed {msg.num_delivered - 1} times", app_id=cmd.app_id)
                continue
            items.append(_Item(msg, cmd, None))
        if items:
            await self._process(items)

    async def _process(self, items: list[_Item]) -> None:
        try:
            for item in items:
                item.schema = await self._schemas.lookup(item.cmd.app_id, item.cmd.model)
            outcomes = await self._apply(items)
            await self._publish_events(outcomes)
        except Unavailable as exc:
            log.warning("backend unavailable, retrying %d commands: %s", len(items), exc)
            for item in items:
                await item.msg.nak(RETRY_DELAY_SECONDS)
            return
        except Exception:
            # A bug or a poison command: isolate it so that only the culprit
            # accumulates deliveries (and gets parked), not its whole batch.
            if len(items) > 1:
                log.exception("batch of %d failed; retrying one by one", len(items))
                for item in items:
                    await self._process([item])
                return
            log.exception(
                "command %s failed (delivery %d)", items[0].cmd.command_id, items[0].msg.num_delivered
            )
            await items[0].msg.nak(RETRY_DELAY_SECONDS)
            return
        for item, outcome in zip(items, outcomes, strict=True):
            await self._reply(item.cmd, outcome)
            await item.msg.ack()
        self.applied += len(items)

    async def _apply(self, items: Sequence[_Item]) -> list[WriteOutcome]:
        """Apply the batch; commands for unknown models fail without touching the database."""
        outcomes: list[WriteOutcome | None] = [None] * len(items)
        known: list[tuple[int, _Item]] = []
        for i, item in enumerate(items):
            if item.schema is None:
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
        return self._bus.subject(event.app_id, "events", event.model)

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

    @staticmethod
    def _app_of(msg: BusMessage) -> str:
        """The application a write subject names (<prefix>.<app>.write)."""
        parts = msg.subject.split(".")
        return parts[-2] if len(parts) >= 3 else "unknown"

    async def _park(self, msg: BusMessage, reason: str, *, app_id: str) -> None:
        log.error("parking message on %s: %s", msg.subject, reason)
        await self._bus.publish(
            self._bus.parked_subject(app_id),
            msg.data,
            headers={"Nexxus-Park-Reason": reason, "Nexxus-Original-Subject": msg.subject},
        )
        await msg.term()
