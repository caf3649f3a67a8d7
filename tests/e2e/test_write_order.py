"""The write promise under faults, on the real stack: every acknowledged write is
applied exactly once, in per-object order, through kill -9 of writers (in the
middle of a batch: fetched, not yet acked) and with two writer copies.

Load: a handful of objects; per object one task replacing `seq` with 1, 2, 3…
(in order, one at a time) while other tasks increment `n` concurrently. At the
end, for every object: `n` = the acknowledged increments, `seq` = the last
acknowledged replace, version = 1 + acknowledged updates; every acknowledged
operation is DONE; the event stream holds each operation exactly once with
versions 1, 2, 3… and `seq` never going back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from nexxus.adapters.bus.nats import NatsBus
from nexxus.core.config.settings import Settings
from nexxus.devserver.mesh import Mesh
from nexxus.v1 import objects_pb2
from nexxus.v1.internal_pb2 import ModelEvent
from tests.e2e.conftest import BACKENDS, _settings, backend_dsn, new_app_id, running_mesh
from tests.e2e.harness import Api, patch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "counter"
SCHEMA = {"fields": {"n": {"type": "integer"}, "seq": {"type": "integer"}}}
OBJECTS = [f"o{i}" for i in range(4)]
INCREMENTERS = 6
# Draining the backlog built up while writers were down (a slow, shared machine).
CONVERGE_SECONDS = 120.0
# A dead copy's partitions are taken over within a few seconds (lease ttl 2 s in
# these tests), well before JetStream's 30 s ack wait would redeliver anything.
TAKEOVER_SECONDS = 15.0


@dataclass
class Ledger:
    """What the api acknowledged."""

    increments: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_seq: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    updates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    operations: list[str] = field(default_factory=list)


async def _load(api: Api, app_id: str, ledger: Ledger, stop: asyncio.Event) -> None:
    async def replacer(oid: str) -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            r = await api.update(app_id, MODEL, oid, [patch("replace", ["seq"], [seq])], wait=False)
            ledger.last_seq[oid] = seq
            ledger.updates[oid] += 1
            ledger.operations.append(r.operation.operation_id)

    async def incrementer(rng: random.Random) -> None:
        while not stop.is_set():
            oid = rng.choice(OBJECTS)
            r = await api.update(app_id, MODEL, oid, [patch("increment", ["n"], [1])], wait=False)
            ledger.increments[oid] += 1
            ledger.updates[oid] += 1
            ledger.operations.append(r.operation.operation_id)

    tasks = [replacer(oid) for oid in OBJECTS]
    tasks += [incrementer(random.Random(i)) for i in range(INCREMENTERS)]
    await asyncio.gather(*tasks)


async def _partition_keys(kv: KeyValue) -> list[str]:
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return []
    return [k for k in keys if k.startswith("partition.")]


async def _partition_holders(kv: KeyValue) -> dict[str, str]:
    """partition key → holder, for the leases held right now."""
    out = {}
    for key in await _partition_keys(kv):
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            continue  # expired since it was listed
        out[key] = (entry.value or b"").decode()
    return out


def _holder_of(pid: int | None) -> str:
    return f"-{pid}-"


async def _kill_mid_batch(mesh: Mesh, name: str, js: JetStreamContext, stream: str, bucket: str) -> bool:
    """kill -9 the writer `name` at a moment when one of its partitions has
    messages fetched but not acked (True), or after a few seconds anyway (False)."""
    proc = mesh.processes[name]
    kv = await js.key_value(bucket)
    deadline = time.monotonic() + 5.0
    caught = False
    while time.monotonic() < deadline and not caught:
        mine: set[str] = set()
        for key, holder in (await _partition_holders(kv)).items():
            if _holder_of(proc.pid) in holder:
                mine.add("." + key.split(".", 1)[1])
        for info in await js.consumers_info(stream):
            partition = "." + (info.config.filter_subject or "").rsplit(".", 1)[-1]
            if info.num_ack_pending and partition in mine:
                caught = True
                break
        else:
            await asyncio.sleep(0.002)
    await proc.kill()
    return caught


async def _wait_for(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.2)


async def _verify(api: Api, mesh: Mesh, app_id: str, ledger: Ledger) -> None:
    progress: dict[str, tuple[int, int]] = {}

    async def converged() -> bool:
        for oid in OBJECTS:
            got = await api.objects.GetObject(
                objects_pb2.GetObjectRequest(app_id=app_id, model=MODEL, object_id=oid), metadata=api.md
            )
            progress[oid] = (got.object.version, 1 + ledger.updates[oid])
        return all(have >= want for have, want in progress.values())

    try:
        await _wait_for(converged, CONVERGE_SECONDS, "every acknowledged update applied")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; (version, expected) per object: {progress}") from None
    for oid in OBJECTS:
        got = await api.objects.GetObject(
            objects_pb2.GetObjectRequest(app_id=app_id, model=MODEL, object_id=oid), metadata=api.md
        )
        data = dict(got.object.data)
        assert got.object.version == 1 + ledger.updates[oid], oid
        assert data.get("n", 0) == ledger.increments[oid], oid
        assert data.get("seq", 0) == ledger.last_seq[oid], oid

    sem = asyncio.Semaphore(32)

    async def state(op_id: str) -> int:
        async with sem:
            r = await api.objects.GetOperation(
                objects_pb2.GetOperationRequest(app_id=app_id, operation_id=op_id), metadata=api.md
            )
            return r.operation.state

    states = await asyncio.gather(*(state(op) for op in ledger.operations))
    assert set(states) == {objects_pb2.Operation.STATE_DONE}

    # The event stream: each operation once; versions 1, 2, 3… per object; seq never goes back.
    bus = NatsBus(mesh.settings.bus.nats)
    nc = await nats.connect(mesh.settings.bus.nats.servers)
    try:
        js = nc.jetstream()
        expected = len(OBJECTS) + len(ledger.operations)
        events: list[ModelEvent] = []
        done = asyncio.Event()

        async def on_event(msg: nats.aio.msg.Msg) -> None:
            events.append(ModelEvent.FromString(msg.data))
            if len(events) >= expected:
                done.set()

        sub = await js.subscribe(bus.subjects.events(app_id, MODEL), cb=on_event, ordered_consumer=True)
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.sleep(0.5)  # nothing beyond the expected count may follow
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert len(events) == expected
    ids = [e.command_id for e in events]
    assert len(set(ids)) == len(ids), "an operation was applied (published) twice"
    assert set(ledger.operations) <= set(ids)
    per_object: dict[str, list[ModelEvent]] = defaultdict(list)
    for e in events:
        per_object[e.object_id].append(e)
    for oid in OBJECTS:
        versions = [e.version for e in per_object[oid]]
        assert versions == list(range(1, len(versions) + 1)), oid
        seqs = [int(e.after.data["seq"]) for e in per_object[oid] if "seq" in e.after.data]
        assert seqs == sorted(seqs), f"{oid}: a replace was applied after a later one"


async def _app(mesh: Mesh) -> tuple[str, Api, grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}")
    operator = Api(channel, mesh.settings.operator_key)
    app_id = new_app_id()
    server = operator.as_(await operator.create_app(app_id))
    await server.put_schema(app_id, MODEL, SCHEMA)
    for oid in OBJECTS:
        await server.create(app_id, MODEL, {"n": 0, "seq": 0}, object_id=oid)
    return app_id, server, channel


def _fault_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    s = _settings(backend, tmp_path / "mesh", backend_dsn(request, backend))
    s.writer.lease_ttl_seconds = 2.0
    s.writer.batch_size = 64
    return s


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_9_of_the_writer_mid_batch_loses_and_reorders_nothing(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    settings = _fault_settings(request, backend, tmp_path)
    async with running_mesh(settings) as mesh:
        app_id, api, channel = await _app(mesh)
        bus = NatsBus(mesh.settings.bus.nats)
        nc = await nats.connect(mesh.settings.bus.nats.servers)
        ledger = Ledger()
        stop = asyncio.Event()
        caught = []
        try:
            js = nc.jetstream()
            stream = bus.stream_names["writes"]
            bucket = f"{mesh.settings.bus.nats.stream_prefix}_WRITER_LEASES"
            load = asyncio.create_task(_load(api, app_id, ledger, stop))
            rng = random.Random(8)
            for _ in range(3):
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                caught.append(await _kill_mid_batch(mesh, "writer", js, stream, bucket))
                await asyncio.sleep(rng.uniform(0.0, 0.8))  # writes keep coming meanwhile
                await mesh.start_service("writer")
            await asyncio.sleep(1.0)
            stop.set()
            await load
            await _verify(api, mesh, app_id, ledger)
        finally:
            stop.set()
            await nc.close()
            await channel.close()
    assert any(caught), "no kill landed between a fetch and its ack"
    assert len(ledger.operations) > 100


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_writer_copies_one_killed_mid_batch(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    settings = _fault_settings(request, backend, tmp_path)
    async with running_mesh(settings) as mesh:
        await mesh.start_service("writer@2")
        app_id, api, channel = await _app(mesh)
        bus = NatsBus(mesh.settings.bus.nats)
        nc = await nats.connect(mesh.settings.bus.nats.servers)
        ledger = Ledger()
        stop = asyncio.Event()
        try:
            js = nc.jetstream()
            stream = bus.stream_names["writes"]
            bucket = f"{mesh.settings.bus.nats.stream_prefix}_WRITER_LEASES"
            kv = await js.key_value(bucket)

            async def holders() -> dict[str, str]:
                return await _partition_holders(kv)

            async def both_hold_partitions() -> bool:
                return len({h.rsplit("-", 1)[0] for h in (await holders()).values()}) == 2

            await _wait_for(both_hold_partitions, 20, "the two copies split the partitions")
            load = asyncio.create_task(_load(api, app_id, ledger, stop))
            await asyncio.sleep(1.0)
            survivor = _holder_of(mesh.processes["writer"].pid)
            caught = await _kill_mid_batch(mesh, "writer@2", js, stream, bucket)

            async def survivor_holds_all() -> bool:
                held = await holders()
                partitions = mesh.settings.writer.partitions
                return len(held) == partitions and all(survivor in h for h in held.values())

            await _wait_for(survivor_holds_all, TAKEOVER_SECONDS, "the survivor took every partition over")
            await mesh.start_service("writer@2")  # and gives some back to the new copy
            await asyncio.sleep(2.0)
            stop.set()
            await load
            await _verify(api, mesh, app_id, ledger)
            await _wait_for(both_hold_partitions, 20, "the restarted copy holds partitions again")
        finally:
            stop.set()
            await nc.close()
            await channel.close()
    assert caught, "the kill did not land between a fetch and its ack"
