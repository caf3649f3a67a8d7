"""End-to-end write → push throughput and latency of the whole Nexxus mesh.

    /work/venv/bin/python bench/pipeline_bench.py [--quick] [--scenario a,b,c]
        [--writes N] [--concurrency C] [--receivers R] [--writer-procs P]
        [--profile] [--profile-seconds S] [--no-baseline]

Starts a `Mesh` (real nats-server + Valkey, api / writer / router / transport
each in its own process, SQLite) in a temp dir, then per scenario: a fresh
application with a `task` schema, one user with S devices, each device with an
open gRPC event stream carrying one inline subscription. Streams are spread
over R receiver processes; writes (CreateObject wait=False, the send time in
the object's `t` field) come from P writer processes.

  a  S=1 unfiltered, W writes from C concurrent writers: sustained writes/s
     (first write sent → last event received), deliveries/s, every write delivered
  b  S=100 unfiltered: the same at max load, then paced at 100 writes/s:
     write → delivery latency p50/p95/p99
  c  S=1000 each filtering {"status": {"eq": "hot"}}, 10% of writes hot

Baselines in the same run (raw nats-py JetStream → pull → core-NATS round trip
on the same nats-server; a gRPC unary echo) make the figures comparable across
noisy runs: each Nexxus figure is also printed as a ratio to its baseline.
Prints figures, never asserts on them. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import grpc  # noqa: E402
from _baseline import BaseFigures, grpc_echo, grpc_fanout, nats_roundtrip  # noqa: E402
from _sysprof import CpuSnapshot, record, top_frames  # noqa: E402
from _workers import ReceiverStats, WriterStats, receiver_main, writer_main  # noqa: E402

from nexxus.core.config.settings import Settings  # noqa: E402
from nexxus.devserver.mesh import Mesh  # noqa: E402
from tests.e2e.harness import Api  # noqa: E402

OUT = ROOT / "bench" / "out"
MODEL = "task"
SCHEMA = {
    "fields": {
        "title": {"type": "string", "required": True},
        "status": {"type": "string", "filterable": True},
        "points": {"type": "integer"},
        "t": {"type": "number"},  # send time, Unix seconds (latency)
    }
}
HOT = {"status": {"eq": "hot"}}
CTX = mp.get_context("spawn")


# ---------------------------------------------------------------------- plumbing


@dataclass
class Phase:
    name: str
    writes: int
    streams: int
    expected: int  # distinct (stream, object) deliveries expected
    wstats: WriterStats = field(default_factory=WriterStats)
    rstats: list[ReceiverStats] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_wall: float = 0.0
    machine_cpu: float = 0.0  # the whole machine's busy CPU (ours + other users) during the phase
    stalled: bool = False

    @property
    def events(self) -> int:
        return sum(r.events for r in self.rstats)

    @property
    def unique(self) -> int:
        return sum(r.unique for r in self.rstats)

    @property
    def last_delivery(self) -> float:
        return max((r.last for r in self.rstats), default=0.0)

    @property
    def window(self) -> float:
        return max(self.last_delivery - self.wstats.first_send, 1e-9)

    @property
    def writes_per_s(self) -> float:
        return self.wstats.ok / self.window

    @property
    def deliveries_per_s(self) -> float:
        return self.events / self.window

    @property
    def accept_per_s(self) -> float:
        return self.wstats.ok / max(self.wstats.last_ack - self.wstats.first_send, 1e-9)

    def latencies(self) -> list[float]:
        out: list[float] = []
        for r in self.rstats:
            out.extend(r.latencies)
        return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


async def recv(conn: Connection, wait: float = 120) -> Any:
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, conn.poll, wait):
        raise TimeoutError("worker did not answer")
    return conn.recv()


class Receivers:
    """R receiver processes holding the S streams of one application."""

    def __init__(
        self, target: str, app_id: str, tokens: list[str], procs: int, flt: dict[str, Any] | None
    ) -> None:
        self.procs: list[tuple[Any, Connection]] = []
        shares = [tokens[i::procs] for i in range(procs) if tokens[i::procs]]
        for share in shares:
            parent, child = CTX.Pipe()
            p = CTX.Process(
                target=receiver_main, args=(child, target, app_id, MODEL, share, flt), daemon=True
            )
            p.start()
            self.procs.append((p, parent))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self.procs if p.pid is not None]

    async def ready(self) -> int:
        n = 0
        for _, conn in self.procs:
            msg = await recv(conn, 300)
            if msg[0] != "ready":
                raise RuntimeError(f"receiver failed: {msg}")
            n += msg[1]
        return n

    async def ask(self, *cmd: str) -> list[Any]:
        for _, conn in self.procs:
            conn.send(cmd)
        return [await recv(conn) for _, conn in self.procs]

    async def stats(self) -> list[ReceiverStats]:
        return [m[1] for m in await self.ask("stats")]

    async def close(self) -> None:
        for _, conn in self.procs:
            with contextlib.suppress(Exception):
                conn.send(("stop",))
        for p, _ in self.procs:
            await asyncio.get_running_loop().run_in_executor(None, p.join, 10)
            if p.is_alive():
                p.kill()


@dataclass
class Bench:
    mesh: Mesh
    args: argparse.Namespace
    operator: Api
    api_target: str
    events_target: str
    baseline: dict[str, BaseFigures] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)
    profiles: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def service_pids(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for name, proc in self.mesh.processes.items():
            if proc.pid is not None:
                out[name] = [proc.pid]
        for name, server in (("nats", self.mesh.nats), ("valkey", self.mesh.valkey)):
            if server is not None and server.process.pid is not None:
                out[name] = [server.process.pid]
        return out

    async def app_with_devices(self, n: int) -> tuple[str, list[str]]:
        app_id = f"bench-{int(time.time() * 1000) % 10**9}"
        server = self.operator.as_(await self.operator.create_app(app_id))
        await server.put_schema(app_id, MODEL, SCHEMA)
        first = await server.user_with_device(app_id, "bench")
        sem = asyncio.Semaphore(16)

        async def add(i: int) -> str:
            async with sem:
                return (await server.add_device(first, f"dev-{i}")).token

        return app_id, [first.token, *await asyncio.gather(*(add(i) for i in range(1, n)))]

    async def write(
        self,
        app_id: str,
        token: str,
        *,
        start: int,
        count: int,
        rate: float,
        hot_every: int,
        phase: Phase,
        rx: Receivers,
        profile_tag: str | None,
    ) -> None:
        procs = max(1, min(self.args.writer_procs, count))
        conc = max(1, self.args.concurrency // procs)
        writers: list[tuple[Any, Connection]] = []
        base = start
        for k in range(procs):
            n = count // procs + (1 if k < count % procs else 0)
            kw = {
                "start": base,
                "count": n,
                "concurrency": conc,
                "rate": rate / procs,
                "hot_every": hot_every,
            }
            base += n
            parent, child = CTX.Pipe()
            p = CTX.Process(
                target=writer_main, args=(child, self.api_target, app_id, MODEL, token, kw), daemon=True
            )
            p.start()
            writers.append((p, parent))
        for _, conn in writers:
            await recv(conn)
        await rx.ask("reset")
        pids = self.service_pids() | {"receivers": rx.pids, "writers": [p.pid for p, _ in writers if p.pid]}
        cpu0 = CpuSnapshot(pids)
        for _, conn in writers:
            conn.send("go")
        spies: list[tuple[str, Path, Any]] = []
        if profile_tag:
            await asyncio.sleep(self.args.profile_delay)
            for name in ("api", "writer", "router", "transport"):
                proc = self.mesh.processes.get(name)
                if proc is None or proc.pid is None:
                    continue
                out = OUT / f"{profile_tag}-{name}.speedscope.json"
                spy = await record(proc.pid, out, self.args.profile_seconds, gil=self.args.profile_gil)
                if spy is not None:
                    spies.append((name, out, spy))
        results = [await recv(conn, 900) for _, conn in writers]
        for p, _ in writers:
            p.join(5)
        phase.wstats = merge_writer([r[1] for r in results])
        # Drain: poll until every expected delivery arrived or nothing moved for `stall` seconds.
        last_n, last_move, cpu1 = -1, time.monotonic(), CpuSnapshot(pids)
        while True:
            stats = await rx.stats()
            n = sum(s.unique for s in stats)
            if n != last_n:
                last_n, last_move, cpu1 = n, time.monotonic(), CpuSnapshot(pids)
            if n >= phase.expected:
                break
            if time.monotonic() - last_move > self.args.stall:
                phase.stalled = True
                break
            await asyncio.sleep(0.1)
        phase.rstats = stats
        phase.cpu = cpu1.percent_since(cpu0)
        # The writer processes are gone by now: use the CPU time they measured themselves.
        phase.cpu["writers"] = 100.0 * phase.wstats.cpu_seconds / max(cpu1.at - cpu0.at, 1e-9)
        phase.cpu_wall = cpu1.at - cpu0.at
        phase.machine_cpu = cpu1.machine_percent_since(cpu0)
        for name, out, spy in spies:
            _, err = await spy.communicate()
            if spy.returncode == 0 and out.exists():
                self.profiles[f"{profile_tag}/{name}"] = out
            else:
                self.notes.append(f"py-spy {name}: rc={spy.returncode} {err.decode(errors='replace')[-200:]}")

    async def scenario(
        self,
        key: str,
        subs: int,
        flt: dict[str, Any] | None,
        writes: int,
        hot_every: int,
        paced_seconds: float,
    ) -> None:
        t0 = time.monotonic()
        app_id, tokens = await self.app_with_devices(subs)
        procs = 1 if subs == 1 else self.args.receivers
        rx = Receivers(self.events_target, app_id, tokens, procs, flt)
        try:
            opened = await rx.ready()
            setup = time.monotonic() - t0
            per_write = subs  # unfiltered: every write; filtered: every hot write reaches every stream
            # Warm-up: loads the app into the router, opens channels, JIT-free but cache-warm.
            warm = Phase(f"{key}/warmup", 50, opened, 0)
            n_warm_deliv = 50 if hot_every == 0 else len([i for i in range(50) if i % hot_every == 0])
            warm.expected = n_warm_deliv * per_write
            await self.write(
                app_id,
                tokens[0],
                start=10**7,
                count=50,
                rate=0,
                hot_every=hot_every,
                phase=warm,
                rx=rx,
                profile_tag=None,
            )
            maxp = Phase(f"{key}/max", writes, opened, 0)
            hot = writes if hot_every == 0 else len([i for i in range(writes) if i % hot_every == 0])
            maxp.expected = hot * per_write
            await self.write(
                app_id,
                tokens[0],
                start=0,
                count=writes,
                rate=0,
                hot_every=hot_every,
                phase=maxp,
                rx=rx,
                profile_tag=key if self.args.profile else None,
            )
            self.phases[maxp.name] = maxp
            if paced_seconds > 0:
                await asyncio.sleep(1.0)
                n = int(100 * paced_seconds)
                paced = Phase(f"{key}/paced100", n, opened, n * per_write)
                await self.write(
                    app_id,
                    tokens[0],
                    start=2 * 10**7,
                    count=n,
                    rate=100.0,
                    hot_every=hot_every,
                    phase=paced,
                    rx=rx,
                    profile_tag=None,
                )
                self.phases[paced.name] = paced
            print(
                f"  [{key}] S={subs} streams open={opened} setup {setup:.1f}s, "
                f"total {time.monotonic() - t0:.1f}s",
                flush=True,
            )
        finally:
            await rx.close()


def merge_writer(stats: list[WriterStats]) -> WriterStats:
    out = WriterStats()
    for s in stats:
        out.sent += s.sent
        out.ok += s.ok
        for k, v in s.errors.items():
            out.errors[k] = out.errors.get(k, 0) + v
        out.first_send = (
            min(x for x in (out.first_send, s.first_send) if x) if s.first_send else out.first_send
        )
        out.last_ack = max(out.last_ack, s.last_ack)
        out.rpc_latencies.extend(s.rpc_latencies)
        out.cpu_seconds += s.cpu_seconds
    return out


# ---------------------------------------------------------------------- report


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    if value != value:  # nan
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    ratio = value / target if higher_is_better else target / max(value, 1e-12)
    return f"MET ({ratio:.2f}x)" if ok else f"MISSED ({ratio:.2f}x of target)"


def report(b: Bench, argv: list[str]) -> None:
    base = b.baseline
    nats_rate = base["nats"].rate if "nats" in base else float("nan")
    nats_p50 = pct(base["nats_paced"].latencies, 50) if "nats_paced" in base else float("nan")
    echo_rate = base["echo"].rate if "echo" in base else float("nan")
    fan_rate = base["fanout"].rate if "fanout" in base else float("nan")
    print("\n=== pipeline_bench", " ".join(argv))
    print(f"machine: {mp.cpu_count()} cores; 1-min load before run: {b.notes[0] if b.notes else '?'}")
    if base:
        print("\n--- baselines (same run, same nats-server)")
        print(
            f"  nats JS publish→pull→core republish→subscriber: {nats_rate:,.0f} msgs/s "
            f"(closed loop, C={b.args.concurrency})"
        )
        if "nats_paced" in base:
            lat = base["nats_paced"].latencies
            print(
                f"  same at 100 msg/s paced: p50 {ms(pct(lat, 50))} p95 {ms(pct(lat, 95))} "
                f"p99 {ms(pct(lat, 99))}"
            )
        print(f"  gRPC unary echo (1 client proc, 1 server proc): {echo_rate:,.0f} calls/s")
        if "fanout" in base:
            print(
                f"  gRPC server-streaming fan-out, 100 streams, 1 msg per event (1 server + 1 client proc): "
                f"{base['fanout'].rate:,.0f} msgs/s; {b.notes[1] if len(b.notes) > 1 else ''}"
            )

    def rel(v: float, ref: float) -> str:
        return f"{v / ref:.3f}x" if ref == ref and ref > 0 else "-"

    rows: list[tuple[str, str, str, str, str]] = []
    for name, ph in b.phases.items():
        print(f"\n--- {name}: {ph.writes} writes, {ph.streams} streams, C={b.args.concurrency}")
        w = ph.wstats
        errs = f", errors {w.errors}" if w.errors else ""
        print(
            f"  writes ok {w.ok}/{w.sent}{errs}; api accepted {ph.accept_per_s:,.0f}/s "
            f"(rpc p50 {ms(pct(w.rpc_latencies, 50))}, p99 {ms(pct(w.rpc_latencies, 99))})"
        )
        print(
            f"  end to end (first write → last delivery {ph.window:.2f}s): {ph.writes_per_s:,.0f} writes/s, "
            f"{ph.deliveries_per_s:,.0f} deliveries/s"
        )
        dups = ph.events - ph.unique
        print(
            f"  delivered {ph.unique}/{ph.expected} distinct (stream, object) pairs"
            f"{' — STALLED' if ph.stalled else ''}; duplicates {dups}"
        )
        lat = ph.latencies()
        print(
            f"  write→delivery latency: p50 {ms(pct(lat, 50))} p95 {ms(pct(lat, 95))} p99 {ms(pct(lat, 99))} "
            f"max {ms(max(lat) if lat else float('nan'))} (n={len(lat)})"
        )
        cpu = "  ".join(f"{k} {v:.0f}%" for k, v in sorted(ph.cpu.items(), key=lambda kv: -kv[1]))
        total = sum(ph.cpu.values())
        print(f"  CPU (100% = one core): {cpu}")
        print(
            f"  CPU total: bench+mesh {total:.0f}%, whole machine {ph.machine_cpu:.0f}% "
            f"of {100 * mp.cpu_count()}% "
            f"(others ≈ {max(ph.machine_cpu - total, 0):.0f}%)"
        )
        per = "  ".join(
            f"{k} {v / 100 * ph.cpu_wall / max(w.ok, 1) * 1e6:,.0f}"
            for k, v in sorted(ph.cpu.items(), key=lambda kv: -kv[1])
        )
        print(f"  CPU µs per write: {per}")
        errors = [e for r in ph.rstats for e in r.errors]
        if errors:
            print(f"  receiver errors: {errors[:3]}")
        scen = name.split("/")[0]
        if name.endswith("/max"):
            complete = "all" if ph.unique >= ph.expected else f"{ph.unique}/{ph.expected}"
            if scen == "a":
                rows.append(
                    (
                        "a S=1 writes/s",
                        f"{ph.writes_per_s:,.0f}",
                        ">= 2,000",
                        verdict(ph.writes_per_s, 2000),
                        rel(ph.writes_per_s, nats_rate),
                    )
                )
                rows.append(
                    (
                        "a every write delivered",
                        complete,
                        "all",
                        "MET" if ph.unique >= ph.expected and not w.errors else "MISSED",
                        "-",
                    )
                )
            elif scen == "b":
                rows.append(
                    (
                        "b S=100 writes/s",
                        f"{ph.writes_per_s:,.0f}",
                        ">= 700",
                        verdict(ph.writes_per_s, 700),
                        rel(ph.writes_per_s, nats_rate),
                    )
                )
                rows.append(
                    (
                        "b S=100 deliveries/s",
                        f"{ph.deliveries_per_s:,.0f}",
                        ">= 70,000",
                        verdict(ph.deliveries_per_s, 70000),
                        rel(ph.deliveries_per_s, fan_rate),
                    )
                )
            elif scen == "c":
                rows.append(
                    (
                        "c S=1000 10% filter writes/s",
                        f"{ph.writes_per_s:,.0f}",
                        ">= 500",
                        verdict(ph.writes_per_s, 500),
                        rel(ph.writes_per_s, nats_rate),
                    )
                )
                rows.append(
                    (
                        "c deliveries/s",
                        f"{ph.deliveries_per_s:,.0f}",
                        "(50,000 at 500 w/s)",
                        verdict(ph.deliveries_per_s, 50000),
                        rel(ph.deliveries_per_s, fan_rate),
                    )
                )
        elif name.endswith("/paced100"):
            p50, p99 = pct(lat, 50), pct(lat, 99)
            if scen == "a":
                rows.append(("a paced 100 w/s p50 (S=1)", ms(p50), "-", "-", rel(p50, nats_p50)))
                rows.append(("a paced 100 w/s p99 (S=1)", ms(p99), "-", "-", rel(p99, nats_p50)))
                continue
            rows.append(
                ("b paced 100 w/s p50", ms(p50), "<= 5 ms", verdict(p50, 0.005, False), rel(p50, nats_p50))
            )
            rows.append(("b paced 100 w/s p95", ms(pct(lat, 95)), "-", "-", rel(pct(lat, 95), nats_p50)))
            rows.append(
                ("b paced 100 w/s p99", ms(p99), "<= 15 ms", verdict(p99, 0.015, False), rel(p99, nats_p50))
            )
    if b.profiles:
        print("\n--- profiles (py-spy, % of non-idle samples; files under bench/out/)")
        for key, path in b.profiles.items():
            total, selfs, incl = top_frames(path, b.args.top)
            cpu = b.phases.get(f"{key.split('/')[0]}/max")
            busy = cpu.cpu.get(key.split("/")[1], float("nan")) if cpu else float("nan")
            rel_path = path.relative_to(ROOT)
            print(f"  {key}: {total:.1f}s sampled, CPU {busy:.0f}% during the phase  ({rel_path})")
            print("    self:      " + "\n               ".join(f"{v:5.1f}%  {k}" for k, v in selfs))
            print("    inclusive: " + "\n               ".join(f"{v:5.1f}%  {k}" for k, v in incl))
    for note in b.notes[2 if "fanout" in base else 1 :]:
        print(f"  note: {note}")
    if rows:
        print(
            "\n--- figures vs targets (/base: writes/s ÷ nats round trip msgs/s, deliveries/s ÷ gRPC fan-out "
            "msgs/s, latency ÷ nats paced p50; same run)"
        )
        print(f"  {'figure':32} {'value':>12}  {'target':>20}  {'verdict':26} {'/base':>8}")
        for r in rows:
            print(f"  {r[0]:32} {r[1]:>12}  {r[2]:>20}  {r[3]:26} {r[4]:>8}")


# ---------------------------------------------------------------------- main


def settings_for(data_dir: Path, log_level: str) -> Settings:
    s = Settings()
    s.data_dir = str(data_dir)
    s.api.port = 0
    s.transport.grpc_port = 0
    s.transport.ws_port = 0
    s.transport.heartbeat_seconds = 30
    s.transport.max_buffer_bytes = 256 * 1024 * 1024
    s.logging.level = log_level
    return s


async def amain(args: argparse.Namespace, argv: list[str]) -> None:
    load = Path("/proc/loadavg").read_text().split()[0]  # noqa: ASYNC240
    with tempfile.TemporaryDirectory(prefix="nexxus-bench-") as tmp:
        mesh = Mesh(settings_for(Path(tmp), args.log_level))
        try:
            t0 = time.monotonic()
            await mesh.start()
            s = mesh.settings
            print(
                f"mesh up in {time.monotonic() - t0:.1f}s: {mesh.summary()['api (gRPC)']} / "
                f"{mesh.summary()['events (gRPC stream)']} / {mesh.summary()['nats']}",
                flush=True,
            )
            async with grpc.aio.insecure_channel(f"127.0.0.1:{s.api.port}") as ch:
                b = Bench(
                    mesh,
                    args,
                    Api(ch, s.operator_key),
                    f"127.0.0.1:{s.api.port}",
                    f"127.0.0.1:{s.transport.grpc_port}",
                    notes=[load],
                )
                if not args.no_baseline:
                    n = 2000 if args.quick else 5000
                    closed, paced = await nats_roundtrip(
                        s.bus.nats.servers[0], n, args.concurrency, 100.0, 3.0 if args.quick else 5.0
                    )
                    b.baseline["nats"], b.baseline["nats_paced"] = closed, paced
                    b.baseline["echo"] = await grpc_echo(n, args.concurrency)
                    fan, fan_us = await grpc_fanout(100, 150 if args.quick else 400)
                    b.baseline["fanout"] = fan
                    b.notes.append(f"gRPC fan-out baseline: server CPU {fan_us:.1f} µs per streamed message")
                    print(
                        f"  baselines: nats {closed.rate:,.0f} msgs/s, "
                        f"echo {b.baseline['echo'].rate:,.0f} calls/s",
                        flush=True,
                    )
                scen = set(args.scenario.split(","))
                q = args.quick
                if "a" in scen:
                    await b.scenario("a", 1, None, args.writes or (2000 if q else 5000), 0, 3 if q else 5)
                if "b" in scen:
                    await b.scenario(
                        "b",
                        args.subs_b,
                        None,
                        args.writes or (500 if q else 2000),
                        0,
                        args.paced_seconds or (5 if q else 15),
                    )
                if "c" in scen:
                    await b.scenario("c", args.subs_c, HOT, args.writes or (1000 if q else 3000), 10, 0)
            report(b, argv)
        finally:
            await mesh.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer writes (about 1-2 minutes)")
    p.add_argument("--scenario", default="a,b,c", help="comma list of a, b, c")
    p.add_argument(
        "--writes", type=int, default=0, help="writes of the max-load phase (default per scenario)"
    )
    p.add_argument("--concurrency", type=int, default=32, help="concurrent writers (closed loop)")
    p.add_argument("--writer-procs", type=int, default=1, help="processes the writers are spread over")
    p.add_argument("--receivers", type=int, default=2, help="receiver processes for S>1")
    p.add_argument("--subs-b", type=int, default=100)
    p.add_argument("--subs-c", type=int, default=1000)
    p.add_argument("--paced-seconds", type=float, default=0, help="duration of the 100 writes/s phase of b")
    p.add_argument("--stall", type=float, default=10.0, help="give up draining after this many idle seconds")
    p.add_argument("--profile", action="store_true", help="py-spy the services during each max-load phase")
    p.add_argument("--profile-seconds", type=float, default=5.0)
    p.add_argument("--profile-gil", action="store_true", help="py-spy --gil: only the GIL holder's samples")
    p.add_argument("--profile-delay", type=float, default=0.5)
    p.add_argument("--top", type=int, default=8, help="frames printed per profile")
    p.add_argument("--log-level", default="INFO", help="services' log level (INFO as in production)")
    p.add_argument("--no-baseline", action="store_true")
    args = p.parse_args()
    asyncio.run(amain(args, sys.argv[1:]))


if __name__ == "__main__":
    main()
