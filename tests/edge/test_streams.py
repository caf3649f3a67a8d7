"""Streams and non-REST protocols through Envoy: server-sent events (transcoded
StreamEvents), native gRPC (unary and the event stream), gRPC-web framed by hand,
and the WebSocket bridge."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from nexxus.devserver.mesh import Mesh
from nexxus.v1 import subscriptions_pb2, users_pb2
from tests.e2e.harness import Api, open_stream
from tests.edge.conftest import World, make_world
from tests.edge.rest import Rest, sse_frames

pytestmark = pytest.mark.edge

# Bounds, not assertions about speed: a frame that never comes fails the test instead of hanging it.
WAIT = 20.0


async def _write_tasks(writer: World) -> None:
    """One task outside the filter, then one inside (both written over REST)."""
    base = f"/v1/apps/{writer.app_id}/models/task/objects"
    await writer.device.ok(
        "POST", base, {"objectId": "low-1", "data": {"title": "a", "priority": "low"}, "wait": True}
    )
    await writer.device.ok(
        "POST", base, {"objectId": "high-1", "data": {"title": "b", "priority": "high"}, "wait": True}
    )


async def _second_user(world: World) -> World:
    """Bob, in the same app as `world`, with his own device."""
    base = f"/v1/apps/{world.app_id}"
    await world.server.ok("POST", f"{base}/users", {"username": "bob", "password": "correct horse battery"})
    login = await world.server.as_("").ok(
        "POST", f"{base}/auth:login", {"login": "bob", "password": "correct horse battery"}
    )
    user = world.server.as_(login["tokens"]["accessToken"])
    dev = await user.ok("POST", f"{base}/devices", {"name": "bob-phone"})
    return World(
        app_id=world.app_id,
        server=world.server,
        user=user,
        device=world.server.as_(dev["tokens"]["accessToken"]),
        user_id=login["user"]["id"],
        device_id=dev["device"]["id"],
        refresh_token=login["tokens"]["refreshToken"],
    )


# --------------------------------------------------------------------------- SSE


async def test_sse_ready_then_filtered_event(world: World) -> None:
    bob = await _second_user(world)
    url = f"{world.device.base_url}/v1/apps/{world.app_id}/events"
    headers = {**world.device.headers(), "accept": "text/event-stream"}
    async with world.device.session.get(url, headers=headers, params={"heartbeatSeconds": "300"}) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        frames = sse_frames(resp, WAIT)
        ready = await anext(frames)
        assert ready["ready"]["deviceId"] == world.device_id
        assert ready["ready"]["userId"] == world.user_id

        sub = await world.device.ok(
            "POST",
            f"/v1/apps/{world.app_id}/subscriptions",
            {"model": "task", "filter": {"priority": {"eq": "high"}}},
        )
        await _write_tasks(bob)
        frame = await anext(frames)
        event = frame["event"]
        assert event["objectId"] == "high-1"
        assert event["kind"] == "EVENT_KIND_CREATED"
        assert event["subscriptionIds"] == [sub["subscription"]["id"]]
        assert event["object"]["data"] == {"title": "b", "priority": "high"}


async def test_rest_ack_and_sse_resume_from_the_acked_position(world: World) -> None:
    bob = await _second_user(world)
    await world.device.ok(
        "POST", f"/v1/apps/{world.app_id}/subscriptions", {"model": "task", "persistent": True}
    )
    url = f"{world.device.base_url}/v1/apps/{world.app_id}/events"
    headers = {**world.device.headers(), "accept": "text/event-stream"}
    async with world.device.session.get(url, headers=headers, params={"heartbeatSeconds": "300"}) as resp:
        frames = sse_frames(resp, WAIT)
        assert (await anext(frames))["ready"]["position"]
        await _write_tasks(bob)
        first = (await anext(frames))["event"]
    acked = await world.device.ok(
        "POST", f"/v1/apps/{world.app_id}/events:ack", {"position": first["position"]}
    )
    assert acked == {"position": first["position"]}
    bad = await world.device.call("POST", f"/v1/apps/{world.app_id}/events:ack", {"position": "nope"})
    assert bad.status == 400, bad.body
    params = {"heartbeatSeconds": "300", "resumeFromAck": "true"}
    async with world.device.session.get(url, headers=headers, params=params) as resp:
        frames = sse_frames(resp, WAIT)
        assert (await anext(frames))["ready"]["position"] == first["position"]
        rest = []
        while "resumed" not in (frame := await anext(frames)):
            rest.append(frame["event"])
    assert [e["objectId"] for e in rest] == ["high-1"]
    assert first["objectId"] == "low-1"


async def _auth_failures(mesh: Mesh, http: aiohttp.ClientSession) -> float:
    """The transport's nexxus_auth_failures_total, every reason."""
    async with http.get(mesh.endpoint("transport").metrics_url) as resp:
        text = await resp.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "nexxus_auth_failures_total"
    )


async def test_sse_without_token_is_401(
    rest: Rest, world: World, edge_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    before = await _auth_failures(edge_mesh, http)
    reply = await rest.as_("").call("GET", f"/v1/apps/{world.app_id}/events")
    assert reply.status == 401, reply.body
    assert reply.json["code"] == 16
    # Refused before the stream starts, and counted like every refused credential.
    assert await _auth_failures(edge_mesh, http) == before + 1


# --------------------------------------------------------------------------- native gRPC


@pytest.fixture(scope="module")
async def edge_channel(edge_mesh: Mesh) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_mesh.settings.envoy.port}") as channel:
        yield channel


async def test_native_grpc_unary_and_event_stream(world: World, edge_channel: grpc.aio.Channel) -> None:
    bob = await _second_user(world)
    alice = Api(edge_channel, world.device.token)
    me = await alice.users.GetMe(users_pb2.GetMeRequest(app_id=world.app_id), metadata=alice.md)
    assert me.user.id == world.user_id

    flt = subscriptions_pb2.CreateSubscriptionRequest(app_id=world.app_id, model="task")
    flt.filter.update({"priority": {"eq": "high"}})
    async with open_stream(edge_channel, world.app_id, world.device.token, [flt]) as stream:
        assert stream.ready.device_id == world.device_id
        await _write_tasks(bob)
        event = await stream.next(WAIT)
        assert event.object_id == "high-1"
        assert list(event.subscription_ids) == [s.id for s in stream.ready.subscriptions]


async def test_native_grpc_error_status_passes_through(world: World, edge_channel: grpc.aio.Channel) -> None:
    anonymous = Api(edge_channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await anonymous.users.GetMe(users_pb2.GetMeRequest(app_id=world.app_id))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --------------------------------------------------------------------------- gRPC-web


def _grpc_web_frames(body: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while body:
        flag, length = struct.unpack(">BI", body[:5])
        frames.append((flag, body[5 : 5 + length]))
        body = body[5 + length :]
    return frames


async def _grpc_web_call(
    world: World, path: str, message: bytes, token: str
) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "accept": "application/grpc-web+proto",
        "origin": "http://app.example",
    }
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = struct.pack(">BI", 0, len(message)) + message
    async with world.device.session.post(world.device.base_url + path, data=body, headers=headers) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def test_grpc_web_unary_get_me(world: World) -> None:
    request = users_pb2.GetMeRequest(app_id=world.app_id).SerializeToString()
    status, headers, body = await _grpc_web_call(
        world, "/nexxus.v1.UserService/GetMe", request, world.device.token
    )
    assert status == 200
    assert headers["content-type"].startswith("application/grpc-web")
    assert headers["access-control-allow-origin"] == "http://app.example"
    frames = _grpc_web_frames(body)
    assert [flag for flag, _ in frames] == [0x00, 0x80]
    reply = users_pb2.GetMeResponse.FromString(frames[0][1])
    assert reply.user.id == world.user_id
    trailers = dict(line.split(":", 1) for line in frames[1][1].decode().strip().split("\r\n") if line)
    assert trailers["grpc-status"].strip() == "0"


async def test_grpc_web_error_is_a_grpc_status(world: World) -> None:
    request = users_pb2.GetMeRequest(app_id=world.app_id).SerializeToString()
    status, headers, body = await _grpc_web_call(world, "/nexxus.v1.UserService/GetMe", request, "")
    assert status == 200
    # A trailers-only reply: the status is in the headers (or a lone trailer frame).
    frames = _grpc_web_frames(body)
    trailer_text = b"".join(payload for flag, payload in frames if flag & 0x80).decode()
    grpc_status = headers.get("grpc-status") or trailer_text.split("grpc-status:")[1].split("\r\n")[0]
    assert grpc_status.strip() == str(grpc.StatusCode.UNAUTHENTICATED.value[0])


# --------------------------------------------------------------------------- WebSocket


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    """The next non-heartbeat frame."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if "heartbeat" not in frame:
            return frame


def _ws_url(world: World, suffix: str = "ws") -> str:
    return world.device.base_url.replace("http://", "ws://") + f"/v1/apps/{world.app_id}/{suffix}"


async def test_websocket_auth_subscribe_event_ping_and_bad_frame(world: World) -> None:
    bob = await _second_user(world)
    async with connect(_ws_url(world) + "?heartbeat_seconds=300") as ws:
        await ws.send(json.dumps({"id": "a", "auth": {"accessToken": world.device.token}}))
        ready = await _recv(ws)
        assert ready["replyTo"] == "a"
        assert ready["ready"]["deviceId"] == world.device_id

        await ws.send(
            json.dumps({"id": "s", "subscribe": {"model": "task", "filter": {"priority": {"eq": "high"}}}})
        )
        subscribed = await _recv(ws)
        assert subscribed["replyTo"] == "s"
        sub_id = subscribed["subscribed"]["subscription"]["id"]

        await _write_tasks(bob)
        event = await _recv(ws)
        assert event["event"]["objectId"] == "high-1"
        assert event["event"]["subscriptionIds"] == [sub_id]

        await ws.send(json.dumps({"id": "p", "ping": {"payload": {"n": 1}}}))
        assert await _recv(ws) == {"replyTo": "p", "pong": {"payload": {"n": 1}}}

        await ws.send("{not json")
        error = await _recv(ws)
        assert error["error"]["code"] == "INVALID_ARGUMENT"
        assert error["error"]["details"]["reason"] == "INVALID_JSON"
        # The connection stays open after a bad frame.
        await ws.send(json.dumps({"id": "p2", "ping": {"payload": {}}}))
        assert (await _recv(ws))["replyTo"] == "p2"


async def test_websocket_bad_token_is_closed_4401(world: World) -> None:
    async with connect(_ws_url(world) + "?access_token=nope") as ws:
        error = await _recv(ws)
        assert error["error"]["code"] == "UNAUTHENTICATED"
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert ws.close_code == 4401


async def test_websocket_other_paths_are_not_upgraded(world: World) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(_ws_url(world, "ws/extra")):
            pass
    # Envoy refuses an upgrade on a route where it is not enabled with 403.
    assert info.value.response.status_code == 403


async def test_second_app_world_is_isolated(rest: Rest, world: World) -> None:
    """A device token of one app cannot open the event stream of another."""
    other = await make_world(rest, "carol")
    reply = await world.device.call("GET", f"/v1/apps/{other.app_id}/events")
    assert reply.status in (401, 403), reply.body
