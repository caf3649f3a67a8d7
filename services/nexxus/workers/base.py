"""A base class for custom workers — the seed's `NexxusBaseWorker`.

A worker receives every committed change (ModelEvent) of the models it names,
from the durable JetStream stream the router also reads, with its own durable
consumer (`worker-<name>`): several copies of one worker share the load, and
different workers each see every event. Delivery is at least once — a worker
that raises gets the event again after `retry_delay` seconds, up to
`max_deliver` times, then the event is logged and dropped for this worker.
A retried event arrives after later ones: order by `version` per object.

    class EmailOnAssign(BaseWorker):
        name = "email-on-assign"
        models = ("task",)

        async def handle(self, event: WorkerEvent) -> None:
            if event.kind == "updated" and "assignedTo" in event.changes:
                await send_mail(event.changes["assignedTo"], "New task assigned!")

Register it under the `nexxus.workers` entry point group and run it with
`nexxus serve email-on-assign`, or compose it yourself: `await worker.start()`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from nexxus.core.convert import struct_to_dict
from nexxus.core.ports import BusMessage, BusSubscription, MessageBus
from nexxus.v1.events_pb2 import EVENT_KIND_CREATED, EVENT_KIND_DELETED, EVENT_KIND_UPDATED
from nexxus.v1.internal_pb2 import ModelEvent

Kind = Literal["created", "updated", "deleted"]
_KINDS: dict[int, Kind] = {
    EVENT_KIND_CREATED: "created",
    EVENT_KIND_UPDATED: "updated",
    EVENT_KIND_DELETED: "deleted",
}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The partial model of a change: changed fields with their new values,
    nested objects recursively, removed fields as None."""
    out: dict[str, Any] = {}
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new and (key in before) == (key in after):
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out[key] = diff(old, new)
        else:
            out[key] = new
    return out


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One committed change, as a worker sees it."""

    app_id: str
    model: str
    object_id: str
    kind: Kind
    version: int
    owner_id: str
    operation_id: str
    time: datetime
    actor_user_id: str
    # The object's data before and after (None for creates / deletes).
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    # The JsonPatch of an update, as sent (the seed's dialect).
    patch: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changes(self) -> dict[str, Any]:
        """What changed (the seed's `getPartialModel`): for creates the whole object,
        for deletes {}, for updates the changed fields with their new values."""
        if self.kind == "deleted":
            return {}
        return diff(self.before or {}, self.after or {})

    @classmethod
    def from_event(cls, event: ModelEvent) -> WorkerEvent:
        return cls(
            app_id=event.app_id,
            model=event.model,
            object_id=event.object_id,
            kind=_KINDS.get(event.kind, "updated"),
            version=event.version,
            owner_id=event.owner_id,
            operation_id=event.command_id,
            time=event.time.ToDatetime(),
            actor_user_id=event.actor.user_id,
            before=struct_to_dict(event.before.data) if event.HasField("before") else None,
            after=struct_to_dict(event.after.data) if event.HasField("after") else None,
            patch=[json_format.MessageToDict(op, preserving_proto_field_name=True) for op in event.patch],
        )


class BaseWorker(ABC):
    """Subclass it: set `name` (and `models`, empty for all), implement `handle`."""

    name: ClassVar[str] = ""
    # Models to receive; empty means every model.
    models: ClassVar[tuple[str, ...]] = ()
    # Applications to receive; empty means every application.
    apps: ClassVar[tuple[str, ...]] = ()
    batch_size: ClassVar[int] = 64
    max_deliver: ClassVar[int] = 5
    retry_delay: ClassVar[float] = 2.0

    def __init__(self, bus: MessageBus) -> None:
        if not self.name:
            raise TypeError(f"{type(self).__name__} must set a `name` (its durable consumer)")
        self.bus = bus
        self.log = logging.getLogger(f"nexxus.workers.{self.name}")
        self._sub: BusSubscription | None = None
        self.handled = 0

    @abstractmethod
    async def handle(self, event: WorkerEvent) -> None:
        """Process one change. Raise to have it delivered again later."""

    def wants(self, event: ModelEvent) -> bool:
        return (not self.models or event.model in self.models) and (
            not self.apps or event.app_id in self.apps
        )

    async def start(self) -> None:
        self._sub = await self.bus.consume(
            self.bus.subjects.all_events,
            f"worker-{self.name}",
            self._handle_batch,
            batch=self.batch_size,
            max_deliver=self.max_deliver + 1,
        )
        self.log.info("worker %s consuming %s", self.name, ", ".join(self.models) or "every model")

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _handle_batch(self, messages: Sequence[BusMessage]) -> None:
        for msg in messages:
            event = ModelEvent()
            try:
                event.ParseFromString(msg.data)
            except DecodeError:
                self.log.error("dropping an undecodable event on %s", msg.subject)
                await msg.term()
                continue
            if not self.wants(event):
                await msg.ack()
                continue
            try:
                await self.handle(WorkerEvent.from_event(event))
            except Exception:
                # The worker's own code failed: retry later, give up after max_deliver.
                if msg.num_delivered >= self.max_deliver:
                    self.log.exception(
                        "giving up on event %s after %d tries", event.event_id, msg.num_delivered
                    )
                    await msg.term()
                else:
                    self.log.exception(
                        "event %s failed (try %d); retrying", event.event_id, msg.num_delivered
                    )
                    await msg.nak(self.retry_delay)
                continue
            self.handled += 1
            await msg.ack()
