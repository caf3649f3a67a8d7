"""Access tokens on long streams (real NATS, Valkey, gRPC, WebSocket and SSE
servers): a stream whose token expires, or whose token stops authenticating
(revoked), is closed with an error frame naming the reason; the SSE endpoint's
HTTP errors."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from nexxus.core.config.settings import Settings, TransportSettings
from nexxus.core.errors import Unauthenticated
from nexxus.core.ports import MessageBus, SubscriptionStore
from nexxus.transport.service import TransportService
from nexxus.v1 import events_pb2, events_pb2_grpc
from tests.e2e.test_transport_service import subscriber, unsubscriber

pytestmark = pytest.mark.e2e

APP = "app-tokens"
WAIT = 15.0  # a guard against hanging, never asserted on
REVOKED: set[str] = set()


@dataclass(frozen=True)
class Caller:
    app_id: str
    kind: str
    user_id: str
    device_id: str
    expires_at: float = 0.0


async def authenticate(app_id: str, authorization: str | None) -> Caller:
    """Tokens are "<user>:<device>[:<seconds to live>]"; those in REVOKED fail."""
    token = (authorization or "").removeprefix("Bearer ")
    if not token or token in REVOKED:
        raise Unauthenticated("the access token has been revoked", reason="TOKEN_REVOKED")
    user, device, *ttl = token.split(":")
    return Caller(app_id, "user", user, device, time.time() + float(ttl[0]) if ttl else 0.0)


@pytest.fixture
async def service(bus: MessageBus, store: SubscriptionStore) -> AsyncIterator[TransportService[Caller]]:
    settings = Settings(
        node_id=f"node-{uuid.uuid4().hex[:8]}",
        transport=TransportSettings(
            host="127.0.0.1", grpc_port=0, ws_port=0, sse_port=0, token_check_seconds=1
        ),
    )
    svc = TransportService(settings, bus, store, authenticate, subscriber(store), unsubscriber(store))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop(grace=1)


async def grpc_frames(service: TransportService[Caller], token: str) -> list[events_pb2.StreamEventsResponse]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        call = events_pb2_grpc.EventServiceStub(channel).StreamEvents(
            events_pb2.StreamEventsRequest(app_id=APP, heartbeat_seconds=300),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        frames = []
        async with asyncio.timeout(WAIT):
            async for frame in call:
                frames.append(frame)
        return frames


async def sse_frames(service: TransportService[Caller], token: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{service.sse_port}/v1/apps/{APP}/events?heartbeatSeconds=300"
    frames = []
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"authorization": f"Bearer {token}"}) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/event-stream"
        async with asyncio.timeout(WAIT):
            async for line in resp.content:
                if line.startswith(b"data: "):
                    frames.append(json.loads(line[6:]))
    return frames


async def test_grpc_stream_closes_when_its_token_expires(service: TransportService[Caller]) -> None:
    frames = await grpc_frames(service, "u1:d1:1")
    assert [f.WhichOneof("frame") for f in frames] == ["ready", "error"]
    error = frames[-1].error
    assert error.code == "UNAUTHENTICATED"
    assert error.details["reason"] == "TOKEN_EXPIRED"


async def test_websocket_closes_when_its_token_expires(service: TransportService[Caller]) -> None:
    frames: list[dict[str, Any]] = []

    async def read_all(ws: Any) -> None:
        async with asyncio.timeout(WAIT):
            while True:
                frames.append(json.loads(await ws.recv()))

    async with connect(f"ws://127.0.0.1:{service.ws_port}/v1/apps/{APP}/ws?access_token=u1:d2:1") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await read_all(ws)
    assert "ready" in frames[0]
    assert frames[-1]["error"]["code"] == "UNAUTHENTICATED"
    assert frames[-1]["error"]["details"]["reason"] == "TOKEN_EXPIRED"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_sse_stream_closes_when_its_token_expires(service: TransportService[Caller]) -> None:
    frames = await sse_frames(service, "u1:d3:1")
    assert "ready" in frames[0]
    assert frames[-1]["error"]["code"] == "UNAUTHENTICATED"
    assert frames[-1]["error"]["details"]["reason"] == "TOKEN_EXPIRED"


async def test_revoked_token_is_noticed_by_the_periodic_check(service: TransportService[Caller]) -> None:
    token = f"u1:d-{uuid.uuid4().hex[:8]}:600"  # valid for 10 minutes

    async def revoke_soon() -> None:
        await asyncio.sleep(0.5)
        REVOKED.add(token)

    revoking = asyncio.create_task(revoke_soon())
    try:
        frames = await grpc_frames(service, token)
    finally:
        await revoking
        REVOKED.discard(token)
    assert frames[-1].error.code == "UNAUTHENTICATED"
    assert frames[-1].error.details["reason"] == "TOKEN_REVOKED"


async def test_sse_http_errors(service: TransportService[Caller]) -> None:
    base = f"http://127.0.0.1:{service.sse_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/v1/apps/{APP}/events") as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["code"] == 16
            assert body["details"][0]["reason"] == "TOKEN_REVOKED"
        headers = {"authorization": "Bearer u1:d5"}
        async with http.get(f"{base}/v1/apps/{APP}/events?nope=1", headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["details"][0]["metadata"]["field"] == "nope"
        async with http.get(f"{base}/v1/apps/{APP}/events?heartbeatSeconds=0.5", headers=headers) as resp:
            assert resp.status == 400
        async with http.get(f"{base}/v1/apps/{APP}/events?lastEventId=garbage", headers=headers) as resp:
            assert resp.status == 400
        async with http.get(f"{base}/v1/apps/{APP}/nothing", headers=headers) as resp:
            assert resp.status == 404
        async with http.get(f"{base}/stats") as resp:
            stats = await resp.json()
            assert stats["node"] == service.node_id
            assert stats["maxBufferBytes"] == service.settings.transport.max_buffer_bytes
