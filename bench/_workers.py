"""Load-generator and receiver processes for pipeline_bench (spawned with multiprocessing).

Receivers: each process opens a share of the devices' gRPC event streams (one
inline subscription per stream), then answers commands on its pipe:
``("reset",)`` clears the counters, ``("stats",)`` returns a `ReceiverStats`,
``("stop",)`` closes the streams and exits.

Writers: `writer_main` sends `count` CreateObject(wait=False) calls, either from
`concurrency` closed-loop coroutines (max load) or paced at `rate` per second,
and returns a `WriterStats`. Every object carries its send time (`t`, Unix
seconds) so receivers can measure write → delivery latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc
from google.protobuf import struct_pb2

from nexxus.v1 import events_pb2, events_pb2_grpc, objects_pb2, objects_pb2_grpc, subscriptions_pb2

STREAMS_PER_CHANNEL = 100
# Events per stream frame the receivers ask for (StreamEventsRequest.max_batch);
# NEXXUS_BENCH_MAX_BATCH=1 measures one frame per event.
MAX_BATCH = int(os.environ.get("NEXXUS_BENCH_MAX_BATCH", "64"))
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 16 << 20)]


@dataclass
class ReceiverStats:
    events: int = 0
    unique: int = 0  # distinct (stream, object id) pairs
    first: float = 0.0  # Unix time of the first / last event received
    last: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, write sent → event received
    streams_open: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class WriterStats:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_send: float = 0.0
    last_ack: float = 0.0
    rpc_latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0  # this writer process's CPU while sending


# ---------------------------------------------------------------------- receivers


class _Receiver:
    def __init__(self, n_streams: int) -> None:
        self.seen: list[set[str]] = [set() for _ in range(n_streams)]
        self.events = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.open = 0
        self.errors: list[str] = []

    def reset(self) -> None:
        for s in self.seen:
            s.clear()
        self.events = 0
        self.first = self.last = 0.0
        self.latencies.clear()  # cleared in place: the pumps hold a reference

    def stats(self) -> ReceiverStats:
        return ReceiverStats(
            events=self.events,
            unique=sum(len(s) for s in self.seen),
            first=self.first,
            last=self.last,
            latencies=list(self.latencies),
            streams_open=self.open,
            errors=self.errors[:5],
        )

    async def pump(self, idx: int, call: Any) -> None:
        seen = self.seen[idx]
        lat = self.latencies
        try:
            while True:
                frame = await call.read()
                if frame is grpc.aio.EOF:
                    break
                which = frame.WhichOneof("frame")
                if which == "event":
                    events = [frame.event]
                elif which == "batch":
                    events = list(frame.batch.events)
                else:
                    continue
                now = time.time()
                if not self.events:
                    self.first = now
                self.events += len(events)
                self.last = now
                for ev in events:
                    seen.add(ev.object_id)
                    sent = ev.object.data.fields.get("t")
                    if sent is not None:
                        lat.append(now - sent.number_value)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.errors.append(f"stream {idx}: {exc.code().name} {exc.details()}")
        finally:
            self.open -= 1


async def _open_stream(
    stub: events_pb2_grpc.EventServiceStub, app_id: str, model: str, token: str, flt: dict[str, Any] | None
) -> Any:
    sub = subscriptions_pb2.CreateSubscriptionRequest(app_id=app_id, model=model)
    if flt is not None:
        sub.filter.update(flt)
    call = stub.StreamEvents(
        events_pb2.StreamEventsRequest(
            app_id=app_id, subscriptions=[sub], heartbeat_seconds=60, max_batch=MAX_BATCH
        ),
        metadata=[("authorization", f"Bearer {token}")],
    )
    first = await asyncio.wait_for(call.read(), 30)
    if first is grpc.aio.EOF or first.WhichOneof("frame") != "ready":
        raise RuntimeError(f"stream did not start: {first!r}")
    return call


async def _receiver(
    conn: Connection, target: str, app_id: str, model: str, tokens: list[str], flt: dict[str, Any] | None
) -> None:
    rx = _Receiver(len(tokens))
    channels = [
        grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        for _ in range(max(1, -(-len(tokens) // STREAMS_PER_CHANNEL)))
    ]
    calls: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    try:
        sem = asyncio.Semaphore(32)

        async def open_one(i: int, token: str) -> Any:
            async with sem:
                stub = events_pb2_grpc.EventServiceStub(channels[i // STREAMS_PER_CHANNEL])
                return await _open_stream(stub, app_id, model, token, flt)

        calls = list(await asyncio.gather(*(open_one(i, t) for i, t in enumerate(tokens))))
        rx.open = len(calls)
        tasks = [asyncio.create_task(rx.pump(i, c)) for i, c in enumerate(calls)]
        conn.send(("ready", len(calls)))
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "reset":
                rx.reset()
                conn.send(("ok",))
            elif cmd[0] == "stats":
                conn.send(("stats", rx.stats()))
            else:
                break
    except Exception as exc:  # report instead of dying silently
        conn.send(("error", repr(exc)))
    finally:
        for c in calls:
            c.cancel()
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()
        with contextlib.suppress(Exception):
            conn.send(("stopped",))


def receiver_main(
    conn: Connection, target: str, app_id: str, model: str, tokens: list[str], flt: dict[str, Any] | None
) -> None:
    asyncio.run(_receiver(conn, target, app_id, model, tokens, flt))


# ---------------------------------------------------------------------- writers


def _data(i: int, hot_every: int) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(
        {
            "title": f"task {i}",
            "status": "hot" if hot_every and i % hot_every == 0 else "cold",
            "points": i,
            "t": time.time(),
        }
    )
    return out


async def _writer(
    target: str,
    app_id: str,
    model: str,
    token: str,
    *,
    start: int,
    count: int,
    concurrency: int,
    rate: float,
    hot_every: int,
) -> WriterStats:
    st = WriterStats()
    md = [("authorization", f"Bearer {token}")]
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
        stub = objects_pb2_grpc.ObjectServiceStub(ch)

        async def one(i: int) -> None:
            req = objects_pb2.CreateObjectRequest(
                app_id=app_id, model=model, object_id=f"o{i}", data=_data(i, hot_every), wait=False
            )
            t0 = time.time()
            if not st.first_send:
                st.first_send = t0
            st.sent += 1
            try:
                await stub.CreateObject(req, metadata=md)
                st.ok += 1
            except grpc.aio.AioRpcError as exc:
                key = f"{exc.code().name}: {exc.details()}"[:120]
                st.errors[key] = st.errors.get(key, 0) + 1
            now = time.time()
            st.rpc_latencies.append(now - t0)
            st.last_ack = max(st.last_ack, now)

        if rate > 0:
            t_start = time.monotonic()
            pending: set[asyncio.Task[None]] = set()
            for k in range(count):
                delay = t_start + k / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(start + k))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
        else:
            it = iter(range(start, start + count))

            async def loop() -> None:
                for i in it:
                    await one(i)

            await asyncio.gather(*(loop() for _ in range(concurrency)))
    return st


def writer_main(
    conn: Connection, target: str, app_id: str, model: str, token: str, kw: dict[str, Any]
) -> None:
    # Wait for "go" so spawning and imports stay outside the measured window.
    conn.send(("ready",))
    conn.recv()
    cpu0 = time.process_time()
    st = asyncio.run(_writer(target, app_id, model, token, **kw))
    st.cpu_seconds = time.process_time() - cpu0
    conn.send(("done", st))
