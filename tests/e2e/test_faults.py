"""`kill -9` during a burst of writes — of the transport, of the router, of
nats-server — with subscribers over gRPC (straight to the transport),
WebSocket and SSE (through Envoy) that resume from their last position the
way docs/delivery.md tells a client to, and the Python client (which resumes
by itself). The fault strikes while writes are in flight (the burst goes on
while the process is down and restarting). Afterwards every client has every
event exactly once, in per-object version order. And a client away for longer
than the history's retention gets a gap and a snapshot equal to a search.

A write refused while something is down is retried; one whose answer was lost
may have been applied too, so an object may end with an extra version: the
check is that each client saw versions 1..N of each object, once each and in
that order, N being at least the version the database holds at the end.

Each test runs its own mesh (services in their own processes), so killing
things does not disturb the other end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from nexxus.core.config.settings import Settings
from nexxus.devserver.mesh import Mesh
from nexxus.v1 import events_pb2, objects_pb2, subscriptions_pb2
from tests.e2e.conftest import _settings, new_app_id, running_mesh
from tests.e2e.harness import Api, User, patch
from tests.e2e.resume_client import GrpcClient, Replica, SseClient, WsClient, until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from nexxus_client import NexxusClient
from nexxus_client import v1 as client_v1

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TASK = {"fields": {"title": {"type": "string"}, "n": {"type": "integer", "filterable": True}}}
OBJECTS = 8
ROUNDS = 25
# Guards against a hang only.
SETTLE = 120.0


class Follower:
    """A client that stays subscribed: reconnects and resumes from its
    position until told to stop."""

    def __init__(self, name: str, connect: Callable[[Replica], contextlib.AbstractAsyncContextManager[Any]]):
        self.name = name
        self.replica = Replica()
        self.connect = connect
        self.connections = 0
        self.changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"follower-{self.name}")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                async with self.connect(self.replica) as ended:
                    self.connections += 1
                    self.changed.set()
                    stop = asyncio.create_task(self._stop.wait())
                    done = asyncio.create_task(ended.wait())
                    await asyncio.wait({stop, done}, return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    done.cancel()
            except (OSError, TimeoutError, grpc.aio.AioRpcError, Exception):
                pass
            if not self._stop.is_set():
                await asyncio.sleep(0.3)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)


def grpc_follower(channel: grpc.aio.Channel, app_id: str, token: str) -> Follower:
    follower: Follower

    @contextlib.asynccontextmanager
    async def connect(replica: Replica) -> AsyncIterator[asyncio.Event]:
        client = GrpcClient(channel, app_id, token, replica)
        client.changed = follower.changed
        readies = len(replica.ready)
        async with client.stream(resume_from=replica.position):
            if len(replica.ready) == readies or client.ended.is_set():
                raise ConnectionError("stream ended before ready")
            yield client.ended

    follower = Follower("grpc", connect)
    return follower


def ws_follower(url: str, app_id: str, token: str) -> Follower:
    follower: Follower

    @contextlib.asynccontextmanager
    async def connect(replica: Replica) -> AsyncIterator[asyncio.Event]:
        client = WsClient(url, app_id, token, replica)
        client.changed = follower.changed
        query = f"&resume_from={replica.position}" if replica.position else ""
        readies = len(replica.ready)
        async with client.stream(query=query):
            if len(replica.ready) == readies or client.ended.is_set():
                raise ConnectionError("socket ended before ready")
            yield client.ended

    follower = Follower("ws", connect)
    return follower


def sse_follower(url: str, app_id: str, token: str) -> Follower:
    follower: Follower

    @contextlib.asynccontextmanager
    async def connect(replica: Replica) -> AsyncIterator[asyncio.Event]:
        client = SseClient(url, app_id, token, replica)
        client.changed = follower.changed
        readies = len(replica.ready)
        async with client.stream(last_event_id=replica.position):
            if len(replica.ready) == readies or client.ended.is_set():
                raise ConnectionError("stream ended before ready")
            yield client.ended

    follower = Follower("sse", connect)
    return follower


class PythonClientFollower:
    """The Python client's own event stream (it reconnects and resumes by
    itself), feeding a Replica like the other followers."""

    def __init__(self, client: NexxusClient) -> None:
        self.name = "python"
        self.client = client
        self.replica = Replica()
        self.changed = asyncio.Event()
        self.stream = client.subscribe("task", heartbeat_seconds=2)
        self._task: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        return self.stream.connections

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="follower-python")

    async def _run(self) -> None:
        async for item in self.stream:
            if isinstance(item, client_v1.Event):
                self.replica.apply(
                    events_pb2.StreamEventsResponse(event=events_pb2.Event.FromString(bytes(item)))
                )
            elif isinstance(item, client_v1.Gap):
                self.replica.gaps.append(events_pb2.Gap.FromString(bytes(item)))
            self.changed.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.stream.aclose()


async def _app(api_channel: grpc.aio.Channel, mesh: Mesh) -> tuple[str, Api, User, User, User, User]:
    operator = Api(api_channel, mesh.settings.operator_key)
    app_id = new_app_id()
    server = operator.as_(await operator.create_app(app_id))
    await server.put_schema(app_id, "task", TASK)
    phone = await server.user_with_device(app_id, "pat")
    browser = await server.user_with_device(app_id, "sam")
    tab = await server.add_device(browser, "tab")
    for user in (phone, browser, tab):
        await server.as_(user.token).subscribe(app_id, "task", persistent=True)
    # The Python client makes its subscription inline, on every connection.
    script = await server.user_with_device(app_id, "kim")
    return app_id, server, phone, browser, tab, script


async def _burst(api: Api, app_id: str, fault: Callable[[], Awaitable[None]]) -> None:
    """OBJECTS objects, then ROUNDS updates of each; the fault strikes a third of
    the way, while that round's writes are in flight, and the burst goes on
    meanwhile. Writes refused while something is down are retried later (a
    refused write was not accepted; one whose answer was lost may have been)."""

    async def attempt(call: Callable[[], Awaitable[Any]]) -> None:
        for _ in range(200):
            try:
                await call()
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        raise AssertionError("the api refused a write for too long")

    for i in range(OBJECTS):
        await attempt(lambda i=i: api.create(app_id, "task", {"title": "new", "n": 0}, object_id=f"o{i}"))
    striking: asyncio.Future[None] | None = None
    for r in range(1, ROUNDS + 1):
        if r == ROUNDS // 3:
            striking = asyncio.ensure_future(fault())
        await asyncio.gather(
            *(
                attempt(
                    lambda i=i, r=r: api.update(
                        app_id, "task", f"o{i}", [patch("replace", ["n"], [r])], wait=False
                    )
                )
                for i in range(OBJECTS)
            )
        )
    assert striking is not None
    await striking


async def _final_versions(api: Api, app_id: str) -> dict[str, int]:
    page = await api.objects.SearchObjects(
        objects_pb2.SearchObjectsRequest(app_id=app_id, model="task", page_size=1000), metadata=api.md
    )
    return {o.id: o.version for o in page.objects}


async def _settled(api: Api, app_id: str, followers: list[Follower | PythonClientFollower]) -> dict[str, int]:
    """Wait until the writes are all applied and every follower saw the last version of every object."""
    final: dict[str, int] = {}
    try:
        async with asyncio.timeout(SETTLE):
            while True:
                final = await _final_versions(api, app_id)
                done = len(final) == OBJECTS and all(
                    all(f.replica.versions.get(oid) == v for oid, v in final.items()) for f in followers
                )
                if done and all(v >= ROUNDS + 1 for v in final.values()):
                    return final
                await asyncio.sleep(0.3)
    except TimeoutError:
        state = {
            f.name: (
                f.connections,
                len(f.replica.events),
                f.replica.versions,
                [e.code for e in f.replica.errors],
            )
            for f in followers
        }
        raise AssertionError(f"not settled: final {final}; followers {state}") from None


def _check_exactly_once_in_order(follower: Follower | PythonClientFollower, final: dict[str, int]) -> None:
    events = follower.replica.events
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), f"{follower.name}: duplicate events"
    per_object: dict[str, list[int]] = {}
    for e in events:
        per_object.setdefault(e.object_id, []).append(e.version)
    for oid, version in final.items():
        seen = per_object.get(oid, [])
        # 1..N once each, in order; N >= the final version (a write applied after
        # the final read may have arrived too).
        assert seen == list(range(1, len(seen) + 1)), f"{follower.name}: {oid}: {seen}"
        assert len(seen) >= version, f"{follower.name}: {oid}: {seen}, final version {version}"
    assert not follower.replica.gaps, f"{follower.name}: unexpected gap"


@contextlib.asynccontextmanager
async def _stack(tmp_path: Path, configure: Callable[[Settings], None] | None = None) -> AsyncIterator[Mesh]:
    settings = _settings("sqlite", tmp_path / "mesh")
    settings.envoy.port = 0
    settings.envoy.admin_port = 0
    if configure is not None:
        configure(settings)
    async with running_mesh(settings, envoy=True) as mesh:
        yield mesh


async def _run_fault(
    tmp_path: Path,
    fault_of: Callable[[Mesh], Callable[[], Awaitable[None]]],
    configure: Callable[[Settings], None] | None = None,
) -> list[Follower | PythonClientFollower]:
    async with _stack(tmp_path, configure) as mesh:
        s = mesh.settings
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{s.api.port}") as api_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{s.transport.grpc_port}") as events_channel,
        ):
            app_id, server, phone, browser, tab, script = await _app(api_channel, mesh)
            client = NexxusClient(
                "127.0.0.1", s.api.port, app_id, script.token, events_port=s.transport.grpc_port
            )
            python = PythonClientFollower(client)
            followers: list[Follower | PythonClientFollower] = [
                grpc_follower(events_channel, app_id, phone.token),
                ws_follower(f"ws://127.0.0.1:{s.envoy.port}", app_id, browser.token),
                sse_follower(f"http://127.0.0.1:{s.envoy.port}", app_id, tab.token),
            ]
            try:
                followers.append(python)
                for f in followers:
                    f.start()
                for f in followers:
                    await until(lambda f=f: f.connections > 0, f.changed)
                await _burst(server, app_id, fault_of(mesh))
                final = await _settled(server, app_id, followers)
            finally:
                for f in followers:
                    await f.stop()
                await client.close()
            for f in followers:
                _check_exactly_once_in_order(f, final)
            print(
                "\n".join(
                    f"{f.name}: {len(f.replica.events)} events over {f.connections} connections, "
                    f"{sum(r.replayed for r in f.replica.resumed)} replayed"
                    for f in followers
                )
            )
    return followers


async def test_kill_transport_during_a_burst(tmp_path: Path) -> None:
    def fault(mesh: Mesh) -> Callable[[], Awaitable[None]]:
        async def strike() -> None:
            await mesh.processes["transport"].kill()
            await mesh.start_service("transport")

        return strike

    await _run_fault(tmp_path, fault)


async def test_kill_router_during_a_burst(tmp_path: Path) -> None:
    def fault(mesh: Mesh) -> Callable[[], Awaitable[None]]:
        async def strike() -> None:
            await mesh.processes["router"].kill()
            await mesh.start_service("router")

        return strike

    await _run_fault(tmp_path, fault)


async def test_kill_nats_server_during_a_burst(tmp_path: Path) -> None:
    def fault(mesh: Mesh) -> Callable[[], Awaitable[None]]:
        async def strike() -> None:
            assert mesh.nats is not None
            await mesh.nats.kill()
            await mesh.nats.restart()

        return strike

    await _run_fault(tmp_path, fault)


async def test_a_transport_that_fell_behind_its_deliveries_makes_its_clients_resume(tmp_path: Path) -> None:
    """The transport is frozen (SIGSTOP) for a few seconds during the burst,
    with a DELIVERIES stream of 8 KiB: its unread deliveries are discarded by
    the stream's limits. When it runs again its reader notices the loss and the
    node closes its connections (DELIVERIES_LOST, with their positions); the
    clients resume and the history fills the hole: every event once, in order.
    (Frozen for less than the node's lease, which would close them too.)"""

    def configure(settings: Settings) -> None:
        settings.bus.nats.deliveries_max_bytes = 8 * 1024

    def fault(mesh: Mesh) -> Callable[[], Awaitable[None]]:
        async def strike() -> None:
            pid = mesh.processes["transport"].pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(2.5)
            finally:
                os.kill(pid, signal.SIGCONT)

        return strike

    followers = await _run_fault(tmp_path, fault, configure)
    reasons = [
        json_format.MessageToDict(e.details).get("reason")
        for f in followers
        if isinstance(f, Follower)
        for e in f.replica.errors
    ]
    assert "DELIVERIES_LOST" in reasons, reasons
    assert all(f.connections >= 2 for f in followers), [(f.name, f.connections) for f in followers]


async def test_away_longer_than_retention_gets_gap_and_snapshot(tmp_path: Path) -> None:
    settings = _settings("sqlite", tmp_path / "mesh")
    settings.bus.nats.events_max_age_seconds = 2.0
    async with running_mesh(settings) as mesh:
        s = mesh.settings
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{s.api.port}") as api_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{s.transport.grpc_port}") as events_channel,
        ):
            app_id, server, phone, _, _, _ = await _app(api_channel, mesh)
            api = server.as_(phone.token)
            await api.subscribe(app_id, "task", persistent=True, filter={"n": {"gte": 1}})
            replica = Replica()
            client = GrpcClient(events_channel, app_id, phone.token, replica)
            async with client.stream():
                await api.create(app_id, "task", {"title": "a", "n": 1}, object_id="a")
                await until(lambda: "a" in replica.objects, client.changed)
            for name, n in (("b", 2), ("c", 0), ("d", 5)):
                await api.create(app_id, "task", {"title": name, "n": n}, object_id=name)
            await api.update(app_id, "task", "a", [patch("replace", ["title"], ["a2"])])
            await api.delete(app_id, "task", "d")
            # Away longer than the retention: the history no longer holds what was missed.
            await asyncio.sleep(4.0)
            async with client.stream(resume_from=replica.position):
                await until(lambda: bool(replica.resumed), client.changed)
                search = await api.objects.SearchObjects(
                    objects_pb2.SearchObjectsRequest(app_id=app_id, model="task", page_size=100),
                    metadata=api.md,
                )
            assert [g.reason for g in replica.gaps] == [events_pb2.GAP_REASON_EXPIRED]
            listed = await api.subs.ListSubscriptions(
                subscriptions_pb2.ListSubscriptionsRequest(app_id=app_id), metadata=api.md
            )
            assert {s.subscription_id for s in replica.snapshots} == {sub.id for sub in listed.subscriptions}
            assert replica.objects == {o.id: json_format.MessageToDict(o.data) for o in search.objects}
            assert set(replica.objects) == {"a", "b", "c"}
