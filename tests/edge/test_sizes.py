"""Objects at the configured size limit work end to end through Envoy, and one
byte more is a clear 400 naming the limit (nexxus.core.limits).

At the limit: create, read (GET), patch, search in full pages (several objects
at the limit: pages are cut by bytes), and pushed over SSE, WebSocket and gRPC.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from websockets.asyncio.client import connect

from nexxus.core.convert import dict_to_struct
from nexxus.core.limits import Limits
from nexxus.devserver.mesh import Mesh
from nexxus.v1 import subscriptions_pb2
from tests.e2e.harness import open_stream
from tests.edge.conftest import PASSWORD
from tests.edge.rest import Rest

pytestmark = pytest.mark.edge

WAIT = 60.0
DOC = {"fields": {"body": {"type": "string"}, "tag": {"type": "string", "filterable": True}}}


def body_for(size: int, tag: str) -> str:
    """A `body` string making {"body": …, "tag": tag} exactly `size` bytes encoded."""
    n = size
    while dict_to_struct({"body": "x" * n, "tag": tag}).ByteSize() > size:
        n -= 1
    assert dict_to_struct({"body": "x" * n, "tag": tag}).ByteSize() == size
    return "x" * n


async def sse_frames(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The `data:` payloads of an SSE body, however long its lines."""
    buffer = b""
    while True:
        while b"\n\n" not in buffer:
            chunk = await asyncio.wait_for(resp.content.readany(), WAIT)
            if not chunk:
                return
            buffer += chunk
        block, buffer = buffer.split(b"\n\n", 1)
        for line in block.decode().splitlines():
            if line.startswith("data:"):
                yield json.loads(line[len("data:") :])


async def next_event(frames: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    async for frame in frames:
        if "event" in frame:
            return dict(frame["event"])
    raise AssertionError("the stream ended")


@pytest.fixture
async def big(rest: Rest, edge_mesh: Mesh) -> tuple[str, Rest, Limits]:
    """A fresh app with model `doc`, and a device token (REST) of user `big`."""
    app_id = f"size-{uuid.uuid4().hex[:10]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id})
    await rest.ok("PUT", f"/v1/apps/{app_id}/models/doc", DOC)
    await rest.ok("POST", f"/v1/apps/{app_id}/users", {"username": "big", "password": PASSWORD})
    login = await rest.as_("").ok(
        "POST", f"/v1/apps/{app_id}/auth:login", {"login": "big", "password": PASSWORD}
    )
    user = rest.as_(login["tokens"]["accessToken"])
    dev = await user.ok("POST", f"/v1/apps/{app_id}/devices", {"name": "phone"})
    return app_id, rest.as_(dev["tokens"]["accessToken"]), Limits(edge_mesh.settings.limits.max_object_bytes)


async def test_objects_at_the_limit_are_written_read_and_searched(big: tuple[str, Rest, Limits]) -> None:
    app_id, device, limits = big
    limit = limits.max_object_bytes
    objects = f"/v1/apps/{app_id}/models/doc/objects"
    # One byte over: a 400 naming the limit, before anything is queued.
    over = await device.call("POST", objects, {"data": {"body": body_for(limit + 1, "a"), "tag": "a"}})
    assert over.status == 400, over.body
    assert over.reason() == "OBJECT_TOO_LARGE"
    assert over.error_field() == "data"
    assert "limits.max_object_bytes" in over.json["message"]
    # At the limit: five of them (more than one page's byte budget holds).
    for i in range(5):
        made = await device.call(
            "POST",
            objects,
            {"objectId": f"o{i}", "data": {"body": body_for(limit, "a"), "tag": "a"}, "wait": True},
        )
        assert made.status == 200, (made.status, str(made.body)[:300])
        assert made.json["operation"]["state"] == "STATE_DONE", made.json["operation"]
    got = await device.ok("GET", f"{objects}/o0")
    assert dict_to_struct(got["object"]["data"]).ByteSize() == limit
    # Search: every page answers; pages are cut by bytes, and together hold all five.
    seen: list[str] = []
    token = ""
    for _ in range(10):
        body: dict[str, Any] = {"filter": {"tag": {"eq": "a"}}, "pageSize": 100}
        if token:
            body["pageToken"] = token
        page = await device.call("POST", f"{objects}:search", body)
        assert page.status == 200, (page.status, str(page.body)[:300])
        got_objects = page.json.get("objects", [])
        assert 1 <= len(got_objects) < 5
        assert sum(dict_to_struct(o["data"]).ByteSize() for o in got_objects) <= limits.page_bytes
        seen += [o["id"] for o in got_objects]
        token = page.json.get("nextPageToken", "")
        if not token:
            break
    assert sorted(seen) == [f"o{i}" for i in range(5)]


async def test_a_patch_past_the_limit_is_refused(big: tuple[str, Rest, Limits]) -> None:
    app_id, device, limits = big
    limit = limits.max_object_bytes
    objects = f"/v1/apps/{app_id}/models/doc/objects"
    await device.ok(
        "POST",
        objects,
        {"objectId": "p", "data": {"body": body_for(limit - 10, "b"), "tag": "b"}, "wait": True},
    )
    grow = {"patch": [{"op": "replace", "path": ["tag"], "value": ["b" * 20]}], "wait": True}
    reply = await device.call("PATCH", f"{objects}/p", grow)
    assert reply.status == 400, reply.body
    assert reply.reason() == "OBJECT_TOO_LARGE"
    assert reply.error_field() == "patch"
    # A patch that keeps it at the limit is applied.
    fits = {"patch": [{"op": "replace", "path": ["body"], "value": [body_for(limit, "b")]}], "wait": True}
    done = await device.ok("PATCH", f"{objects}/p", fits)
    assert done["operation"]["state"] == "STATE_DONE"


async def test_the_request_buffer_is_above_the_limit_and_refuses_past_it(
    big: tuple[str, Rest, Limits],
) -> None:
    app_id, device, limits = big
    huge = b'{"data":{"body":"' + b"x" * (limits.edge_request_bytes + 1) + b'"}}'
    reply = await device.call("POST", f"/v1/apps/{app_id}/models/doc/objects", raw=huge)
    assert reply.status == 413
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json["code"] == 3


async def test_updates_at_the_limit_are_pushed_over_sse_websocket_and_grpc(
    big: tuple[str, Rest, Limits], edge_mesh: Mesh
) -> None:
    app_id, device, limits = big
    limit = limits.max_object_bytes
    objects = f"/v1/apps/{app_id}/models/doc/objects"
    await device.ok(
        "POST", objects, {"objectId": "s", "data": {"body": body_for(limit, "c"), "tag": "c"}, "wait": True}
    )
    await device.ok("POST", f"/v1/apps/{app_id}/subscriptions", {"model": "doc", "objectId": "s"})
    url = f"{device.base_url}/v1/apps/{app_id}/events"
    headers = {**device.headers(), "accept": "text/event-stream"}
    ws_url = device.base_url.replace("http://", "ws://") + f"/v1/apps/{app_id}/ws?heartbeat_seconds=300"
    async with (
        device.session.get(url, headers=headers, params={"heartbeatSeconds": "300"}) as sse,
        connect(ws_url, max_size=None) as ws,
        grpc.aio.insecure_channel(
            f"127.0.0.1:{edge_mesh.settings.envoy.port}",
            options=[("grpc.max_receive_message_length", limits.message_bytes)],
        ) as channel,
    ):
        assert sse.status == 200
        frames = sse_frames(sse)
        assert "ready" in await anext(frames)
        await ws.send(json.dumps({"id": "a", "auth": {"accessToken": device.token}}))
        await ws.send(json.dumps({"id": "s", "subscribe": {"model": "doc", "objectId": "s"}}))
        sub = subscriptions_pb2.CreateSubscriptionRequest(app_id=app_id, model="doc", object_id="s")
        async with open_stream(channel, app_id, device.token, [sub]) as stream:
            ws_ready: set[str] = set()
            while ws_ready != {"a", "s"}:
                frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                ws_ready.add(frame.get("replyTo", ""))
                ws_ready.discard("")
            new_body = body_for(limit, "c").replace("x", "y")
            patch = {"patch": [{"op": "replace", "path": ["body"], "value": [new_body]}], "wait": True}
            done = await device.ok("PATCH", f"{objects}/s", patch)
            assert done["operation"]["state"] == "STATE_DONE"

            sse_event = await next_event(frames)
            assert sse_event["kind"] == "EVENT_KIND_UPDATED"
            assert sse_event["object"]["data"]["body"] == new_body
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                if "event" in frame:
                    break
            assert frame["event"]["object"]["data"]["body"] == new_body
            grpc_event = await stream.next(WAIT)
            assert grpc_event.object.data["body"] == new_body
