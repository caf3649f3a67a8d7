"""The WebSocket bridge (`websockets` asyncio server), behind Envoy at
``/v1/apps/{app_id}/ws``. Frames are JSON: the proto JSON mapping of
`nexxus.v1.ClientFrame` / `ServerFrame` (see docs/websocket.md).

Authentication: the `access_token` query parameter, an `Authorization` header
on the upgrade request, or an `auth` first frame within `auth_timeout` seconds
(else an error frame and close code 4401).

Positions: `resume_from` / `resume_from_ack` query parameters resume at once
(like StreamEventsRequest); otherwise live events are held for up to
`RESUME_WINDOW` seconds after `ready`, so that a `resume` first frame loses
nothing; `subscribe` frames before it (a reconnecting client re-making its
volatile subscriptions, which the replay then matches) keep the window open;
any other frame (or the window's end) releases them. A
`subscribe` with `initial_state` holds the live events while its snapshot is
sent. `ack` frames with a position store the device's acknowledged position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Generic
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed as SocketClosed
from websockets.http11 import Request, Response

from nexxus.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NexxusError,
    Unauthenticated,
    Unavailable,
)
from nexxus.rpc.errors import error_to_stream_error
from nexxus.transport.connection import ConnectionClosed, QueuedConnection
from nexxus.transport.frames import BadFrame, dump_server_frame, parse_client_frame
from nexxus.transport.hub import ConnectionHub
from nexxus.transport.positioning import Frame, StreamPositions, resolve_page_size
from nexxus.transport.session import create_subscription, heartbeat_frame, require_device, resolve_heartbeat
from nexxus.transport.types import Authenticate, CallerT, Subscribe, Unsubscribe
from nexxus.v1 import events_pb2

__all__ = ["CLOSE_CODES", "WebSocketBridge", "close_code_for", "parse_ws_target"]

log = logging.getLogger("nexxus.transport.websocket")

# Seconds live events wait after `ready` for a possible `resume` first frame.
RESUME_WINDOW = 1.0

_PATH = re.compile(r"^/v1/apps/(?P<app_id>[^/]+)/ws/?$")

# Close codes by the StreamError code sent just before closing (4000 + HTTP-ish status).
CLOSE_CODES: dict[str, int] = {
    "UNAUTHENTICATED": 4401,
    "PERMISSION_DENIED": 4403,
    "NOT_FOUND": 4404,
    "FAILED_PRECONDITION": 4412,
    "INVALID_ARGUMENT": 4400,
    "RESOURCE_EXHAUSTED": 4429,
    "UNAVAILABLE": 1001,  # going away (server shutting down)
}


def close_code_for(code: str) -> int:
    return CLOSE_CODES.get(code, 1011)


@dataclass(slots=True, frozen=True)
class WsTarget:
    app_id: str
    access_token: str | None
    heartbeat_seconds: int
    resume_from: str = ""
    resume_from_ack: bool = False
    snapshot_page_size: int = 0


def parse_ws_target(path: str) -> WsTarget:
    """``/v1/apps/{app_id}/ws?access_token=…&heartbeat_seconds=…``; raises
    NotFound-like InvalidArgument for any other path."""
    parts = urlsplit(path)
    m = _PATH.match(parts.path)
    if m is None:
        raise InvalidArgument(f"no WebSocket endpoint at {parts.path}", field="path")
    query = parse_qs(parts.query)
    token = query.get("access_token", [None])[0]
    raw_heartbeat = query.get("heartbeat_seconds", ["0"])[0]
    try:
        heartbeat = int(raw_heartbeat)
    except ValueError:
        raise InvalidArgument("heartbeat_seconds must be an integer", field="heartbeat_seconds") from None
    try:
        page_size = int(query.get("snapshot_page_size", ["0"])[0])
    except ValueError:
        raise InvalidArgument("snapshot_page_size must be an integer", field="snapshot_page_size") from None
    return WsTarget(
        app_id=m["app_id"],
        access_token=token or None,
        heartbeat_seconds=heartbeat,
        resume_from=query.get("resume_from", [""])[0],
        resume_from_ack=query.get("resume_from_ack", [""])[0].lower() in ("1", "true", "yes"),
        snapshot_page_size=page_size,
    )


def _server_frame(frame: Frame, reply_to: str = "") -> events_pb2.ServerFrame:
    if isinstance(frame, events_pb2.Event):
        return events_pb2.ServerFrame(event=frame)
    if isinstance(frame, events_pb2.Gap):
        return events_pb2.ServerFrame(gap=frame)
    if isinstance(frame, events_pb2.Snapshot):
        return events_pb2.ServerFrame(snapshot=frame)
    return events_pb2.ServerFrame(reply_to=reply_to, resumed=frame)


def _bearer(value: str) -> str:
    return value if value.lower().startswith("bearer ") else f"Bearer {value}"


class _Session(Generic[CallerT]):
    """One authenticated WebSocket connection."""

    def __init__(
        self,
        bridge: WebSocketBridge[CallerT],
        ws: ServerConnection,
        caller: CallerT,
        conn: QueuedConnection,
        page_size: int = 0,
    ) -> None:
        self.bridge = bridge
        self.ws = ws
        self.caller = caller
        self.conn = conn
        self.page_size = page_size or resolve_page_size(0)
        self.last_acked_event_id = ""
        self._send_lock = asyncio.Lock()
        # While True, a `resume` first frame is still expected (live events held).
        self.resume_window = False
        self._window_timer: asyncio.TimerHandle | None = None

    def open_resume_window(self, seconds: float) -> None:
        if self._window_timer is not None:
            self._window_timer.cancel()
        self.resume_window = True
        self._window_timer = asyncio.get_running_loop().call_later(seconds, self.close_resume_window)

    def close_resume_window(self) -> None:
        if self._window_timer is not None:
            self._window_timer.cancel()
            self._window_timer = None
        if self.resume_window:
            self.resume_window = False
            self.conn.release(0)

    async def send_frames(self, frames: AsyncIterator[Frame], reply_to: str = "") -> None:
        try:
            async for frame in frames:
                await self.send(_server_frame(frame, reply_to))
        except NexxusError as err:
            await self.send_error(err, reply_to)

    async def send(self, frame: events_pb2.ServerFrame) -> None:
        async with self._send_lock:
            await self.ws.send(dump_server_frame(frame))

    async def send_error(self, err: NexxusError, reply_to: str = "") -> None:
        error = error_to_stream_error(err)
        error.position = self.conn.sent_position
        await self.send(events_pb2.ServerFrame(reply_to=reply_to, error=error))

    async def pump(self, heartbeat: int) -> None:
        """Events and heartbeats out, until the connection is closed server-side
        (then `_run` sends the error frame and closes the socket)."""
        while True:
            try:
                event = await self.conn.next_event(heartbeat)
            except ConnectionClosed:
                return
            if event is None:
                await self.send(events_pb2.ServerFrame(heartbeat=heartbeat_frame()))
            else:
                await self.send(events_pb2.ServerFrame(event=event))

    async def close_with(self, closed: ConnectionClosed) -> None:
        """The error frame, then the close code. A client that does not read gets
        `transport.close_grace_seconds` for the frame, then as long for the close
        handshake (the server's `close_timeout`)."""
        with contextlib.suppress(SocketClosed, TimeoutError):
            async with asyncio.timeout(self.bridge.hub.settings.close_grace_seconds):
                await self.send(events_pb2.ServerFrame(error=closed.stream_error()))
        await self.ws.close(close_code_for(closed.code), closed.reason[:120])

    async def read(self) -> None:
        """Client frames in, until the client goes away."""
        async for raw in self.ws:
            try:
                frame = parse_client_frame(raw)
            except BadFrame as err:
                await self.send_error(err, err.frame_id)
                continue
            kind = frame.WhichOneof("frame")
            resuming = self.resume_window and kind == "resume"
            if self.resume_window and kind == "subscribe" and not frame.subscribe.initial_state:
                # Re-making its subscriptions before a `resume` (a reconnecting
                # client): the window stays open, for as long again.
                self.open_resume_window(self.bridge.resume_window)
            elif not resuming:
                self.close_resume_window()
            try:
                await self.handle(frame)
            except NexxusError as err:
                await self.send_error(err, frame.id)
            finally:
                if resuming:
                    self.close_resume_window()

    async def handle(self, frame: events_pb2.ClientFrame) -> None:
        bridge, reply_to = self.bridge, frame.id
        kind = frame.WhichOneof("frame")
        positions = bridge.positions
        if kind == "subscribe":
            if frame.subscribe.initial_state:
                await self.subscribe_with_state(frame)
                return
            subscribe = bridge.hub.bound(self.conn, bridge.subscribe)
            sub = await create_subscription(
                self.caller, self.conn.app_id, frame.subscribe, subscribe, field_prefix="subscribe"
            )
            head = (await positions.head()).head
            await self.send(
                events_pb2.ServerFrame(
                    reply_to=reply_to,
                    subscribed=events_pb2.Subscribed(subscription=sub, position=str(head)),
                )
            )
        elif kind == "resume":
            await self.resume(frame)
        elif kind == "unsubscribe":
            sub_id = frame.unsubscribe.subscription_id
            if not sub_id:
                raise InvalidArgument("subscription_id is required", field="unsubscribe.subscription_id")
            await bridge.unsubscribe(self.caller, sub_id)
            await self.send(
                events_pb2.ServerFrame(
                    reply_to=reply_to, unsubscribed=events_pb2.Unsubscribed(subscription_id=sub_id)
                )
            )
        elif kind == "ack":
            if frame.ack.position:
                await positions.ack(
                    self.conn.app_id, self.conn.device_id, frame.ack.position, field="ack.position"
                )
            elif not frame.ack.event_id:
                raise InvalidArgument("position is required", field="ack.position")
            self.last_acked_event_id = frame.ack.event_id
        elif kind == "ping":
            await self.send(
                events_pb2.ServerFrame(reply_to=reply_to, pong=events_pb2.Pong(payload=frame.ping.payload))
            )
        elif kind == "auth":
            raise FailedPrecondition("the connection is already authenticated", field="auth")

    async def resume(self, frame: events_pb2.ClientFrame) -> None:
        """A `resume` frame: allowed while nothing was sent yet (the first frame)."""
        conn, positions = self.conn, self.bridge.positions
        if not self.resume_window and (conn.last_seq or conn.queued):
            raise FailedPrecondition(
                "resume must be the first frame (or use the resume_from query parameter)",
                reason="RESUME_TOO_LATE",
                field="resume",
            )
        start = await positions.start_position(
            conn.app_id, conn.device_id, frame.resume.position, frame.resume.from_ack, field="resume.position"
        )
        if start is None:  # from_ack without an acknowledged position: live from now
            head = (await positions.head()).head
            self.close_resume_window()
            await self.send(
                events_pb2.ServerFrame(reply_to=frame.id, resumed=events_pb2.Resumed(position=str(head)))
            )
            return
        conn.hold()
        self.resume_window = False
        await self.send_frames(positions.open_frames(conn, start, (), self.page_size), frame.id)

    async def subscribe_with_state(self, frame: events_pb2.ClientFrame) -> None:
        """`subscribe` with `initial_state`: subscribed, the snapshot, then live events."""
        conn, bridge = self.conn, self.bridge
        conn.hold()
        try:
            await conn.wait_drained()
            sub = await create_subscription(
                self.caller,
                conn.app_id,
                frame.subscribe,
                bridge.hub.bound(conn, bridge.subscribe),
                field_prefix="subscribe",
            )
            head = (await bridge.positions.head()).head
            await self.send(
                events_pb2.ServerFrame(
                    reply_to=frame.id, subscribed=events_pb2.Subscribed(subscription=sub, position=str(head))
                )
            )
        except BaseException:
            if not self.resume_window:
                conn.release(0)
            raise
        frames = bridge.positions.open_frames(conn, None, (sub,), self.page_size)
        await self.send_frames(frames, frame.id)


class WebSocketBridge(Generic[CallerT]):
    """The `websockets` connection handler: pass `handler` and `process_request`
    to `websockets.asyncio.server.serve`."""

    def __init__(
        self,
        hub: ConnectionHub,
        authenticate: Authenticate[CallerT],
        subscribe: Subscribe[CallerT],
        unsubscribe: Unsubscribe[CallerT],
        positions: StreamPositions,
        *,
        auth_timeout: float = 10.0,
        resume_window: float = RESUME_WINDOW,
    ) -> None:
        self.hub = hub
        self.authenticate = authenticate
        self.subscribe = subscribe
        self.unsubscribe = unsubscribe
        self.positions = positions
        self.resume_window = resume_window
        self.auth_timeout = auth_timeout
        self.sessions: set[_Session[CallerT]] = set()
        # Connections still authenticating (not yet in the hub).
        self._pending: set[ServerConnection] = set()
        self._shutting_down = False

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Reject upgrades to any other path with 404 before the handshake."""
        try:
            parse_ws_target(request.path)
        except InvalidArgument as err:
            return ws.respond(HTTPStatus.NOT_FOUND, f"{err.message}\n")
        return None

    async def _send_and_close(self, ws: ServerConnection, err: NexxusError, reply_to: str = "") -> None:
        with contextlib.suppress(SocketClosed):
            frame = events_pb2.ServerFrame(reply_to=reply_to, error=error_to_stream_error(err))
            await ws.send(dump_server_frame(frame))
            await ws.close(close_code_for(err.code), err.message[:120])

    async def _authorization(self, ws: ServerConnection, target: WsTarget) -> tuple[str | None, str]:
        """(authorization header value, reply_to of the auth frame); None for an
        `auth` frame without a token: an anonymous caller (optional-auth apps)."""
        if target.access_token:
            return _bearer(target.access_token), ""
        header = ws.request.headers.get("Authorization") if ws.request is not None else None
        if header:
            return header, ""
        try:
            async with asyncio.timeout(self.auth_timeout):
                raw = await ws.recv()
        except TimeoutError:
            raise Unauthenticated(
                f"no auth frame within {self.auth_timeout:g} s", reason="AUTH_TIMEOUT", field="auth"
            ) from None
        frame = parse_client_frame(raw)
        if frame.WhichOneof("frame") != "auth":
            err = BadFrame(
                "the first frame must be auth (with an access_token, or none: anonymous)", field="auth"
            )
            err.frame_id = frame.id
            raise err
        return (_bearer(frame.auth.access_token) if frame.auth.access_token else None), frame.id

    async def shutdown(self) -> None:
        """Refuse new sessions and close the ones still authenticating with an
        error frame. (Authenticated sessions are closed through the hub.)"""
        self._shutting_down = True
        for ws in list(self._pending):
            await self._send_and_close(ws, Unavailable("server shutting down"))

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if self._shutting_down:
            await self._send_and_close(ws, Unavailable("server shutting down"))
            return
        self._pending.add(ws)
        try:
            await self._handle(ws)
        finally:
            self._pending.discard(ws)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        reply_to = ""
        try:
            target = parse_ws_target(ws.request.path)
            heartbeat = resolve_heartbeat(target.heartbeat_seconds, self.hub.settings.heartbeat_seconds)
            page_size = resolve_page_size(target.snapshot_page_size)
            authorization, reply_to = await self._authorization(ws, target)
            caller = await self.authenticate(target.app_id, authorization)
            device_id = require_device(caller)
            start = await self.positions.start_position(
                target.app_id, device_id, target.resume_from, target.resume_from_ack, field="resume_from"
            )
        except BadFrame as err:  # a malformed first frame: not authenticated
            await self._send_and_close(ws, Unauthenticated(err.message, field=err.field), err.frame_id)
            return
        except NexxusError as err:
            await self._send_and_close(ws, err, reply_to)
            return
        except SocketClosed:
            return
        if self._shutting_down:
            await self._send_and_close(ws, Unavailable("server shutting down"))
            return
        self._pending.discard(ws)
        conn = self.hub.connection(target.app_id, caller.user_id or "", device_id, transport="websocket")
        conn.authorization, conn.expires_at = authorization, caller.expires_at
        transport = ws.transport
        conn.unsent_bytes = transport.get_write_buffer_size
        conn.hold()
        await self.hub.register(conn)
        session = _Session(self, ws, caller, conn, page_size)
        self.sessions.add(session)
        try:
            try:
                head = start or (await self.positions.head()).head
            except NexxusError as err:
                await self._send_and_close(ws, err, reply_to)
                return
            await session.send(
                events_pb2.ServerFrame(
                    reply_to=reply_to,
                    ready=events_pb2.StreamReady(
                        device_id=conn.device_id,
                        user_id=conn.user_id,
                        node=self.hub.node_id,
                        position=str(head),
                    ),
                )
            )
            if start is not None:
                await session.send_frames(self.positions.open_frames(conn, start, (), page_size))
            else:
                session.open_resume_window(self.resume_window)
            await self._run(session, heartbeat)
        except SocketClosed:
            pass
        finally:
            session.close_resume_window()
            self.sessions.discard(session)
            await self.hub.unregister(conn)

    @staticmethod
    async def _run(session: _Session[CallerT], heartbeat: int) -> None:
        """Pump and reader until one ends or the connection is closed server-side
        (a pump stuck on a client that does not read is cancelled: its frame is
        already in the socket buffer)."""
        conn_id = session.conn.connection_id
        pump = asyncio.create_task(session.pump(heartbeat), name=f"ws-pump-{conn_id}")
        read = asyncio.create_task(session.read(), name=f"ws-read-{conn_id}")
        closed = asyncio.create_task(session.conn.wait_closed(), name=f"ws-closed-{conn_id}")
        tasks = (pump, read, closed)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        if session.conn.closed is not None:
            await session.close_with(session.conn.closed)
        for result in results[:2]:
            if isinstance(result, BaseException) and not isinstance(
                result, SocketClosed | asyncio.CancelledError
            ):
                raise result
