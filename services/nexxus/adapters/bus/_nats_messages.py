"""BusMessage / BusSubscription wrappers around nats-py objects (private to the NATS adapter)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext

from nexxus.core.errors import Unavailable
from nexxus.core.ports import BatchHandler, BusMessage, BusSubscription

log = logging.getLogger("nexxus.bus.nats")


__all__ = ["CoreMessage", "CoreSubscription", "JetStreamMessage", "PullConsumer"]


class JetStreamMessage(BusMessage):
    """A durable message; settle it once with ack, nak or term (later calls are no-ops)."""

    __slots__ = ("_msg", "data", "headers", "naked", "settled", "subject")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.data = msg.data
        self.headers: Mapping[str, str] = dict(msg.headers or {})
        self.settled = False
        self.naked = False

    @property
    def num_delivered(self) -> int:
        delivered: int = self._msg.metadata.num_delivered
        return delivered

    @property
    def stream_sequence(self) -> int:
        seq: int = self._msg.metadata.sequence.stream
        return seq

    async def _settle(self, action: Callable[[], Awaitable[None]], what: str) -> None:
        if self.settled:
            return
        try:
            await action()
        except nats.errors.MsgAlreadyAckdError:
            pass
        except nats.errors.Error as exc:
            raise Unavailable(
                "the message bus is unavailable; retry later",
                reason="BUS_UNAVAILABLE",
                internal=f"cannot {what} message on {self.subject}: {exc!r}",
            ) from exc
        self.settled = True

    async def ack(self) -> None:
        await self._settle(self._msg.ack, "ack")

    async def nak(self, delay: float | None = None) -> None:
        self.naked = True
        await self._settle(lambda: self._msg.nak(delay=delay), "nak")

    async def term(self) -> None:
        await self._settle(self._msg.term, "term")

    async def in_progress(self) -> None:
        """Reset the ack wait of an unsettled message (still working on it)."""
        if not self.settled:
            try:
                await self._msg.in_progress()
            except nats.errors.Error as exc:
                raise Unavailable(f"cannot extend message on {self.subject}: {exc!r}") from exc


class CoreMessage(BusMessage):
    """A volatile (core NATS) message: ack / nak / term do nothing.

    `reply` is the reply subject of a request ("" otherwise); `respond` answers it.
    """

    __slots__ = ("_msg", "data", "headers", "reply", "subject")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.data = msg.data
        self.reply: str = msg.reply or ""
        self.headers: Mapping[str, str] = dict(msg.headers or {})

    @property
    def num_delivered(self) -> int:
        return 1

    async def ack(self) -> None:
        return None

    async def nak(self, delay: float | None = None) -> None:
        return None

    async def term(self) -> None:
        return None

    async def respond(self, data: bytes) -> None:
        if not self.reply:
            raise ValueError(f"message on {self.subject} has no reply subject")
        try:
            await self._msg.respond(data)
        except nats.errors.Error as exc:
            raise Unavailable(
                "the message bus is unavailable; retry later",
                reason="BUS_UNAVAILABLE",
                internal=f"cannot respond on {self.reply}: {exc!r}",
            ) from exc


class CoreSubscription(BusSubscription):
    def __init__(self, sub: NatsSubscription, on_close: Callable[[BusSubscription], None]) -> None:
        self._sub = sub
        self._on_close = on_close

    async def unsubscribe(self) -> None:
        self._on_close(self)
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


class PullConsumer(BusSubscription):
    """Fetches batches from a durable pull consumer in a background task.

    Handler exceptions nak the batch's unsettled messages with `nak_delay`; fetch
    errors (server down, consumer missing) are retried with backoff, recreating the
    consumer when the server no longer knows it.

    `in_order`: nothing is handled before an older message that an earlier
    holder of the consumer (a process killed mid-batch, or this one after a
    failed batch or a lost connection) left unacknowledged. On start and after
    such a failure the consumer *recovers*: it reads the consumer's ack floor F
    and delivered sequence D, keeps the messages it fetches in memory (not
    acked, not nak'ed) and hands them to the handler in stream order, F+1,
    F+2, … as the ones left behind come back (redelivered after the ack
    wait). Once past D it is in order again. The consumer's filter must see
    every sequence of its stream (the router's does); if the ones left behind
    do not all come back within twice the ack wait (another copy handled them),
    the held messages are handled in order anyway.
    """

    def __init__(
        self,
        psub: JetStreamContext.PullSubscription,
        handler: BatchHandler,
        *,
        durable: str,
        batch: int,
        fetch_timeout: float,
        nak_delay: float,
        recreate: Callable[[], Awaitable[None]],
        on_close: Callable[[BusSubscription], None],
        in_order: bool = False,
        ack_wait: float = 30.0,
    ) -> None:
        self._psub = psub
        self._handler = handler
        self.durable = durable
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._nak_delay = nak_delay
        self._recreate = recreate
        self._on_close = on_close
        self._closing = False
        self._in_handler = False
        self._task: asyncio.Task[None] | None = None
        self._in_order = in_order
        # Recovery (see the class docstring): the sequence left behind up to
        # which it lasts, the next one to handle, the newer ones held meanwhile.
        self._recover_to: int | None = None
        self._recovering = in_order
        self._expected = 0
        self._recover_until = 0.0
        self._held: dict[int, JetStreamMessage] = {}
        self._ack_wait = ack_wait
        self.recoveries = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"nats-consumer-{self.durable}")

    async def _run(self) -> None:
        backoff = 0.05
        if self._recovering:
            # Read what a previous holder left before fetching anything ourselves.
            with contextlib.suppress(Exception):
                await self._recover([])
        while not self._closing:
            try:
                msgs = await self._psub.fetch(self._batch, timeout=self._fetch_timeout)
            except TimeoutError:  # includes nats TimeoutError / FetchTimeoutError
                if self._recovering and self._held:
                    with contextlib.suppress(Exception):
                        if held := await self._recover([]):
                            await self._dispatch(held)
                continue
            except nats.js.errors.NotFoundError:
                log.warning("consumer %s vanished; recreating it", self.durable)
                with contextlib.suppress(Exception):
                    await self._recreate()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception as exc:
                log.warning("fetch on %s failed: %r", self.durable, exc)
                self._recovering = self._in_order
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            batch = [JetStreamMessage(m) for m in msgs]
            if self._recovering:
                try:
                    batch = await self._recover(batch)
                except Exception as exc:
                    log.warning("consumer %s: cannot read its state (%r); retrying", self.durable, exc)
                    self._held.update((m.stream_sequence, m) for m in batch)
                    await asyncio.sleep(backoff)
                    continue
                if not batch:
                    continue
            await self._dispatch(batch)

    async def _recover(self, batch: list[JetStreamMessage]) -> list[JetStreamMessage]:
        """What may be handled now, in order (see the class docstring)."""
        now = time.monotonic()
        if self._recover_to is None:
            info = await self._psub.consumer_info()
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            self._expected = floor + 1
            self._recover_to = info.delivered.stream_seq if info.delivered else 0
            self._recover_until = now + 2 * self._ack_wait
            if self._recover_to >= self._expected:
                self.recoveries += 1
                log.warning(
                    "consumer %s: %d..%d were left unacknowledged; handling them before anything newer",
                    self.durable,
                    self._expected,
                    self._recover_to,
                )
        out: list[JetStreamMessage] = []
        for m in batch:
            seq = m.stream_sequence
            if seq < self._expected:
                out.append(m)  # handled before, redelivered: the handler is idempotent
            else:
                self._held[seq] = m
        while self._expected in self._held:
            out.append(self._held.pop(self._expected))
            self._expected += 1
        if self._expected > self._recover_to or now > self._recover_until:
            if self._expected <= self._recover_to:
                log.error(
                    "consumer %s: %d..%d did not come back; handling %d newer message(s) anyway",
                    self.durable,
                    self._expected,
                    self._recover_to,
                    len(self._held),
                )
            out.extend(self._held[seq] for seq in sorted(self._held))
            self._held.clear()
            self._recovering, self._recover_to = False, None
        return out

    async def _dispatch(self, batch: list[JetStreamMessage]) -> None:
        self._in_handler = True
        try:
            await self._handler(batch)
            if any(not m.settled or m.naked for m in batch):
                self._recovering = self._in_order
        except Exception:
            self._recovering = self._in_order
            unsettled = [m for m in batch if not m.settled]
            log.exception(
                "handler of consumer %s failed; nak %d message(s) with delay %ss",
                self.durable,
                len(unsettled),
                self._nak_delay,
            )
            for m in unsettled:
                with contextlib.suppress(Unavailable):
                    await m.nak(self._nak_delay)
        finally:
            self._in_handler = False

    async def unsubscribe(self, timeout: float = 10.0) -> None:
        """Stop fetching; a batch being handled is allowed to finish (up to `timeout`)."""
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
                log.warning("handler of consumer %s still busy after %ss; cancelling", self.durable, timeout)
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("consumer %s task failed", self.durable, exc_info=task.exception())
        with contextlib.suppress(Exception):
            await self._psub.unsubscribe()
