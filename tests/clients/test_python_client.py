"""The asyncio client (clients/python/nexxus_client) against a running mesh:
typed calls, errors, and an event stream that survives a transport restart."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest

from nexxus.auth.tokens import TokenService
from nexxus.core.config.settings import AuthSettings
from nexxus.devserver.mesh import Mesh
from tests.clients.conftest import TaskApp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from nexxus_client import EventStream, NexxusClient, NexxusClientError, patch, v1

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STEP = 20.0  # bound on every single wait; nothing is asserted about timing


def client_for(mesh: Mesh, app: TaskApp, token: str) -> NexxusClient:
    s = mesh.settings
    return NexxusClient("127.0.0.1", s.api.port, app.app_id, token, events_port=s.transport.grpc_port)


async def pump(stream: EventStream, out: asyncio.Queue[v1.Event]) -> None:
    async for item in stream:
        assert isinstance(item, v1.Event), item
        out.put_nowait(item)


async def test_calls_and_errors(mesh: Mesh, task_app: TaskApp) -> None:
    async with client_for(mesh, task_app, "") as client:
        login = await client.login("alice", task_app.user.password)
        assert login.user is not None
        assert login.user.id == task_app.user.user_id
        device = await client.register_device("laptop")
        assert device.device is not None
        assert device.device.user_id == task_app.user.user_id

        created = await client.create_object("task", {"title": "one", "status": "todo"}, object_id="t1")
        assert created.object is not None
        assert created.object.version == 1
        updated = await client.update_object("task", "t1", [patch("replace", "status", "doing")])
        assert updated.object is not None
        assert updated.object.version == 2
        got = await client.get_object("task", "t1")
        assert got.data is not None
        assert got.data.to_dict() == {"title": "one", "status": "doing"}
        found = await client.search_objects("task", filter={"status": {"eq": "doing"}})
        assert [o.id for o in found.objects] == ["t1"]

        sub = await client.create_subscription("task", filter={"status": {"eq": "todo"}})
        listed = await client.list_subscriptions()
        assert sub.id in [s.id for s in listed.subscriptions]
        await client.delete_subscription(sub.id)

        with pytest.raises(NexxusClientError) as bad:
            await client.create_object("task", {"status": "todo"})  # title is required
        assert bad.value.code == "INVALID_ARGUMENT"

        await client.delete_object("task", "t1")
        with pytest.raises(NexxusClientError) as gone:
            await client.get_object("task", "t1")
        assert gone.value.code == "NOT_FOUND"


async def test_bad_subscription_raises_from_the_stream(mesh: Mesh, task_app: TaskApp) -> None:
    async with client_for(mesh, task_app, task_app.user.token) as client:
        stream = client.subscribe(model="no_such_model")
        with pytest.raises(NexxusClientError) as err:
            await asyncio.wait_for(stream.__anext__(), STEP)
        assert err.value.code in {"NOT_FOUND", "INVALID_ARGUMENT"}


async def test_subscribe_write_receive_and_survive_transport_restart(mesh: Mesh, task_app: TaskApp) -> None:
    async with client_for(mesh, task_app, task_app.user.token) as client:
        stream = client.subscribe(model="task", filter={"status": {"eq": "todo"}}, heartbeat_seconds=2)
        events: asyncio.Queue[v1.Event] = asyncio.Queue()
        consumer = asyncio.create_task(pump(stream, events))
        try:
            first_ready = await asyncio.wait_for(stream.wait_connected(1), STEP)
            assert len(first_ready.subscriptions) == 1

            await client.create_object("task", {"title": "before", "status": "todo"}, object_id="a")
            await client.create_object("task", {"title": "ignored", "status": "done"}, object_id="b")
            await client.update_object("task", "a", [patch("replace", "status", "done")])
            got = [await asyncio.wait_for(events.get(), STEP) for _ in range(2)]
            assert [(e.kind, e.object_id) for e in got] == [
                (v1.EventKind.CREATED, "a"),
                (v1.EventKind.LEFT, "a"),
            ]
            assert got[0].object is not None
            assert got[0].object.data is not None
            assert got[0].object.data.to_dict()["title"] == "before"

            # kill -9 the transport holding the stream; a write while it is down;
            # then start it again: the stream resumes from its position.
            await mesh.processes["transport"].kill()
            await client.create_object("task", {"title": "missed", "status": "todo"}, object_id="m")
            await mesh.start_service("transport")
            second_ready = await asyncio.wait_for(stream.wait_connected(2), STEP)
            assert stream.connections == 2
            # the subscription was re-created on the new connection
            assert [s.model for s in second_ready.subscriptions] == ["task"]
            assert second_ready.subscriptions[0].id != first_ready.subscriptions[0].id

            # The dead node's connection expires (its lease) and takes its inline
            # subscription along: the device is left with exactly the new one.
            async def subscription_ids() -> list[str]:
                return [s.id for s in (await client.list_subscriptions()).subscriptions]

            deadline = asyncio.get_running_loop().time() + 60
            while await subscription_ids() != [second_ready.subscriptions[0].id]:
                assert asyncio.get_running_loop().time() < deadline, await subscription_ids()
                await asyncio.sleep(0.2)

            missed = await asyncio.wait_for(events.get(), STEP)
            assert (missed.kind, missed.object_id) == (v1.EventKind.CREATED, "m")
            await client.create_object("task", {"title": "after", "status": "todo"}, object_id="c")
            after = await asyncio.wait_for(events.get(), STEP)
            assert (after.kind, after.object_id) == (v1.EventKind.CREATED, "c")
            assert events.empty()  # nothing twice
            assert second_ready.subscriptions[0].id in after.subscription_ids
            assert not consumer.done()
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer


async def test_expired_token_is_refreshed_and_the_stream_resumes(mesh: Mesh, task_app: TaskApp) -> None:
    """The stream's access token expires after 2 s: the server closes it
    (TOKEN_EXPIRED), the client gets a fresh token from `get_token` and resumes
    from its position — the write made meanwhile arrives, nothing twice."""
    s = mesh.settings
    short = TokenService(AuthSettings(access_token_ttl_seconds=2), signing_key=s.auth.signing_key)
    user = task_app.user
    fresh_tokens: list[str] = []

    async def get_token() -> str:
        fresh_tokens.append(user.token)
        return user.token  # the fixture's long-lived device token

    expiring = short.issue(task_app.app_id, user.user_id, user.device_id).access_token
    client = NexxusClient(
        "127.0.0.1",
        s.api.port,
        task_app.app_id,
        expiring,
        events_port=s.transport.grpc_port,
        get_token=get_token,
    )
    async with client:
        writer = NexxusClient("127.0.0.1", s.api.port, task_app.app_id, user.token)
        stream = client.subscribe(model="task", heartbeat_seconds=2)
        events: asyncio.Queue[v1.Event] = asyncio.Queue()
        consumer = asyncio.create_task(pump(stream, events))
        try:
            await asyncio.wait_for(stream.wait_connected(1), STEP)
            await writer.create_object("task", {"title": "one", "status": "todo"}, object_id="e1")
            assert (await asyncio.wait_for(events.get(), STEP)).object_id == "e1"
            await asyncio.wait_for(stream.wait_connected(2), STEP)  # reopened after the expiry
            assert fresh_tokens == [user.token]
            assert client.token == user.token
            await writer.create_object("task", {"title": "two", "status": "todo"}, object_id="e2")
            assert (await asyncio.wait_for(events.get(), STEP)).object_id == "e2"
            assert events.empty()
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            await writer.close()


async def test_too_late_a_resume_surfaces_a_gap_and_a_snapshot(mesh: Mesh, task_app: TaskApp) -> None:
    """A position the server cannot resume from (another epoch): the stream
    yields a Gap, then Snapshot pages of what the subscription matches now,
    then live events."""
    async with client_for(mesh, task_app, task_app.user.token) as client:
        await client.create_object("task", {"title": "there", "status": "todo"}, object_id="s1")
        stream = client.subscribe(model="task", filter={"status": {"eq": "todo"}}, heartbeat_seconds=2)
        stream.position = "zzzzzz.7"  # as if saved from an older server
        items = []
        async with asyncio.timeout(STEP):
            async for item in stream:
                items.append(item)
                if isinstance(item, v1.Snapshot) and item.done:
                    break
        assert isinstance(items[0], v1.Gap)
        assert items[0].requested_position == "zzzzzz.7"
        snapshot_ids = [o.id for page in items[1:] if isinstance(page, v1.Snapshot) for o in page.objects]
        assert snapshot_ids == ["s1"]
        assert stream.position == items[-1].position  # live events continue after the snapshot
        await client.create_object("task", {"title": "live", "status": "todo"}, object_id="s2")
        live = await asyncio.wait_for(stream.__anext__(), STEP)
        assert isinstance(live, v1.Event)
        assert live.object_id == "s2"
        await stream.aclose()
