"""Building the transport's servers, separately from running them.

`build_grpc_server` binds the port at once (port 0 → a free one) and returns
it; `bind_ws_socket` does the same for the WebSocket bridge, whose server is
started on that socket by `start_ws_server`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health
from websockets.asyncio.server import Server, serve

from nexxus.rpc.server import add_health_and_reflection, bind, new_server
from nexxus.transport.grpc_stream import EventStreamServicer
from nexxus.transport.sse import SseServer
from nexxus.transport.websocket import WebSocketBridge
from nexxus.v1 import events_pb2, events_pb2_grpc

__all__ = [
    "EVENT_SERVICE",
    "bind_ws_socket",
    "build_grpc_server",
    "start_sse_server",
    "start_ws_server",
]

EVENT_SERVICE: str = events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name


def build_grpc_server(
    servicer: EventStreamServicer[Any] | events_pb2_grpc.EventServiceServicer,
    host: str,
    port: int,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """The gRPC server with EventService, grpc.health.v1 and reflection, bound
    (not started). Returns (server, bound port, health servicer)."""
    server = new_server(interceptors)
    if isinstance(servicer, EventStreamServicer):
        # Frames come out of the servicer already serialized (see wire.py).
        handlers = servicer.rpc_method_handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(EVENT_SERVICE, handlers),))
        server.add_registered_method_handlers(EVENT_SERVICE, handlers)
    else:
        events_pb2_grpc.add_EventServiceServicer_to_server(servicer, server)
    health_servicer = add_health_and_reflection(server, [EVENT_SERVICE])
    try:
        bound = bind(server, f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"cannot bind the gRPC event stream on {host}:{port}") from exc
    return server, bound, health_servicer


# Pending connections the kernel queues for the WebSocket / SSE servers (asyncio's
# default, 100, overflows when thousands of clients reconnect at once: Envoy then
# answers 503 for what the transport would have accepted a moment later).
LISTEN_BACKLOG = 4096


def bind_ws_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for the WebSocket bridge or the SSE server (port 0 → a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False)


async def start_ws_server(bridge: WebSocketBridge[Any], sock: socket.socket) -> Server:
    """Start serving the bridge on a socket from `bind_ws_socket`."""
    settings = bridge.hub.settings
    # Protocol pings detect dead peers; not more often than the stream's own heartbeats.
    ping = max(20.0, float(settings.heartbeat_seconds))
    return await serve(
        bridge.handler,
        sock=sock,
        process_request=bridge.process_request,
        close_timeout=settings.close_grace_seconds,
        ping_interval=ping,
        ping_timeout=ping,
        # No permessage-deflate: it compresses every frame once per connection
        # (each event again for each client), which cost more CPU than the
        # whole fan-out; events are small JSON frames.
        compression=None,
        backlog=LISTEN_BACKLOG,
    )


async def start_sse_server(sse: SseServer[Any], sock: socket.socket) -> asyncio.Server:
    """Start serving server-sent events on a socket from `bind_ws_socket`."""
    return await asyncio.start_server(sse.handle, sock=sock, limit=64 * 1024, backlog=LISTEN_BACKLOG)
