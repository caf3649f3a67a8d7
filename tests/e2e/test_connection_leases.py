"""Connection leases on the real stack: two transport processes (nodes A and B),
one device connected to both, then `kill -9` of A.

- while both live, the device gets each event on both connections;
- after A dies, its connection and the volatile subscription that connection
  made are removed within about `transport.lease_seconds` (reaped by B), while
  B's connection and its fresh subscription stay, and events keep flowing to B;
- a restarted A reaps nothing twice and serves again.

And a frozen node (SIGSTOP past its lease): alone, it keeps its connections
when it runs again (nobody reaped it); beside B, which reaps it, it learns so
on its next renewal and closes its connections (UNAVAILABLE) for its clients to
come back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from nexxus.adapters.store.redis import RedisSubscriptionStore
from nexxus.core.config.settings import RedisSettings
from nexxus.devserver.mesh import Mesh
from nexxus.devserver.process import ManagedProcess, free_port
from nexxus.v1 import subscriptions_pb2
from tests.e2e.conftest import _settings, new_app_id, running_mesh
from tests.e2e.harness import Api, User, open_stream

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

LEASE = 3.0
BOUND = 60.0  # a guard against hanging, never asserted on as a speed


@pytest.fixture
async def lease_mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    settings = _settings("sqlite", tmp_path / "mesh")
    settings.transport.lease_seconds = LEASE
    async with running_mesh(settings) as mesh:
        yield mesh


@pytest.fixture
async def store(lease_mesh: Mesh) -> AsyncIterator[RedisSubscriptionStore]:
    """The mesh's subscription store, read directly (connections, leases)."""
    store = RedisSubscriptionStore(RedisSettings(url=lease_mesh.settings.store.redis.url))
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


async def start_second_transport(mesh: Mesh) -> tuple[ManagedProcess, int]:
    """Another transport process (node B) on the same NATS and Valkey; returns it and its gRPC port."""
    raw = json.loads(mesh.config_path.read_text())
    port = free_port()
    raw["transport"].update(grpc_port=port, ws_port=free_port(), sse_port=free_port())
    path = mesh.data_dir / "transport-b.json"
    path.write_text(json.dumps(raw))
    log = mesh.data_dir / "logs" / "transport-b.log"
    proc = ManagedProcess(
        "transport-b",
        [sys.executable, "-m", "nexxus.cli", "serve", "transport", "--config", str(path)],
        log_path=log,
    )
    await proc.start()

    async def ready() -> bool:
        return log.exists() and "started transport" in log.read_text(errors="replace")

    await proc.wait_ready(ready, timeout=BOUND)
    return proc, port


async def wait_for(what: str, check: object) -> float:
    """Poll `check()` until true; returns the seconds it took (printed, not asserted)."""
    start = time.monotonic()
    while True:
        if await check():  # type: ignore[operator]
            return time.monotonic() - start
        if time.monotonic() - start > BOUND:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def app_with_user(api_ch: grpc.aio.Channel, mesh: Mesh, app_id: str) -> tuple[Api, User]:
    """A fresh application with a `task` model, its server-key Api and a user with a device."""
    operator = Api(api_ch, mesh.settings.operator_key)
    server = operator.as_(await operator.create_app(app_id))
    await server.put_schema(app_id, "task", {"fields": {"title": {"type": "string"}}})
    return server, await server.user_with_device(app_id, "ana")


async def freeze_transport_until(mesh: Mesh, what: str, check: object) -> None:
    """SIGSTOP the (first) transport until `check()` holds, then let it run again."""
    pid = mesh.processes["transport"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        await wait_for(what, check)
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_dead_transport_connections_expire_and_volatile_subscriptions_do_not_leak(
    lease_mesh: Mesh, store: RedisSubscriptionStore
) -> None:
    mesh = lease_mesh
    node_b, b_port = await start_second_transport(mesh)
    app_id = new_app_id()
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as api_ch,
            grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.transport.grpc_port}") as a_ch,
            grpc.aio.insecure_channel(f"127.0.0.1:{b_port}") as b_ch,
        ):
            server, user = await app_with_user(api_ch, mesh, app_id)
            api = server.as_(user.token)
            inline = [subscriptions_pb2.CreateSubscriptionRequest(model="task")]

            async with (
                open_stream(a_ch, app_id, user.token, inline) as on_a,
                open_stream(b_ch, app_id, user.token, inline) as on_b,
            ):
                node_a_id, node_b_id = on_a.ready.node, on_b.ready.node
                assert node_a_id != node_b_id
                sub_a, sub_b = on_a.ready.subscriptions[0].id, on_b.ready.subscriptions[0].id
                nodes = await store.device_nodes(app_id)
                assert nodes[user.device_id] == tuple(sorted((node_a_id, node_b_id)))

                # One device on two nodes: each connection gets the event.
                await api.create(app_id, "task", {"title": "both"}, object_id="t1")
                got_a, got_b = await on_a.next(BOUND), await on_b.next(BOUND)
                assert (got_a.object_id, got_b.object_id) == ("t1", "t1")
                assert set(got_a.subscription_ids) == set(got_b.subscription_ids) == {sub_a, sub_b}

                # kill -9 node A: its lease lapses, node B reaps it.
                killed_at = time.monotonic()
                await mesh.processes["transport"].kill()

                async def a_gone() -> bool:
                    conns = await store.device_connections(app_id, user.device_id)
                    return set(conns.values()) == {node_b_id}

                took = await wait_for("node A's connection to expire", a_gone)
                print(f"\nnode A's connection expired {took:.2f} s after kill -9 (lease {LEASE} s)")
                assert await store.get_subscription(app_id, sub_a) is None
                remaining = await store.list_device_subscriptions(app_id, user.device_id)
                assert [s.id for s in remaining] == [sub_b]
                assert await store.device_nodes(app_id) == {user.device_id: (node_b_id,)}
                assert node_a_id not in await store.dead_nodes()  # reaped and forgotten
                print(f"reaped within {time.monotonic() - killed_at:.2f} s of the kill")

                # Events keep flowing to the surviving connection.
                await api.create(app_id, "task", {"title": "after"}, object_id="t2")
                after = await on_b.next(BOUND)
                assert after.object_id == "t2"
                assert list(after.subscription_ids) == [sub_b]

            # Node A restarted: a new node id; nothing of the old one comes back.
            await mesh.start_service("transport")
            async with open_stream(a_ch, app_id, user.token, inline) as again:
                assert again.ready.node != node_a_id
                fresh = again.ready.subscriptions[0].id

                async def only_fresh() -> bool:  # B's stream closed above: its subscription goes
                    subs = await store.list_device_subscriptions(app_id, user.device_id)
                    return [s.id for s in subs] == [fresh]

                await wait_for("only the fresh subscription", only_fresh)
    finally:
        await node_b.stop(timeout=10)


async def test_a_lone_node_frozen_past_its_lease_keeps_its_connections(
    lease_mesh: Mesh, store: RedisSubscriptionStore
) -> None:
    mesh = lease_mesh
    app_id = new_app_id()
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as api_ch,
        grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.transport.grpc_port}") as a_ch,
    ):
        server, user = await app_with_user(api_ch, mesh, app_id)
        api = server.as_(user.token)
        inline = [subscriptions_pb2.CreateSubscriptionRequest(model="task")]
        async with open_stream(a_ch, app_id, user.token, inline) as on_a:
            node = on_a.ready.node

            async def lapsed() -> bool:
                return node in await store.dead_nodes()

            await freeze_transport_until(mesh, "the frozen node's lease to lapse", lapsed)

            async def renewed() -> bool:
                return node not in await store.dead_nodes()

            await wait_for("the node to renew its lease", renewed)
            # Nobody reaped it: the same stream, connection and subscription go on.
            assert set((await store.device_connections(app_id, user.device_id)).values()) == {node}
            await api.create(app_id, "task", {"title": "after the freeze"}, object_id="t1")
            got = await on_a.next(BOUND)
            assert got.object_id == "t1"
            assert list(got.subscription_ids) == [on_a.ready.subscriptions[0].id]
            assert not on_a.call.done()
            assert on_a.errors == []


async def test_a_frozen_node_reaped_by_another_closes_its_connections(
    lease_mesh: Mesh, store: RedisSubscriptionStore
) -> None:
    mesh = lease_mesh
    node_b, _ = await start_second_transport(mesh)
    app_id = new_app_id()
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as api_ch,
            grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.transport.grpc_port}") as a_ch,
        ):
            server, user = await app_with_user(api_ch, mesh, app_id)
            inline = [subscriptions_pb2.CreateSubscriptionRequest(model="task")]
            async with open_stream(a_ch, app_id, user.token, inline) as on_a:
                node = on_a.ready.node

                async def reaped() -> bool:  # B reaps A while A is frozen
                    return await store.device_connections(app_id, user.device_id) == {}

                await freeze_transport_until(mesh, "node B to reap the frozen node", reaped)
                # A runs again, learns it was reaped and closes its connections.
                assert on_a.task is not None
                await asyncio.wait_for(on_a.task, BOUND)
                assert [(e.code, e.details["reason"]) for e in on_a.errors] == [("UNAVAILABLE", "LEASE_LOST")]
                assert await store.device_connections(app_id, user.device_id) == {}
            # Its clients come back to a node that routes to them again.
            async with open_stream(a_ch, app_id, user.token, inline) as again:
                assert again.ready.node == node
                await server.as_(user.token).create(app_id, "task", {"title": "back"}, object_id="t2")
                assert (await again.next(BOUND)).object_id == "t2"
    finally:
        await node_b.stop(timeout=10)
