"""NATS JetStream implementation of the `MessageBus` port.

Streams (created or updated idempotently by `start()`, file storage, names and
subjects from `NatsSettings`; `P` = stream_prefix, `s` = subject_prefix; every
subject is built by `nexxus.core.subjects.Subjects`: tenant data under `s.app.`,
internal traffic under `s.sys.`, so no application id can reach an internal subject):

    P_WRITES      s.app.*.write.*               work queue, no age limit,   api → writer
                                                writes_max_bytes, discard new
    P_EVENTS      s.app.*.events.>              max_age 24h   writer → router, custom workers
    P_PARKED      s.app.*.parked, s.app.*.parked.>  max_age 7d  poison commands with their reason
    P_DELIVERIES  s.sys.transport.*             max_age 1h    router → transport (`s.sys.transport.<node>`)

EVENTS is also the event history devices resume from (docs/delivery.md): its
age and byte limits are `events_max_age_seconds` / `events_max_bytes`; its epoch
(the stream's creation time) and sequences make the positions.

DELIVERIES makes the router → transport hop durable: a delivery published by the
router is stored before the router acks the event, and each transport node
follows its subject with an `OrderedReader` that resumes after its last message
across server restarts and lost connections (no slow-consumer drop can lose one).

All three keep a 2-minute duplicate window: a publish with `msg_id` (header
`Nats-Msg-Id`) is stored once however often it is retried.

P_WRITES holds one subject per application and write partition
(`s.app.<app>.write.<p>`). A command leaves it when a writer acks it (work-queue
retention) and never because of its age; when the stream is full a publish
fails (discard new) and the api answers RESOURCE_EXHAUSTED. Writers consume
each partition in order (`consume_ordered`, `_nats_ordered`), holding a lease
on it (`leases`, a key-value bucket P_WRITER_LEASES, `_nats_leases`).

Services build subjects with `bus.subjects` (`nexxus.core.subjects`), never with a
literal "nexxus.".

Durable consumers are pull consumers named by `durable` and shared by every process
using the name (work queue). Core NATS (`subscribe`, `publish_volatile`, `request`)
carries volatile traffic. Driver errors become `nexxus.core.errors` (mostly Unavailable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from nexxus.adapters.bus._nats_leases import open_lease_table
from nexxus.adapters.bus._nats_messages import (
    CoreMessage,
    CoreSubscription,
    JetStreamMessage,
    PullConsumer,
)
from nexxus.adapters.bus._nats_ordered import OrderedConsumer
from nexxus.adapters.bus._nats_reader import OrderedReader, read_range
from nexxus.adapters.bus._nats_stats import read_stream_stats
from nexxus.core import limits
from nexxus.core.config.settings import NatsSettings
from nexxus.core.errors import InvalidArgument, ResourceExhausted, Unavailable
from nexxus.core.ports import (
    BatchHandler,
    BusSubscription,
    LeaseTable,
    MessageBus,
    MessageHandler,
    SequencedHandler,
    StreamStats,
)
from nexxus.core.positions import HistoryBounds, epoch_of
from nexxus.core.subjects import Subjects
from nexxus.observability.metrics import BUS_ERRORS

__all__ = ["CoreMessage", "JetStreamMessage", "NatsBus"]

log = logging.getLogger("nexxus.bus.nats")

DAY = 24 * 3600.0
DUPLICATE_WINDOW = 120.0
MSG_ID_HEADER = "Nats-Msg-Id"


def _reconnect_backoff(servers: list[Server], _info: dict[str, Any]) -> tuple[Server | None, float]:
    """Reconnect forever: least-tried server first, exponential backoff with jitter (50 ms … 2 s)."""
    server = min(servers, key=lambda s: s.reconnects)
    delay = min(0.05 * 2 ** min(server.reconnects, 6), 2.0)
    return server, delay * random.uniform(0.5, 1.0)


class NatsBus(MessageBus):
    """MessageBus over NATS JetStream (durable) and core NATS (volatile)."""

    name = "nats"

    def __init__(
        self,
        settings: NatsSettings,
        *,
        client_name: str = "nexxus",
        connect_attempts: int = 3,
        request_timeout: float = 5.0,
        fetch_timeout: float = 1.0,
        nak_delay: float = 1.0,
    ) -> None:
        self.settings = settings
        self._client_name = client_name
        self._connect_attempts = connect_attempts
        self._request_timeout = request_timeout
        self._fetch_timeout = fetch_timeout
        self._nak_delay = nak_delay
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subs: set[BusSubscription] = set()

    # ------------------------------------------------------------------ names

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.settings.subject_prefix)

    def events_subject(self, app_id: str, model: str) -> str:
        return self.subjects.events(app_id, model)

    def delivery_subject(self, node: str) -> str:
        """Where the router publishes a transport node's deliveries (the node id as one token)."""
        return self.subjects.delivery(node)

    @property
    def stream_names(self) -> dict[str, str]:
        """{"writes": "NEXXUS_WRITES", "events": …, "parked": …, "deliveries": …}."""
        p = self.settings.stream_prefix
        return {
            "writes": f"{p}_WRITES",
            "events": f"{p}_EVENTS",
            "parked": f"{p}_PARKED",
            "deliveries": f"{p}_DELIVERIES",
        }

    def writes_stream_config(self, common: Mapping[str, Any]) -> StreamConfig:
        """The write queue: work queue (acked commands leave), no age limit, a byte
        limit that refuses new commands when reached (never drops stored ones)."""
        return StreamConfig(
            name=self.stream_names["writes"],
            subjects=[self.subjects.writes],
            max_age=0,
            max_bytes=self.settings.writes_max_bytes,
            discard=DiscardPolicy.NEW,
            **{**common, "retention": RetentionPolicy.WORK_QUEUE},
        )

    def stream_configs(self) -> list[StreamConfig]:
        names = self.stream_names
        common: dict[str, Any] = {
            "storage": StorageType.FILE,
            "retention": RetentionPolicy.LIMITS,
            "duplicate_window": DUPLICATE_WINDOW,
            "num_replicas": self.settings.replicas,
        }
        return [
            self.writes_stream_config(common),
            StreamConfig(
                name=names["events"],
                subjects=[self.subjects.all_events],
                max_age=self.settings.events_max_age_seconds,
                max_bytes=self.settings.events_max_bytes,
                **{**common, "duplicate_window": min(DUPLICATE_WINDOW, self.settings.events_max_age_seconds)},
            ),
            StreamConfig(
                name=names["deliveries"],
                subjects=[self.subjects.deliveries],
                max_age=self.settings.deliveries_max_age_seconds,
                max_bytes=self.settings.deliveries_max_bytes,
                **common,
            ),
            StreamConfig(
                name=names["parked"],
                subjects=self.subjects.all_parked,
                max_age=7 * DAY,
                **common,
            ),
        ]

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        """Connect (Unavailable if the first connect fails), then reconnect forever; create streams."""
        if self._nc is not None:
            return
        nc = Client()
        try:
            await nc.connect(
                servers=list(self.settings.servers),
                name=self._client_name,
                allow_reconnect=True,
                connect_timeout=2,
                # Initial connect only: a few quick tries, then a clear error.
                max_reconnect_attempts=self._connect_attempts,
                reconnect_time_wait=0.2,  # type: ignore[arg-type]
                reconnect_to_server_handler=_reconnect_backoff,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            raise _bus_down(f"cannot connect to NATS at {self.settings.servers}: {exc!r}") from exc
        needed = limits.current().nats_max_payload
        if nc.max_payload < needed:
            await nc.close()
            raise Unavailable(
                f"the NATS server takes messages of at most {nc.max_payload} bytes (max_payload); "
                f"limits.max_object_bytes = {limits.current().max_object_bytes} needs at least {needed}: "
                f"set `max_payload: {needed}` in the nats-server configuration",
                reason="NATS_MAX_PAYLOAD",
            )
        # Once connected, never give up reconnecting.
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        self._js = nc.jetstream(timeout=self._request_timeout)
        try:
            await self.ensure_streams()
        except BaseException:
            await self.stop()
            raise
        log.info("nats bus connected to %s (streams %s)", nc.connected_url, list(self.stream_names.values()))

    async def ensure_streams(self) -> None:
        """Create the streams, or update them to the current configuration."""
        js = self._require_js()
        await self._replace_legacy_writes_stream()
        for config in self.stream_configs():
            try:
                try:
                    await js.add_stream(config)
                except nats.js.errors.BadRequestError as exc:
                    # Exists with another configuration (err_code 10058): update it.
                    if exc.err_code != 10058:
                        raise
                    await js.update_stream(config)
            except (nats.errors.Error, TimeoutError) as exc:
                raise _bus_down(f"cannot create stream {config.name}: {exc!r}") from exc

    async def _replace_legacy_writes_stream(self) -> None:
        """A write queue of an earlier release (limits retention, one subject per
        application) cannot be updated in place: it is deleted when every command
        in it was applied, else start-up stops with what to do."""
        js = self._require_js()
        name = self.stream_names["writes"]
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            return
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot read stream {name}: {exc!r}") from exc
        if info.config.retention == RetentionPolicy.WORK_QUEUE:
            return
        try:
            consumers = await js.consumers_info(name)
            waiting = sum((c.num_pending or 0) + (c.num_ack_pending or 0) for c in consumers)
            if waiting or (info.state.messages and not consumers):
                raise Unavailable(
                    f"stream {name} is a write queue of an earlier release with {waiting or 'unread'} "
                    "commands not applied yet: run that release's writer until it is drained, "
                    "then start again",
                    reason="LEGACY_WRITE_QUEUE",
                )
            log.warning("replacing the drained legacy write queue %s", name)
            await js.delete_stream(name)
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot replace stream {name}: {exc!r}") from exc

    async def delete_streams(self) -> None:
        """Delete this deployment's streams and lease buckets (tests, `nexxus dev --reset`)."""
        js = self._require_js()
        prefix = f"KV_{self.settings.stream_prefix}_"
        try:
            names = [s.config.name or "" for s in await js.streams_info()]
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot list streams: {exc!r}") from exc
        buckets = [n for n in names if n.startswith(prefix)]
        for name in [*self.stream_names.values(), *buckets]:
            try:
                await js.delete_stream(name)
            except nats.js.errors.NotFoundError:
                pass
            except (nats.errors.Error, TimeoutError) as exc:
                raise _bus_down(f"cannot delete stream {name}: {exc!r}") from exc

    async def stop(self) -> None:
        for sub in list(self._subs):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5.0)

    async def _on_error(self, exc: Exception) -> None:
        BUS_ERRORS.labels(type(exc).__name__).inc()
        if isinstance(exc, nats.errors.SlowConsumerError):
            # Core NATS dropped messages of this subscription: say so loudly.
            log.error("nats slow consumer: messages dropped on %s (sid %s)", exc.subject, exc.sid)
            return
        if isinstance(exc, OSError | nats.errors.UnexpectedEOF | nats.errors.StaleConnectionError):
            log.info("nats connection: %r", exc)  # reconnecting (logged once as a warning)
            return
        log.warning("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        BUS_ERRORS.labels("DISCONNECTED").inc()
        log.warning("nats disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        nc = self._nc
        log.info("nats reconnected to %s", nc.connected_url if nc else "?")

    def _require_nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("NatsBus is not started: call `await bus.start()` first")
        return self._nc

    def _require_js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("NatsBus is not started: call `await bus.start()` first")
        return self._js

    # ------------------------------------------------------------------ durable publish

    @staticmethod
    def _headers(msg_id: str | None, headers: Mapping[str, str] | None) -> dict[str, str] | None:
        out = dict(headers) if headers else {}
        if msg_id:
            out[MSG_ID_HEADER] = msg_id
        return out or None

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        js = self._require_js()
        try:
            await js.publish(subject, data, headers=self._headers(msg_id, headers))
        except (nats.errors.Error, TimeoutError) as exc:
            raise _publish_error(subject, exc) from exc

    async def publish_many(self, items: Sequence[tuple[str, bytes, str | None]]) -> None:
        """Publish (subject, data, msg_id) items pipelined: send all, then await every PubAck.

        Raises on the first failure after all acks settled; items are deduplicated by
        msg_id, so retrying the whole batch is safe.
        """
        if not items:
            return
        js = self._require_js()
        futures: list[asyncio.Future[Any]] = []
        try:
            for subject, data, msg_id in items:
                futures.append(await js.publish_async(subject, data, headers=self._headers(msg_id, None)))
            results = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), self._request_timeout
            )
        except (nats.errors.Error, TimeoutError) as exc:
            for fut in futures:
                fut.cancel()
            raise _publish_error(items[0][0], exc) from exc
        for (subject, _, _), result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                raise _publish_error(subject, result) from result

    # ------------------------------------------------------------------ durable consume

    async def consume(
        self,
        subject_filter: str,
        durable: str,
        handler: BatchHandler,
        *,
        batch: int = 256,
        max_deliver: int = 10,
        ack_wait: float = 30.0,
        in_order: bool = False,
    ) -> BusSubscription:
        js = self._require_js()
        try:
            stream = await js.find_stream_name_by_subject(subject_filter)
        except nats.js.errors.NotFoundError as exc:
            raise InvalidArgument(f"no stream holds subject {subject_filter!r}", field="subject") from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise _bus_down(f"cannot look up the stream of {subject_filter}: {exc!r}") from exc
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=subject_filter,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max(batch * 4, 1000),
        )

        async def ensure_consumer() -> None:
            # Create, or update a compatible existing one (ack_wait, max_deliver…).
            await js.add_consumer(stream, config)

        try:
            await ensure_consumer()
            psub = await js.pull_subscribe_bind(durable=durable, stream=stream)
        except nats.js.errors.BadRequestError as exc:
            raise InvalidArgument(f"cannot create consumer {durable}: {exc.description}") from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise _bus_down(f"cannot create consumer {durable} on {stream}: {exc!r}") from exc
        consumer = PullConsumer(
            psub,
            handler,
            durable=durable,
            batch=batch,
            fetch_timeout=self._fetch_timeout,
            nak_delay=self._nak_delay,
            recreate=ensure_consumer,
            on_close=self._subs.discard,
            in_order=in_order,
            ack_wait=ack_wait,
        )
        self._subs.add(consumer)
        consumer.start()
        return consumer

    # ------------------------------------------------------------------ ordered consume, leases

    async def consume_ordered(
        self, subject_filter: str, name: str, handler: BatchHandler, *, batch: int = 256
    ) -> BusSubscription:
        """In-order consumption of a subject of the write queue (work-queue stream
        P_WRITES; see `_nats_ordered`). `name` prefixes the consumer's name."""
        nc, js = self._require_nc(), self._require_js()
        consumer = OrderedConsumer(
            nc,
            js,
            self.stream_names["writes"],
            subject_filter,
            name,
            handler,
            batch=batch,
            fetch_timeout=self._fetch_timeout,
            retry_delay=self._nak_delay,
            on_close=self._subs.discard,
        )
        try:
            await consumer.start()
        except nats.js.errors.BadRequestError as exc:
            raise InvalidArgument(f"cannot consume {subject_filter} in order: {exc.description}") from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot consume {subject_filter} in order: {exc!r}") from exc
        self._subs.add(consumer)
        return consumer

    async def leases(self, name: str, ttl: float) -> LeaseTable:
        bucket = f"{self.settings.stream_prefix}_{name}".replace(".", "_")
        return await open_lease_table(self._require_js(), bucket, ttl, self.settings.replicas)

    # ------------------------------------------------------------------ volatile

    async def publish_volatile(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        nc = self._require_nc()
        try:
            await nc.publish(subject, data, headers=dict(headers) if headers else None)
        except nats.errors.Error as exc:
            raise _bus_down(f"cannot publish on {subject}: {exc!r}") from exc

    async def subscribe(
        self, subject: str, handler: MessageHandler, *, queue: str | None = None
    ) -> BusSubscription:
        nc = self._require_nc()

        async def callback(msg: Msg) -> None:
            try:
                await handler(CoreMessage(msg))
            except Exception:
                log.exception("handler of %s failed", msg.subject)

        try:
            sub = await nc.subscribe(subject, queue=queue or "", cb=callback)
        except nats.errors.Error as exc:
            raise _bus_down(f"cannot subscribe to {subject}: {exc!r}") from exc
        wrapped = CoreSubscription(sub, self._subs.discard)
        self._subs.add(wrapped)
        return wrapped

    async def request(self, subject: str, data: bytes, *, timeout: float) -> bytes:
        nc = self._require_nc()
        try:
            msg = await nc.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise Unavailable(
                "a service did not answer; retry later",
                reason="NO_RESPONDERS",
                internal=f"no responder on {subject}",
            ) from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(
                "a service did not answer; retry later",
                reason="REQUEST_FAILED",
                internal=f"request on {subject}: {exc!r}",
            ) from exc
        return msg.data

    # ------------------------------------------------------------------ metrics

    async def stream_stats(self, hop: str) -> StreamStats | None:
        name = self.stream_names.get(hop)
        if name is None:
            return None
        try:
            return await read_stream_stats(self._require_js(), name)
        except (nats.errors.Error, TimeoutError) as exc:
            raise _bus_down(f"cannot read the state of stream {name}: {exc!r}") from exc

    # ------------------------------------------------------------------ event history

    async def history_bounds(self) -> HistoryBounds:
        js = self._require_js()
        try:
            info = await js.stream_info(self.stream_names["events"])
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot read the event history's state: {exc!r}") from exc
        state = info.state
        return HistoryBounds(epoch=epoch_of(info.created), first_seq=state.first_seq, last_seq=state.last_seq)

    async def read_history(
        self, app_id: str, after_seq: int, up_to_seq: int
    ) -> AsyncIterator[tuple[int, bytes]]:
        js = self._require_js()
        async for item in read_range(
            js,
            self.stream_names["events"],
            self.subjects.app_events(app_id),
            after_seq,
            up_to_seq,
            timeout=self._request_timeout,
        ):
            yield item

    # ------------------------------------------------------------------ deliveries

    async def publish_deliveries(self, items: Sequence[tuple[str, bytes, str]]) -> None:
        await self.publish_many([(self.delivery_subject(node), data, msg_id) for node, data, msg_id in items])

    async def consume_deliveries(
        self,
        node: str,
        handler: SequencedHandler,
        *,
        on_loss: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> BusSubscription:
        js = self._require_js()
        stream = self.stream_names["deliveries"]
        try:
            info = await js.stream_info(stream)
            reader = OrderedReader(
                js,
                stream,
                self.delivery_subject(node),
                info.state.last_seq + 1,
                handler,
                fetch_timeout=self._fetch_timeout,
                on_loss=on_loss,
            )
            await reader.start()
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot follow the deliveries of node {node}: {exc!r}") from exc
        self._subs.add(reader)
        return reader


def _bus_down(internal: str) -> Unavailable:
    """The client's view of a bus failure; the details go to the operator's log only."""
    BUS_ERRORS.labels("BUS_UNAVAILABLE").inc()
    return Unavailable(
        "the message bus is unavailable; retry later", reason="BUS_UNAVAILABLE", internal=internal
    )


def _publish_error(subject: str, exc: BaseException) -> Unavailable | ResourceExhausted:
    if (
        isinstance(exc, nats.js.errors.APIError)
        and exc.code in (400, 429, 503)
        and exc.err_code
        in (
            10077,  # maximum messages exceeded
            10047,  # insufficient resources
        )
    ):
        BUS_ERRORS.labels("QUEUE_FULL").inc()
        return ResourceExhausted(
            "the write queue is full; retry later",
            reason="QUEUE_FULL",
            internal=f"{subject}: {exc.description}",
        )
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return _bus_down(f"no stream answered for {subject} (JetStream down or no stream)")
    return _bus_down(f"publish on {subject} failed: {exc!r}")
