"""The router service: ModelEvents in (JetStream), Deliveries out (core NATS).

Loop, per batch of the durable consumer "router" on ``nexxus.*.events.>``:

1. parse each message (a ModelEvent); unparsable ones are termed and logged;
2. bring every application of the batch up to date: applications never seen
   load in full (change-log cursor first, then subscriptions and device nodes);
   the others replay `store.changes_since` for all of them in one round trip
   (a cursor past the retained log reloads the application). So a subscription
   committed to the store before an event is processed is always seen;
3. `gate.prepare(app, model)` for each (app, model) of the batch;
4. match each event in order and stamp each Delivery with the event's position
   (``<epoch>.<stream sequence>`` of the EVENTS stream);
5. publish the batch's Deliveries durably, in order (the DELIVERIES stream,
   subject ``nexxus.sys.transport.<node>``; message id ``<position>:<node>``, so a
   redelivered event's deliveries are stored once), then ack the batch.

On a store or bus failure the batch is retried in place (so later events never
overtake it) for up to half the consumer's ack wait, then nak'ed. Transports
also drop duplicates by position.

Applications load lazily on their first event rather than at start: the
cursor must be read before an application's subscriptions, and the set of
applications is only known by scanning them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from nexxus.core.config.settings import Settings
from nexxus.core.metrics import ROUTER_EVENTS, ROUTER_MATCH_SECONDS, ROUTER_MATCHES
from nexxus.core.ports import BusMessage, BusSubscription, MessageBus, SubscriptionStore
from nexxus.core.tracing import sampled_context, start_span, traceparent_of
from nexxus.router.matching import (
    AllowAll,
    ReadGate,
    position_field,
    route_event,
    route_event_counted,
    traceparent_field,
)
from nexxus.router.state import AppState, FilterParser, SchemaLookup
from nexxus.v1.internal_pb2 import Delivery, ModelEvent

__all__ = ["DURABLE", "RouterService"]

log = logging.getLogger("nexxus.router")

DURABLE = "router"
NAK_DELAY = 1.0
# How long an epoch read from the history is trusted before it is read again.
EPOCH_TTL = 10.0


class RouterService:
    """Routes model events to transport nodes. `start()` / `stop()`."""

    def __init__(
        self,
        settings: Settings,
        bus: MessageBus,
        store: SubscriptionStore,
        schema_lookup: SchemaLookup,
        read_gate: ReadGate | None = None,
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._store = store
        self._gate = read_gate
        self._parser = FilterParser(schema_lookup)
        self._apps: dict[str, AppState] = {}
        self._consumer: BusSubscription | None = None
        self._epoch = ""
        self._epoch_at = 0.0
        self._last_seq = 0
        self._stopping = False
        # Counters (read by tests and logs).
        self.events_routed = 0
        self.deliveries_published = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._consumer is not None:
            return
        subject = self._bus.subjects.all_events
        self._stopping = False
        rsettings = self._settings.router
        self._consumer = await self._bus.consume(
            subject,
            DURABLE,
            self._handle_batch,
            batch=rsettings.batch_size,
            ack_wait=rsettings.ack_wait_seconds,
            # Never give up on an event, and never route one after a newer one.
            max_deliver=-1,
            in_order=True,
        )
        log.info("router consuming %s (durable %s)", subject, DURABLE)

    @property
    def attached(self) -> bool:
        """Whether the durable consumer is attached (readiness)."""
        return self._consumer is not None

    async def stop(self) -> None:
        self._stopping = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.unsubscribe()

    async def __aenter__(self) -> RouterService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def app_state(self, app_id: str) -> AppState | None:
        return self._apps.get(app_id)

    # ------------------------------------------------------------------ freshness

    async def load_app(self, app_id: str) -> AppState:
        """A full load of one application (cursor first, so nothing is missed)."""
        state = AppState(app_id=app_id, cursor=await self._store.log_cursor(app_id))
        self._parser.forget(app_id)
        async for sub_app, sub in self._store.iter_subscriptions(app_id):
            if sub_app == app_id:
                await self._parser.apply(state, sub)
        state.set_device_nodes(await self._store.device_nodes(app_id))
        self._apps[app_id] = state
        log.info("router loaded app %s: %d subscriptions", app_id, state.subscription_count())
        return state

    async def refresh(self, app_ids: Sequence[str]) -> None:
        """Make the state of these applications exact as of now."""
        known = {a: self._apps[a].cursor for a in dict.fromkeys(app_ids) if a in self._apps}
        for app_id in dict.fromkeys(app_ids):
            if app_id not in self._apps:
                await self.load_app(app_id)
        if not known:
            return
        try:
            changes = await self._store.changes_since(known)
        except LookupError:
            log.warning("router change log overrun for %s; reloading", sorted(known))
            for app_id in known:
                await self.load_app(app_id)
            return
        for app_id, (entries, cursor) in changes.items():
            state = self._apps.get(app_id)
            if state is None:
                continue
            for change in entries:
                await self._parser.apply_change(state, change)
            state.cursor = cursor

    # ------------------------------------------------------------------ routing

    def route(self, event: ModelEvent) -> list[Delivery]:
        """The deliveries of one event, from the current in-memory state."""
        state = self._apps.get(event.app_id)
        index = state.index(event.model) if state is not None else None
        if state is None or index is None:
            return []
        return route_event(index, event, state.nodes, self._gate)

    def _route_counted(self, event: ModelEvent) -> tuple[list[tuple[str, bytes]], int]:
        """`route`, serialized ((node, Delivery bytes) pairs), and how many devices matched."""
        state = self._apps.get(event.app_id)
        index = state.index(event.model) if state is not None else None
        if state is None or index is None:
            return [], 0
        return route_event_counted(index, event, state.nodes, self._gate)

    def _route_observed(self, event: ModelEvent) -> list[tuple[str, bytes]]:
        """`_route_counted`'s pairs, timed and counted; traced (span `router.match`, its context
        appended to each Delivery) when the event's trace is sampled."""
        parent = sampled_context(event.traceparent) if event.traceparent else None
        started = time.perf_counter()
        if parent is None:
            routed, matched = self._route_counted(event)
        else:
            attributes = {"nexxus.app": event.app_id, "nexxus.model": event.model}
            with start_span("router", "router.match", parent=parent, attributes=attributes) as span:
                routed, matched = self._route_counted(event)
                if span is not None:
                    span.set_attribute("nexxus.matched_devices", matched)
                    span.set_attribute("nexxus.nodes", len(routed))
                    tail = traceparent_field(traceparent_of(span))
                    routed = [(node, data + tail) for node, data in routed]
        ROUTER_MATCH_SECONDS.observe(time.perf_counter() - started)
        ROUTER_MATCHES.observe(matched)
        ROUTER_EVENTS.labels(event.app_id, event.model).inc()
        return routed

    async def _handle_batch(self, messages: Sequence[BusMessage]) -> None:
        parsed: list[tuple[BusMessage, ModelEvent]] = []
        for msg in messages:
            event = ModelEvent()
            try:
                event.ParseFromString(msg.data)
            except DecodeError:
                event = None  # type: ignore[assignment]
            if event is None or not event.app_id or not event.model:
                log.error("router: terming unparsable event on %s", msg.subject)
                await msg.term()
                continue
            parsed.append((msg, event))
        if not parsed:
            return
        deadline = time.monotonic() + self._settings.router.ack_wait_seconds / 2
        backoff = 0.05
        while True:
            try:
                await self._route_batch(parsed)
                break
            except Exception:
                if self._stopping or time.monotonic() + backoff > deadline:
                    log.exception("router: batch of %d failed; redelivering", len(parsed))
                    for msg, _ in parsed:
                        await msg.nak(NAK_DELAY)
                    return
                log.warning("router: batch of %d failed; retrying", len(parsed), exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        for msg, _ in parsed:
            await msg.ack()

    async def _epoch_for(self, seq: int) -> str:
        """The history's epoch (re-read periodically, and when sequences go back:
        the stream was reset)."""
        now = time.monotonic()
        if not self._epoch or now - self._epoch_at > EPOCH_TTL or seq < self._last_seq:
            self._epoch = (await self._bus.history_bounds()).epoch
            self._epoch_at = now
        self._last_seq = seq
        return self._epoch

    async def _route_batch(self, parsed: Sequence[tuple[BusMessage, ModelEvent]]) -> None:
        await self.refresh([e.app_id for _, e in parsed])
        if self._gate is not None and not isinstance(self._gate, AllowAll):
            for app_id, model in dict.fromkeys((e.app_id, e.model) for _, e in parsed):
                await self._gate.prepare(app_id, model)
        out: list[tuple[str, bytes, str]] = []
        for msg, event in parsed:
            seq = msg.stream_sequence
            position = f"{await self._epoch_for(seq)}.{seq}"
            tail = position_field(position)
            for node, data in self._route_observed(event):
                out.append((node, data + tail, f"{position}:{node}"))
        await self._bus.publish_deliveries(out)
        self.deliveries_published += len(out)
        self.events_routed += len(parsed)
