"""Server-sent events served by the transport itself (HTTP/1.1, `asyncio` streams).

``GET /v1/apps/{app_id}/events[?heartbeatSeconds=N&maxBatch=N&access_token=…]``
with ``Authorization: Bearer <device token>`` (or the `access_token` query
parameter, for `EventSource`, which cannot set headers). Envoy only proxies
this route (HTTP/1.1 upstream, so every SSE client has its own upstream
connection: a client that stops reading stalls nobody else).

The body is ``text/event-stream``: each frame is a `StreamEventsResponse` in
the proto JSON mapping (the same JSON the transcoded stream used to send):
``data: {"ready": …}``, then ``id: <position>`` + ``data: {"event": …}`` (or
``{"batch": …}`` with `maxBatch` > 1, whose `id` is its last event's),
``data: {"heartbeat": …}``, and ``data: {"error": …}`` before any server-side
close (slow consumer, expired or revoked token, shutdown), with
`details.reason` and `details.position`.

Resuming: the `Last-Event-ID` header (which `EventSource` sends by itself on
reconnect: every event's `id:` is its position), `lastEventId` / `resumeFrom`,
or `resumeFromAck=true`: the missed events follow `ready` (then `resumed`), or a
`gap`, `snapshot`s and `resumed` (see positioning.py); `resumed` and the last
`snapshot` page carry an `id:` too. A `Last-Event-ID` is also stored as the
device's acknowledged position.

Errors before the stream starts are HTTP errors with a JSON `google.rpc.Status`
body, as the rest of the REST surface (401 bad token, 400 bad parameter, …).
`GET /stats` (not routed by Envoy) reports the node's buffer figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic
from urllib.parse import parse_qs, unquote, urlsplit

from google.protobuf import json_format

from nexxus.core import limits
from nexxus.core.errors import InvalidArgument, NexxusError, NotFound, Unavailable
from nexxus.core.metrics import observe_error
from nexxus.core.positions import Position
from nexxus.rpc.errors import DOMAIN, grpc_status_code
from nexxus.transport.connection import ConnectionClosed, QueuedConnection
from nexxus.transport.edge_json import JSON_FULL, batch_json, event_frame_json
from nexxus.transport.hub import ConnectionHub
from nexxus.transport.positioning import Frame, StreamPositions, resolve_page_size
from nexxus.transport.session import (
    create_inline_subscriptions,
    heartbeat_frame,
    require_device,
    resolve_heartbeat,
)
from nexxus.transport.types import Authenticate, CallerT, Subscribe, Unsubscribe
from nexxus.v1 import events_pb2, subscriptions_pb2

__all__ = ["HTTP_STATUS", "SseServer", "SseTarget", "parse_sse_target"]

log = logging.getLogger("nexxus.transport.sse")

_PATH = re.compile(r"^/v1/apps/(?P<app_id>[^/]+)/events/?$")
MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
# The socket's send buffer (asyncio) above which the pump waits for the client.
WRITE_HIGH_WATER = 64 * 1024
# At most this many SSE events (or batches) queued together go out in one write.
WRITE_BURST = 64
MAX_BATCH = 1000

# google.rpc.Code name → HTTP status (the mapping Envoy's transcoder applies).
HTTP_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}

_QUERY_KEYS = {
    "heartbeatSeconds": "heartbeat_seconds",
    "heartbeat_seconds": "heartbeat_seconds",
    "maxBatch": "max_batch",
    "max_batch": "max_batch",
    "access_token": "access_token",
    "accessToken": "access_token",
    "lastEventId": "last_event_id",
    "last_event_id": "last_event_id",
    "resumeFrom": "last_event_id",
    "resume_from": "last_event_id",
    "resumeFromAck": "resume_from_ack",
    "resume_from_ack": "resume_from_ack",
    "snapshotPageSize": "snapshot_page_size",
    "snapshot_page_size": "snapshot_page_size",
    "subscription": "subscription",
}


@dataclass(slots=True, frozen=True)
class SseTarget:
    app_id: str
    heartbeat_seconds: int = 0
    max_batch: int = 0
    access_token: str | None = None
    # Where to resume from (the `Last-Event-ID` header, or `lastEventId`).
    last_event_id: str = ""
    resume_from_ack: bool = False
    snapshot_page_size: int = 0
    # `subscription` parameters: made for this stream, removed with it.
    subscriptions: tuple[subscriptions_pb2.CreateSubscriptionRequest, ...] = ()


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer", field=name) from None


def parse_sse_target(target: str, headers: dict[str, str]) -> SseTarget:
    """The stream a request line's target asks for. NotFound for another path;
    InvalidArgument for an unknown or malformed query parameter."""
    parts = urlsplit(target)
    m = _PATH.match(parts.path)
    if m is None:
        raise NotFound(f"no event stream at {parts.path}", field="path")
    values: dict[str, str] = {}
    subscriptions: list[subscriptions_pb2.CreateSubscriptionRequest] = []
    for key, items in parse_qs(parts.query, keep_blank_values=True).items():
        name = _QUERY_KEYS.get(key)
        if name is None:
            raise InvalidArgument(f"unknown query parameter {key!r}", reason="UNKNOWN_FIELD", field=key)
        if name == "subscription":
            subscriptions += [_subscription(i, raw) for i, raw in enumerate(items)]
        values[name] = items[-1]
    max_batch = _int("max_batch", values.get("max_batch", "0"))
    if not 0 <= max_batch <= MAX_BATCH:
        raise InvalidArgument(f"max_batch must be 0..{MAX_BATCH}", field="max_batch")
    return SseTarget(
        app_id=unquote(m["app_id"]),
        heartbeat_seconds=_int("heartbeat_seconds", values.get("heartbeat_seconds", "0")),
        max_batch=max_batch,
        access_token=values.get("access_token") or None,
        last_event_id=headers.get("last-event-id", "") or values.get("last_event_id", ""),
        resume_from_ack=values.get("resume_from_ack", "").lower() in ("1", "true", "yes"),
        snapshot_page_size=_int("snapshot_page_size", values.get("snapshot_page_size", "0")),
        subscriptions=tuple(subscriptions),
    )


MAX_SUBSCRIPTIONS = 100


def _subscription(index: int, raw: str) -> subscriptions_pb2.CreateSubscriptionRequest:
    """A `subscription` parameter: a CreateSubscriptionRequest in the proto JSON
    mapping, e.g. ``{"model":"board","filter":{"status":{"eq":"open"}}}``."""
    field = f"subscription[{index}]"
    if index >= MAX_SUBSCRIPTIONS:
        raise InvalidArgument(f"at most {MAX_SUBSCRIPTIONS} subscription parameters", field=field)
    request = subscriptions_pb2.CreateSubscriptionRequest()
    try:
        json_format.Parse(raw, request)
    except (json_format.ParseError, RecursionError) as exc:
        raise InvalidArgument(
            f"not a CreateSubscriptionRequest in JSON: {str(exc)[:200]}",
            field=field,
            reason="BAD_SUBSCRIPTION",
        ) from None
    return request


def error_body(err: NexxusError) -> tuple[int, bytes]:
    """(HTTP status, JSON google.rpc.Status body) of an error before the stream starts
    (counted like every error answered to a client: refused credentials, throttles)."""
    observe_error(err)
    code = grpc_status_code(err)
    body = {
        "code": code.value[0],
        "message": err.message,
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": err.reason,
                "domain": DOMAIN,
                "metadata": err.metadata(),
            }
        ],
    }
    return HTTP_STATUS.get(code.name, 500), json.dumps(body, separators=(",", ":")).encode()


def _frame_json(frame: events_pb2.StreamEventsResponse) -> str:
    return json.dumps(
        json_format.MessageToDict(frame, always_print_fields_with_no_presence=True), separators=(",", ":")
    )


def sse_frame(frame: events_pb2.StreamEventsResponse, event_id: str = "") -> bytes:
    """One SSE event (``id:`` line first when given)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}data: {_frame_json(frame)}\n\n".encode()


def sse_data(data_json: str, event_id: str = "") -> bytes:
    """One SSE event from its `data:` JSON text (``id:`` line first when given)."""
    if event_id:
        return f"id: {event_id}\ndata: {data_json}\n\n".encode()
    return f"data: {data_json}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response_head(status: int, content_type: str, extra: str = "") -> bytes:
    reason = _REASONS.get(status, "Error")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n{extra}connection: close\r\n"
    ).encode()


class _Stream:
    """One SSE response: frames out through a bounded socket buffer."""

    def __init__(self, writer: asyncio.StreamWriter, conn: QueuedConnection, close_grace: float) -> None:
        self.writer = writer
        self.conn = conn
        self.close_grace = close_grace

    async def send(self, data: bytes) -> None:
        self.writer.write(_chunk(data))
        await self.writer.drain()

    def _frame(self, events: list[str]) -> bytes:
        """One SSE event: an `event` frame, or a `batch` of two or more events."""
        data = event_frame_json(events[0]) if len(events) == 1 else batch_json(events)
        return sse_data(data, self.conn.last_position)

    async def pump(self, heartbeat: int, max_batch: int) -> None:
        """Events (their JSON encoded once by the hub) and heartbeats out. What is
        queued when the pump wakes goes out in one socket write: one SSE event
        per Event (or per batch of `max_batch`), each with its position as `id:`."""
        conn = self.conn
        while True:
            try:
                first = await conn.next_json(heartbeat)
            except ConnectionClosed:
                return
            if first is None:
                await self.send(sse_frame(events_pb2.StreamEventsResponse(heartbeat=heartbeat_frame())))
                continue
            # A batch frame holds at most `page_bytes` of events (one always goes).
            page = limits.current().page_bytes
            parts = [self._frame([first, *conn.drain_json(max(max_batch - 1, 0), page - len(first))])]
            while conn.queued and len(parts) < WRITE_BURST:
                group = conn.drain_json(max(max_batch, 1), page) or conn.drain_json(1)
                parts.append(self._frame(group))
            await self.send(b"".join(parts))

    async def finish(self, closed: ConnectionClosed | None, reader: asyncio.StreamReader) -> None:
        """The error frame (if closed server-side) and the end of the body. The
        response says `connection: close`, so the peer (Envoy, or the client)
        closes once it has read it all: closing first could make a proxy that
        has not read everything yet reset the stream (losing the error frame).
        A peer that does not read gets `close_grace` seconds."""
        writer = self.writer
        if writer.is_closing():
            return
        if closed is not None:
            writer.write(_chunk(sse_frame(events_pb2.StreamEventsResponse(error=closed.stream_error()))))
        writer.write(b"0\r\n\r\n")
        try:
            async with asyncio.timeout(self.close_grace):
                await _until_eof(reader)
            writer.close()
            await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except (ConnectionError, OSError):
            writer.transport.abort()


class SseServer(Generic[CallerT]):
    """The HTTP/1.1 handler: `asyncio.start_server(server.handle, sock=…)`."""

    def __init__(
        self,
        hub: ConnectionHub,
        authenticate: Authenticate[CallerT],
        stats: Callable[[], dict[str, Any]] | None = None,
        positions: StreamPositions | None = None,
        subscribe: Subscribe[CallerT] | None = None,
        unsubscribe: Unsubscribe[CallerT] | None = None,
    ) -> None:
        self.hub = hub
        self.authenticate = authenticate
        self.subscribe = subscribe
        self.unsubscribe = unsubscribe
        self.positions = positions
        self.stats = stats
        self._shutting_down = False
        self._tasks: set[asyncio.Task[None]] = set()

    def shutdown(self) -> None:
        """Refuse new streams (open ones are closed through the hub)."""
        self._shutting_down = True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
        async with asyncio.timeout(HEAD_TIMEOUT):
            raw = await reader.readuntil(b"\r\n\r\n")
        if len(raw) > MAX_HEAD:
            raise InvalidArgument("request head too large", field="headers")
        lines = raw.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0] or rest
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return method, target, headers

    async def _respond(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        head = _response_head(status, "application/json", f"content-length: {len(body)}\r\n")
        writer.write(head + b"\r\n" + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, headers = await self._read_head(reader)
        except (TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return
        except InvalidArgument as err:
            await self._respond(writer, *error_body(err))
            return
        if target.split("?")[0] == "/stats" and self.stats is not None:
            await self._respond(writer, 200, json.dumps(self.stats()).encode())
            return
        try:
            if method != "GET":
                raise NotFound(f"no {method} handler at {target.split('?')[0]}", field="method")
            if self._shutting_down:
                raise Unavailable("server shutting down")
            sse = parse_sse_target(target, headers)
            heartbeat = resolve_heartbeat(sse.heartbeat_seconds, self.hub.settings.heartbeat_seconds)
            authorization = headers.get("authorization") or (
                f"Bearer {sse.access_token}" if sse.access_token else None
            )
            caller = await self.authenticate(sse.app_id, authorization)
            device_id = require_device(caller)
            page_size = resolve_page_size(sse.snapshot_page_size)
            start: Position | None = None
            if self.positions is not None:
                start = await self.positions.start_position(
                    sse.app_id, device_id, sse.last_event_id, sse.resume_from_ack, field="Last-Event-ID"
                )
                if sse.last_event_id:  # what the client received: its acknowledged position
                    await self.positions.ack(sse.app_id, device_id, sse.last_event_id, field="Last-Event-ID")
        except NexxusError as err:
            await self._respond(writer, *error_body(err))
            return
        conn = self.hub.connection(
            sse.app_id, caller.user_id or "", device_id, transport="sse", encoding=JSON_FULL
        )
        conn.authorization, conn.expires_at = authorization, caller.expires_at
        if start is not None:
            conn.hold()
        transport = writer.transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        conn.unsent_bytes = transport.get_write_buffer_size
        await self.hub.register(conn)
        try:
            try:
                created = await self._subscribe(caller, conn, sse)
            except NexxusError as err:
                await self._respond(writer, *error_body(err))
                return
            await self._stream(reader, writer, conn, heartbeat, sse.max_batch, start, page_size, created)
        finally:
            await self.hub.unregister(conn)

    async def _subscribe(
        self, caller: CallerT, conn: QueuedConnection, sse: SseTarget
    ) -> list[subscriptions_pb2.Subscription]:
        """The stream's `subscription` parameters, tied to the connection (an
        anonymous caller of an optional-auth app subscribes this way: it has no
        device to hold subscriptions made over REST)."""
        if not sse.subscriptions:
            return []
        if self.subscribe is None or self.unsubscribe is None:
            raise InvalidArgument("this server takes no subscription parameters", field="subscription")
        return await create_inline_subscriptions(
            caller,
            sse.app_id,
            list(sse.subscriptions),
            self.hub.bound(conn, self.subscribe),
            self.unsubscribe,
            field_prefix="subscription",
        )

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: QueuedConnection,
        heartbeat: int,
        max_batch: int,
        start: Position | None = None,
        page_size: int = 0,
        created: list[subscriptions_pb2.Subscription] | None = None,
    ) -> None:
        stream = _Stream(writer, conn, self.hub.settings.close_grace_seconds)
        head = _response_head(
            200,
            "text/event-stream",
            "cache-control: no-cache\r\nx-accel-buffering: no\r\ntransfer-encoding: chunked\r\n",
        )
        writer.write(head + b"\r\n")
        node = self.hub.node_id
        from_position = start
        if from_position is None and self.positions is not None:
            try:
                from_position = (await self.positions.head()).head
            except NexxusError as err:
                conn.close_now(err.code, err.message, err.reason)
        ready = events_pb2.StreamEventsResponse(
            ready=events_pb2.StreamReady(
                device_id=conn.device_id,
                user_id=conn.user_id,
                node=node,
                position=str(from_position or ""),
                subscriptions=created or [],
            )
        )
        await stream.send(sse_frame(ready))
        if start is not None and self.positions is not None:
            try:
                async for frame in self.positions.open_frames(conn, start, (), page_size):
                    await stream.send(_positioned_frame(frame))
            except NexxusError as err:
                conn.close_now(err.code, err.message, err.reason)
        pump = asyncio.create_task(stream.pump(heartbeat, max_batch), name=f"sse-pump-{conn.connection_id}")
        gone = asyncio.create_task(_until_eof(reader), name=f"sse-eof-{conn.connection_id}")
        closed = asyncio.create_task(conn.wait_closed(), name=f"sse-closed-{conn.connection_id}")
        tasks = (pump, gone, closed)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        if gone.cancelled():  # the client is still there: end the body properly
            await stream.finish(conn.closed, reader)
        error = results[0]
        if isinstance(error, BaseException) and not isinstance(
            error, ConnectionError | asyncio.CancelledError
        ):
            raise error


def _positioned_frame(frame: Frame) -> bytes:
    """An SSE event for a frame of `open_frames`, with the `id:` (position) a
    client resumes from when it has one."""
    if isinstance(frame, events_pb2.Event):
        return sse_frame(events_pb2.StreamEventsResponse(event=frame), frame.position)
    if isinstance(frame, events_pb2.Gap):
        return sse_frame(events_pb2.StreamEventsResponse(gap=frame))
    if isinstance(frame, events_pb2.Snapshot):
        return sse_frame(events_pb2.StreamEventsResponse(snapshot=frame), frame.position)
    return sse_frame(events_pb2.StreamEventsResponse(resumed=frame), frame.position)


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Returns when the client closes its side (it sends nothing after the request)."""
    while await reader.read(4096):
        pass
