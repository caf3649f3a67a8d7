"""Reference figures measured in the same run as the Nexxus figures.

* `nats_roundtrip`: raw nats-py on the mesh's own nats-server — JetStream publish
  (awaited PubAck, with a Nats-Msg-Id like the api) → durable pull consumer
  (batch fetch, ack each) → core-NATS republish → core subscriber. One hop of
  what Nexxus does twice, with no database, no Redis and no gRPC; all three
  roles run in this process over three connections.
* `grpc_echo`: a unary bytes→bytes echo on localhost (server in a spawned
  process, client here) — the ceiling of what one Python gRPC client and one
  Python gRPC server process can exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import struct
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc
import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

PAYLOAD_PAD = b"x" * 200  # about the size of a serialized task event


@dataclass
class BaseFigures:
    rate: float = 0.0  # messages (or calls) per second, closed loop
    count: int = 0
    latencies: list[float] = field(default_factory=list)  # paced phase, seconds


async def nats_roundtrip(
    url: str, count: int, concurrency: int, paced_rate: float, paced_seconds: float
) -> tuple[BaseFigures, BaseFigures]:
    tag = uuid.uuid4().hex[:6]
    stream, subj_in, subj_out = f"BENCHBASE_{tag}", f"benchbase.{tag}.in", f"benchbase.{tag}.out"
    pub, con, sub = await nats.connect(url), await nats.connect(url), await nats.connect(url)
    js = pub.jetstream()
    await js.add_stream(
        StreamConfig(name=stream, subjects=[subj_in], storage=StorageType.FILE, duplicate_window=120)
    )
    cjs = con.jetstream()
    await cjs.add_consumer(
        stream, ConsumerConfig(durable_name="base", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1024)
    )
    psub = await cjs.pull_subscribe_bind(durable="base", stream=stream)

    received = 0
    last = 0.0
    lat: list[float] = []
    done = asyncio.Event()
    target = 0

    async def on_out(msg: nats.aio.msg.Msg) -> None:
        nonlocal received, last
        now = time.time()
        received += 1
        last = now
        lat.append(now - struct.unpack_from("d", msg.data)[0])
        if received >= target:
            done.set()

    await sub.subscribe(subj_out, cb=on_out)
    stop = False

    async def relay() -> None:
        while not stop:
            try:
                msgs = await psub.fetch(256, timeout=0.5)
            except TimeoutError:
                continue
            except Exception:
                if stop:
                    return
                raise
            for m in msgs:
                await con.publish(subj_out, m.data)
                await m.ack()

    relay_task = asyncio.create_task(relay())
    seq = 0

    async def send() -> None:
        nonlocal seq
        seq += 1
        data = struct.pack("d", time.time()) + PAYLOAD_PAD
        await js.publish(subj_in, data, headers={"Nats-Msg-Id": f"{tag}-{seq}"})

    async def phase(n: int, rate: float) -> BaseFigures:
        nonlocal received, target
        received, target = 0, n
        lat.clear()
        done.clear()
        t0 = time.time()
        if rate > 0:
            start = time.monotonic()
            tasks = []
            for k in range(n):
                delay = start + k / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send()))
            await asyncio.gather(*tasks)
        else:
            left = iter(range(n))

            async def worker() -> None:
                for _ in left:
                    await send()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
        return BaseFigures(rate=received / max(last - t0, 1e-9), count=received, latencies=list(lat))

    try:
        await phase(200, 0)  # warm-up
        closed = await phase(count, 0)
        paced = await phase(int(paced_rate * paced_seconds), paced_rate)
    finally:
        stop = True
        relay_task.cancel()
        with contextlib.suppress(BaseException):
            await relay_task
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        for nc in (pub, con, sub):
            await nc.close()
    return closed, paced


# ---------------------------------------------------------------------- gRPC echo

METHOD = "/bench.Echo/Echo"


def _echo_server(conn: Connection) -> None:
    async def main() -> None:
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send(port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await server.stop(0)

    asyncio.run(main())


async def grpc_echo(count: int, concurrency: int) -> BaseFigures:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo_server, args=(child,), daemon=True)
    proc.start()
    try:
        port = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(METHOD)
            payload = PAYLOAD_PAD

            async def run(n: int) -> float:
                left = iter(range(n))

                async def worker() -> None:
                    for _ in left:
                        await call(payload)

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return n / (time.perf_counter() - t0)

            await run(200)
            return BaseFigures(rate=await run(count), count=count)
    finally:
        parent.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.kill()


# ---------------------------------------------------------------------- gRPC server-streaming fan-out

STREAM_METHOD = "/bench.Fan/Stream"


def _fanout_server(conn: Connection, streams: int, messages: int, size: int) -> None:
    """Server: `streams` server-streaming calls; once all are open, pushes `messages`
    payloads to every stream through per-stream queues (the transport's shape)."""

    async def main() -> None:
        queues: list[asyncio.Queue[bytes | None]] = []
        all_open = asyncio.Event()

        async def stream(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            q: asyncio.Queue[bytes | None] = asyncio.Queue()
            queues.append(q)
            if len(queues) == streams:
                all_open.set()
            while (item := await q.get()) is not None:
                yield item

        handler = grpc.method_handlers_generic_handler(
            "bench.Fan", {"Stream": grpc.unary_stream_rpc_method_handler(stream)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send(port)
        await all_open.wait()
        cpu0 = time.process_time()
        for i in range(messages):
            payload = struct.pack("d", time.time()) + b"x" * size
            for q in queues:
                q.put_nowait(payload)
            if i % 10 == 0:
                await asyncio.sleep(0)
        for q in queues:
            q.put_nowait(None)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send(time.process_time() - cpu0)
        await server.stop(0)

    asyncio.run(main())


async def grpc_fanout(streams: int, messages: int, size: int = len(PAYLOAD_PAD)) -> tuple[BaseFigures, float]:
    """(deliveries/s received by one client process over `streams` streams, server CPU µs per delivery)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_fanout_server, args=(child, streams, messages, size), daemon=True)
    proc.start()
    try:
        port = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        received = 0
        first = last = 0.0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_stream(STREAM_METHOD)

            async def read() -> None:
                nonlocal received, first, last
                async for _ in call(b""):
                    last = time.time()
                    if not received:
                        first = last
                    received += 1

            await asyncio.gather(*(read() for _ in range(streams)))
        parent.send("cpu")
        cpu = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        per_delivery_us = cpu / max(received, 1) * 1e6
        return BaseFigures(rate=received / max(last - first, 1e-9), count=received), per_delivery_us
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
