"""Writer and subscriber processes for edge_bench (spawned with multiprocessing).

Subscribers: each process opens a share of the subscriptions, of one kind:

  nx-sse  Nexxus server-sent events through Envoy (GET /v1/apps/{app}/events with a
          device token, then a volatile subscription made over REST by that device)
  nx-ws   Nexxus WebSocket bridge through Envoy (`subscribe` frame)
  pb-sse  PocketBase realtime (GET /api/realtime, then POST /api/realtime with the
          client id and the topic `tasks/*`, with `?options=` carrying the filter)

then answers commands on its pipe: ``("reset",)``, ``("stats",)`` → `SubStats`,
``("rss",)``, ``("stop",)``. Every received object is counted by its sequence
number `n` per subscriber (distinct and duplicates) and timed by its send time `t`.

Writers: `writer_main` POSTs `count` creates over REST (aiohttp), from
`concurrency` closed-loop coroutines or paced at `rate` per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote

import aiohttp
from websockets.asyncio.client import connect as ws_connect

HEARTBEAT = 300
OPEN_ATTEMPTS = 4
OPEN_RETRIES: list[str] = []  # this process's retried opens (Envoy 503 before headers)


@dataclass
class SubSpec:
    kind: str  # nx-sse | nx-ws | pb-sse
    base_url: str  # http://host:port (Envoy, or PocketBase)
    app: str  # Nexxus app id, or PocketBase collection name
    token: str  # Nexxus device token ("" for PocketBase)
    flt: dict[str, Any] | None  # Nexxus FilterQuery, or {"pb": "priority='high'"}
    sse_max_batch: int = 1
    stream_url: str = ""  # where the stream connects, when not base_url (the transport itself)


@dataclass
class SubStats:
    events: int = 0
    unique: int = 0
    first: float = 0.0
    last: float = 0.0
    latencies: list[float] = field(default_factory=list)
    opened: int = 0
    closed: int = 0  # streams that ended while the bench ran
    errors: list[str] = field(default_factory=list)
    error_frames: int = 0
    open_retries: int = 0


@dataclass
class WriterStats:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_send: float = 0.0
    last_ack: float = 0.0
    rpc_latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0


def raise_nofile(want: int = 1 << 17) -> int:
    """Raise this process's open-file limit (inherited by the stack it starts): the
    fan-out holds 10k client sockets and Envoy 10k downstream plus 10k upstream.
    Root may raise the hard limit too; others get their hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    soft = hard if hard != resource.RLIM_INFINITY else want
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------- subscribers


class _Subs:
    def __init__(self, n: int) -> None:
        self.seen: list[set[int]] = [set() for _ in range(n)]
        self.events = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.opened = 0
        self.closed = 0
        self.errors: list[str] = []
        self.error_frames = 0

    def reset(self) -> None:
        for s in self.seen:
            s.clear()
        self.events = 0
        self.first = self.last = 0.0
        self.latencies.clear()

    def stats(self) -> SubStats:
        return SubStats(
            events=self.events,
            unique=sum(len(s) for s in self.seen),
            first=self.first,
            last=self.last,
            latencies=list(self.latencies),
            opened=self.opened,
            closed=self.closed,
            errors=self.errors[:5] + OPEN_RETRIES[:1],
            error_frames=self.error_frames,
            open_retries=len(OPEN_RETRIES),
        )

    def got(self, idx: int, objects: list[dict[str, Any]]) -> None:
        now = time.time()
        if not self.events:
            self.first = now
        self.last = now
        self.events += len(objects)
        seen = self.seen[idx]
        for data in objects:
            seen.add(int(data["n"]))
            self.latencies.append(now - float(data["t"]))

    def nexxus_frame(self, idx: int, frame: dict[str, Any]) -> None:
        if "event" in frame:
            self.got(idx, [frame["event"]["object"]["data"]])
        elif "batch" in frame:
            self.got(idx, [e["object"]["data"] for e in frame["batch"]["events"]])
        elif "error" in frame:
            self.error_frames += 1
            if len(self.errors) < 5:
                self.errors.append(f"sub {idx}: error frame {json.dumps(frame['error'])[:300]}")


async def _sse_lines(resp: aiohttp.ClientResponse) -> Any:
    """(event name, data) of each SSE message."""
    event, data = "", []
    async for raw in resp.content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield event, b"\n".join(data)
            event, data = "", []
        elif line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()


class _Opened:
    def __init__(self, reader: Any, closer: Any) -> None:
        self.reader = reader  # async iterator of parsed frames
        self.closer = closer


async def _open_nx_sse(http: aiohttp.ClientSession, spec: SubSpec) -> tuple[aiohttp.ClientResponse, Any]:
    headers = {"authorization": f"Bearer {spec.token}", "accept": "text/event-stream"}
    params = {"heartbeatSeconds": str(HEARTBEAT)}
    if spec.sse_max_batch > 1:
        params["maxBatch"] = str(spec.sse_max_batch)
    for attempt in range(OPEN_ATTEMPTS):
        url = f"{spec.stream_url or spec.base_url}/v1/apps/{spec.app}/events"
        resp = await http.get(url, headers=headers, params=params)
        if resp.status == 200:
            break
        text = (await resp.text())[:300]
        resp.release()
        # Envoy's own 503 (no answer from the transport): counted and reported, then retried
        # after a second, as EventSource does.
        if resp.status != 503 or "upstream" not in text or attempt == OPEN_ATTEMPTS - 1:
            raise RuntimeError(f"SSE open: HTTP {resp.status} {text}")
        OPEN_RETRIES.append(text)
        await asyncio.sleep(1.0)
    lines = _sse_lines(resp)
    _, first = await asyncio.wait_for(anext(lines), 60)
    if "ready" not in json.loads(first):
        raise RuntimeError(f"SSE did not start: {first[:200]!r}")
    body: dict[str, Any] = {"model": "task"}
    if spec.flt is not None:
        body["filter"] = spec.flt
    async with http.post(
        f"{spec.base_url}/v1/apps/{spec.app}/subscriptions",
        json=body,
        headers={"authorization": f"Bearer {spec.token}"},
    ) as r:
        if r.status != 200:
            raise RuntimeError(f"subscribe: HTTP {r.status} {(await r.text())[:200]}")
    return resp, lines


async def _open_pb_sse(http: aiohttp.ClientSession, spec: SubSpec) -> tuple[aiohttp.ClientResponse, Any]:
    resp = await http.get(f"{spec.base_url}/api/realtime", headers={"accept": "text/event-stream"})
    if resp.status != 200:
        raise RuntimeError(f"PocketBase realtime: HTTP {resp.status}")
    lines = _sse_lines(resp)
    event, first = await asyncio.wait_for(anext(lines), 60)
    if event != "PB_CONNECT":
        raise RuntimeError(f"PocketBase realtime did not start: {event} {first[:200]!r}")
    topic = f"{spec.app}/*"
    if spec.flt is not None:
        topic += "?options=" + quote(json.dumps({"query": {"filter": spec.flt["pb"]}}))
    async with http.post(
        f"{spec.base_url}/api/realtime",
        json={"clientId": json.loads(first)["clientId"], "subscriptions": [topic]},
    ) as r:
        if r.status not in (200, 204):
            raise RuntimeError(f"PocketBase subscribe: HTTP {r.status} {(await r.text())[:200]}")
    return resp, lines


async def _pump_sse(subs: _Subs, idx: int, kind: str, lines: Any) -> None:
    try:
        async for _, data in lines:
            frame = json.loads(data)
            if kind == "pb-sse":
                if "record" in frame:
                    subs.got(idx, [frame["record"]])
            else:
                subs.nexxus_frame(idx, frame)
    except (aiohttp.ClientError, asyncio.CancelledError, ConnectionError) as exc:
        if not isinstance(exc, asyncio.CancelledError):
            subs.errors.append(f"sub {idx}: {exc!r}"[:300])
        else:
            raise
    finally:
        subs.closed += 1


async def _open_ws(spec: SubSpec) -> Any:
    url = (spec.stream_url or spec.base_url).replace("http://", "ws://", 1)
    ws = await ws_connect(
        f"{url}/v1/apps/{spec.app}/ws?access_token={spec.token}&heartbeat_seconds={HEARTBEAT}",
        max_size=64 << 20,
        open_timeout=120,
        ping_interval=None,
    )
    ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if "ready" not in ready:
        raise RuntimeError(f"WebSocket did not start: {ready}")
    sub: dict[str, Any] = {"model": "task"}
    if spec.flt is not None:
        sub["filter"] = spec.flt
    await ws.send(json.dumps({"id": "s", "subscribe": sub}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame.get("replyTo") == "s":
            if "subscribed" not in frame:
                raise RuntimeError(f"subscribe refused: {frame}")
            break
    # Any frame other than `subscribe` releases the live events held for a `resume` (RESUME_WINDOW).
    await ws.send(json.dumps({"id": "p", "ping": {"payload": {}}}))
    return ws


async def _pump_ws(subs: _Subs, idx: int, ws: Any) -> None:
    try:
        async for message in ws:
            subs.nexxus_frame(idx, json.loads(message))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        subs.errors.append(f"sub {idx}: {exc!r}"[:300])
    finally:
        subs.closed += 1


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _subscriber(conn: Connection, specs: list[SubSpec]) -> None:
    raise_nofile()
    subs = _Subs(len(specs))
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    closers: list[Any] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=120))
    try:
        sem = asyncio.Semaphore(64)

        async def open_one(i: int, spec: SubSpec) -> None:
            async with sem:
                if spec.kind == "nx-ws":
                    ws = await _open_ws(spec)
                    closers.append(ws.close)
                    tasks.append(asyncio.create_task(_pump_ws(subs, i, ws)))
                else:
                    opener = _open_pb_sse if spec.kind == "pb-sse" else _open_nx_sse
                    resp, lines = await opener(http, spec)
                    closers.append(resp.release)
                    tasks.append(asyncio.create_task(_pump_sse(subs, i, spec.kind, lines)))
                subs.opened += 1

        await asyncio.gather(*(open_one(i, s) for i, s in enumerate(specs)))
        conn.send(("ready", subs.opened))
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "reset":
                subs.reset()
                conn.send(("ok",))
            elif cmd[0] == "stats":
                conn.send(("stats", subs.stats()))
            elif cmd[0] == "rss":
                conn.send(("rss", _rss_kib(os.getpid())))
            else:
                break
    except Exception as exc:  # report instead of dying silently
        with contextlib.suppress(Exception):
            conn.send(("error", repr(exc)[:500]))
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        for close in closers:
            with contextlib.suppress(Exception):
                r = close()
                if asyncio.iscoroutine(r):
                    await asyncio.wait_for(r, 2)
        await http.close()
        with contextlib.suppress(Exception):
            conn.send(("stopped",))


def subscriber_main(conn: Connection, specs: list[SubSpec]) -> None:
    asyncio.run(_subscriber(conn, specs))


# ---------------------------------------------------------------------- writers


async def _writer(
    url: str,
    token: str,
    kind: str,
    *,
    start: int,
    count: int,
    concurrency: int,
    rate: float,
    hot_every: int,
) -> WriterStats:
    st = WriterStats()
    headers = {"authorization": f"Bearer {token}" if kind == "nx" else token}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:

        async def one(n: int) -> None:
            data = {
                "title": f"task {n}",
                "priority": "high" if hot_every and n % hot_every == 0 else "low",
                "n": n,
                "t": time.time(),
            }
            body = {"objectId": f"o{n}", "data": data, "wait": False} if kind == "nx" else data
            t0 = data["t"]
            if not st.first_send:
                st.first_send = t0
            st.sent += 1
            try:
                async with http.post(url, json=body, headers=headers) as resp:
                    text = await resp.read()
                    if resp.status == 200:
                        st.ok += 1
                    else:
                        key = f"HTTP {resp.status}: {text[:100]!r}"
                        st.errors[key] = st.errors.get(key, 0) + 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                key = repr(exc)[:120]
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
                for n in it:
                    await one(n)

            await asyncio.gather(*(loop() for _ in range(concurrency)))
    return st


def writer_main(conn: Connection, url: str, token: str, kind: str, kw: dict[str, Any]) -> None:
    conn.send(("ready",))
    conn.recv()
    cpu0 = time.process_time()
    st = asyncio.run(_writer(url, token, kind, **kw))
    st.cpu_seconds = time.process_time() - cpu0
    conn.send(("done", st))
