"""TransportService end to end: real NATS (bus) and Valkey (store), real gRPC and
WebSocket servers on free ports, deliveries published by hand on the node's
subject (as the router would); then the WebSocket protocol: auth, subscribe /
unsubscribe, ack, ping, heartbeats, error frames for bad client frames."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nexxus.core.config.settings import Settings, TransportSettings
from nexxus.core.errors import InvalidArgument, NotFound, Unauthenticated
from nexxus.core.events import build_event
from nexxus.core.ports import MessageBus, SubscriptionStore
from nexxus.core.positions import parse_position
from nexxus.transport.service import TransportService
from nexxus.v1 import common_pb2, events_pb2, events_pb2_grpc, internal_pb2, subscriptions_pb2

pytestmark = pytest.mark.e2e

APP = "app1"
WAIT = 10.0  # a guard against hanging, never asserted on


@dataclass(frozen=True)
class FakeCaller:
    app_id: str
    kind: str
    user_id: str
    device_id: str
    token_id: str = ""
    expires_at: float = 0.0


async def authenticate(app_id: str, authorization: str | None) -> FakeCaller:
    """Tokens are "<user>:<device>" ("<user>:" for a token without a device)."""
    if not authorization or not authorization.startswith("Bearer ") or ":" not in authorization:
        raise Unauthenticated("bad token")
    user, device = authorization.removeprefix("Bearer ").split(":", 1)
    return FakeCaller(app_id, "user", user, device)


def subscriber(store: SubscriptionStore) -> Callable[[FakeCaller, Any], Awaitable[Any]]:
    async def subscribe(
        caller: FakeCaller, req: subscriptions_pb2.CreateSubscriptionRequest
    ) -> subscriptions_pb2.Subscription:
        if req.model != "task":
            raise InvalidArgument(f"unknown model {req.model!r}", reason="UNKNOWN_MODEL", field="model")
        sub = subscriptions_pb2.Subscription(
            id=uuid.uuid4().hex,
            model=req.model,
            user_id=req.user_id,
            object_id=req.object_id,
            filter=req.filter,
            device_id=caller.device_id,
            persistent=req.persistent,
            subscriber_user_id=caller.user_id,
        )
        await store.add_subscription(caller.app_id, sub)
        return sub

    return subscribe


def unsubscriber(store: SubscriptionStore) -> Callable[[FakeCaller, str], Awaitable[None]]:
    async def unsubscribe(caller: FakeCaller, subscription_id: str) -> None:
        if not await store.remove_subscription(caller.app_id, subscription_id):
            raise NotFound("no such subscription", field="subscription_id")

    return unsubscribe


@pytest.fixture
async def service(bus: MessageBus, store: SubscriptionStore) -> AsyncIterator[TransportService[FakeCaller]]:
    settings = Settings(
        node_id=f"node-{uuid.uuid4().hex[:8]}",
        transport=TransportSettings(host="127.0.0.1", grpc_port=0, ws_port=0, sse_port=0),
    )
    svc = TransportService(
        settings, bus, store, authenticate, subscriber(store), unsubscriber(store), auth_timeout=0.5
    )
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop(grace=1)


@pytest.fixture
async def stub(service: TransportService[FakeCaller]) -> AsyncIterator[events_pb2_grpc.EventServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        yield events_pb2_grpc.EventServiceStub(channel)


# --------------------------------------------------------------------------- helpers


def open_stream(
    stub: events_pb2_grpc.EventServiceStub,
    token: str,
    *,
    heartbeat: int = 0,
    subscriptions: tuple[subscriptions_pb2.CreateSubscriptionRequest, ...] = (),
) -> Any:
    request = events_pb2.StreamEventsRequest(
        app_id=APP, heartbeat_seconds=heartbeat, subscriptions=subscriptions
    )
    return stub.StreamEvents(request, metadata=(("authorization", f"Bearer {token}"),))


async def read(call: Any) -> events_pb2.StreamEventsResponse:
    frame = await asyncio.wait_for(call.read(), WAIT)
    assert frame is not grpc.aio.EOF
    assert isinstance(frame, events_pb2.StreamEventsResponse)
    return frame


def ws_connect(service: TransportService[FakeCaller], query: str = "", app: str = APP) -> Any:
    return connect(f"ws://127.0.0.1:{service.ws_port}/v1/apps/{app}/ws{query}")


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert isinstance(frame, dict)
    return frame


async def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))


def make_delivery(
    node: str,
    *targets: tuple[str, list[str]],
    kind: int = events_pb2.EVENT_KIND_CREATED,
    event_id: str = "ev-1",
) -> internal_pb2.Delivery:
    event = internal_pb2.ModelEvent(
        event_id=event_id,
        command_id="op-1",
        app_id=APP,
        model="task",
        object_id="t1",
        kind=kind,
        version=1,
        owner_id="u1",
        actor=common_pb2.Actor(user_id="u1", device_id="dX"),
    )
    event.after.id, event.after.model, event.after.version = "t1", "task", 1
    event.after.data.update({"title": "hello", "priority": "high"})
    event.time.GetCurrentTime()
    return internal_pb2.Delivery(
        app_id=APP,
        node=node,
        event=event,
        targets=[internal_pb2.DeliveryTarget(device_id=d, kind=kind, subscription_ids=s) for d, s in targets],
    )


async def publish(bus: Any, service: TransportService[FakeCaller], delivery: internal_pb2.Delivery) -> None:
    await bus.publish_deliveries([(service.node_id, delivery.SerializeToString(), delivery.event.event_id)])


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (bounded) until `check()` holds: server-side cleanup runs after the client left."""
    async with asyncio.timeout(WAIT):
        while not await check():  # noqa: ASYNC110 - polls Redis, which has no event to await
            await asyncio.sleep(0.02)


async def recv_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame until the server closes; returns them and the close code."""
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frames.append(await recv(ws))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


# --------------------------------------------------------------------------- gRPC stream


async def test_grpc_stream_ready_then_delivered_event(
    service: TransportService[FakeCaller],
    stub: events_pb2_grpc.EventServiceStub,
    bus: Any,
    store: SubscriptionStore,
) -> None:
    call = open_stream(
        stub, "u1:d1", subscriptions=(subscriptions_pb2.CreateSubscriptionRequest(model="task"),)
    )
    ready = (await read(call)).ready
    assert (ready.device_id, ready.user_id, ready.node) == ("d1", "u1", service.node_id)
    assert [s.model for s in ready.subscriptions] == ["task"]
    sub_id = ready.subscriptions[0].id
    assert (await store.get_subscription(APP, sub_id)) is not None
    assert (await store.device_nodes(APP)).get("d1") == (service.node_id,)

    await publish(bus, service, make_delivery(service.node_id, ("d1", [sub_id])))
    event = (await read(call)).event
    assert (event.event_id, event.operation_id, event.kind) == ("ev-1", "op-1", events_pb2.EVENT_KIND_CREATED)
    assert event.object.data["title"] == "hello"
    assert list(event.subscription_ids) == [sub_id]
    call.cancel()


async def test_grpc_stream_requires_a_device_bound_token(stub: events_pb2_grpc.EventServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(open_stream(stub, "u1:"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_grpc_stream_rejects_a_bad_token(stub: events_pb2_grpc.EventServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(open_stream(stub, "garbage"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_grpc_stream_bad_inline_subscription_is_invalid_argument_with_field(
    stub: events_pb2_grpc.EventServiceStub, store: SubscriptionStore
) -> None:
    subs = (
        subscriptions_pb2.CreateSubscriptionRequest(model="task"),
        subscriptions_pb2.CreateSubscriptionRequest(model="nope"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(open_stream(stub, "u1:d1", subscriptions=subs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    error_info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(error_info)
    assert (error_info.reason, error_info.domain) == ("UNKNOWN_MODEL", "nexxus.dev")
    assert error_info.metadata["field"] == "subscriptions[1].model"
    # all or nothing: the first one was rolled back
    assert await store.list_device_subscriptions(APP, "d1") == []


async def test_grpc_stream_heartbeats_when_idle(stub: events_pb2_grpc.EventServiceStub) -> None:
    call = open_stream(stub, "u1:d1", heartbeat=1)
    assert (await read(call)).WhichOneof("frame") == "ready"
    frame = await read(call)
    assert frame.WhichOneof("frame") == "heartbeat"
    assert frame.heartbeat.time.seconds > 0
    call.cancel()


async def test_grpc_stream_batches_queued_events_as_the_object_path_would(
    service: TransportService[FakeCaller], stub: events_pb2_grpc.EventServiceStub
) -> None:
    request = events_pb2.StreamEventsRequest(app_id=APP, max_batch=3)
    call = stub.StreamEvents(request, metadata=(("authorization", "Bearer u1:d1"),))
    assert (await read(call)).WhichOneof("frame") == "ready"
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        deliveries = [
            make_delivery(service.node_id, ("d1", [f"s{i}", "other"]), event_id=f"ev-{i}") for i in range(7)
        ]
        # deliver() never suspends for gRPC streams: all 7 are queued before the stream runs.
        for delivery in deliveries:
            await service.hub.deliver(delivery)
        expected = []
        for delivery in deliveries:
            event = build_event(delivery.event, delivery.event.kind)
            event.subscription_ids.extend(delivery.targets[0].subscription_ids)
            expected.append(event)
        frames = [await read(call) for _ in range(3)]
        assert [f.WhichOneof("frame") for f in frames] == ["batch", "batch", "event"]
        assert frames[0] == events_pb2.StreamEventsResponse(batch=events_pb2.EventBatch(events=expected[:3]))
        assert frames[1] == events_pb2.StreamEventsResponse(batch=events_pb2.EventBatch(events=expected[3:6]))
        assert frames[2] == events_pb2.StreamEventsResponse(event=expected[6])
        # The device's WebSocket gets the same events as JSON.
        for event in expected:
            assert (await recv(ws))["event"] == json_format.MessageToDict(event)
    call.cancel()


async def test_grpc_stream_out_of_range_heartbeat_is_invalid(stub: events_pb2_grpc.EventServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(open_stream(stub, "u1:d1", heartbeat=301))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_reports_serving(service: TransportService[FakeCaller]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="nexxus.v1.EventService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --------------------------------------------------------------------------- fan-out


async def test_websocket_receives_a_delivery(service: TransportService[FakeCaller], bus: Any) -> None:
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        ready = await recv(ws)
        position = ready["ready"].pop("position")
        assert ready["ready"] == {"deviceId": "d1", "userId": "u1", "node": service.node_id}
        assert str(parse_position(position)) == position
        await publish(bus, service, make_delivery(service.node_id, ("d1", ["s1"])))
        frame = await recv(ws)
        assert frame["event"]["eventId"] == "ev-1"
        assert frame["event"]["kind"] == "EVENT_KIND_CREATED"
        assert frame["event"]["object"]["data"] == {"title": "hello", "priority": "high"}
        assert frame["event"]["subscriptionIds"] == ["s1"]


async def test_two_connections_of_one_device_both_get_the_event(
    service: TransportService[FakeCaller], stub: events_pb2_grpc.EventServiceStub, bus: Any
) -> None:
    call = open_stream(stub, "u1:d1")
    await read(call)
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        await publish(bus, service, make_delivery(service.node_id, ("d1", ["s1"])))
        assert (await read(call)).event.event_id == "ev-1"
        assert (await recv(ws))["event"]["eventId"] == "ev-1"
    call.cancel()


async def test_two_devices_of_one_user_each_get_their_own(
    service: TransportService[FakeCaller], stub: events_pb2_grpc.EventServiceStub, bus: Any
) -> None:
    phone, laptop = open_stream(stub, "u1:phone"), open_stream(stub, "u1:laptop")
    await read(phone)
    await read(laptop)
    delivery = make_delivery(service.node_id, ("phone", ["s-phone"]), ("laptop", ["s-laptop", "s-all"]))
    await publish(bus, service, delivery)
    assert list((await read(phone)).event.subscription_ids) == ["s-phone"]
    assert list((await read(laptop)).event.subscription_ids) == ["s-laptop", "s-all"]
    phone.cancel()
    laptop.cancel()


async def test_volatile_subscriptions_go_with_their_connection_and_the_device(
    service: TransportService[FakeCaller], stub: events_pb2_grpc.EventServiceStub, store: SubscriptionStore
) -> None:
    """An inline (connection-made) volatile subscription goes with its connection,
    even while the device keeps another one; a device-level volatile subscription
    (made over REST) goes with the device's last connection; persistent ones stay."""
    call = open_stream(
        stub, "u1:d1", subscriptions=(subscriptions_pb2.CreateSubscriptionRequest(model="task"),)
    )
    inline = (await read(call)).ready.subscriptions[0].id
    rest_made = subscriptions_pb2.Subscription(id="rest-made", model="task", device_id="d1")
    await store.add_subscription(APP, rest_made)
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        await send(ws, {"id": "p", "subscribe": {"model": "task", "persistent": True}})
        persistent = (await recv(ws))["subscribed"]["subscription"]["id"]
        call.cancel()  # the inline subscription goes with its connection
        await eventually(lambda: _connections(service, "d1", 1))

        async def inline_gone() -> bool:
            return await store.get_subscription(APP, inline) is None

        await eventually(inline_gone)
        ids = {s.id for s in await store.list_device_subscriptions(APP, "d1")}
        assert ids == {"rest-made", persistent}

    async def device_level_gone() -> bool:
        return await store.get_subscription(APP, "rest-made") is None

    await eventually(device_level_gone)
    assert [s.id for s in await store.list_device_subscriptions(APP, "d1")] == [persistent]
    assert "d1" not in await store.device_nodes(APP)


async def _connections(service: TransportService[FakeCaller], device: str, n: int) -> bool:
    return len(service.hub.connections(APP, device)) == n


async def test_transport_control_closes_the_device_connections(
    service: TransportService[FakeCaller], stub: events_pb2_grpc.EventServiceStub, bus: Any
) -> None:
    revoked, other = open_stream(stub, "u1:d1"), open_stream(stub, "u1:d2")
    await read(revoked)
    await read(other)
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        control = internal_pb2.TransportControl(close_device_ids=["d1"], reason="token revoked")
        await bus.publish_volatile(bus.subjects.control(APP), control.SerializeToString())
        error = (await read(revoked)).error
        assert (error.code, error.message) == ("UNAUTHENTICATED", "token revoked")
        assert await asyncio.wait_for(revoked.read(), WAIT) is grpc.aio.EOF
        ws_error = await recv(ws)
        assert ws_error["error"]["code"] == "UNAUTHENTICATED"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4401
    # d2 is untouched and still receives
    await publish(bus, service, make_delivery(service.node_id, ("d2", ["s"])))
    assert (await read(other)).event.event_id == "ev-1"
    other.cancel()


async def test_stop_sends_shutting_down_and_unregisters(bus: MessageBus, store: SubscriptionStore) -> None:
    settings = Settings(node_id="node-stop", transport=TransportSettings(grpc_port=0, ws_port=0, sse_port=0))
    svc = TransportService(settings, bus, store, authenticate, subscriber(store), unsubscriber(store))
    await svc.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
        call = open_stream(events_pb2_grpc.EventServiceStub(channel), "u1:d1")
        await read(call)
        async with ws_connect(svc, "?access_token=u1:d1") as ws:
            await recv(ws)
            stopping = asyncio.create_task(svc.stop(grace=2))
            error = (await read(call)).error
            assert (error.code, error.message) == ("UNAVAILABLE", "server shutting down")
            assert (await recv(ws))["error"]["message"] == "server shutting down"
            await stopping
    assert svc.hub.connections() == []
    assert "d1" not in await store.device_nodes(APP)


# --------------------------------------------------------------------------- WebSocket protocol


async def test_auth_frame_then_ready_replies_to_its_id(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service) as ws:
        await send(ws, {"id": "a1", "auth": {"accessToken": "u1:d1"}})
        ready = await recv(ws)
        assert ready["replyTo"] == "a1"
        assert ready["ready"]["deviceId"] == "d1"


async def test_auth_frame_accepts_snake_case(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service) as ws:
        await send(ws, {"id": "a1", "auth": {"access_token": "u1:d1"}})
        assert (await recv(ws))["ready"]["userId"] == "u1"


async def test_no_auth_frame_in_time_closes_4401(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service) as ws:
        error = await recv(ws)
        assert error["error"]["code"] == "UNAUTHENTICATED"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4401


async def test_first_frame_not_auth_closes_4401(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service) as ws:
        await send(ws, {"id": "x", "ping": {}})
        error = await recv(ws)
        assert (error["replyTo"], error["error"]["code"]) == ("x", "UNAUTHENTICATED")
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4401


async def test_bad_token_closes_4401(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service, "?access_token=garbage") as ws:
        assert (await recv(ws))["error"]["code"] == "UNAUTHENTICATED"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4401


async def test_unknown_path_is_404(service: TransportService[FakeCaller]) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(service, app="app1/extra"):
            pass
    assert info.value.response.status_code == 404


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ("{not json", None, "INVALID_JSON"),
        ("[1, 2]", None, "INVALID_JSON"),
        ('{"id": "b1", "bogus": 1}', "bogus", "UNKNOWN_FIELD"),
        ('{"id": "b1", "subscribe": {"model": "task", "nope": 2}}', "subscribe.nope", "UNKNOWN_FIELD"),
        ('{"id": "b1"}', "frame", "MISSING_FRAME"),
        ('{"id": "b1", "subscribe": {"model": "task", "filter": 3}}', "subscribe.filter", "INVALID_ARGUMENT"),
        ('{"id": "b1", "subscribe": {"model": "ghost"}}', "subscribe.model", "UNKNOWN_MODEL"),
        ('{"id": "b1", "unsubscribe": {}}', "unsubscribe.subscription_id", "INVALID_ARGUMENT"),
        ('{"id": "b1", "unsubscribe": {"subscriptionId": "zzz"}}', "subscription_id", "NOT_FOUND"),
    ],
)
async def test_bad_frame_gets_an_error_frame_and_the_socket_survives(
    service: TransportService[FakeCaller], raw: str, field: str | None, reason: str
) -> None:
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        await send(ws, raw)
        error = await recv(ws)
        assert error["error"]["details"]["reason"] == reason
        assert error["error"]["details"].get("field") == field
        if field is not None:
            assert error["replyTo"] == "b1"
        await send(ws, {"id": "after", "ping": {"payload": {"n": 1}}})
        pong = await recv(ws)
        assert pong == {"replyTo": "after", "pong": {"payload": {"n": 1}}}


async def test_binary_frame_gets_an_error_frame(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        await ws.send(b"\x00\x01")
        assert (await recv(ws))["error"]["details"]["reason"] == "BINARY_FRAME"


async def test_subscribe_unsubscribe_and_ack(
    service: TransportService[FakeCaller], store: SubscriptionStore
) -> None:
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        await send(ws, {"id": "s1", "subscribe": {"model": "task", "filter": {"priority": {"eq": "high"}}}})
        subscribed = await recv(ws)
        assert subscribed["replyTo"] == "s1"
        sub = subscribed["subscribed"]["subscription"]
        assert (sub["model"], sub["deviceId"]) == ("task", "d1")
        assert sub["filter"] == {"priority": {"eq": "high"}}
        assert await store.get_subscription(APP, sub["id"]) is not None

        await send(ws, {"id": "k1", "ack": {"eventId": "ev-9"}})
        await send(ws, {"id": "u1", "unsubscribe": {"subscriptionId": sub["id"]}})
        assert await recv(ws) == {"replyTo": "u1", "unsubscribed": {"subscriptionId": sub["id"]}}
        assert await store.get_subscription(APP, sub["id"]) is None
        (session,) = service.bridge.sessions
        assert session.last_acked_event_id == "ev-9"


async def test_second_auth_frame_is_an_error(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service, "?access_token=u1:d1") as ws:
        await recv(ws)
        await send(ws, {"id": "again", "auth": {"accessToken": "u1:d1"}})
        error = await recv(ws)
        assert (error["replyTo"], error["error"]["code"]) == ("again", "FAILED_PRECONDITION")


async def test_heartbeats_on_an_idle_socket(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service, "?access_token=u1:d1&heartbeat_seconds=1") as ws:
        assert "ready" in await recv(ws)
        heartbeat = await recv(ws)
        assert set(heartbeat) == {"heartbeat"}
        assert heartbeat["heartbeat"]["time"].endswith("Z")


async def test_device_less_token_is_refused(service: TransportService[FakeCaller]) -> None:
    async with ws_connect(service, "?access_token=u1:") as ws:
        assert (await recv(ws))["error"]["code"] == "FAILED_PRECONDITION"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4412


async def test_slow_client_is_closed_with_resource_exhausted(
    bus: MessageBus, store: SubscriptionStore
) -> None:
    settings = Settings(
        node_id="node-slow",
        transport=TransportSettings(grpc_port=0, ws_port=0, sse_port=0, max_buffer_bytes=1024),
    )
    svc: TransportService[FakeCaller] = TransportService(
        settings, bus, store, authenticate, subscriber(store), unsubscriber(store)
    )
    await svc.start()
    try:
        async with ws_connect(svc, "?access_token=u1:d1") as ws:
            await recv(ws)
            (conn,) = svc.hub.connections(APP, "d1")
            # Fill the queue past its bound directly (a client that cannot keep up).
            for i in range(3):
                await conn.push(events_pb2.Event(event_id=f"e{i}", object_id="x" * 600))
            frames, code = await recv_until_closed(ws)
            error = frames[-1]["error"]
            assert error["code"] == "RESOURCE_EXHAUSTED"
            assert error["message"].startswith("client too slow")
            assert error["details"]["reason"] == "SLOW_CONSUMER"
            assert code == 4429
    finally:
        await svc.stop(grace=1)
