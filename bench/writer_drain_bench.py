"""How fast one writer drains a queued backlog: the writer's own throughput,
without the api, router or transport in the way.

    .venv/bin/python bench/writer_drain_bench.py [--objects 1000] [--updates 9] [--batch 256] [--runs 3]

Starts a nats-server (JetStream) in a temp dir and a SQLite database, queues
`objects` creates and `objects * updates` increments (each object's commands
in order) on the write queue while no writer runs, then starts a WriterService
in this process and times the drain: writes/s, and CPU µs per write of this
process (the writer) and of nats-server. Prints figures, asserts nothing.

Works against the release before per-object ordering too (one write subject
per application): run it from this checkout with PYTHONPATH pointing at the
other release's `services/` to compare the two on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nexxus.adapters.bus.nats import NatsBus  # noqa: E402
from nexxus.adapters.database.sqlite import SqliteDatabase  # noqa: E402
from nexxus.core.config.settings import NatsSettings, SqliteSettings, WriterSettings  # noqa: E402
from nexxus.core.convert import dict_to_struct, py_to_value  # noqa: E402
from nexxus.core.schema_registry import SchemaRegistry  # noqa: E402
from nexxus.devserver.servers import NatsServer  # noqa: E402
from nexxus.v1 import common_pb2, internal_pb2  # noqa: E402
from nexxus.writer.service import WriterService  # noqa: E402

try:
    from nexxus.core.partitions import write_partition

    ORDERED = True
except ImportError:  # the release before per-object ordering
    ORDERED = False

APP = "bench"
MODEL = "task"
SCHEMA = {"name": MODEL, "fields": {"title": {"type": "string"}, "n": {"type": "integer"}}}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _commands(objects: int, updates: int) -> list[internal_pb2.WriteCommand]:
    actor = common_pb2.Actor(user_id="u1", server=True)
    out = []
    for i in range(objects):
        out.append(
            internal_pb2.WriteCommand(
                command_id=f"c-{i}",
                app_id=APP,
                model=MODEL,
                op=internal_pb2.WRITE_OP_CREATE,
                object_id=f"o{i}",
                data=dict_to_struct({"title": f"t{i}", "n": 0}),
                actor=actor,
            )
        )
    inc = common_pb2.JsonPatchOperation(op="increment", path=["n"], value=[py_to_value(1)])
    for u in range(updates):
        for i in range(objects):
            out.append(
                internal_pb2.WriteCommand(
                    command_id=f"u-{u}-{i}",
                    app_id=APP,
                    model=MODEL,
                    op=internal_pb2.WRITE_OP_UPDATE,
                    object_id=f"o{i}",
                    patch=[inc],
                    actor=actor,
                )
            )
    return out


async def one_run(args: argparse.Namespace) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="nexxus-drain-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        await server.start()
        bus = NatsBus(NatsSettings(servers=[server.url]))
        db = SqliteDatabase(SqliteSettings(path="bench.db"), data_dir=tmp)
        await bus.start()
        await db.start()
        await db.put_schema(APP, SCHEMA)
        writer: WriterService | None = None
        try:
            settings = WriterSettings(batch_size=args.batch)
            commands = _commands(args.objects, args.updates)
            items = []
            for cmd in commands:
                if ORDERED:
                    p = write_partition(APP, MODEL, cmd.object_id, settings.partitions)
                    subject = bus.write_subject(APP, p)
                else:
                    subject = bus.write_subject(APP, 0)
                items.append((subject, cmd.SerializeToString(), cmd.command_id))
            for i in range(0, len(items), 1000):
                await bus.publish_many(items[i : i + 1000])
            nats_pid = server.process.pid
            cpu0 = time.process_time()
            nats0 = _cpu_seconds(nats_pid) if nats_pid else 0.0
            t0 = time.monotonic()
            writer = WriterService(settings, bus, db, SchemaRegistry(db))
            await writer.start()
            while writer.applied < len(commands):  # noqa: ASYNC110 (a counter, polled)
                await asyncio.sleep(0.005)
            wall = time.monotonic() - t0
            cpu = time.process_time() - cpu0
            nats_cpu = (_cpu_seconds(nats_pid) - nats0) if nats_pid else 0.0
            obj = await db.get_object(APP, MODEL, "o0")
            if obj is None or obj.data["n"] != args.updates:
                raise RuntimeError(f"o0 holds {obj}, expected n={args.updates}")
            n = len(commands)
            return n / wall, cpu * 1e6 / n, nats_cpu * 1e6 / n
        finally:
            if writer is not None:
                await writer.stop()
            await db.stop()
            await bus.stop()
            await server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=9, help="increments per object after its create")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    variant = "per-object ordered (partitions + leases)" if ORDERED else "one shared consumer"
    total = args.objects * (1 + args.updates)
    print(f"writer drain: {total} queued commands, {args.objects} objects, batch {args.batch}; {variant}")
    results = []
    for run in range(args.runs):
        rate, cpu, nats_cpu = await one_run(args)
        results.append((rate, cpu, nats_cpu))
        print(f"  run {run + 1}: {rate:,.0f} writes/s; CPU µs/write: writer {cpu:,.0f}  nats {nats_cpu:,.0f}")
    med = [statistics.median(r[i] for r in results) for i in range(3)]
    print(f"  median: {med[0]:,.0f} writes/s; CPU µs/write: writer {med[1]:,.0f}  nats {med[2]:,.0f}")


if __name__ == "__main__":
    asyncio.run(main())
