"""The write → push path through real servers: api → writer → router → transport."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from nexxus.devserver.mesh import Mesh
from nexxus.v1 import events_pb2, objects_pb2, subscriptions_pb2
from tests.e2e.conftest import new_app_id
from tests.e2e.harness import Api, open_stream, patch, struct

pytestmark = pytest.mark.e2e

K = events_pb2
TASK = {
    "fields": {
        "title": {"type": "string", "required": True},
        "priority": {"type": "string", "filterable": True},
        "status": {"type": "string", "filterable": True},
        "points": {"type": "integer", "filterable": True},
        "assignedTo": {"type": "string", "filterable": True},
    }
}
NOTE = {"fields": {"text": {"type": "string"}}}


async def _app(operator: Api, *models: str) -> tuple[str, Api]:
    app_id = new_app_id()
    server_key = await operator.create_app(app_id)
    server = operator.as_(server_key)
    for model in models:
        await server.put_schema(app_id, model, TASK if model == "task" else NOTE)
    return app_id, server


async def test_each_channel_gets_exactly_its_events(
    operator: Api, api_channel: grpc.aio.Channel, events_channel: grpc.aio.Channel
) -> None:
    app_id, server = await _app(operator, "task", "note")
    alice = await server.user_with_device(app_id, "alice")
    bob = await server.user_with_device(app_id, "bob")
    a, b = server.as_(alice.token), server.as_(bob.token)

    # The seed's channels: all tasks, high-priority tasks, bob's tasks, one task.
    other_app, other_server = await _app(operator, "task")
    eve = await other_server.user_with_device(other_app, "eve")

    # A committed write is routed asynchronously: a subscription made right after its ack may still
    # see it. The sentinel's delivery proves the router has matched t-1's creation before alice
    # subscribes, so her stream starts strictly after it.
    sentinel = await server.add_device(alice, "sentinel")
    await server.as_(sentinel.token).subscribe(app_id, "task")
    async with open_stream(events_channel, app_id, sentinel.token) as sentinel_s:
        created = await a.create(app_id, "task", {"title": "seed", "priority": "low"}, object_id="t-1")
        assert created.operation.state == objects_pb2.Operation.STATE_DONE
        seen = await sentinel_s.collect(1)
        assert (seen[0].object_id, seen[0].kind) == ("t-1", K.EVENT_KIND_CREATED)
    await a.subscribe(app_id, "task")
    all_stream_ctx = open_stream(events_channel, app_id, alice.token)
    await b.subscribe(app_id, "task", filter={"priority": {"eq": "high"}})
    await b.subscribe(app_id, "task", user_id=bob.user_id)
    watcher = await server.add_device(alice, "watcher")
    w = server.as_(watcher.token)
    await w.subscribe(app_id, "task", object_id="t-1")
    e = other_server.as_(eve.token)
    await e.subscribe(other_app, "task")

    async with (
        all_stream_ctx as all_s,
        open_stream(events_channel, app_id, bob.token) as bob_s,
        open_stream(events_channel, app_id, watcher.token) as obj_s,
        open_stream(events_channel, other_app, eve.token) as eve_s,
    ):
        await a.create(app_id, "task", {"title": "urgent", "priority": "high"}, object_id="t-2")
        await b.create(app_id, "task", {"title": "bob's", "priority": "low"}, object_id="t-3")
        await a.create(app_id, "note", {"text": "other model"}, object_id="n-1")
        await a.update(app_id, "task", "t-1", [patch("add", ["status"], ["doing"])])

        got = await all_s.collect(3)
        assert [(ev.object_id, ev.kind) for ev in got] == [
            ("t-2", K.EVENT_KIND_CREATED),
            ("t-3", K.EVENT_KIND_CREATED),
            ("t-1", K.EVENT_KIND_UPDATED),
        ]
        assert got[2].object.data["status"] == "doing"
        assert got[2].version == 2
        assert got[0].operation_id
        assert got[0].object.owner_id == alice.user_id

        bob_got = await bob_s.collect(2)
        assert sorted(ev.object_id for ev in bob_got) == ["t-2", "t-3"]
        obj_got = await obj_s.collect(1)
        assert (obj_got[0].object_id, obj_got[0].kind) == ("t-1", K.EVENT_KIND_UPDATED)

        # Nothing else arrives: not the note, not other apps' objects.
        assert await all_s.quiet(1.0) == []
        assert await bob_s.quiet(0.2) == []
        assert await obj_s.quiet(0.2) == []
        assert await eve_s.quiet(0.2) == []


async def test_filter_enter_and_leave(operator: Api, events_channel: grpc.aio.Channel) -> None:
    app_id, server = await _app(operator, "task")
    u = await server.user_with_device(app_id, "carol")
    api = server.as_(u.token)
    sub = await api.subscribe(app_id, "task", filter={"status": {"in": ["todo", "doing"]}})
    async with open_stream(events_channel, app_id, u.token) as s:
        await api.create(app_id, "task", {"title": "x", "status": "done"}, object_id="x")
        await api.update(app_id, "task", "x", [patch("replace", ["status"], ["todo"])])
        await api.update(app_id, "task", "x", [patch("add", ["status", "priority"], ["doing", "high"])])
        await api.update(app_id, "task", "x", [patch("replace", ["status"], ["done"])])
        await api.update(app_id, "task", "x", [patch("replace", ["priority"], ["low"])])
        got = await s.collect(3)
        assert [(e.kind, e.version) for e in got] == [
            (K.EVENT_KIND_ENTERED, 2),
            (K.EVENT_KIND_UPDATED, 3),
            (K.EVENT_KIND_LEFT, 4),
        ]
        assert list(got[0].subscription_ids) == [sub.id]
        assert not got[2].HasField("object")  # LEFT carries no data
        assert await s.quiet(1.0) == []


async def test_two_devices_of_one_user_each_get_a_copy(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, server = await _app(operator, "task")
    phone = await server.user_with_device(app_id, "dave")
    laptop = await server.add_device(phone, "laptop")
    for dev in (phone, laptop):
        await server.as_(dev.token).subscribe(app_id, "task")
    async with (
        open_stream(events_channel, app_id, phone.token) as s1,
        open_stream(events_channel, app_id, laptop.token) as s2,
        open_stream(events_channel, app_id, laptop.token) as s2b,
    ):
        await server.as_(phone.token).create(app_id, "task", {"title": "both"}, object_id="b")
        for s in (s1, s2, s2b):
            ev = await s.next()
            assert ev.object_id == "b"


async def test_unsubscribe_and_disconnect(operator: Api, events_channel: grpc.aio.Channel) -> None:
    app_id, server = await _app(operator, "task")
    u = await server.user_with_device(app_id, "erin")
    api = server.as_(u.token)
    volatile = await api.subscribe(app_id, "task")
    persistent = await api.subscribe(app_id, "task", filter={"priority": {"eq": "high"}}, persistent=True)
    async with open_stream(events_channel, app_id, u.token) as s:
        await api.subs.DeleteSubscription(
            subscriptions_pb2.DeleteSubscriptionRequest(app_id=app_id, subscription_id=volatile.id),
            metadata=api.md,
        )
        await api.create(app_id, "task", {"title": "low"}, object_id="l")
        await api.create(app_id, "task", {"title": "high", "priority": "high"}, object_id="h")
        ev = await s.next()
        assert (ev.object_id, list(ev.subscription_ids)) == ("h", [persistent.id])
        assert await s.quiet(0.5) == []
        again = await api.subscribe(app_id, "task")
    # The stream is closed: its volatile subscription goes, the persistent one stays.
    for _ in range(50):
        listed = await api.subs.ListSubscriptions(
            subscriptions_pb2.ListSubscriptionsRequest(app_id=app_id), metadata=api.md
        )
        ids = {s.id for s in listed.subscriptions}
        if again.id not in ids:
            break
        await asyncio.sleep(0.1)
    assert ids == {persistent.id}


async def test_version_conflict_and_operations(operator: Api) -> None:
    app_id, server = await _app(operator, "task")
    u = await server.user_with_device(app_id, "frank")
    api = server.as_(u.token)
    await api.create(app_id, "task", {"title": "v"}, object_id="v")
    await api.update(app_id, "task", "v", [patch("replace", ["title"], ["v2"])], expected_version=1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.update(app_id, "task", "v", [patch("replace", ["title"], ["v3"])], expected_version=1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "version" in (err.value.details() or "")
    queued = await api.update(
        app_id, "task", "v", [patch("replace", ["title"], ["v3"])], expected_version=1, wait=False
    )
    assert queued.operation.state == objects_pb2.Operation.STATE_PENDING
    op = None
    for _ in range(200):
        # PENDING until the writer applied it; never NOT_FOUND (the api issued the id).
        op = await api.objects.GetOperation(
            objects_pb2.GetOperationRequest(app_id=app_id, operation_id=queued.operation.operation_id),
            metadata=api.md,
        )
        if op.operation.state != objects_pb2.Operation.STATE_PENDING:
            break
        await asyncio.sleep(0.05)
    assert op is not None
    assert op.operation.state == objects_pb2.Operation.STATE_FAILED
    assert op.operation.error_code == "FAILED_PRECONDITION"
    got = await api.objects.GetObject(
        objects_pb2.GetObjectRequest(app_id=app_id, model="task", object_id="v"), metadata=api.md
    )
    assert got.object.version == 2
    assert got.object.data["title"] == "v2"


async def test_bad_input_gets_invalid_argument_naming_the_field(operator: Api) -> None:
    app_id, server = await _app(operator, "task")
    u = await server.user_with_device(app_id, "gina")
    api = server.as_(u.token)
    cases = [
        (api.create(app_id, "task", {"title": 3}), "data.title"),
        (api.create(app_id, "task", {"priority": "x"}), "data.title"),
        (api.subscribe(app_id, "task", filter={"nope": {"eq": 1}}), "filter.nope"),
        (api.subscribe(app_id, "task", filter={"points": {"gt": "x"}}), "filter.points"),
        (api.update(app_id, "task", "missing", [patch("replace", ["title"], [1])]), "patch"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        assert field in str(err.value.details()) + str(err.value.trailing_metadata()), (field, err.value)
    with pytest.raises(grpc.aio.AioRpcError) as nf:
        await api.create(app_id, "nomodel", {"a": 1})
    assert nf.value.code() == grpc.StatusCode.NOT_FOUND


async def test_search_with_filter_sort_and_paging(operator: Api) -> None:
    app_id, server = await _app(operator, "task")
    u = await server.user_with_device(app_id, "hank")
    api = server.as_(u.token)
    for i in range(7):
        await api.create(
            app_id,
            "task",
            {"title": f"t{i}", "points": i, "priority": "high" if i % 2 else "low"},
            object_id=f"s{i}",
            wait=i == 6,
        )
    req = objects_pb2.SearchObjectsRequest(
        app_id=app_id,
        model="task",
        filter=struct({"priority": {"eq": "high"}}),
        sort=[objects_pb2.SortField(field="points", descending=True)],
        page_size=2,
    )
    seen: list[int] = []
    for _ in range(20):
        page = await api.objects.SearchObjects(req, metadata=api.md)
        seen += [int(o.data["points"]) for o in page.objects]
        if not page.next_page_token:
            break
        req.page_token = page.next_page_token
    assert seen == [5, 3, 1]


async def test_crashed_writer_and_router_lose_nothing(
    mesh: Mesh, operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, server = await _app(operator, "task")
    u = await server.user_with_device(app_id, "ivy")
    api = server.as_(u.token)
    await api.subscribe(app_id, "task")
    n = 120
    async with open_stream(events_channel, app_id, u.token) as s:

        async def burst(start: int) -> None:
            for i in range(start, start + n // 2):
                await api.create(
                    app_id, "task", {"title": f"w{i}", "points": i}, object_id=f"w{i}", wait=False
                )

        writes = asyncio.create_task(burst(0))
        await asyncio.sleep(0.05)
        await mesh.processes["writer"].kill()
        await writes
        await mesh.start_service("writer")
        writes = asyncio.create_task(burst(n // 2))
        await asyncio.sleep(0.05)
        await mesh.processes["router"].kill()
        await writes
        await mesh.start_service("router")

        # Delivery is at least once: a crash may repeat an event, never lose one.
        expected = {f"w{i}" for i in range(n)}
        seen: set[str] = set()
        while seen != expected:
            ev = await s.next(timeout=30)
            assert ev.version == 1
            assert ev.kind == K.EVENT_KIND_CREATED
            seen.add(ev.object_id)
    # Every accepted write is persisted exactly once.
    search = await api.objects.SearchObjects(
        objects_pb2.SearchObjectsRequest(app_id=app_id, model="task", page_size=1000), metadata=api.md
    )
    assert sorted(o.id for o in search.objects) == sorted(f"w{i}" for i in range(n))
    assert {o.version for o in search.objects} == {1}


async def test_batched_stream_delivers_every_event_in_order(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, server = await _app(operator, "task")
    u = await server.user_with_device(app_id, "jill")
    api = server.as_(u.token)
    await api.subscribe(app_id, "task")
    n = 60
    async with open_stream(events_channel, app_id, u.token, max_batch=16) as s:
        await asyncio.gather(
            *(api.create(app_id, "task", {"title": f"b{i}"}, object_id=f"b{i}", wait=False) for i in range(n))
        )
        got = await s.collect(n)
        assert sorted(e.object_id for e in got) == sorted(f"b{i}" for i in range(n))
        assert set(s.frames) <= {"event", "batch", "heartbeat"}
        assert await s.quiet(0.3) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with open_stream(events_channel, app_id, u.token, max_batch=5000):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
