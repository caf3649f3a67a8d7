"""What a publisher stores stays in the order it published, across a
`kill -9` of nats-server: a batch whose acks were lost is published again (as
the writer and the router do) and must not land after messages published
after it, nor may a later part of it land before an earlier part.

nats-py keeps what it could not send when the connection broke (and, unless
told otherwise, what is published while it reconnects) and sends it to the
restarted server, while what went into the dead connection is gone: without
care, a batch's tail is stored, then its retried head after it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import nats
import pytest

from nexxus.adapters.bus.nats import NatsBus
from nexxus.core.config.settings import NatsSettings
from nexxus.core.errors import NexxusError
from nexxus.devserver.servers import NatsServer

pytestmark = pytest.mark.slow

BATCH = 40
KILLS = 4


async def test_published_batches_keep_their_order_across_server_kills(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    await server.start()
    settings = NatsSettings(servers=[server.url], stream_prefix="ORDER", subject_prefix="order")
    bus = NatsBus(settings, request_timeout=2.0)
    await bus.start()
    subject = bus.events_subject("app", "task")
    published = 0
    progressed = asyncio.Event()
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal published
        b = 0
        while not stop.is_set():
            items = [(subject, f"{b}:{i}".encode(), f"{b}:{i}") for i in range(BATCH)]
            while True:
                try:
                    await bus.publish_many(items)
                    break
                except NexxusError:
                    await asyncio.sleep(0.05)
            b += 1
            published = b
            progressed.set()

    async def _batches(n: int) -> None:
        """Until the publisher stored `n` more batches."""
        target = published + n
        while published < target:
            progressed.clear()
            await asyncio.wait_for(progressed.wait(), 60)

    task = asyncio.create_task(publisher())
    try:
        for _ in range(KILLS):
            await _batches(5)
            await server.kill()
            await asyncio.sleep(0.3)
            await server.restart()
        await _batches(5)
        stop.set()
        await asyncio.wait_for(task, 60)
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        info = await js.stream_info(bus.stream_names["events"])
        psub = await js.pull_subscribe(subject, stream=bus.stream_names["events"])
        got: list[tuple[int, int]] = []
        while len(got) < info.state.messages:
            for m in await psub.fetch(500, timeout=5):
                b, i = m.data.decode().split(":")
                got.append((int(b), int(i)))
                await m.ack()
        await nc.close()
    finally:
        await bus.stop()
        await server.stop()
    assert len(got) == len(set(got)), "a message stored twice"
    assert got == sorted(got), f"stored out of order: {[p for p, q in itertools.pairwise(got) if q < p][:5]}"
    assert set(got) == {(b, i) for b in range(published) for i in range(BATCH)}
