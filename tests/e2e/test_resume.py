"""Positions, resume, gap + snapshot, initial state and acks through the real
mesh (api, writer, router, transport processes; NATS, Valkey, SQLite)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format

from nexxus.core.positions import parse_position
from nexxus.devserver.mesh import Mesh
from nexxus.v1 import events_pb2, events_pb2_grpc, objects_pb2, subscriptions_pb2
from tests.e2e.conftest import new_app_id
from tests.e2e.harness import Api, patch, struct
from tests.e2e.resume_client import GrpcClient, Replica, WsClient, until

pytestmark = pytest.mark.e2e

TASK = {"fields": {"title": {"type": "string"}, "n": {"type": "integer", "filterable": True}}}


async def _device(operator: Api, name: str = "ann") -> tuple[str, Api, Api, str]:
    app_id = new_app_id()
    server = operator.as_(await operator.create_app(app_id))
    await server.put_schema(app_id, "task", TASK)
    user = await server.user_with_device(app_id, name)
    return app_id, server, server.as_(user.token), user.token


async def _search(
    api: Api, app_id: str, flt: dict[str, object] | None = None
) -> dict[str, dict[str, object]]:
    req = objects_pb2.SearchObjectsRequest(app_id=app_id, model="task", page_size=1000)
    if flt:
        req.filter.CopyFrom(struct(flt))
    page = await api.objects.SearchObjects(req, metadata=api.md)
    return {o.id: json_format.MessageToDict(o.data) for o in page.objects}


async def test_resume_gets_exactly_what_was_missed_then_live(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, _, api, token = await _device(operator)
    await api.subscribe(app_id, "task", persistent=True)
    replica = Replica()
    client = GrpcClient(events_channel, app_id, token, replica)
    async with client.stream():
        start = replica.ready[0].position
        assert parse_position(start)
        for i in range(5):
            await api.create(app_id, "task", {"title": f"a{i}", "n": i}, object_id=f"a{i}")
        await until(lambda: len(replica.events) == 5, client.changed)
    seen_position = replica.position
    assert parse_position(seen_position).seq > parse_position(start).seq
    # Away: 7 creates and an update.
    for i in range(7):
        await api.create(app_id, "task", {"title": f"b{i}", "n": i}, object_id=f"b{i}")
    await api.update(app_id, "task", "a0", [patch("replace", ["title"], ["a0!"])])

    async with client.stream(resume_from=seen_position):
        await until(lambda: len(replica.resumed) == 1, client.changed)
        assert replica.resumed[0].replayed == 8
        await api.create(app_id, "task", {"title": "live", "n": 99}, object_id="live")
        await until(lambda: "live" in replica.objects, client.changed)
    ids = replica.event_ids
    assert len(ids) == len(set(ids)) == 5 + 8 + 1
    assert [e.object_id for e in replica.events[5:13]] == [*(f"b{i}" for i in range(7)), "a0"]
    positions = [parse_position(e.position).seq for e in replica.events]
    assert positions == sorted(positions)
    assert replica.objects == await _search(api, app_id)
    assert not replica.gaps


async def test_unknown_epoch_gets_a_gap_and_a_snapshot_equal_to_a_search(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, _, api, token = await _device(operator)
    await api.subscribe(app_id, "task", persistent=True, filter={"n": {"gte": 2}})
    for i in range(5):
        await api.create(app_id, "task", {"title": f"t{i}", "n": i}, object_id=f"t{i}")
    replica = Replica()
    client = GrpcClient(events_channel, app_id, token, replica)
    async with client.stream(resume_from="zzzzzz.5", page_size=2):
        await until(lambda: bool(replica.resumed), client.changed)
        assert replica.gaps[0].reason == events_pb2.GAP_REASON_UNKNOWN_EPOCH
        assert replica.gaps[0].requested_position == "zzzzzz.5"
        assert [len(s.objects) for s in replica.snapshots] == [2, 1]  # paged
        assert replica.snapshots[-1].done
        assert replica.snapshots[-1].position == replica.resumed[0].position
        assert replica.objects == await _search(api, app_id, {"n": {"gte": 2}})
        await api.create(app_id, "task", {"title": "t9", "n": 9}, object_id="t9")
        await until(lambda: "t9" in replica.objects, client.changed)
    assert replica.objects == await _search(api, app_id, {"n": {"gte": 2}})


async def test_malformed_position_is_invalid_argument(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, _, _, token = await _device(operator)
    stub = events_pb2_grpc.EventServiceStub(events_channel)
    call = stub.StreamEvents(
        events_pb2.StreamEventsRequest(app_id=app_id, resume_from="not a position"),
        metadata=[("authorization", f"Bearer {token}")],
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_initial_state_then_changes_without_a_seam(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, _, api, token = await _device(operator)
    for i in range(4):
        await api.create(app_id, "task", {"title": f"t{i}", "n": i}, object_id=f"t{i}")
    replica = Replica()
    client = GrpcClient(events_channel, app_id, token, replica)
    sub = subscriptions_pb2.CreateSubscriptionRequest(model="task", initial_state=True)
    async with client.stream(subscriptions=[sub], page_size=3):
        await until(lambda: any(s.done for s in replica.snapshots), client.changed)
        assert [s.reason for s in replica.snapshots] == [events_pb2.SNAPSHOT_REASON_INITIAL] * 2
        assert replica.objects == await _search(api, app_id)
        await api.update(app_id, "task", "t1", [patch("replace", ["title"], ["t1!"])])
        await until(lambda: replica.objects.get("t1", {}).get("title") == "t1!", client.changed)
    assert replica.objects == await _search(api, app_id)


async def test_initial_state_is_refused_without_a_stream(operator: Api) -> None:
    app_id, _, api, _ = await _device(operator)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.subs.CreateSubscription(
            subscriptions_pb2.CreateSubscriptionRequest(app_id=app_id, model="task", initial_state=True),
            metadata=api.md,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_acked_position_resumes_a_persistent_subscription(
    operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, _, api, token = await _device(operator)
    await api.subscribe(app_id, "task", persistent=True)
    stub = events_pb2_grpc.EventServiceStub(events_channel)
    replica = Replica()
    client = GrpcClient(events_channel, app_id, token, replica)
    async with client.stream():
        for i in range(3):
            await api.create(app_id, "task", {"title": f"a{i}"}, object_id=f"a{i}")
        await until(lambda: len(replica.events) == 3, client.changed)
    acked = await stub.AckEvents(
        events_pb2.AckEventsRequest(app_id=app_id, position=replica.events[1].position), metadata=api.md
    )
    assert acked.position == replica.events[1].position
    # Older positions never move it back.
    older = await stub.AckEvents(
        events_pb2.AckEventsRequest(app_id=app_id, position=replica.events[0].position), metadata=api.md
    )
    assert older.position == replica.events[1].position
    await api.create(app_id, "task", {"title": "away"}, object_id="away")

    again = Replica()
    client = GrpcClient(events_channel, app_id, token, again)
    async with client.stream(resume_from_ack=True):
        await until(lambda: bool(again.resumed), client.changed)
    assert [e.object_id for e in again.events] == ["a2", "away"]


async def test_websocket_resume_frame_and_ack(mesh: Mesh, operator: Api) -> None:
    app_id, _, api, token = await _device(operator)
    await api.subscribe(app_id, "task", persistent=True)
    url = f"ws://127.0.0.1:{mesh.settings.transport.ws_port}"
    replica = Replica()
    client = WsClient(url, app_id, token, replica)
    async with client.stream():
        await api.create(app_id, "task", {"title": "one"}, object_id="one")
        await until(lambda: len(replica.events) == 1, client.changed)
        await client.send({"id": "a1", "ack": {"position": replica.position}})
    for name in ("two", "three"):
        await api.create(app_id, "task", {"title": name}, object_id=name)
    await api.delete(app_id, "task", "one")

    async with client.stream(first={"id": "r1", "resume": {"fromAck": True}}):
        await until(lambda: bool(replica.resumed), client.changed)
        await api.create(app_id, "task", {"title": "four"}, object_id="four")
        await until(lambda: "four" in replica.objects, client.changed)
    assert [e.object_id for e in replica.events] == ["one", "two", "three", "one", "four"]
    assert len(set(replica.event_ids)) == 5
    assert replica.objects == await _search(api, app_id)
