"""Replaying a device's missed events from the event history.

`DeviceReplay` matches history events against one device's current
subscriptions with the router's own code (`ModelIndex`, `match_devices`, the
read gate), so a replayed event is the one the router would have delivered:
same kind (ENTERED / LEFT included), same subscription ids.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from google.protobuf.message import DecodeError

from nexxus.core.events import build_event
from nexxus.core.ports import MessageBus
from nexxus.core.positions import Position
from nexxus.router.matching import AllowAll, ReadGate, device_kind, event_states, match_devices
from nexxus.router.state import AppState, FilterParser, SchemaLookup
from nexxus.v1 import events_pb2, internal_pb2, subscriptions_pb2

__all__ = ["DeviceReplay"]

log = logging.getLogger("nexxus.transport.replay")

_ROUTED = (events_pb2.EVENT_KIND_CREATED, events_pb2.EVENT_KIND_UPDATED, events_pb2.EVENT_KIND_DELETED)


class DeviceReplay:
    """The events of one device between two positions."""

    def __init__(
        self,
        bus: MessageBus,
        schema_lookup: SchemaLookup,
        gate: ReadGate | None,
        app_id: str,
        device_id: str,
    ) -> None:
        self.bus = bus
        self.app_id = app_id
        self.device_id = device_id
        self._parser = FilterParser(schema_lookup)
        self._gate = gate or AllowAll()
        self._state = AppState(app_id=app_id)
        self._prepared: set[str] = set()

    async def load(self, subscriptions: Sequence[subscriptions_pb2.Subscription]) -> None:
        for sub in subscriptions:
            await self._parser.apply(self._state, sub)

    async def match(self, event: internal_pb2.ModelEvent) -> events_pb2.Event | None:
        """The device's Event for a history event, or None when no subscription sees it."""
        if event.kind not in _ROUTED:
            return None
        index = self._state.index(event.model)
        if index is None:
            return None
        if event.model not in self._prepared:
            await self._gate.prepare(self.app_id, event.model)
            self._prepared.add(event.model)
        before, after = event_states(event)
        devices = match_devices(index, event.kind, before, after, self._gate, self.app_id)
        dm = devices.get(self.device_id)
        if dm is None:
            return None
        out = build_event(event, device_kind(event.kind, dm))
        out.subscription_ids.extend(sorted(dm.subscription_ids))
        return out

    async def events(self, after: Position, up_to: Position) -> AsyncIterator[tuple[int, events_pb2.Event]]:
        """(sequence, Event) of the device's events in `(after, up_to]` (one epoch), in order."""
        async for seq, data in self.bus.read_history(self.app_id, after.seq, up_to.seq):
            try:
                event = internal_pb2.ModelEvent.FromString(data)
            except DecodeError:
                log.error("skipping an undecodable event at sequence %d of the history", seq)
                continue
            out = await self.match(event)
            if out is not None:
                out.position = str(Position(up_to.epoch, seq))
                yield seq, out
