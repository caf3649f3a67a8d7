"""The operator's AdminService through Envoy (REST/JSON, the console's API):
applications, users and devices of any app, revocation, the live connections
of every transport node, and the event inspector stream — each refused
without the operator key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest

from nexxus.devserver.mesh import Mesh
from nexxus.v1 import admin_pb2, admin_pb2_grpc, events_pb2
from tests.edge.conftest import World
from tests.edge.rest import Rest, sse_frames

pytestmark = pytest.mark.edge

WAIT = 20.0  # a bound on every wait, not a speed assertion


async def _server_key(rest: Rest, world: World) -> str:
    """A second app's server key: a valid credential that is not the operator's."""
    created = await rest.ok("POST", "/v1/apps", {"displayName": "other"})
    return str(created["serverKey"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/admin/apps"),
        ("POST", "/v1/admin/apps/{app}:rotateServerKey"),
        ("GET", "/v1/admin/apps/{app}/users"),
        ("GET", "/v1/admin/apps/{app}/devices"),
        ("POST", "/v1/admin/apps/{app}/devices/{device}:revoke"),
        ("POST", "/v1/admin/apps/{app}/users/{user}:revoke"),
        ("GET", "/v1/admin/connections"),
        ("POST", "/v1/admin/apps/{app}/events:inspect"),
    ],
)
async def test_admin_calls_need_the_operator_key(rest: Rest, world: World, method: str, path: str) -> None:
    url = path.format(app=world.app_id, device=world.device_id, user=world.user_id)
    body: dict[str, Any] | None = {} if method == "POST" else None
    missing = await rest.as_("").call(method, url, body)
    assert missing.status == 401, missing.body
    assert missing.json["code"] == 16  # UNAUTHENTICATED
    for token in (await _server_key(rest, world), world.device.token, "not-a-key"):
        denied = await rest.as_(token).call(method, url, body)
        assert denied.status in (401, 403), (token[:8], denied.status, denied.body)
        assert denied.json["code"] in (7, 16)
    # A well-formed credential that is not the operator's (the app's own server key) is PERMISSION_DENIED.
    server_key = await _server_key(rest, world)
    denied = await rest.as_(server_key).call(method, url, body)
    assert denied.status == 403, denied.body
    assert denied.reason() == "OPERATOR_ONLY", denied.body
    # The device was not revoked by any of the refused calls.
    me = await world.device.call("GET", f"/v1/apps/{world.app_id}/devices/{world.device_id}")
    assert me.status == 200, me.body


async def test_list_applications_users_and_devices(rest: Rest, world: World) -> None:
    apps = await rest.ok("GET", "/v1/admin/apps")
    ids = [a["id"] for a in apps["applications"]]
    assert world.app_id in ids
    assert ids == sorted(ids)

    users = await rest.ok("GET", f"/v1/admin/apps/{world.app_id}/users")
    assert [(u["id"], u["username"]) for u in users["users"]] == [(world.user_id, "alice")]
    assert "password" not in json.dumps(users).lower()

    devices = await rest.ok("GET", f"/v1/admin/apps/{world.app_id}/devices")
    assert [(d["id"], d["userId"], d["name"]) for d in devices["devices"]] == [
        (world.device_id, world.user_id, "alice-phone")
    ]
    mine = await rest.ok("GET", f"/v1/admin/apps/{world.app_id}/devices", params={"ownerId": "nobody"})
    assert mine["devices"] == []
    alices = await rest.ok("GET", f"/v1/admin/apps/{world.app_id}/devices", params={"ownerId": world.user_id})
    assert [d["id"] for d in alices["devices"]] == [world.device_id]

    missing = await rest.call("GET", "/v1/admin/apps/no-such-app/users")
    assert missing.status == 404
    assert missing.reason() == "APP_NOT_FOUND"


async def test_rotate_server_key(rest: Rest) -> None:
    created = await rest.ok("POST", "/v1/apps", {"displayName": "rotating"})
    app_id, old_key = created["application"]["id"], created["serverKey"]
    models = f"/v1/apps/{app_id}/models"
    assert (await rest.as_(old_key).call("GET", models)).status == 200
    rotated = await rest.ok("POST", f"/v1/admin/apps/{app_id}:rotateServerKey", {})
    new_key = rotated["serverKey"]
    assert new_key.startswith("nxs_")
    assert new_key != old_key
    assert (await rest.as_(new_key).call("GET", models)).status == 200

    async def old_refused() -> bool:
        return (await rest.as_(old_key).call("GET", models)).status == 401

    # Refused at once by the api that rotated it (one api process here), at the latest after its cache TTL.
    await _until("the old key to be refused", old_refused)
    missing = await rest.call("POST", "/v1/admin/apps/no-such-app:rotateServerKey", {})
    assert missing.status == 404


async def test_users_are_paged(rest: Rest, world: World) -> None:
    base = f"/v1/apps/{world.app_id}/users"
    for name in ("bob", "carol", "dave"):
        await rest.ok("POST", base, {"username": name, "password": "correct horse battery"})
    seen: list[str] = []
    token = ""
    while True:
        params = {"pageSize": "2", **({"pageToken": token} if token else {})}
        page = await rest.ok("GET", f"/v1/admin/apps/{world.app_id}/users", params=params)
        assert len(page["users"]) <= 2
        seen += [u["username"] for u in page["users"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert sorted(seen) == ["alice", "bob", "carol", "dave"]
    assert len(seen) == len(set(seen))


async def _connections(rest: Rest, app_id: str) -> list[dict[str, Any]]:
    reply = await rest.ok("GET", "/v1/admin/connections", params={"appId": app_id})
    return [
        {**c, "node": n["nodeId"], "alive": n["alive"]}
        for n in reply["nodes"]
        for c in n.get("connections", [])
    ]


async def _until(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_connections_per_node_and_device_revocation(rest: Rest, world: World) -> None:
    sub = await world.device.ok(
        "POST", f"/v1/apps/{world.app_id}/subscriptions", {"model": "task", "persistent": True}
    )
    assert await _connections(rest, world.app_id) == []
    url = f"{world.device.base_url}/v1/apps/{world.app_id}/events"
    headers = {**world.device.headers(), "accept": "text/event-stream"}
    async with world.device.session.get(url, headers=headers, params={"heartbeatSeconds": "300"}) as resp:
        assert resp.status == 200
        frames = sse_frames(resp, WAIT)
        ready = await anext(frames)
        node = ready["ready"]["node"]

        conns = await _until("the connection", lambda: _connections(rest, world.app_id))
        assert len(conns) == 1
        (conn,) = conns
        assert (conn["node"], conn["alive"], conn["deviceId"], conn["appId"]) == (
            node,
            True,
            world.device_id,
            world.app_id,
        )
        assert [s["id"] for s in conn["subscriptions"]] == [sub["subscription"]["id"]]
        everywhere = await rest.ok("GET", "/v1/admin/connections")
        assert any(n["nodeId"] == node for n in everywhere["nodes"])

        await rest.ok("POST", f"/v1/admin/apps/{world.app_id}/devices/{world.device_id}:revoke", {})
        # The stream closes (an error frame may come first), the token stops working.
        async for _frame in frames:
            pass

    async def gone() -> bool:
        return await _connections(rest, world.app_id) == []

    await _until("the connection to go", gone)
    refused = await world.device.call("GET", f"/v1/apps/{world.app_id}/subscriptions")
    assert refused.status == 401, refused.body
    devices = await rest.ok("GET", f"/v1/admin/apps/{world.app_id}/devices")
    assert devices["devices"] == []
    again = await rest.call("POST", f"/v1/admin/apps/{world.app_id}/devices/{world.device_id}:revoke", {})
    assert again.status == 404
    assert again.reason() == "DEVICE_NOT_FOUND"


async def test_revoke_user(rest: Rest, world: World) -> None:
    before = await world.user.call("GET", f"/v1/apps/{world.app_id}/users/me")
    assert before.status == 200
    await rest.ok("POST", f"/v1/admin/apps/{world.app_id}/users/{world.user_id}:revoke", {})
    after = await world.user.call("GET", f"/v1/apps/{world.app_id}/users/me")
    assert after.status == 401, after.body
    refresh = await rest.as_("").call(
        "POST", f"/v1/apps/{world.app_id}/auth:refresh", {"refreshToken": world.refresh_token}
    )
    assert refresh.status == 401, refresh.body
    missing = await rest.call("POST", f"/v1/admin/apps/{world.app_id}/users/nobody:revoke", {})
    assert missing.status == 404
    assert missing.reason() == "USER_NOT_FOUND"


async def _inspect_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The inspector's newline-delimited JSON frames."""
    while True:
        line = await asyncio.wait_for(resp.content.readline(), WAIT)
        if not line:
            return
        if line.strip():
            yield json.loads(line)


async def test_inspector_streams_filtered_events_with_positions(rest: Rest, world: World) -> None:
    url = f"{rest.base_url}/v1/admin/apps/{world.app_id}/events:inspect"
    body = {"model": "task", "filter": {"priority": {"eq": "high"}}}
    objects = f"/v1/apps/{world.app_id}/models/task/objects"
    async with rest.session.post(url, json=body, headers=rest.headers()) as resp:
        assert resp.status == 200, await resp.text()
        frames = _inspect_lines(resp)
        first = await anext(frames)
        assert "heartbeat" in first  # the stream is open before anything is written
        await world.device.ok(
            "POST", objects, {"objectId": "low-1", "data": {"title": "a", "priority": "low"}, "wait": True}
        )
        created = await world.device.ok(
            "POST", objects, {"objectId": "high-1", "data": {"title": "b", "priority": "high"}, "wait": True}
        )
        patch = {"patch": [{"op": "replace", "path": ["priority"], "value": ["low"]}], "wait": True}
        await world.device.ok("PATCH", f"{objects}/high-1", patch)
        events = []
        async for frame in frames:
            if "event" in frame:
                events.append(frame["event"])
            if len(events) == 2:
                break
    assert [(e["objectId"], e["kind"]) for e in events] == [
        ("high-1", "EVENT_KIND_CREATED"),
        ("high-1", "EVENT_KIND_LEFT"),
    ]
    assert events[0]["operationId"] == created["operation"]["operationId"]
    assert events[0]["object"]["data"] == {"title": "b", "priority": "high"}
    epochs, seqs = zip(*(e["position"].rsplit(".", 1) for e in events), strict=True)
    assert len(set(epochs)) == 1
    assert int(seqs[0]) < int(seqs[1])

    # From a position on: what followed it, the low-priority object included (no filter).
    async with rest.session.post(
        url, json={"afterPosition": events[0]["position"]}, headers=rest.headers()
    ) as resp:
        assert resp.status == 200
        replayed = [f["event"] async for f in _first_events(_inspect_lines(resp), 1)]
    assert [(e["objectId"], e["kind"], e["position"]) for e in replayed] == [
        ("high-1", "EVENT_KIND_UPDATED", events[1]["position"])
    ]


async def _first_events(frames: AsyncIterator[dict[str, Any]], n: int) -> AsyncIterator[dict[str, Any]]:
    count = 0
    async for frame in frames:
        if "event" in frame:
            yield frame
            count += 1
            if count == n:
                return


async def test_inspector_refuses_bad_requests(rest: Rest, world: World) -> None:
    base = f"/v1/admin/apps/{world.app_id}/events:inspect"
    bad_filter = await rest.call("POST", base, {"model": "task", "filter": {"nope": {"eq": 1}}})
    assert bad_filter.status == 400, bad_filter.body
    assert bad_filter.error_field().startswith("filter"), bad_filter.body
    no_model = await rest.call("POST", base, {"model": "nope"})
    assert no_model.status == 404, no_model.body
    filter_alone = await rest.call("POST", base, {"filter": {"priority": {"eq": "high"}}})
    assert filter_alone.status == 400, filter_alone.body
    assert filter_alone.error_field() == "model", filter_alone.body
    bad_position = await rest.call("POST", base, {"afterPosition": "zz"})
    assert bad_position.status == 400
    assert bad_position.error_field() == "after_position"
    no_app = await rest.call("POST", "/v1/admin/apps/no-such-app/events:inspect", {})
    assert no_app.status == 404


async def test_inspector_over_native_grpc_through_envoy(rest: Rest, world: World, edge_mesh: Mesh) -> None:
    """The inspector's gRPC method has its own untimed route; a token is PERMISSION_DENIED."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_mesh.settings.envoy.port}") as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        request = admin_pb2.InspectEventsRequest(app_id=world.app_id, model="task")
        denied = stub.InspectEvents(request, metadata=[("authorization", f"Bearer {world.device.token}")])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await denied.read()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        call = stub.InspectEvents(request, metadata=[("authorization", f"Bearer {rest.token}")])
        first = await asyncio.wait_for(call.read(), WAIT)
        assert first.WhichOneof("frame") == "heartbeat"
        objects = f"/v1/apps/{world.app_id}/models/task/objects"
        await world.device.ok("POST", objects, {"objectId": "g-1", "data": {"title": "grpc"}, "wait": True})
        while True:
            frame = await asyncio.wait_for(call.read(), WAIT)
            if frame.WhichOneof("frame") == "event":
                break
        assert (frame.event.object_id, frame.event.kind) == ("g-1", events_pb2.EVENT_KIND_CREATED)
        assert frame.event.position.count(".") == 1
        call.cancel()
