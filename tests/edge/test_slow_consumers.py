"""Slow consumers are isolated, through a real Envoy.

Six devices subscribe to the same model: two healthy SSE clients, two healthy
WebSocket clients, one SSE client and one WebSocket client that stop reading
right after `ready` (small receive buffers, nothing read). Large objects are
written until the transport has cut both stalled clients (its per-connection
byte budget overflowed), then some more.

Asserted:
- every healthy client receives every event, in order, while the stalled ones
  are stalled — within DELIVERY_BOUND seconds of the last write (a bound, not a
  speed: the figures are printed);
- the transport never buffered more than its byte budget (plus one event) for
  any connection (its `/stats`), whatever the stalled clients did;
- when a stalled client reads again, it finds the events sent before the cut,
  in order, then an error frame RESOURCE_EXHAUSTED / SLOW_CONSUMER whose
  `position` is the last event it received — the position to resume from.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from nexxus.devserver.mesh import Mesh
from tests.e2e.conftest import _settings, running_mesh
from tests.edge.conftest import PASSWORD
from tests.edge.rest import Rest

pytestmark = [pytest.mark.edge, pytest.mark.slow, pytest.mark.timeout(600)]

BUDGET = 512 * 1024  # transport.max_buffer_bytes for this test
OBJECT_BYTES = 32 * 1024
WRITERS = 6  # concurrent writes
MAX_WRITES = 2000  # guard: the stalled clients must have been cut before this
AFTER_CUT = 60  # writes after both stalled clients were cut
DELIVERY_BOUND = 60.0  # seconds after the last write by which healthy clients have everything
STEP = 30.0  # bound on single waits (never asserted as a speed)

SCHEMA = {"fields": {"title": {"type": "FIELD_TYPE_STRING"}, "body": {"type": "FIELD_TYPE_STRING"}}}


@pytest.fixture(scope="module")
async def slow_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    settings = _settings("sqlite", Path(tmp_path_factory.mktemp("slow")))
    settings.envoy.port = 0
    settings.envoy.admin_port = 0
    settings.transport.max_buffer_bytes = BUDGET
    settings.transport.close_grace_seconds = 300  # the stalled clients read again late
    settings.transport.heartbeat_seconds = 300
    async with running_mesh(settings, envoy=True) as mesh:
        yield mesh


@dataclass
class Healthy:
    name: str
    got: list[str] = field(default_factory=list)  # object ids, in arrival order
    at: dict[str, float] = field(default_factory=dict)  # object id → arrival time
    errors: list[dict[str, Any]] = field(default_factory=list)

    def on_event(self, event: dict[str, Any]) -> None:
        oid = event["objectId"]
        self.got.append(oid)
        self.at[oid] = time.monotonic()


async def device(user: Rest, app_id: str, name: str) -> Rest:
    """A new device of the user, with a volatile subscription on `doc`."""
    dev = await user.ok("POST", f"/v1/apps/{app_id}/devices", {"name": name})
    token = dev["tokens"]["accessToken"]
    await user.as_(token).ok("POST", f"/v1/apps/{app_id}/subscriptions", {"model": "doc"})
    return user.as_(token)


# --------------------------------------------------------------------------- healthy clients


async def healthy_sse(
    http: aiohttp.ClientSession, url: str, token: str, out: Healthy, ready: asyncio.Event
) -> None:
    headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with http.get(url, headers=headers, timeout=timeout) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            text = line.decode().strip()
            if not text.startswith("data:"):
                continue
            frame = json.loads(text[5:])
            if "ready" in frame:
                ready.set()
            elif "event" in frame:
                out.on_event(frame["event"])
            elif "error" in frame:
                out.errors.append(frame["error"])


async def healthy_ws(url: str, token: str, out: Healthy, ready: asyncio.Event) -> None:
    async with connect(f"{url}?access_token={token}", max_size=None) as ws:
        # A first frame other than `resume` ends the resume window (live events flow at once).
        await ws.send(json.dumps({"id": "p", "ping": {}}))
        async for raw in ws:
            frame = json.loads(raw)
            if "pong" in frame:
                ready.set()
            elif "event" in frame:
                out.on_event(frame["event"])
            elif "error" in frame:
                out.errors.append(frame["error"])


# --------------------------------------------------------------------------- stalled clients


def small_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def stalled_sse(port: int, path: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Opens the stream, reads up to the `ready` frame, then reads nothing more."""
    reader, writer = await asyncio.open_connection(sock=small_socket(port), limit=4096)
    writer.write(
        f"GET {path} HTTP/1.1\r\nhost: edge\r\nauthorization: Bearer {token}\r\n"
        "accept: text/event-stream\r\nconnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
    assert head.startswith(b"HTTP/1.1 200"), head
    first = await asyncio.wait_for(reader.readuntil(b"\n\n\r\n"), STEP)  # a chunk: `data: {ready}`
    assert b'"ready"' in first, first
    return reader, writer


def dechunk(raw: bytes) -> bytes:
    """The payload of a chunked HTTP/1.1 body (as much as is complete)."""
    out = bytearray()
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            return bytes(out)
        size = int(raw[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(out)
        out += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


async def read_stalled_sse(reader: asyncio.StreamReader) -> list[tuple[str, dict[str, Any]]]:
    """Everything the stalled SSE client finds once it reads again: (id, frame) until the end."""
    raw = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), STEP):
            raw += chunk
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        print(f"stalled SSE read ended with {exc!r}")
    print("stalled SSE tail:", raw[-120:])
    body = dechunk(raw)
    frames: list[tuple[str, dict[str, Any]]] = []
    event_id = ""
    for line in body.decode(errors="replace").split("\n"):
        line = line.strip("\r")
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            with contextlib.suppress(ValueError):
                frames.append((event_id, json.loads(line[6:])))
            event_id = ""
    return frames


def ws_client_frame(text: str) -> bytes:
    """A masked text frame (what a WebSocket client sends)."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def ws_server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the next unmasked server frame."""
    b0, b1 = await reader.readexactly(2)
    size = b1 & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(size)


async def stalled_ws(port: int, path: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client on a raw socket: handshake, `ready`, a ping (ends the
    resume window) and its pong, then it reads nothing more."""
    reader, writer = await asyncio.open_connection(sock=small_socket(port), limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path}?access_token={token} HTTP/1.1\r\nhost: edge\r\nupgrade: websocket\r\n"
        f"connection: Upgrade\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
    assert head.startswith(b"HTTP/1.1 101"), head
    _, ready = await asyncio.wait_for(ws_server_frame(reader), STEP)
    assert b'"ready"' in ready, ready
    writer.write(ws_client_frame(json.dumps({"id": "p", "ping": {}})))
    _, pong = await asyncio.wait_for(ws_server_frame(reader), STEP)
    assert b'"pong"' in pong, pong
    return reader, writer


async def read_stalled_ws(reader: asyncio.StreamReader) -> tuple[list[dict[str, Any]], int | None]:
    """The text frames the stalled WebSocket client finds once it reads again, and the close code."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            opcode, payload = await asyncio.wait_for(ws_server_frame(reader), STEP)
            if opcode == 0x8:  # close
                return frames, int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            if opcode == 0x1:
                frames.append(json.loads(payload))
    return frames, None


# --------------------------------------------------------------------------- the test


async def transport_stats(mesh: Mesh, http: aiohttp.ClientSession) -> dict[str, Any]:
    url = f"http://127.0.0.1:{mesh.settings.transport.sse_port}/stats"
    async with http.get(url) as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


def rss_kib(mesh: Mesh) -> int:
    pid = mesh.processes["transport"].pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return (
        f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p95 {p(0.95) * 1000:7.1f} ms  "
        f"p99 {p(0.99) * 1000:7.1f} ms  max {ordered[-1] * 1000:7.1f} ms"
    )


async def test_stalled_sse_and_websocket_clients_do_not_slow_healthy_ones(slow_mesh: Mesh) -> None:
    mesh = slow_mesh
    edge = f"http://127.0.0.1:{mesh.settings.envoy.port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        rest = Rest(http, edge, mesh.settings.operator_key)
        app_id = f"slow-{uuid.uuid4().hex[:8]}"
        await rest.ok("POST", "/v1/apps", {"appId": app_id})
        await rest.ok("PUT", f"/v1/apps/{app_id}/models/doc", SCHEMA)
        await rest.ok("POST", f"/v1/apps/{app_id}/users", {"username": "alice", "password": PASSWORD})
        login = await rest.as_("").ok(
            "POST", f"/v1/apps/{app_id}/auth:login", {"login": "alice", "password": PASSWORD}
        )
        alice = rest.as_(login["tokens"]["accessToken"])
        writer_dev = await device(alice, app_id, "writer")
        sse_path, ws_path = f"/v1/apps/{app_id}/events", f"/v1/apps/{app_id}/ws"

        healthy = [Healthy("sse-1"), Healthy("sse-2"), Healthy("ws-1"), Healthy("ws-2")]
        readies = [asyncio.Event() for _ in healthy]
        tasks = []
        for h, ready in zip(healthy, readies, strict=True):
            token = (await device(alice, app_id, h.name)).token
            if h.name.startswith("sse"):
                tasks.append(asyncio.create_task(healthy_sse(http, edge + sse_path, token, h, ready)))
            else:
                tasks.append(
                    asyncio.create_task(
                        healthy_ws(f"ws://127.0.0.1:{mesh.settings.envoy.port}{ws_path}", token, h, ready)
                    )
                )
        for ready in readies:
            await asyncio.wait_for(ready.wait(), STEP)
        port = mesh.settings.envoy.port
        slow_reader, slow_writer = await stalled_sse(
            port, sse_path, (await device(alice, app_id, "slow-sse")).token
        )
        slow_ws_reader, slow_ws_writer = await stalled_ws(
            port, ws_path, (await device(alice, app_id, "slow-ws")).token
        )
        rss_before = rss_kib(mesh)

        sent: dict[str, float] = {}
        body = "x" * OBJECT_BYTES
        counter = 0

        async def write_one() -> None:
            nonlocal counter
            counter += 1
            oid = f"d{counter:05d}"
            sent[oid] = time.monotonic()
            await writer_dev.ok(
                "POST",
                f"/v1/apps/{app_id}/models/doc/objects",
                {"objectId": oid, "data": {"title": oid, "body": body}, "wait": True},
            )

        async def burst(n: int) -> None:
            for _ in range(n // WRITERS):
                await asyncio.gather(*(write_one() for _ in range(WRITERS)))

        started = time.monotonic()
        try:
            # Write until the transport has cut both stalled clients.
            while (await transport_stats(mesh, http))["slowClosed"] < 2:
                if counter >= MAX_WRITES:
                    stats = await transport_stats(mesh, http)
                    counts = {h.name: len(h.got) for h in healthy}
                    raise AssertionError(f"stalled clients not cut after {counter} writes: {stats} {counts}")
                await burst(WRITERS * 5)
            cut_after = counter
            await burst(AFTER_CUT)
            last_write = time.monotonic()
            everything = sorted(sent)

            async def all_delivered() -> None:
                while any(len(h.got) < len(everything) for h in healthy):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

            try:
                await asyncio.wait_for(all_delivered(), DELIVERY_BOUND)
            except TimeoutError:
                counts = {h.name: (len(h.got), h.errors) for h in healthy}
                stats = await transport_stats(mesh, http)
                raise AssertionError(
                    f"of {len(everything)} events, healthy clients got {counts}; {stats}"
                ) from None
            caught_up = time.monotonic() - last_write
            stats = await transport_stats(mesh, http)
            rss_after = rss_kib(mesh)

            print(
                f"\n{len(everything)} writes of {OBJECT_BYTES // 1024} KiB in {last_write - started:.1f} s; "
                f"both stalled clients cut after {cut_after} writes"
            )
            for h in healthy:
                lat = [h.at[oid] - sent[oid] for oid in everything if oid in h.at]
                print(f"  {h.name}: {len(h.got)} events, write-to-push latency {summary(lat)}")
            print(
                f"  healthy clients complete {caught_up:.2f} s after the last write "
                f"(bound {DELIVERY_BOUND} s)"
            )
            print(
                f"  transport: peak buffer of one connection {stats['peakBufferedBytes']} B "
                f"(budget {BUDGET} B); RSS {rss_before} KiB -> {rss_after} KiB"
            )

            order = healthy[0].got  # the order the router published them in
            for h in healthy:
                assert sorted(h.got) == everything, h.name  # every event, exactly once
                assert h.got == order, h.name  # in the same order on every stream
                assert h.errors == [], h.name
            assert stats["slowClosed"] == 2
            assert stats["peakBufferedBytes"] <= BUDGET + OBJECT_BYTES + 1024

            # The stalled clients read again: what was sent before the cut, then the error frame.
            sse_frames = await read_stalled_sse(slow_reader)
            ws_frames, ws_code = await read_stalled_ws(slow_ws_reader)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            slow_writer.close()
            slow_ws_writer.close()

        events = [(eid, f["event"]) for eid, f in sse_frames if "event" in f]
        assert "error" in sse_frames[-1][1], [list(f) for _, f in sse_frames[-3:]]
        error = sse_frames[-1][1]["error"]
        print(f"  stalled SSE client: {len(events)} events before the cut, then {error['code']}")
        assert error["code"] == "RESOURCE_EXHAUSTED"
        assert error["details"]["reason"] == "SLOW_CONSUMER"
        assert [e["objectId"] for _, e in events] == order[: len(events)]
        assert all(eid == e["position"] for eid, e in events)  # SSE `id:` is the position
        assert error["position"] == (events[-1][1]["position"] if events else "")

        ws_events = [f["event"] for f in ws_frames if "event" in f]
        assert "error" in ws_frames[-1], ([list(f) for f in ws_frames[-3:]], ws_code)
        ws_error = ws_frames[-1]["error"]
        print(f"  stalled WebSocket client: {len(ws_events)} events before the cut, then {ws_error['code']}")
        assert ws_error["code"] == "RESOURCE_EXHAUSTED"
        assert ws_error["details"]["reason"] == "SLOW_CONSUMER"
        assert [e["objectId"] for e in ws_events] == order[: len(ws_events)]
        assert ws_error["position"] == (ws_events[-1]["position"] if ws_events else "")
        assert ws_code == 4429
        assert len(events) < len(everything)
        assert len(ws_events) < len(everything)
