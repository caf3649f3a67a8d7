"""In-order, exclusive consumption of one subject filter of a work-queue stream
(private to the NATS adapter; see `MessageBus.consume_ordered`).

The stream uses work-queue retention: a message leaves it when acked, and the
server allows one consumer per subject. So (re)starting is: delete whatever
consumer serves the filter (an earlier holder's, with its unacked messages still
in the stream), create a fresh one that delivers everything left, from the
oldest. What a crashed holder had fetched but not acked comes first, at once —
no ack-wait. Each incarnation has its own name, so a stale holder's pull
requests can never reach the new consumer.

The loop fetches a batch (max_ack_pending = batch), hands it to the handler and
only then fetches again. While the handler runs, in-progress acks keep the
batch from being redelivered behind its back. If the handler raises or leaves
messages unsettled, the consumer is restarted after `retry_delay`: those
messages come again, before anything later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nexxus.adapters.bus._nats_messages import JetStreamMessage
from nexxus.core.ids import new_id
from nexxus.core.ports import BatchHandler, BusSubscription

log = logging.getLogger("nexxus.bus.nats")

__all__ = ["OrderedConsumer"]


class OrderedConsumer(BusSubscription):
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        stream: str,
        subject_filter: str,
        name: str,
        handler: BatchHandler,
        *,
        batch: int,
        fetch_timeout: float,
        ack_wait: float = 30.0,
        retry_delay: float = 1.0,
        on_close: Callable[[BusSubscription], None],
    ) -> None:
        self._nc = nc
        self._js = js
        self._stream = stream
        self.subject_filter = subject_filter
        self.name = name
        self._handler = handler
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._ack_wait = ack_wait
        self._retry_delay = retry_delay
        self._on_close = on_close
        self._psub: JetStreamContext.PullSubscription | None = None
        self._consumer = ""
        self._closing = False
        self._in_handler = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._beat: asyncio.Future[None] | None = None
        self.restarts = 0

    async def start(self) -> None:
        await self._restart()
        self._task = asyncio.create_task(self._run(), name=f"nats-ordered-{self.name}")

    async def _restart(self) -> None:
        """Replace the filter's consumer by a fresh one that delivers everything left."""
        js = self._js
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nc.flush(timeout=2)  # our acks reach the server first
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()
            self._psub = None
        for info in await js.consumers_info(self._stream):
            if info.config.filter_subject == self.subject_filter and info.name:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_consumer(self._stream, info.name)
        consumer = f"{self.name}-{new_id()[-12:]}"
        await js.add_consumer(
            self._stream,
            ConsumerConfig(
                name=consumer,
                durable_name=consumer,
                filter_subject=self.subject_filter,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
                max_ack_pending=self._batch,
                max_deliver=-1,
            ),
        )
        self._psub = await js.pull_subscribe_bind(durable=consumer, stream=self._stream)
        self._consumer = consumer
        log.debug("ordered consumer %s on %s (%s)", consumer, self.subject_filter, self._stream)

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closing:
            try:
                if self._psub is None:
                    await self._restart()
                assert self._psub is not None
                msgs = await self._psub.fetch(self._batch, timeout=self._fetch_timeout)
            except TimeoutError:  # includes nats TimeoutError / FetchTimeoutError
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Server down, or our consumer is gone (deleted by a new holder, or
                # the stream was recreated): start over from what is left.
                log.warning("ordered consumer %s: fetch failed (%r); restarting", self.name, exc)
                self._psub = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            batch = [JetStreamMessage(m) for m in msgs]
            if not await self._dispatch(batch) and not self._closing:
                self.restarts += 1
                await asyncio.sleep(self._retry_delay)
                self._psub = None  # restart: the unsettled messages come first

    async def _dispatch(self, batch: list[JetStreamMessage]) -> bool:
        """Run the handler; True when it settled every message."""
        self._in_handler = True
        # A timer, not a task per batch: most batches finish long before it fires.
        self._timer = asyncio.get_running_loop().call_later(self._ack_wait / 3, self._keep_alive, batch)
        try:
            await self._handler(batch)
        except Exception:
            log.exception("handler of ordered consumer %s failed", self.name)
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._in_handler = False
        return all(m.settled for m in batch)

    def _keep_alive(self, batch: list[JetStreamMessage]) -> None:
        """In-progress acks for the unsettled messages while the handler works
        (every third of the ack wait, until the handler returns)."""

        async def beat() -> None:
            for m in batch:
                if not m.settled:
                    with contextlib.suppress(Exception):
                        await m.in_progress()

        self._beat = asyncio.ensure_future(beat())
        self._timer = asyncio.get_running_loop().call_later(self._ack_wait / 3, self._keep_alive, batch)

    async def unsubscribe(self, timeout: float = 10.0) -> None:
        """Stop fetching; a batch being handled may finish (up to `timeout`).
        The consumer stays: the next holder replaces it."""
        if self._closing:
            return
        self._closing = True
        self._on_close(self)
        task = self._task
        if task is not None:
            if not self._in_handler:
                task.cancel()
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                log.warning("handler of %s still busy after %ss; cancelling", self.name, timeout)
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nc.flush(timeout=2)
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()
