"""`nexxus.v1.EventService` over grpc.aio: the device's server-streaming event feed.

Frames: `ready` first (device, user, node, the inline subscriptions created,
the starting position), then — when the request resumes or an inline
subscription asked for its initial state — the replayed events and `resumed`,
or `gap`, `snapshot`s and `resumed`, and `snapshot`s (see `positioning.py`);
then `event`s as they arrive, `heartbeat`s when the stream has been idle for
`heartbeat_seconds`, and an `error` frame (with the last position sent) before
any server-side close (slow client, revoked token, shutdown) — HTTP/1.1 SSE
clients cannot see trailers.

`AckEvents` stores the device's acknowledged position.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic

import grpc

from nexxus.core import limits
from nexxus.core.errors import InvalidArgument, NexxusError
from nexxus.core.positions import Position
from nexxus.rpc.errors import abort_with_error, error_to_stream_error
from nexxus.transport.connection import PROTO, ConnectionClosed, QueuedConnection
from nexxus.transport.hub import ConnectionHub
from nexxus.transport.positioning import Frame, StreamPositions, resolve_page_size
from nexxus.transport.session import (
    create_inline_subscriptions,
    heartbeat_frame,
    require_device,
    resolve_heartbeat,
)
from nexxus.transport.types import Authenticate, CallerT, Subscribe, Unsubscribe
from nexxus.transport.wire import batch_frame, event_frame
from nexxus.v1 import events_pb2, subscriptions_pb2

__all__ = ["EventStreamServicer"]

log = logging.getLogger("nexxus.transport.grpc")


MAX_BATCH = 1000


@dataclass(slots=True)
class _Opened:
    conn: QueuedConnection
    heartbeat: int
    created: list[subscriptions_pb2.Subscription]
    start: Position | None
    initial: list[subscriptions_pb2.Subscription]
    page_size: int
    head: Position


def _response(frame: Frame) -> events_pb2.StreamEventsResponse:
    if isinstance(frame, events_pb2.Event):
        return events_pb2.StreamEventsResponse(event=frame)
    if isinstance(frame, events_pb2.Gap):
        return events_pb2.StreamEventsResponse(gap=frame)
    if isinstance(frame, events_pb2.Snapshot):
        return events_pb2.StreamEventsResponse(snapshot=frame)
    return events_pb2.StreamEventsResponse(resumed=frame)


class EventStreamServicer(Generic[CallerT]):
    """`nexxus.v1.EventService`; its frames are serialized by hand, so it is
    registered with `rpc_method_handlers()`, not the generated helper."""

    def __init__(
        self,
        hub: ConnectionHub,
        authenticate: Authenticate[CallerT],
        subscribe: Subscribe[CallerT],
        unsubscribe: Unsubscribe[CallerT],
        positions: StreamPositions,
    ) -> None:
        self.hub = hub
        self.authenticate = authenticate
        self.subscribe = subscribe
        self.unsubscribe = unsubscribe
        self.positions = positions

    @staticmethod
    def _authorization(context: grpc.aio.ServicerContext) -> str | None:
        for key, value in context.invocation_metadata() or ():
            if key.lower() == "authorization":
                return value if isinstance(value, str) else value.decode()
        return None

    async def _open(
        self, request: events_pb2.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> _Opened:
        """Authenticate, register the connection (held when something is sent
        before live events), create its inline subscriptions."""
        settings = self.hub.settings
        try:
            if not request.app_id:
                raise InvalidArgument("app_id is required", field="app_id")
            heartbeat = resolve_heartbeat(request.heartbeat_seconds, settings.heartbeat_seconds)
            if not 0 <= request.max_batch <= MAX_BATCH:
                raise InvalidArgument(f"max_batch must be 0..{MAX_BATCH}", field="max_batch")
            page_size = resolve_page_size(request.snapshot_page_size)
            authorization = self._authorization(context)
            caller = await self.authenticate(request.app_id, authorization)
            device_id = require_device(caller)
            start = await self.positions.start_position(
                request.app_id, device_id, request.resume_from, request.resume_from_ack, field="resume_from"
            )
            conn = self.hub.connection(
                request.app_id, caller.user_id or "", device_id, transport="grpc", encoding=PROTO
            )
            conn.authorization, conn.expires_at = authorization, caller.expires_at
            if start is not None or any(req.initial_state for req in request.subscriptions):
                conn.hold()
            # Registered first: the subscriptions it creates are tied to it.
            await self.hub.register(conn)
            try:
                created = await create_inline_subscriptions(
                    caller,
                    request.app_id,
                    list(request.subscriptions),
                    self.hub.bound(conn, self.subscribe),
                    self.unsubscribe,
                )
                initial = [
                    sub for sub, req in zip(created, request.subscriptions, strict=True) if req.initial_state
                ]
                head = (await self.positions.head()).head if start is None else start
            except BaseException:
                await self.hub.unregister(conn)
                raise
        except NexxusError as err:
            await abort_with_error(context, err)
        return _Opened(conn, heartbeat, created, start, initial, page_size, head)

    async def StreamEvents(
        self, request: events_pb2.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Yields serialized `StreamEventsResponse` frames: register it with
        `rpc_method_handlers()` (a pass-through response serializer)."""
        opened = await self._open(request, context)
        conn, heartbeat = opened.conn, opened.heartbeat
        max_batch = request.max_batch
        try:
            yield events_pb2.StreamEventsResponse(
                ready=events_pb2.StreamReady(
                    device_id=conn.device_id,
                    user_id=conn.user_id,
                    node=self.hub.node_id,
                    subscriptions=opened.created,
                    position=str(opened.head),
                )
            ).SerializeToString()
            if conn.held:
                try:
                    async for frame in self.positions.open_frames(
                        conn, opened.start, opened.initial, opened.page_size
                    ):
                        yield _response(frame).SerializeToString()
                except NexxusError as err:
                    error = error_to_stream_error(err)
                    error.position = conn.sent_position
                    yield events_pb2.StreamEventsResponse(error=error).SerializeToString()
                    return
            while True:
                try:
                    event = await conn.next_encoded(heartbeat)
                except ConnectionClosed as closed:
                    yield events_pb2.StreamEventsResponse(error=closed.stream_error()).SerializeToString()
                    return
                if event is None:
                    yield events_pb2.StreamEventsResponse(heartbeat=heartbeat_frame()).SerializeToString()
                elif max_batch > 1 and conn.queued:
                    more = conn.drain_encoded(max_batch - 1, limits.current().page_bytes - len(event))
                    yield batch_frame([event, *more])
                else:
                    yield event_frame(event)
        finally:
            await self.hub.unregister(conn)

    async def AckEvents(
        self, request: events_pb2.AckEventsRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.AckEventsResponse:
        try:
            if not request.app_id:
                raise InvalidArgument("app_id is required", field="app_id")
            caller = await self.authenticate(request.app_id, self._authorization(context))
            device_id = require_device(caller)
            stored = await self.positions.ack(request.app_id, device_id, request.position)
        except NexxusError as err:
            await abort_with_error(context, err)
        return events_pb2.AckEventsResponse(position=stored)

    def rpc_method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """`nexxus.v1.EventService`'s handlers: the generated request
        deserializer, responses already serialized (passed through)."""
        return {
            "StreamEvents": grpc.unary_stream_rpc_method_handler(
                self.StreamEvents,
                request_deserializer=events_pb2.StreamEventsRequest.FromString,
                response_serializer=None,
            ),
            "AckEvents": grpc.unary_unary_rpc_method_handler(
                self.AckEvents,
                request_deserializer=events_pb2.AckEventsRequest.FromString,
                response_serializer=events_pb2.AckEventsResponse.SerializeToString,
            ),
        }
