"""Stream clients for the resume / gap / snapshot tests: a gRPC stream and a
WebSocket that keep every frame, and a tiny "application" that applies them
as a client must (docs/delivery.md): keep the last position, replace the
objects of a subscription on a snapshot, de-duplicate by event id."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect

from nexxus.v1 import events_pb2, events_pb2_grpc, subscriptions_pb2

WAIT = 60.0


@dataclass
class Replica:
    """What a client application holds: objects by id, the events it applied,
    its position, the gaps it was told about."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)
    events: list[events_pb2.Event] = field(default_factory=list)
    position: str = ""
    gaps: list[events_pb2.Gap] = field(default_factory=list)
    snapshots: list[events_pb2.Snapshot] = field(default_factory=list)
    resumed: list[events_pb2.Resumed] = field(default_factory=list)
    errors: list[events_pb2.StreamError] = field(default_factory=list)
    ready: list[events_pb2.StreamReady] = field(default_factory=list)
    # Objects of snapshot pages still arriving (a snapshot replaces what the client held).
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, frame: events_pb2.StreamEventsResponse | events_pb2.ServerFrame) -> None:
        which = frame.WhichOneof("frame")
        if which == "ready":
            self.ready.append(frame.ready)
            if not self.position:
                self.position = frame.ready.position
        elif which == "event":
            self._event(frame.event)
        elif which == "batch":
            for event in frame.batch.events:  # type: ignore[union-attr]
                self._event(event)
        elif which == "gap":
            self.gaps.append(frame.gap)
            self._pending = {}
        elif which == "snapshot":
            snap = frame.snapshot
            self.snapshots.append(snap)
            for obj in snap.objects:
                self._pending[obj.id] = {"version": obj.version, **json_format.MessageToDict(obj.data)}
            if snap.done and snap.reason == events_pb2.SNAPSHOT_REASON_GAP:
                pass  # wait for every subscription's snapshot: `resumed` ends it
            if snap.done and snap.reason == events_pb2.SNAPSHOT_REASON_INITIAL:
                self._take_snapshot(replace=False)
                self.position = snap.position or self.position
        elif which == "resumed":
            self.resumed.append(frame.resumed)
            if self.gaps and self._pending is not None and self.snapshots:
                self._take_snapshot(replace=True)
            self.position = frame.resumed.position
        elif which == "error":
            self.errors.append(frame.error)

    def _take_snapshot(self, *, replace: bool) -> None:
        if replace:
            self.objects = {}
            self.versions = {}
        for oid, data in self._pending.items():
            self.versions[oid] = int(data.pop("version"))
            self.objects[oid] = data
        self._pending = {}

    def _event(self, event: events_pb2.Event) -> None:
        self.event_ids.append(event.event_id)
        self.events.append(event)
        if event.position:
            self.position = event.position
        if event.kind in (events_pb2.EVENT_KIND_DELETED, events_pb2.EVENT_KIND_LEFT):
            self.objects.pop(event.object_id, None)
            self.versions[event.object_id] = event.version
        elif event.version >= self.versions.get(event.object_id, 0):
            self.versions[event.object_id] = event.version
            self.objects[event.object_id] = json_format.MessageToDict(event.object.data)


class GrpcClient:
    """One gRPC StreamEvents call feeding a Replica."""

    def __init__(self, channel: grpc.aio.Channel, app_id: str, token: str, replica: Replica) -> None:
        self.stub = events_pb2_grpc.EventServiceStub(channel)
        self.app_id = app_id
        self.token = token
        self.replica = replica
        self.changed = asyncio.Event()
        self.ended = asyncio.Event()

    @contextlib.asynccontextmanager
    async def stream(
        self,
        *,
        resume_from: str = "",
        resume_from_ack: bool = False,
        subscriptions: list[subscriptions_pb2.CreateSubscriptionRequest] | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[None]:
        call = self.stub.StreamEvents(
            events_pb2.StreamEventsRequest(
                app_id=self.app_id,
                resume_from=resume_from,
                resume_from_ack=resume_from_ack,
                subscriptions=subscriptions or [],
                snapshot_page_size=page_size,
                max_batch=50,
                heartbeat_seconds=5,
            ),
            metadata=[("authorization", f"Bearer {self.token}")],
        )
        self.ended.clear()
        readies = len(self.replica.ready)

        async def pump() -> None:
            try:
                while True:
                    frame = await call.read()
                    if frame is grpc.aio.EOF:
                        return
                    self.replica.apply(frame)
                    self.changed.set()
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                return
            finally:
                self.ended.set()
                self.changed.set()

        task = asyncio.create_task(pump())
        try:
            await until(lambda: len(self.replica.ready) > readies or self.ended.is_set(), self.changed)
            yield
        finally:
            call.cancel()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class WsClient:
    """One WebSocket connection feeding a Replica."""

    def __init__(self, url: str, app_id: str, token: str, replica: Replica) -> None:
        self.url = url
        self.app_id = app_id
        self.token = token
        self.replica = replica
        self.changed = asyncio.Event()
        self.ended = asyncio.Event()
        self.ws: ClientConnection | None = None

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(frame))

    @contextlib.asynccontextmanager
    async def stream(self, *, query: str = "", first: dict[str, Any] | None = None) -> AsyncIterator[None]:
        url = f"{self.url}/v1/apps/{self.app_id}/ws?access_token={self.token}{query}"
        self.ended.clear()
        readies = len(self.replica.ready)
        async with connect(url, max_size=None) as ws:
            self.ws = ws

            async def pump() -> None:
                try:
                    async for raw in ws:
                        frame = events_pb2.ServerFrame()
                        json_format.Parse(raw, frame)
                        self.replica.apply(frame)
                        self.changed.set()
                except Exception:
                    return
                finally:
                    self.ended.set()
                    self.changed.set()

            task = asyncio.create_task(pump())
            try:
                if first is not None:
                    await self.send(first)
                await until(lambda: len(self.replica.ready) > readies or self.ended.is_set(), self.changed)
                yield
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], bool], changed: asyncio.Event, within: float = WAIT) -> None:
    """Wait (bounded) until `check()` holds, re-checking whenever `changed` fires."""
    async with asyncio.timeout(within):
        while not check():
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await changed.wait()


class SseClient:
    """One server-sent-events stream feeding a Replica (resumes with `Last-Event-ID`)."""

    def __init__(self, url: str, app_id: str, token: str, replica: Replica) -> None:
        self.url = url
        self.app_id = app_id
        self.token = token
        self.replica = replica
        self.changed = asyncio.Event()
        self.ended = asyncio.Event()

    @contextlib.asynccontextmanager
    async def stream(self, *, last_event_id: str = "") -> AsyncIterator[None]:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        url = f"{self.url}/v1/apps/{self.app_id}/events?heartbeatSeconds=5&maxBatch=50"
        self.ended.clear()
        readies = len(self.replica.ready)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as resp,
        ):
            if resp.status != 200:
                raise ConnectionError(f"SSE answered {resp.status}")

            async def pump() -> None:
                data: list[str] = []
                try:
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\r\n")
                        if line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif not line and data:
                            frame = events_pb2.StreamEventsResponse()
                            json_format.Parse("\n".join(data), frame)
                            data = []
                            self.replica.apply(frame)
                            self.changed.set()
                except Exception:
                    return
                finally:
                    self.ended.set()
                    self.changed.set()

            task = asyncio.create_task(pump())
            try:
                await until(lambda: len(self.replica.ready) > readies or self.ended.is_set(), self.changed)
                yield
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
