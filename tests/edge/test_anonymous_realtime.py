"""Anonymous callers of an optional-auth application receive public events, and
only those, on every edge through Envoy: SSE (`subscription` parameters) and
WebSocket (an `auth` frame without a token), as over gRPC."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.edge.conftest import PASSWORD
from tests.edge.rest import Rest
from tests.edge.test_sizes import next_event, sse_frames

pytestmark = pytest.mark.edge

WAIT = 30.0
BOARD = {
    "fields": {"title": {"type": "string"}},
    "access": {"read": {"kind": "public"}, "create": {"kind": "authenticated"}},
}
DIARY = {
    "fields": {"title": {"type": "string"}},
    "access": {"read": {"kind": "owner"}, "create": {"kind": "authenticated"}},
}


async def optional_app(rest: Rest) -> tuple[str, Rest]:
    """An optional-auth app with a public `board` and an owner-only `diary`, and a writer."""
    app_id = f"anon-{uuid.uuid4().hex[:10]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id, "optionalAuth": True})
    await rest.ok("PUT", f"/v1/apps/{app_id}/models/board", BOARD)
    await rest.ok("PUT", f"/v1/apps/{app_id}/models/diary", DIARY)
    await rest.ok("POST", f"/v1/apps/{app_id}/users", {"username": "writer", "password": PASSWORD})
    login = await rest.as_("").ok(
        "POST", f"/v1/apps/{app_id}/auth:login", {"login": "writer", "password": PASSWORD}
    )
    return app_id, rest.as_(login["tokens"]["accessToken"])


async def write_both(writer: Rest, app_id: str, tag: str) -> None:
    """A private diary entry first, then a public board post."""
    for model in ("diary", "board"):
        await writer.ok(
            "POST",
            f"/v1/apps/{app_id}/models/{model}/objects",
            {"objectId": f"{model}-{tag}", "data": {"title": tag}, "wait": True},
        )


async def test_anonymous_sse_gets_public_events_only(rest: Rest) -> None:
    app_id, writer = await optional_app(rest)
    url = f"{rest.base_url}/v1/apps/{app_id}/events"
    params = [
        ("heartbeatSeconds", "300"),
        ("subscription", '{"model":"board"}'),
        ("subscription", '{"model":"diary"}'),
    ]
    async with rest.session.get(url, params=params, headers={"accept": "text/event-stream"}) as resp:
        assert resp.status == 200, await resp.text()
        frames = sse_frames(resp)
        ready = (await anext(frames))["ready"]
        assert ready["deviceId"].startswith("anon-")
        assert sorted(s["model"] for s in ready["subscriptions"]) == ["board", "diary"]
        await write_both(writer, app_id, "1")
        event = await next_event(frames)
        # The diary entry was written first: had it been delivered, it would be first.
        assert event["objectId"] == "board-1"
        assert event["object"]["data"] == {"title": "1"}


async def test_anonymous_sse_is_refused_by_an_app_that_requires_auth(rest: Rest) -> None:
    app_id = f"anon-{uuid.uuid4().hex[:10]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id})
    await rest.ok("PUT", f"/v1/apps/{app_id}/models/board", BOARD)
    reply = await rest.as_("").call(
        "GET", f"/v1/apps/{app_id}/events", params={"subscription": '{"model":"board"}'}
    )
    assert reply.status == 401
    bad = await rest.as_("").call("GET", f"/v1/apps/{app_id}/events", params={"subscription": "{nope"})
    assert bad.status in (400, 401)


async def test_bad_subscription_parameter_is_a_400_naming_it(rest: Rest) -> None:
    app_id, _ = await optional_app(rest)
    reply = await rest.as_("").call(
        "GET", f"/v1/apps/{app_id}/events", params={"subscription": '{"model":"nope"}'}
    )
    assert reply.status in (400, 404), reply.body
    assert reply.error_field().startswith("subscription[0]")
    bad = await rest.as_("").call("GET", f"/v1/apps/{app_id}/events", params={"subscription": "{nope"})
    assert bad.status == 400
    assert bad.error_field() == "subscription[0]"


async def _recv(ws: Any) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if "heartbeat" not in frame:
            return frame


async def test_anonymous_websocket_gets_public_events_only(rest: Rest) -> None:
    app_id, writer = await optional_app(rest)
    url = rest.base_url.replace("http://", "ws://") + f"/v1/apps/{app_id}/ws?heartbeat_seconds=300"
    async with connect(url) as ws:
        await ws.send(json.dumps({"id": "a", "auth": {}}))
        ready = await _recv(ws)
        assert ready["replyTo"] == "a"
        assert ready["ready"]["deviceId"].startswith("anon-")
        for model in ("board", "diary"):
            await ws.send(json.dumps({"id": model, "subscribe": {"model": model}}))
            assert (await _recv(ws))["replyTo"] == model
        persistent = {"id": "p", "subscribe": {"model": "board", "persistent": True}}
        await ws.send(json.dumps(persistent))
        refused = await _recv(ws)
        assert refused["error"]["code"] == "INVALID_ARGUMENT"
        await write_both(writer, app_id, "2")
        event = await _recv(ws)
        assert event["event"]["objectId"] == "board-2"


async def test_anonymous_websocket_is_refused_by_an_app_that_requires_auth(rest: Rest) -> None:
    app_id = f"anon-{uuid.uuid4().hex[:10]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id})
    url = rest.base_url.replace("http://", "ws://") + f"/v1/apps/{app_id}/ws"
    async with connect(url) as ws:
        await ws.send(json.dumps({"id": "a", "auth": {}}))
        frame = await _recv(ws)
        assert frame["error"]["code"] == "UNAUTHENTICATED"
