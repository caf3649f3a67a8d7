"""Contract tests of NatsBus on a real nats-server (JetStream)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, RetentionPolicy

from nexxus.adapters.bus.nats import CoreMessage, NatsBus
from nexxus.core.config.settings import NatsSettings
from nexxus.core.errors import Unavailable
from nexxus.core.limits import Limits
from nexxus.core.ports import BusMessage
from nexxus.devserver.servers import NatsServer, free_port


class Collector:
    """Records (data, num_delivered) of every message a handler sees."""

    def __init__(self, settle: str = "ack") -> None:
        self.seen: list[tuple[bytes, int]] = []
        self.messages: list[BusMessage] = []
        self.settle = settle
        self._changed = asyncio.Event()

    async def __call__(self, batch: Sequence[BusMessage]) -> None:
        for msg in batch:
            self.seen.append((msg.data, msg.num_delivered))
            self.messages.append(msg)
            if self.settle == "ack":
                await msg.ack()
            elif self.settle == "nak":
                await msg.nak(0)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; seen {self.seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_count(self, n: int, within: float = 5.0) -> None:
        await self.wait_for(lambda: len(self.seen) >= n, within)


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def test_subject_helpers(nats_settings: NatsSettings) -> None:
    bus = NatsBus(nats_settings)
    p = nats_settings.subject_prefix
    assert bus.write_subject("a", 3) == f"{p}.app.a.write.3"
    assert bus.write_partition_filter(3) == f"{p}.app.*.write.3"
    assert bus.events_subject("a", "task") == f"{p}.app.a.events.task"
    assert bus.parked_subject("a") == f"{p}.app.a.parked"
    assert bus.delivery_subject("node 1") == f"{p}.sys.transport.node_1"
    assert bus.subjects.control("a") == f"{p}.sys.control.a"
    assert bus.stream_names["writes"] == f"{nats_settings.stream_prefix}_WRITES"


async def test_not_started_raises(nats_settings: NatsSettings) -> None:
    bus = NatsBus(nats_settings)
    with pytest.raises(RuntimeError, match="not started"):
        await bus.publish("x", b"")


async def test_first_connect_failure_is_unavailable() -> None:
    bus = NatsBus(NatsSettings(servers=[f"nats://127.0.0.1:{free_port()}"]))
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await bus.start()
    assert time.monotonic() - started < 5


async def test_streams_created_idempotently(bus: NatsBus, nats_url: str) -> None:
    again = NatsBus(bus.settings)
    await again.start()  # same config: no error
    await again.stop()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        writes = await js.stream_info(bus.stream_names["writes"])
        parked = await js.stream_info(bus.stream_names["parked"])
    finally:
        await nc.close()
    assert writes.config.subjects == [bus.subjects.writes]
    assert writes.config.duplicate_window == 120
    # The write queue: acked commands leave it, nothing expires, full → refuse new ones.
    assert writes.config.retention == RetentionPolicy.WORK_QUEUE
    assert not writes.config.max_age
    assert writes.config.max_bytes == bus.settings.writes_max_bytes
    assert writes.config.discard == DiscardPolicy.NEW
    assert parked.config.max_age == 7 * 24 * 3600


async def test_publish_and_consume(bus: NatsBus) -> None:
    got = Collector()
    sub = await bus.consume(bus.subjects.all_events, "writer", got, batch=10)
    for i in range(3):
        await bus.publish(bus.events_subject("app1", "m"), f"m{i}".encode(), headers={"x-k": "v"})
    await got.wait_count(3)
    assert [d for d, _ in got.seen] == [b"m0", b"m1", b"m2"]
    assert all(n == 1 for _, n in got.seen)
    assert got.messages[0].headers["x-k"] == "v"
    assert got.messages[0].subject == bus.events_subject("app1", "m")
    await sub.unsubscribe()


async def test_consume_filters_by_subject(bus: NatsBus) -> None:
    got = Collector()
    await bus.consume(bus.subjects.model_events("task"), "router-task", got)
    await bus.publish(bus.events_subject("a", "note"), b"note")
    await bus.publish(bus.events_subject("a", "task"), b"task")
    await got.wait_count(1)
    await asyncio.sleep(0.2)
    assert [d for d, _ in got.seen] == [b"task"]


async def test_redelivery_after_nak(bus: NatsBus) -> None:
    got = Collector(settle="none")

    async def handler(batch: Sequence[BusMessage]) -> None:
        await got(batch)
        for msg in batch:
            await (msg.nak(0) if msg.num_delivered == 1 else msg.ack())

    await bus.consume(bus.subjects.all_events, "w", handler)
    await bus.publish(bus.events_subject("a", "m"), b"again")
    await got.wait_count(2)
    assert got.seen == [(b"again", 1), (b"again", 2)]


async def test_redelivery_after_ack_wait(bus: NatsBus) -> None:
    got = Collector(settle="none")

    async def handler(batch: Sequence[BusMessage]) -> None:
        await got(batch)
        for msg in batch:
            if msg.num_delivered > 1:
                await msg.ack()  # first delivery left unacked: expires after ack_wait

    await bus.consume(bus.subjects.all_events, "w", handler, ack_wait=0.5)
    await bus.publish(bus.events_subject("a", "m"), b"slow")
    await got.wait_count(2, within=5)
    assert got.seen == [(b"slow", 1), (b"slow", 2)]


async def test_handler_exception_naks_with_delay(nats_settings: NatsSettings, bus: NatsBus) -> None:
    flaky = NatsBus(nats_settings, nak_delay=0.2)
    await flaky.start()
    got = Collector(settle="none")

    async def handler(batch: Sequence[BusMessage]) -> None:
        await got(batch)
        if batch[0].num_delivered == 1:
            raise RuntimeError("boom")
        for msg in batch:
            await msg.ack()

    try:
        await flaky.consume(flaky.subjects.all_events, "w", handler)
        await flaky.publish(flaky.events_subject("a", "m"), b"x")
        await got.wait_count(2)
        assert got.seen == [(b"x", 1), (b"x", 2)]
    finally:
        await flaky.stop()


async def test_work_sharing_between_consumers(nats_settings: NatsSettings, bus: NatsBus) -> None:
    other = NatsBus(nats_settings)
    await other.start()
    a, b = Collector(), Collector()

    async def slow(collector: Collector) -> Callable[[Sequence[BusMessage]], Awaitable[None]]:
        async def handler(batch: Sequence[BusMessage]) -> None:
            await asyncio.sleep(0.01)
            await collector(batch)

        return handler

    try:
        await bus.consume(bus.subjects.all_events, "shared", await slow(a), batch=1)
        await other.consume(bus.subjects.all_events, "shared", await slow(b), batch=1)
        await bus.publish_many([(bus.events_subject("a", "m"), str(i).encode(), None) for i in range(40)])
        await a.wait_for(lambda: len(a.seen) + len(b.seen) >= 40, within=10)
        data = sorted(int(d) for d, _ in a.seen + b.seen)
        assert data == list(range(40))  # each message handled exactly once
        assert a.seen
        assert b.seen
    finally:
        await other.stop()


async def test_max_deliver(bus: NatsBus) -> None:
    got = Collector(settle="nak")
    await bus.consume(bus.subjects.all_events, "w", got, max_deliver=2)
    await bus.publish(bus.events_subject("a", "m"), b"poison")
    await got.wait_count(2)
    await asyncio.sleep(0.5)
    assert got.seen == [(b"poison", 1), (b"poison", 2)]


async def test_msg_id_deduplication(bus: NatsBus) -> None:
    got = Collector()
    await bus.consume(bus.subjects.all_events, "w", got)
    await bus.publish(bus.events_subject("a", "m"), b"one", msg_id="cmd-1")
    await bus.publish(bus.events_subject("a", "m"), b"one-again", msg_id="cmd-1")
    await bus.publish_many(
        [
            (bus.events_subject("a", "m"), b"two", "cmd-2"),
            (bus.events_subject("a", "m"), b"two-again", "cmd-2"),
        ]
    )
    await bus.publish(bus.events_subject("a", "m"), b"end", msg_id="cmd-3")
    await got.wait_count(3)
    await asyncio.sleep(0.2)
    assert [d for d, _ in got.seen] == [b"one", b"two", b"end"]


async def test_publish_many_keeps_order(bus: NatsBus) -> None:
    got = Collector()
    await bus.consume(bus.subjects.all_events, "r", got, batch=500)
    items = [(bus.events_subject("a", "task"), str(i).encode(), f"e{i}") for i in range(500)]
    await bus.publish_many(items)
    await got.wait_count(500)
    assert [int(d) for d, _ in got.seen] == list(range(500))


async def test_publish_without_stream_is_unavailable(bus: NatsBus) -> None:
    with pytest.raises(Unavailable):
        await bus.publish(bus.subjects.sys("nostream"), b"x")


async def test_volatile_pubsub_with_queue_groups(bus: NatsBus) -> None:
    q1: list[bytes] = []
    q2: list[bytes] = []
    everyone: list[bytes] = []

    def recorder(into: list[bytes]) -> Callable[[BusMessage], Awaitable[None]]:
        async def handler(msg: BusMessage) -> None:
            await msg.ack()  # no-op on core messages
            into.append(msg.data)

        return handler

    subject = bus.subjects.delivery("node1")
    s1 = await bus.subscribe(subject, recorder(q1), queue="q")
    await bus.subscribe(subject, recorder(q2), queue="q")
    await bus.subscribe(subject, recorder(everyone))
    for i in range(50):
        await bus.publish_volatile(subject, str(i).encode())

    async def all_arrived() -> bool:
        return len(everyone) == 50 and len(q1) + len(q2) == 50

    await until(all_arrived, within=5)
    assert sorted(q1 + q2, key=int) == everyone
    await s1.unsubscribe()
    q1.clear()
    q2.clear()
    await bus.publish_volatile(subject, b"after")

    async def one_more() -> bool:
        return len(q2) == 1

    await until(one_more, within=5)
    assert q1 == []


async def test_request_reply(bus: NatsBus) -> None:
    async def responder(msg: BusMessage) -> None:
        assert isinstance(msg, CoreMessage)
        await msg.respond(b"pong:" + msg.data)

    await bus.subscribe(bus.subjects.sys("rpc"), responder, queue="rpc")
    assert await bus.request(bus.subjects.sys("rpc"), b"ping", timeout=2) == b"pong:ping"
    with pytest.raises(Unavailable) as info:
        await bus.request(bus.subjects.sys("nobody"), b"x", timeout=1)
    assert info.value.reason == "NO_RESPONDERS"


async def test_consumer_survives_server_restart(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    await server.start()
    bus = NatsBus(NatsSettings(servers=[server.url]))
    got = Collector()
    try:
        await bus.start()
        await bus.consume(bus.subjects.all_events, "writer", got)
        await bus.publish(bus.events_subject("a", "m"), b"before")
        await got.wait_count(1)

        await server.stop()
        # A message stored while nobody consumes survives in the file store.
        await server.start()
        assert server.url == bus.settings.servers[0]  # same port

        async def published() -> bool:
            try:
                await bus.publish(bus.events_subject("a", "m"), b"after", msg_id="after-1")
                return True
            except Unavailable:
                return False

        await until(published, within=15)
        await got.wait_count(2, within=10)
        assert [d for d, _ in got.seen] == [b"before", b"after"]
    finally:
        await bus.stop()
        await server.stop()


# ------------------------------------------------------------------ ordered consumption, leases


async def test_ordered_consumer_redelivers_unacked_first_and_at_once(
    nats_settings: NatsSettings, bus: NatsBus
) -> None:
    """A holder that fetched but never acked (a killed writer): the next holder gets
    those messages at once (no ack wait), before anything later, in order."""
    for i in range(6):
        await bus.publish(bus.write_subject("a", 1), f"m{i}".encode())
    await bus.publish(bus.write_subject("a", 2), b"other partition")
    stuck = asyncio.Event()

    async def dies_holding(batch: Sequence[BusMessage]) -> None:
        await batch[0].ack()  # m0 done; m1… fetched, never settled
        stuck.set()
        await asyncio.Event().wait()

    first = NatsBus(nats_settings)
    await first.start()
    try:
        await first.consume_ordered(bus.write_partition_filter(1), "p1", dies_holding, batch=3)
        await asyncio.wait_for(stuck.wait(), 5)
        await bus.publish(bus.write_subject("b", 1), b"later")
        got = Collector()
        started = time.monotonic()
        await bus.consume_ordered(bus.write_partition_filter(1), "p1", got, batch=3)
        await got.wait_count(6)
        assert [d for d, _ in got.seen] == [b"m1", b"m2", b"m3", b"m4", b"m5", b"later"]
        assert time.monotonic() - started < 10  # not JetStream's 30 s ack wait
    finally:
        await first.stop()


async def test_ordered_consumer_retries_unsettled_before_later(bus: NatsBus) -> None:
    attempts: list[bytes] = []

    async def fails_once(batch: Sequence[BusMessage]) -> None:
        for msg in batch:
            attempts.append(msg.data)
            if msg.data == b"m1" and attempts.count(b"m1") == 1:
                return  # leave m1 (and what follows) unsettled
            await msg.ack()

    await bus.consume_ordered(bus.write_partition_filter(0), "p0", fails_once, batch=10)
    for i in range(4):
        await bus.publish(bus.write_subject("a", 0), f"m{i}".encode())
    deadline = time.monotonic() + 10
    while attempts.count(b"m3") < 1:
        assert time.monotonic() < deadline, attempts
        await asyncio.sleep(0.05)
    acked = [a for i, a in enumerate(attempts) if not (a == b"m1" and attempts[:i].count(b"m1") == 0)]
    assert acked == [b"m0", b"m1", b"m2", b"m3"]


async def test_leases_are_exclusive_renewable_and_expire(bus: NatsBus) -> None:
    table = await bus.leases("TEST_LEASES", 1.0)
    lease = await table.acquire("partition.1", "a")
    assert lease is not None
    assert await table.acquire("partition.1", "b") is None
    assert await lease.renew()
    assert await table.count("partition.") == 1
    await lease.release()
    other = await table.acquire("partition.1", "b")
    assert other is not None
    # Not renewed: it expires on the server, and someone else may take it.
    deadline = time.monotonic() + 10
    taken = None
    while taken is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
        taken = await table.acquire("partition.1", "c")
    assert not await other.renew()  # lost
    assert await table.count("member.") == 0


# --------------------------------------------------------------------------- positions


async def test_history_bounds_and_reading_a_range(bus: NatsBus) -> None:
    before = await bus.history_bounds()
    for i in range(5):
        await bus.publish(bus.events_subject("hist-a", "task"), f"a{i}".encode())
        await bus.publish(bus.events_subject("hist-b", "task"), f"b{i}".encode())
    after = await bus.history_bounds()
    assert after.epoch == before.epoch
    assert after.last_seq == before.last_seq + 10
    got = [item async for item in bus.read_history("hist-a", before.last_seq, after.last_seq)]
    assert [d for _, d in got] == [f"a{i}".encode() for i in range(5)]
    seqs = [s for s, _ in got]
    assert seqs == sorted(seqs)
    # A window in the middle, bounded on both sides.
    middle = [d for _, d in [item async for item in bus.read_history("hist-a", seqs[1], seqs[3])]]
    assert middle == [b"a2", b"a3"]
    assert [item async for item in bus.read_history("hist-a", after.last_seq, after.last_seq)] == []


async def test_deliveries_are_read_in_order_across_a_lost_consumer(bus: NatsBus, nats_url: str) -> None:
    got: list[tuple[int, bytes]] = []

    async def handler(seq: int, data: bytes) -> None:
        got.append((seq, data))

    sub = await bus.consume_deliveries("node.with.dots", handler)
    try:
        await bus.publish_deliveries([("node.with.dots", f"d{i}".encode(), f"m{i}") for i in range(3)])
        await until(lambda: _now(len(got) == 3))
        # The server forgets the reader's consumer (as after a restart without state).
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            stream = bus.stream_names["deliveries"]
            for name in [c.name async for c in _consumers(js, stream)]:
                await js.delete_consumer(stream, name)
        finally:
            await nc.close()
        await bus.publish_deliveries([("node.with.dots", f"d{i}".encode(), f"m{i}") for i in range(3, 6)])
        # The same message id again: stored once.
        await bus.publish_deliveries([("node.with.dots", b"d5", "m5"), ("other", b"x", "o1")])
        await until(lambda: _now(len(got) >= 6), within=15)
        await asyncio.sleep(0.3)
    finally:
        await sub.unsubscribe()
    assert [d for _, d in got] == [f"d{i}".encode() for i in range(6)]


async def test_in_order_consumer_handles_what_a_crashed_holder_left_first(
    bus: NatsBus, nats_url: str
) -> None:
    subject = bus.events_subject("ordered", "task")
    # A first holder fetches two messages and "dies" without acking them.
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for i in range(2):
            await bus.publish(subject, f"e{i}".encode())
        stream = bus.stream_names["events"]
        await js.add_consumer(
            stream,
            ConsumerConfig(
                name="ordered",
                durable_name="ordered",
                filter_subject=bus.subjects.app_events("ordered"),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=2.0,
                max_deliver=-1,
            ),
        )
        psub = await js.pull_subscribe_bind(durable="ordered", stream=stream)
        assert len(await psub.fetch(2, timeout=5)) == 2
    finally:
        await nc.close()
    for i in range(2, 6):
        await bus.publish(subject, f"e{i}".encode())
    got = Collector()
    sub = await bus.consume(
        bus.subjects.app_events("ordered"), "ordered", got, ack_wait=2.0, max_deliver=-1, in_order=True
    )
    try:
        await got.wait_count(6, within=20)
    finally:
        await sub.unsubscribe()
    assert [d for d, _ in got.seen] == [f"e{i}".encode() for i in range(6)]


def _now(value: bool) -> Awaitable[bool]:
    fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


async def _consumers(js: object, stream: str) -> Any:
    for info in await js.consumers_info(stream):  # type: ignore[attr-defined]
        yield info


async def test_a_reader_that_falls_behind_the_limits_reports_the_loss(
    nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nexxus.adapters.bus import _nats_reader

    monkeypatch.setattr(_nats_reader, "LOSS_CHECK_SECONDS", 0.1)
    nats_settings.deliveries_max_bytes = 4096
    bus = NatsBus(nats_settings)
    await bus.start()
    release = asyncio.Event()
    got: list[int] = []
    lost: list[tuple[int, int]] = []

    entered = asyncio.Event()

    async def slow(seq: int, data: bytes) -> None:
        entered.set()
        await release.wait()
        got.append(seq)

    handled_before_loss: list[int] = []

    async def on_loss(first: int, last: int) -> None:
        lost.append((first, last))
        handled_before_loss.append(len(got))

    try:
        sub = await bus.consume_deliveries("n1", slow, on_loss=on_loss)
        await bus.publish_deliveries([("n1", b"first", "m-first")])
        await asyncio.wait_for(entered.wait(), 10)
        # The reader is busy: beyond what its pending pull request takes, these
        # pile up in the stream, past its byte limit.
        await bus.publish_deliveries([("n1", b"x" * 200, f"m{i}") for i in range(600)])
        release.set()
        await until(lambda: _now(bool(lost)), within=15)
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await bus.delete_streams()
        await bus.stop()
    first, last = lost[0]
    assert first <= last
    assert not any(first <= seq <= last for seq in got)
    # Reported before anything newer was handled; in order, nothing twice.
    assert all(seq < first for seq in got[: handled_before_loss[0]])
    assert all(seq > last for seq in got[handled_before_loss[0] :])
    assert got == sorted(set(got))


async def test_a_server_too_small_for_the_limits_is_refused_and_the_largest_message_passes(
    tmp_path: Path, bus: NatsBus
) -> None:
    """nats-server's default max_payload (1 MiB) cannot carry an event of an object at
    the limit: the bus says so at start. Ours carries the largest message the limits allow."""
    server = NatsServer(tmp_path / "nats", max_payload=1024 * 1024)
    await server.start()
    try:
        small = NatsBus(NatsSettings(servers=[server.url], stream_prefix="SMALL"))
        with pytest.raises(Unavailable) as info:
            await small.start()
        assert info.value.reason == "NATS_MAX_PAYLOAD"
        assert "max_payload" in info.value.message
    finally:
        await server.stop()
    largest = b"x" * (Limits().message_bytes - 1024)
    got = Collector()
    await bus.consume(bus.subjects.all_events, "big", got)
    await bus.publish(bus.events_subject("a", "m"), largest)

    async def arrived() -> bool:
        return len(got.messages) == 1

    await until(arrived, within=10)
    assert got.messages[0].data == largest


async def _loss_reader(
    nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch
) -> tuple[NatsBus, list[int], list[tuple[int, int]], asyncio.Event, asyncio.Event]:
    """A bus with a 4 KiB DELIVERIES stream; a reader of node n1 whose handler
    waits for `release` after announcing `entered`."""
    from nexxus.adapters.bus import _nats_reader

    monkeypatch.setattr(_nats_reader, "LOSS_CHECK_SECONDS", 0.1)
    nats_settings.deliveries_max_bytes = 4096
    bus = NatsBus(nats_settings)
    await bus.start()
    return bus, [], [], asyncio.Event(), asyncio.Event()


async def test_an_idle_reader_whose_unread_messages_were_all_discarded_reports_the_loss(
    nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, got, lost, entered, release = await _loss_reader(nats_settings, monkeypatch)

    async def slow(seq: int, data: bytes) -> None:
        entered.set()
        await release.wait()
        got.append(seq)

    async def on_loss(first: int, last: int) -> None:
        lost.append((first, last))

    try:
        sub = await bus.consume_deliveries("n1", slow, on_loss=on_loss)
        await bus.publish_deliveries([("n1", b"first", "m-first")])
        await asyncio.wait_for(entered.wait(), 10)
        await bus.publish_deliveries([("n1", b"x" * 200, f"m{i}") for i in range(600)])
        # Another node's deliveries push every unread one of n1 out of the stream:
        # no newer message of n1 is left to reveal the hole; the idle check must.
        await bus.publish_deliveries([("n2", b"y" * 200, f"n{i}") for i in range(600)])
        release.set()
        await until(lambda: _now(bool(lost)), within=15)
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await bus.delete_streams()
        await bus.stop()
    first, last = lost[0]
    assert not any(first <= seq <= last for seq in got)
    assert last >= 601  # up to where n1's deliveries were (at least)


async def test_an_idle_reader_is_not_fooled_by_other_nodes_deliveries_ageing_out(
    nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, got, lost, _, _ = await _loss_reader(nats_settings, monkeypatch)

    async def handle(seq: int, data: bytes) -> None:
        got.append(seq)

    async def on_loss(first: int, last: int) -> None:
        lost.append((first, last))

    try:
        sub = await bus.consume_deliveries("n1", handle, on_loss=on_loss)
        await bus.publish_deliveries([("n1", b"first", "m-first")])
        await until(lambda: _now(len(got) == 1), within=10)
        # n1 stays idle while n2's deliveries, slower than the idle checks
        # (each after a 1 s fetch), cycle the 4 KiB stream (about 16 of them)
        # a few times over; n1's own message goes too.
        for i in range(48):
            await bus.publish_deliveries([("n2", b"y" * 200, f"n{i}")])
            await asyncio.sleep(0.2)
        info = await bus._require_js().stream_info(bus.stream_names["deliveries"])
        assert info.state.first_seq > 2  # n1's message was discarded: a naive check would cry loss
        await bus.publish_deliveries([("n1", b"second", "m-second")])
        await until(lambda: _now(len(got) == 2), within=10)
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await bus.delete_streams()
        await bus.stop()
    assert lost == []


async def test_a_reader_recovers_messages_lost_in_transit(bus: NatsBus, nats_url: str) -> None:
    """Messages its consumer pushed but the reader never received (here another
    client takes them, as a broken connection would swallow them) are read
    again: the reader sees the consumer sequence jump and starts over from its
    own position."""
    got: list[bytes] = []
    entered = asyncio.Event()
    release = asyncio.Event()

    async def handler(seq: int, data: bytes) -> None:
        entered.set()
        await release.wait()
        got.append(data)

    sub = await bus.consume_deliveries("transit", handler)
    nc = await nats.connect(nats_url)
    try:
        await bus.publish_deliveries([("transit", b"m0", "t0")])
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.sleep(1.5)  # the reader's outstanding pull request expires
        await bus.publish_deliveries([("transit", f"m{i}".encode(), f"t{i}") for i in range(1, 6)])
        js = nc.jetstream()
        stream = bus.stream_names["deliveries"]
        [name] = [
            c.name async for c in _consumers(js, stream) if ".transit." in (c.config.filter_subject or "")
        ]
        thief = await js.pull_subscribe_bind(durable=name, stream=stream)
        stolen = await thief.fetch(5, timeout=5)
        assert [m.data for m in stolen] == [f"m{i}".encode() for i in range(1, 6)]
        await bus.publish_deliveries([("transit", b"m6", "t6")])
        release.set()
        await until(lambda: _now(len(got) >= 7), within=15)
        await asyncio.sleep(0.3)
    finally:
        release.set()
        await nc.close()
        await sub.unsubscribe()
    assert got == [f"m{i}".encode() for i in range(7)]
