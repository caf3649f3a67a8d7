"""`TransportService`: one transport node — the hub, the gRPC event stream,
the WebSocket bridge and server-sent events, the node's connection lease,
with explicit start and graceful stop."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Generic

import grpc
from grpc_health.v1 import health, health_pb2
from websockets.asyncio.server import Server

from nexxus.core.config.settings import Settings
from nexxus.core.ports import MessageBus, SubscriptionStore
from nexxus.router.matching import ReadGate
from nexxus.router.state import SchemaLookup
from nexxus.transport.grpc_stream import EventStreamServicer
from nexxus.transport.hub import ConnectionHub
from nexxus.transport.lease import NodeLease
from nexxus.transport.positioning import SnapshotPage, StreamPositions
from nexxus.transport.server import (
    EVENT_SERVICE,
    bind_ws_socket,
    build_grpc_server,
    start_sse_server,
    start_ws_server,
)
from nexxus.transport.sse import SseServer
from nexxus.transport.types import Authenticate, CallerT, Subscribe, Unsubscribe
from nexxus.transport.websocket import RESUME_WINDOW, WebSocketBridge

__all__ = ["TransportService"]

log = logging.getLogger("nexxus.transport")


class TransportService(Generic[CallerT]):
    """Builds (and binds) the servers on construction; `start()` runs them,
    `stop()` stops accepting, closes every connection with an error frame
    ("server shutting down") and unregisters them.

    Ports come from `settings.transport` (0 → a free port); the bound ones are
    `grpc_port`, `ws_port` and `sse_port`. The node id is `settings.node_id`, or a random
    one when empty.
    """

    def __init__(
        self,
        settings: Settings,
        bus: MessageBus,
        store: SubscriptionStore,
        authenticate: Authenticate[CallerT],
        subscribe: Subscribe[CallerT],
        unsubscribe: Unsubscribe[CallerT],
        *,
        auth_timeout: float = 10.0,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        schema_lookup: SchemaLookup | None = None,
        read_gate: ReadGate | None = None,
        snapshot: SnapshotPage | None = None,
        resume_window: float = RESUME_WINDOW,
    ) -> None:
        tsettings = settings.transport
        self.settings = settings
        self.node_id = settings.node_id or f"node-{uuid.uuid4().hex[:12]}"
        self.hub = ConnectionHub(self.node_id, store, bus, tsettings)
        self.hub.tokens.authenticate = authenticate
        self.lease = NodeLease(self.node_id, store, tsettings.lease_seconds, self._lease_lapsed)
        self.positions = StreamPositions(
            bus, store, schema_lookup=schema_lookup, read_gate=read_gate, snapshot=snapshot
        )
        self.servicer = EventStreamServicer(self.hub, authenticate, subscribe, unsubscribe, self.positions)
        self.bridge = WebSocketBridge(
            self.hub,
            authenticate,
            subscribe,
            unsubscribe,
            self.positions,
            auth_timeout=auth_timeout,
            resume_window=resume_window,
        )
        self._grpc, self._grpc_port, self._health = build_grpc_server(
            self.servicer, tsettings.host, tsettings.grpc_port, interceptors
        )
        self._ws_socket = bind_ws_socket(tsettings.host, tsettings.ws_port)
        self._ws_port: int = self._ws_socket.getsockname()[1]
        self._ws: Server | None = None
        self.sse = SseServer(self.hub, authenticate, self.stats, self.positions, subscribe, unsubscribe)
        self._sse_socket = bind_ws_socket(tsettings.host, tsettings.sse_port)
        self._sse_port: int = self._sse_socket.getsockname()[1]
        self._sse: asyncio.Server | None = None
        self._running = False

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def ws_port(self) -> int:
        return self._ws_port

    @property
    def sse_port(self) -> int:
        return self._sse_port

    def stats(self) -> dict[str, Any]:
        """The node's connection and buffer figures (`GET /stats` on the SSE port)."""
        buffers = self.hub.buffer_stats
        connections = self.hub.connections()
        return {
            "node": self.node_id,
            "connections": len(connections),
            "maxBufferBytes": self.settings.transport.max_buffer_bytes,
            "peakBufferedBytes": buffers.peak_bytes,
            "slowClosed": buffers.slow_closed,
        }

    async def _lease_lapsed(self) -> None:
        await self.hub.close_all("UNAVAILABLE", "the node lost its connection lease; reconnect", "LEASE_LOST")

    @property
    def grpc_target(self) -> str:
        return f"{self.settings.transport.host}:{self._grpc_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.transport.host}:{self._ws_port}"

    @property
    def health(self) -> tuple[health.aio.HealthServicer, list[str]]:
        """The gRPC server's health servicer and the service names it reports."""
        return self._health, [EVENT_SERVICE]

    async def start(self) -> None:
        if self._running:
            return
        await self.lease.start()
        await self.hub.start()
        await self._grpc.start()
        self._ws = await start_ws_server(self.bridge, self._ws_socket)
        self._sse = await start_sse_server(self.sse, self._sse_socket)
        for service in ("", EVENT_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._running = True
        log.info(
            "transport node %s: gRPC on %s, WebSocket on %s, SSE on port %d",
            self.node_id,
            self.grpc_target,
            self.ws_url,
            self._sse_port,
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful: stop accepting, send each connection an error frame, close
        it, and unregister it (its volatile subscriptions go with the device's
        last connection)."""
        if not self._running:
            self._ws_socket.close()
            self._sse_socket.close()
            await self._grpc.stop(None)
            return
        self._running = False
        await self._health.enter_graceful_shutdown()
        if self._ws is not None:
            self._ws.close(close_connections=False)  # stop accepting; sessions close below
        if self._sse is not None:
            self._sse.close()  # stop accepting; streams close below
        self.sse.shutdown()
        await self.bridge.shutdown()
        # Closing connections makes each stream send its error frame and end.
        await self.hub.stop(grace=grace)
        await self.lease.stop()
        await self._grpc.stop(grace)
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        self._ws_socket.close()
        self._sse_socket.close()
        log.info("transport node %s stopped", self.node_id)
