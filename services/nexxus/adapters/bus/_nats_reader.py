"""Ordered reads of a JetStream stream through ephemeral pull consumers
(private to the NATS adapter).

`read_range` reads the messages of one subject filter between two stream
sequences (event history replays). `OrderedReader` follows a subject from a
sequence on, forever, in a background task: it remembers the sequence of the
last message it handled and, whatever goes wrong (server restart, consumer
lost, connection cut), recreates its consumer from the next one. So nothing
stored is skipped and nothing is handled twice by one reader.

The consumers do not ack (AckPolicy NONE): to the server, a message pushed to
the client is consumed. One lost on the way (the connection broke while the
server lived on, e.g. a client reconnect or a failover) would never come
again; so both check the consumer sequence of what arrives, which grows by one
per message delivered: a jump means messages were lost in transit, and the
reader recreates its consumer from its own position (`read_range` fails with
Unavailable, its caller retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nexxus.core.errors import Unavailable
from nexxus.core.ports import BusSubscription, SequencedHandler

__all__ = ["OrderedReader", "read_range"]

log = logging.getLogger("nexxus.bus.nats")

FETCH_BATCH = 256
INACTIVE_THRESHOLD = 30.0
LOSS_CHECK_SECONDS = 5.0
IDLE_PROBE_SECONDS = 0.2


def _config(subject_filter: str, start_seq: int) -> ConsumerConfig:
    return ConsumerConfig(
        name=f"r{uuid.uuid4().hex}",
        filter_subject=subject_filter,
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(start_seq, 1),
        inactive_threshold=INACTIVE_THRESHOLD,
        mem_storage=True,
        num_replicas=1,
    )


async def _subscribe(
    js: JetStreamContext, stream: str, subject_filter: str, start_seq: int
) -> JetStreamContext.PullSubscription:
    config = _config(subject_filter, start_seq)
    await js.add_consumer(stream, config)
    return await js.pull_subscribe_bind(durable=config.name, stream=stream)


async def _delete(js: JetStreamContext, stream: str, psub: JetStreamContext.PullSubscription) -> None:
    with contextlib.suppress(Exception):
        info = await psub.consumer_info()
        await psub.unsubscribe()
        await js.delete_consumer(stream, info.name)


async def read_range(
    js: JetStreamContext, stream: str, subject_filter: str, after_seq: int, up_to_seq: int, *, timeout: float
) -> AsyncIterator[tuple[int, bytes]]:
    """(sequence, data) of the messages on `subject_filter` with sequences in
    `(after_seq, up_to_seq]`, in order. Unavailable when the server does not answer."""
    if up_to_seq <= after_seq:
        return
    try:
        psub = await _subscribe(js, stream, subject_filter, after_seq + 1)
        info = await psub.consumer_info()
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"cannot read the history of {subject_filter}: {exc!r}") from exc
    remaining = info.num_pending or 0
    delivered = 0
    try:
        while remaining > 0:
            try:
                msgs = await psub.fetch(min(FETCH_BATCH, remaining), timeout=timeout)
            except (nats.errors.Error, TimeoutError) as exc:
                raise Unavailable(f"reading the history of {subject_filter} failed: {exc!r}") from exc
            for msg in msgs:
                if msg.metadata.sequence.consumer != delivered + 1:
                    raise Unavailable(f"reading the history of {subject_filter}: messages lost in transit")
                delivered += 1
                seq: int = msg.metadata.sequence.stream
                remaining = msg.metadata.num_pending
                if seq > up_to_seq:
                    return
                yield seq, msg.data
                if seq == up_to_seq:
                    return
    finally:
        await _delete(js, stream, psub)


class _LostInTransit(Exception):
    """Messages the consumer delivered never arrived."""


class OrderedReader(BusSubscription):
    """Handles every message of `subject_filter` from `start_seq` on, in order,
    in a background task (see the module docstring). A handler error is logged
    and the message skipped (the handler owns its errors).

    The stream's limits may discard messages the reader has not read yet (it
    fell too far behind); the consumer then silently skips them. The reader
    notices, and calls `on_loss(first, last)` *before* handling anything newer
    (then carries on from what is left):

    * a fetched message whose sequence is past the next one expected leaves a
      hole; when the stream's first sequence is past the hole's start, the
      hole may have held messages of this filter that were discarded: loss
      (the stream holds other subjects too, so a hole alone proves nothing);
    * while idle, every `LOSS_CHECK_SECONDS`, the stream's first sequence is
      compared with the reader's position. So that other subjects' messages
      ageing out of the stream are not mistaken for a loss, an idle reader
      whose consumer has nothing pending moves its position up to the
      stream's last sequence (after checking nothing past it was discarded
      meanwhile)."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subject_filter: str,
        start_seq: int,
        handler: SequencedHandler,
        *,
        fetch_timeout: float = 1.0,
        on_loss: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> None:
        self._js = js
        self._on_loss = on_loss
        self._checked_at = time.monotonic()
        self._stream = stream
        self._filter = subject_filter
        self.next_seq = start_seq
        self._handler = handler
        self._fetch_timeout = fetch_timeout
        self._psub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.recreated = 0
        self.losses = 0
        # Consumer sequence of the last message received from the current consumer.
        self._delivered = 0

    async def start(self) -> None:
        self._psub = await _subscribe(self._js, self._stream, self._filter, self.next_seq)
        self._delivered = 0
        self._task = asyncio.create_task(self._run(), name=f"nats-reader-{self._filter}")

    async def _recreate(self, why: str) -> None:
        old, self._psub = self._psub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        self._psub = await _subscribe(self._js, self._stream, self._filter, self.next_seq)
        self._delivered = 0
        self.recreated += 1
        log.warning("reader of %s resumed at sequence %d (%s)", self._filter, self.next_seq, why)

    async def _first_seq(self) -> tuple[int, int]:
        """The stream's (first, last) sequences."""
        info = await self._js.stream_info(self._stream)
        return info.state.first_seq, info.state.last_seq

    async def _lost(self, first_kept: int, up_to: int) -> None:
        """Messages `next_seq..min(first_kept, up_to) - 1` may have been
        discarded unread (`first_kept` > `next_seq`): report them, move on."""
        lost_from, lost_to = self.next_seq, min(first_kept, up_to) - 1
        self.next_seq = lost_to + 1
        self.losses += 1
        log.error(
            "reader of %s fell behind the stream's limits: %d..%d discarded unread",
            self._filter,
            lost_from,
            lost_to,
        )
        if self._on_loss is not None:
            await self._on_loss(lost_from, lost_to)

    async def _check_idle(self) -> None:
        """While idle (see the class docstring): report a loss, or move the
        position up past sequences that cannot hold anything of ours."""
        now = time.monotonic()
        if now - self._checked_at < LOSS_CHECK_SECONDS:
            return
        self._checked_at = now
        first, last = await self._first_seq()
        if first > self.next_seq:
            await self._lost(first, first)
            return
        psub = self._psub
        if psub is None or last < self.next_seq:
            return
        info = await psub.consumer_info()
        if (info.num_pending or 0) > 0:
            return
        # What the server pushed before answering sits in our pending queue:
        # take it (a short fetch), and handle it if there is any.
        try:
            msgs = await psub.fetch(FETCH_BATCH, timeout=IDLE_PROBE_SECONDS)
        except TimeoutError:
            msgs = []
        if msgs:
            await self._handle(msgs)
            return
        if info.delivered is not None and info.delivered.consumer_seq > self._delivered:
            raise _LostInTransit(f"consumer delivered {info.delivered.consumer_seq}, got {self._delivered}")
        # Nothing of ours in next_seq..last is left unread, unless it was
        # discarded before consumer_info answered: then the first sequence moved.
        first, _ = await self._first_seq()
        if first <= self.next_seq:
            self.next_seq = max(self.next_seq, last + 1)

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closing:
            try:
                if self._psub is None:
                    await self._recreate("consumer lost")
                assert self._psub is not None
                try:
                    msgs = await self._psub.fetch(FETCH_BATCH, timeout=self._fetch_timeout)
                except TimeoutError:
                    # Idle, or the consumer is gone (server restart): make sure it exists.
                    await self._psub.consumer_info()
                    await self._check_idle()
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                log.warning("reader of %s failed (%r); recreating from %d", self._filter, exc, self.next_seq)
                self._psub = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            try:
                await self._handle(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                # Lost in transit, or the hole check could not ask the server:
                # what is not handled comes again from a new consumer.
                log.warning("reader of %s failed (%r); recreating from %d", self._filter, exc, self.next_seq)
                self._psub = None
                await asyncio.sleep(backoff)

    async def _handle(self, msgs: list[Msg]) -> None:
        """Handle a fetched batch in order; a hole in its sequences is checked
        for a loss first (one look at the stream per batch: its first sequence,
        read after the whole batch was delivered, bounds every hole in it)."""
        first = 0
        for msg in msgs:
            if msg.metadata.sequence.consumer != self._delivered + 1:
                # Pushed to us but never received: start over from our position.
                raise _LostInTransit(
                    f"consumer sequence {msg.metadata.sequence.consumer} after {self._delivered}"
                )
            self._delivered += 1
            seq: int = msg.metadata.sequence.stream
            if seq < self.next_seq:
                continue  # already handled (a recreated consumer overlapping)
            if seq > self.next_seq:
                if not first:
                    first, _ = await self._first_seq()
                if first > self.next_seq:
                    await self._lost(first, seq)
            self.next_seq = seq + 1
            try:
                await self._handler(seq, msg.data)
            except Exception:
                log.exception("handler of %s failed on sequence %d", self._filter, seq)

    async def unsubscribe(self) -> None:
        if self._closing:
            return
        self._closing = True
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        psub, self._psub = self._psub, None
        if psub is not None:
            await _delete(self._js, self._stream, psub)
