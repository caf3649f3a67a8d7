"""Where a device's stream starts: resume, gap + snapshot, initial state, acks.

`StreamPositions.open_frames()` is what a stream sends after `ready` when it
resumes or has subscriptions that asked for their initial state. The
connection is *held* meanwhile (live events wait, see `QueuedConnection`), and
the history's head `L` is read after the connection was registered, so:

* resume from `P` (retained, same epoch): the device's events in `(P, L]` are
  replayed from the history, `resumed` (position `L`) follows, the held live
  events after `L` are released — nothing missed, nothing twice;
* `P` too old or of another epoch: `gap`, a snapshot of every subscription of
  the device taken after `L` was read (so it shows at least every change up
  to `L`), `resumed` (position `L`), then the held events after `L` (a change
  the snapshot already shows — same object, version not newer — is dropped);
* initial state: a snapshot of each such subscription, its last page carrying
  `L`; held events are released (deduplicated against the snapshot's versions,
  not by position: they may belong to the device's other subscriptions).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from nexxus.core.errors import InvalidArgument
from nexxus.core.ports import MessageBus, SubscriptionStore
from nexxus.core.positions import HistoryBounds, Position, parse_position
from nexxus.observability.metrics import RESUMES, SNAPSHOTS
from nexxus.router.matching import ReadGate
from nexxus.router.state import SchemaLookup
from nexxus.transport.connection import QueuedConnection
from nexxus.transport.replay import DeviceReplay
from nexxus.v1 import common_pb2, events_pb2, subscriptions_pb2

__all__ = ["DEFAULT_PAGE_SIZE", "Frame", "SnapshotPage", "StreamPositions", "resolve_page_size"]

log = logging.getLogger("nexxus.transport.positions")

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000

Frame = events_pb2.Event | events_pb2.Gap | events_pb2.Snapshot | events_pb2.Resumed
# (app id, subscription, page size, page token) → (objects, next page token; "" = last page).
SnapshotPage = Callable[
    [str, subscriptions_pb2.Subscription, int, str], Awaitable[tuple[list[common_pb2.Object], str]]
]


def resolve_page_size(requested: int, *, field: str = "snapshot_page_size") -> int:
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"{field} must be 1..{MAX_PAGE_SIZE}", field=field)
    return requested


async def _no_schema(app_id: str, model: str) -> None:
    return None


async def _no_snapshot(
    app_id: str, sub: subscriptions_pb2.Subscription, page_size: int, page_token: str
) -> tuple[list[common_pb2.Object], str]:
    raise InvalidArgument("this transport node cannot take snapshots", field="initial_state")


class StreamPositions:
    def __init__(
        self,
        bus: MessageBus,
        store: SubscriptionStore,
        *,
        schema_lookup: SchemaLookup | None = None,
        read_gate: ReadGate | None = None,
        snapshot: SnapshotPage | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.schema_lookup: SchemaLookup = schema_lookup or _no_schema
        self.read_gate = read_gate
        self.snapshot = snapshot or _no_snapshot

    # ------------------------------------------------------------------ start

    async def start_position(
        self, app_id: str, device_id: str, resume_from: str, from_ack: bool, *, field: str
    ) -> Position | None:
        """The position to resume after (None: start from now). InvalidArgument
        for a malformed one."""
        if resume_from:
            return parse_position(resume_from, field=field)
        if from_ack:
            acked = await self.store.acked_position(app_id, device_id)
            if acked:
                return parse_position(acked)
        return None

    async def head(self) -> HistoryBounds:
        return await self.bus.history_bounds()

    async def ack(self, app_id: str, device_id: str, position: str, *, field: str = "position") -> str:
        """Store the device's acknowledged position; returns the stored (newest) one."""
        if not position:
            raise InvalidArgument("position is required", field=field)
        pos = parse_position(position, field=field)
        return await self.store.ack_position(app_id, device_id, pos.epoch, pos.seq)

    # ------------------------------------------------------------------ frames

    async def open_frames(
        self,
        conn: QueuedConnection,
        start: Position | None,
        initial: Sequence[subscriptions_pb2.Subscription],
        page_size: int,
    ) -> AsyncIterator[Frame]:
        """The frames after `ready` (the connection must be held; it is released
        at the end, also on an error)."""
        bounds = await self.bus.history_bounds()
        after_seq = 0
        try:
            if start is not None:
                async for frame in self._resume(conn, start, bounds, page_size):
                    yield frame
                after_seq = bounds.last_seq
            if initial:
                async for frame in self.snapshots(
                    conn, initial, bounds, events_pb2.SNAPSHOT_REASON_INITIAL, page_size
                ):
                    yield frame
        finally:
            conn.release(after_seq)

    async def _resume(
        self, conn: QueuedConnection, start: Position, bounds: HistoryBounds, page_size: int
    ) -> AsyncIterator[Frame]:
        head = str(bounds.head)
        subs = await self.store.list_device_subscriptions(conn.app_id, conn.device_id)
        if bounds.can_resume(start):
            replay = DeviceReplay(self.bus, self.schema_lookup, self.read_gate, conn.app_id, conn.device_id)
            await replay.load(subs)
            replayed = 0
            async for seq, event in replay.events(start, bounds.head):
                conn.note_sent(seq, event.position)
                replayed += 1
                yield event
            conn.sent_position = head
            RESUMES.labels("replayed").inc()
            log.debug("%r resumed after %s: %d events replayed up to %s", conn, start, replayed, head)
            yield events_pb2.Resumed(position=head, replayed=replayed)
            return
        reason = (
            events_pb2.GAP_REASON_UNKNOWN_EPOCH
            if start.epoch != bounds.epoch or start.seq > bounds.last_seq
            else events_pb2.GAP_REASON_EXPIRED
        )
        oldest = (
            str(Position(bounds.epoch, bounds.first_seq - 1)) if bounds.last_seq >= bounds.first_seq else ""
        )
        RESUMES.labels("gap").inc()
        log.info("%r cannot resume after %s (%s): gap and snapshot at %s", conn, start, reason, head)
        yield events_pb2.Gap(requested_position=str(start), reason=reason, oldest_position=oldest)
        async for frame in self.snapshots(conn, subs, bounds, events_pb2.SNAPSHOT_REASON_GAP, page_size):
            yield frame
        yield events_pb2.Resumed(position=head, replayed=0)

    async def snapshots(
        self,
        conn: QueuedConnection,
        subs: Sequence[subscriptions_pb2.Subscription],
        bounds: HistoryBounds,
        reason: events_pb2.SnapshotReason.ValueType,
        page_size: int,
    ) -> AsyncIterator[events_pb2.Snapshot]:
        """Each subscription's snapshot pages, positioned at `bounds.head`."""
        head = str(bounds.head)
        for sub in subs:
            SNAPSHOTS.inc()
            token = ""
            while True:
                objects, token = await self.snapshot(conn.app_id, sub, page_size, token)
                versions = {(sub.model, o.id): o.version for o in objects}
                done = not token
                conn.note_snapshot(versions, head if done else "")
                yield events_pb2.Snapshot(
                    subscription_id=sub.id,
                    reason=reason,
                    objects=objects,
                    done=done,
                    position=head if done else "",
                )
                if done:
                    break
