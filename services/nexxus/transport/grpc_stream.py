"""`nexxus.v1.EventService` over grpc.aio: the device's server-streaming event feed.

Frames: `ready` first (device, user, node, the inline subscriptions created),
then `event`s as they arrive, `heartbeat`s when the stream has been idle for
`heartbeat_seconds`, and an `error` frame before any server-side close (slow
client, revoked token, shutdown) — HTTP/1.1 SSE clients cannot see trailers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Generic

import grpc

from nexxus.core.errors import InvalidArgument, NexxusError
from nexxus.rpc.errors import abort_with_error
from nexxus.transport.connection import ConnectionClosed, QueuedConnection
from nexxus.transport.hub import ConnectionHub
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


class EventStreamServicer(Generic[CallerT]):
    """`nexxus.v1.EventService`; its frames are serialized by hand, so it is
    registered with `rpc_method_handlers()`, not the generated helper."""

    def __init__(
        self,
        hub: ConnectionHub,
        authenticate: Authenticate[CallerT],
        subscribe: Subscribe[CallerT],
        unsubscribe: Unsubscribe[CallerT],
    ) -> None:
        self.hub = hub
        self.authenticate = authenticate
        self.subscribe = subscribe
        self.unsubscribe = unsubscribe

    @staticmethod
    def _authorization(context: grpc.aio.ServicerContext) -> str | None:
        for key, value in context.invocation_metadata() or ():
            if key.lower() == "authorization":
                return value if isinstance(value, str) else value.decode()
        return None

    async def _open(
        self, request: events_pb2.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> tuple[QueuedConnection, int, list[subscriptions_pb2.Subscription]]:
        """Authenticate, register the connection, create its inline subscriptions."""
        settings = self.hub.settings
        try:
            if not request.app_id:
                raise InvalidArgument("app_id is required", field="app_id")
            heartbeat = resolve_heartbeat(request.heartbeat_seconds, settings.heartbeat_seconds)
            if not 0 <= request.max_batch <= MAX_BATCH:
                raise InvalidArgument(f"max_batch must be 0..{MAX_BATCH}", field="max_batch")
            authorization = self._authorization(context)
            caller = await self.authenticate(request.app_id, authorization)
            device_id = require_device(caller)
            conn = self.hub.connection(
                request.app_id, caller.user_id or "", device_id, transport="grpc", encoded=True
            )
            conn.authorization, conn.expires_at = authorization, caller.expires_at
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
            except BaseException:
                await self.hub.unregister(conn)
                raise
        except NexxusError as err:
            await abort_with_error(context, err)
        return conn, heartbeat, created

    async def StreamEvents(
        self, request: events_pb2.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Yields serialized `StreamEventsResponse` frames: register it with
        `rpc_method_handlers()` (a pass-through response serializer)."""
        conn, heartbeat, created = await self._open(request, context)
        max_batch = request.max_batch
        try:
            yield events_pb2.StreamEventsResponse(
                ready=events_pb2.StreamReady(
                    device_id=conn.device_id,
                    user_id=conn.user_id,
                    node=self.hub.node_id,
                    subscriptions=created,
                )
            ).SerializeToString()
            while True:
                try:
                    event = await conn.next_encoded(heartbeat)
                except ConnectionClosed as closed:
                    yield events_pb2.StreamEventsResponse(error=closed.stream_error()).SerializeToString()
                    return
                if event is None:
                    yield events_pb2.StreamEventsResponse(heartbeat=heartbeat_frame()).SerializeToString()
                elif max_batch > 1 and conn.queued:
                    yield batch_frame([event, *conn.drain_encoded(max_batch - 1)])
                else:
                    yield event_frame(event)
        finally:
            await self.hub.unregister(conn)

    def rpc_method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """`nexxus.v1.EventService`'s handlers: the generated request
        deserializer, responses already serialized (passed through)."""
        return {
            "StreamEvents": grpc.unary_stream_rpc_method_handler(
                self.StreamEvents,
                request_deserializer=events_pb2.StreamEventsRequest.FromString,
                response_serializer=None,
            )
        }
