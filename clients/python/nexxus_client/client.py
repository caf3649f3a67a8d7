"""The asyncio client: typed calls over gRPC (grpclib + the betterproto2 stubs
generated into `nexxus_client_proto`), and a reconnecting event stream.

    async with NexxusClient("127.0.0.1", 9090, "my-app", token) as client:
        await client.create_object("task", {"title": "write docs"})
        async for event in client.subscribe(model="task", filter={"status": {"eq": "todo"}}):
            print(event.kind.name, event.object_id)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import betterproto2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from nexxus_client_proto.google.protobuf import Struct, Value
from nexxus_client_proto.nexxus import v1

from nexxus_client.errors import NexxusClientError, from_grpc_error

__all__ = ["Backoff", "EventStream", "GetToken", "NexxusClient", "Patch", "StreamItem", "patch"]

T = TypeVar("T")

GetToken = Callable[[], Awaitable[str]]
# What an EventStream yields: events, and the gap / snapshot frames of a resume
# that came too late (the application replaces its state with the snapshot).
StreamItem = v1.Event | v1.Gap | v1.Snapshot

Patch = v1.JsonPatchOperation | Mapping[str, Any]


def patch(
    op: str, path: str | Sequence[str], value: Any | Sequence[Any] | None = None
) -> v1.JsonPatchOperation:
    """One JsonPatch operation: ``patch("replace", ["status", "priority"], ["done", "low"])``
    or, for one path, ``patch("replace", "status", "done")``."""
    paths = [path] if isinstance(path, str) else list(path)
    if value is None:
        values: list[Any] = []
    elif isinstance(path, str):
        values = [value]
    else:
        values = list(value)
    return v1.JsonPatchOperation(op=op, path=paths, value=[Value.from_dict(v) for v in values])


def _patch_op(p: Patch) -> v1.JsonPatchOperation:
    if isinstance(p, v1.JsonPatchOperation):
        return p
    path = p["path"]
    return patch(str(p["op"]), path if isinstance(path, str) else list(path), p.get("value"))


def _struct(data: Mapping[str, Any] | None) -> Struct | None:
    return None if data is None else Struct.from_dict(dict(data))


# Events per stream frame under load (the server batches what is queued).
MAX_BATCH = 64
# Event ids remembered per stream to drop duplicates after a resume.
SEEN_EVENTS = 10_000
# Why a stream or a call was refused that a fresh access token cures.
REFRESHABLE = frozenset({"TOKEN_EXPIRED"})


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter between reconnection attempts."""

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.maximum, self.initial * self.factor**attempt))


# Transport-level failures: the stream is reopened after a backoff.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    StreamTerminatedError,
    ProtocolError,
    OSError,
    TimeoutError,
)


class NexxusClient:
    """One application, one credential, two gRPC channels: the api (`host`,
    `port`) and the event stream (`events_host`, `events_port`, by default the
    same address, as through Envoy)."""

    def __init__(
        self,
        host: str,
        port: int,
        app_id: str,
        token: str = "",
        *,
        events_host: str | None = None,
        events_port: int | None = None,
        timeout: float | None = 30.0,
        backoff: Backoff | None = None,
        get_token: GetToken | None = None,
        refresh_token: str = "",
        auto_refresh_token: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.app_id = app_id
        self.token = token
        # Where a fresh access token comes from when the current one expires:
        # `get_token()` (an async callable, as centrifuge-js's getToken), else
        # the refresh token (`auto_refresh_token`, as supabase-js), which
        # login / register_device / refresh_access_token keep up to date.
        self.get_token = get_token
        self.refresh_token = refresh_token
        self.auto_refresh_token = auto_refresh_token
        self.events_host = events_host or host
        self.events_port = events_port or port
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self._channel: Channel | None = None
        self._streams: set[EventStream] = set()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> NexxusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @property
    def channel(self) -> Channel:
        if self._channel is None:
            self._channel = Channel(self.host, self.port)
        return self._channel

    def _metadata(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except GRPCError as err:
            raise from_grpc_error(err) from None

    # ------------------------------------------------------------------ identity

    async def register_user(
        self, username: str, password: str, *, email: str = "", display_name: str = ""
    ) -> v1.User:
        stub = v1.UserServiceStub(self.channel, timeout=self.timeout)
        req = v1.RegisterUserRequest(
            app_id=self.app_id, username=username, password=password, email=email, display_name=display_name
        )
        resp: v1.RegisterUserResponse = await self._call(stub.register_user(req, metadata=self._metadata()))
        assert resp.user is not None
        return resp.user

    async def login(self, login: str, password: str, *, device_id: str = "") -> v1.LoginResponse:
        """Logs in; the client then uses the returned access token."""
        stub = v1.UserServiceStub(self.channel, timeout=self.timeout)
        req = v1.LoginRequest(app_id=self.app_id, login=login, password=password, device_id=device_id)
        resp: v1.LoginResponse = await self._call(stub.login(req))
        self._take_tokens(resp.tokens)
        return resp

    def _take_tokens(self, tokens: v1.TokenPair | None) -> None:
        if tokens is not None:
            self.token = tokens.access_token
            if tokens.refresh_token:
                self.refresh_token = tokens.refresh_token

    async def refresh_access_token(self) -> str:
        """A fresh access token (from `get_token`, else the refresh token); the
        client uses it from now on. Raises NexxusClientError when neither works."""
        if self.get_token is not None:
            self.token = await self.get_token()
            return self.token
        if not (self.auto_refresh_token and self.refresh_token):
            raise NexxusClientError("UNAUTHENTICATED", "the access token expired and cannot be refreshed", {})
        stub = v1.UserServiceStub(self.channel, timeout=self.timeout)
        req = v1.RefreshTokenRequest(app_id=self.app_id, refresh_token=self.refresh_token)
        resp: v1.RefreshTokenResponse = await self._call(stub.refresh_token(req))
        self._take_tokens(resp.tokens)
        return self.token

    async def register_device(self, name: str, *, platform: str = "python") -> v1.RegisterDeviceResponse:
        """Registers a device of the logged-in user; the client then uses the
        device-bound token (event streams need one)."""
        stub = v1.DeviceServiceStub(self.channel, timeout=self.timeout)
        req = v1.RegisterDeviceRequest(app_id=self.app_id, name=name, platform=platform)
        resp: v1.RegisterDeviceResponse = await self._call(
            stub.register_device(req, metadata=self._metadata())
        )
        self._take_tokens(resp.tokens)
        return resp

    # ------------------------------------------------------------------ objects

    def _objects(self) -> v1.ObjectServiceStub:
        return v1.ObjectServiceStub(self.channel, timeout=self.timeout)

    async def create_object(
        self, model: str, data: Mapping[str, Any], *, object_id: str = "", wait: bool = True
    ) -> v1.CreateObjectResponse:
        req = v1.CreateObjectRequest(
            app_id=self.app_id, model=model, object_id=object_id, data=_struct(data), wait=wait
        )
        resp: v1.CreateObjectResponse = await self._call(
            self._objects().create_object(req, metadata=self._metadata())
        )
        return resp

    async def get_object(self, model: str, object_id: str) -> v1.Object:
        req = v1.GetObjectRequest(app_id=self.app_id, model=model, object_id=object_id)
        resp: v1.GetObjectResponse = await self._call(
            self._objects().get_object(req, metadata=self._metadata())
        )
        assert resp.object is not None
        return resp.object

    async def update_object(
        self,
        model: str,
        object_id: str,
        ops: Sequence[Patch],
        *,
        expected_version: int = 0,
        wait: bool = True,
    ) -> v1.UpdateObjectResponse:
        req = v1.UpdateObjectRequest(
            app_id=self.app_id,
            model=model,
            object_id=object_id,
            patch=[_patch_op(p) for p in ops],
            expected_version=expected_version,
            wait=wait,
        )
        resp: v1.UpdateObjectResponse = await self._call(
            self._objects().update_object(req, metadata=self._metadata())
        )
        return resp

    async def delete_object(
        self, model: str, object_id: str, *, expected_version: int = 0, wait: bool = True
    ) -> v1.DeleteObjectResponse:
        req = v1.DeleteObjectRequest(
            app_id=self.app_id, model=model, object_id=object_id, expected_version=expected_version, wait=wait
        )
        resp: v1.DeleteObjectResponse = await self._call(
            self._objects().delete_object(req, metadata=self._metadata())
        )
        return resp

    async def search_objects(
        self,
        model: str,
        *,
        filter: Mapping[str, Any] | None = None,
        sort: Sequence[tuple[str, bool]] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> v1.SearchObjectsResponse:
        """`sort` is ``[(field, descending), ...]``."""
        req = v1.SearchObjectsRequest(
            app_id=self.app_id,
            model=model,
            filter=_struct(filter),
            sort=[v1.SortField(field=f, descending=d) for f, d in sort],
            page_size=page_size,
            page_token=page_token,
        )
        resp: v1.SearchObjectsResponse = await self._call(
            self._objects().search_objects(req, metadata=self._metadata())
        )
        return resp

    # ------------------------------------------------------------------ subscriptions

    def _subscription_request(
        self,
        model: str,
        user_id: str = "",
        object_id: str = "",
        filter: Mapping[str, Any] | None = None,
        persistent: bool = False,
    ) -> v1.CreateSubscriptionRequest:
        return v1.CreateSubscriptionRequest(
            app_id=self.app_id,
            model=model,
            user_id=user_id,
            object_id=object_id,
            filter=_struct(filter),
            persistent=persistent,
        )

    async def create_subscription(
        self,
        model: str,
        *,
        user_id: str = "",
        object_id: str = "",
        filter: Mapping[str, Any] | None = None,
        persistent: bool = False,
    ) -> v1.Subscription:
        stub = v1.SubscriptionServiceStub(self.channel, timeout=self.timeout)
        req = self._subscription_request(model, user_id, object_id, filter, persistent)
        resp: v1.CreateSubscriptionResponse = await self._call(
            stub.create_subscription(req, metadata=self._metadata())
        )
        assert resp.subscription is not None
        return resp.subscription

    async def list_subscriptions(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> v1.ListSubscriptionsResponse:
        stub = v1.SubscriptionServiceStub(self.channel, timeout=self.timeout)
        req = v1.ListSubscriptionsRequest(app_id=self.app_id, page_size=page_size, page_token=page_token)
        resp: v1.ListSubscriptionsResponse = await self._call(
            stub.list_subscriptions(req, metadata=self._metadata())
        )
        return resp

    async def delete_subscription(self, subscription_id: str) -> None:
        stub = v1.SubscriptionServiceStub(self.channel, timeout=self.timeout)
        req = v1.DeleteSubscriptionRequest(app_id=self.app_id, subscription_id=subscription_id)
        await self._call(stub.delete_subscription(req, metadata=self._metadata()))

    # ------------------------------------------------------------------ events

    def subscribe(
        self,
        model: str | None = None,
        *,
        user_id: str = "",
        object_id: str = "",
        filter: Mapping[str, Any] | None = None,
        persistent: bool = False,
        subscriptions: Sequence[v1.CreateSubscriptionRequest] = (),
        heartbeat_seconds: int = 15,
    ) -> EventStream:
        """The device's events for one subscription (`model`, …) and/or the
        given `subscriptions`, as an async iterator. The subscriptions are made
        inline when the stream opens, so every reconnection re-creates them."""
        subs = list(subscriptions)
        if model is not None:
            subs.append(self._subscription_request(model, user_id, object_id, filter, persistent))
        for s in subs:
            s.app_id = s.app_id or self.app_id
        stream = EventStream(self, subs, heartbeat_seconds)
        self._streams.add(stream)
        return stream


class EventStream:
    """An async iterator that survives transport failures and lost events:
    after a lost connection it reopens the stream (fresh HTTP/2 connection,
    exponential backoff with jitter), re-creating its subscriptions and
    resuming from the position of the last event it handed out, so the events
    committed meanwhile arrive then, in order. Events seen already (a resume
    overlapping what arrived) are dropped by event id.

    It yields `v1.Event`s, and — when a resume came too late for the server's
    history (or the server changed) — a `v1.Gap` followed by `v1.Snapshot`
    pages: the objects the subscriptions match now, which replace what the
    application holds; events continue after the snapshot's position.

    An expired or revoked access token is refreshed (`NexxusClient.get_token`
    or the refresh token) and the stream resumes. Errors the server means (bad
    subscription, a token that cannot be refreshed) raise `NexxusClientError`
    and end the iteration.
    """

    def __init__(
        self, client: NexxusClient, subscriptions: list[v1.CreateSubscriptionRequest], heartbeat_seconds: int
    ) -> None:
        self.client = client
        self.subscriptions = subscriptions
        self.heartbeat_seconds = heartbeat_seconds
        # The latest `ready` frame (its `subscriptions` carry this connection's ids).
        self.ready: v1.StreamReady | None = None
        # How many times the stream has been (re)opened successfully.
        self.connections = 0
        # Where the stream resumes from: the last position handed out.
        self.position = ""
        # Events dropped because they had been handed out already.
        self.duplicates = 0
        self._seen: set[str] = set()
        self._seen_order: collections.deque[str] = collections.deque()
        self._connected = asyncio.Condition()
        self._channel: Channel | None = None
        self._frames: AsyncIterator[v1.StreamEventsResponse] | None = None
        # Events of a `batch` frame not handed out yet.
        self._pending: collections.deque[v1.Event] = collections.deque()
        self._attempt = 0
        self._closed = False
        # A token was refreshed since the last successful open.
        self._refreshed = False

    @property
    def subscription_ids(self) -> list[str]:
        return [s.id for s in self.ready.subscriptions] if self.ready is not None else []

    def __aiter__(self) -> EventStream:
        return self

    async def wait_connected(self, count: int = 1) -> v1.StreamReady:
        """Waits until the stream has been opened `count` times in all (the
        iterator must be consumed meanwhile, e.g. in another task)."""
        async with self._connected:
            await self._connected.wait_for(lambda: self.connections >= count)
        assert self.ready is not None
        return self.ready

    def _fresh(self, event: v1.Event) -> bool:
        """Remember a handed-out event (its id, its position); False for a duplicate."""
        if event.event_id in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(event.event_id)
        self._seen_order.append(event.event_id)
        if len(self._seen_order) > SEEN_EVENTS:
            self._seen.discard(self._seen_order.popleft())
        if event.position:
            self.position = event.position
        return True

    async def __anext__(self) -> StreamItem:
        while not self._closed:
            while self._pending:
                event = self._pending.popleft()
                if self._fresh(event):
                    return event
            try:
                if self._frames is None:
                    await self._open()
                assert self._frames is not None
                frame = await asyncio.wait_for(self._frames.__anext__(), self._idle_timeout())
            except StopAsyncIteration:
                await self._drop()  # the server ended the stream: reconnect
                continue
            except GRPCError as err:
                await self._drop()
                await self._recover(from_grpc_error(err))
                continue
            except _TRANSPORT_ERRORS:
                await self._drop()
                await self._sleep()
                continue
            which, value = _which(frame)
            if which == "event":
                assert isinstance(value, v1.Event)
                if self._fresh(value):
                    return value
            elif which == "batch":
                assert isinstance(value, v1.EventBatch)
                self._pending.extend(value.events)
            elif which == "gap":
                assert isinstance(value, v1.Gap)
                return value
            elif which == "snapshot":
                assert isinstance(value, v1.Snapshot)
                if value.position:
                    self.position = value.position
                return value
            elif which == "resumed":
                assert isinstance(value, v1.Resumed)
                if value.position:
                    self.position = value.position
            elif which == "error":
                assert isinstance(value, v1.StreamError)
                details = value.details.to_dict() if value.details else {}
                await self._drop()
                await self._recover(NexxusClientError(value.code, value.message, details))
            # heartbeat (and a stray ready): keep reading
        raise StopAsyncIteration

    async def _recover(self, error: NexxusClientError) -> None:
        """After the server ended the stream with `error`: refresh the token
        (UNAUTHENTICATED), back off (retryable), or raise."""
        reason = error.details.get("reason")
        can_refresh = self.client.get_token is not None or bool(self.client.refresh_token)
        if error.code == "UNAUTHENTICATED" and (reason in REFRESHABLE or (not reason and can_refresh)):
            if self._refreshed:  # a fresh token did not help: give up
                raise error
            self._refreshed = True
            await self.client.refresh_access_token()  # raises when it cannot
            return
        if not error.retryable:
            raise error
        await self._sleep()

    def _idle_timeout(self) -> float:
        # Heartbeats arrive every heartbeat_seconds on an idle stream: two missed
        # ones mean a dead connection that TCP has not noticed.
        return self.heartbeat_seconds * 2 + 5

    async def _open(self) -> None:
        client = self.client
        self._channel = Channel(client.events_host, client.events_port)
        stub = v1.EventServiceStub(self._channel)
        req = v1.StreamEventsRequest(
            app_id=client.app_id,
            subscriptions=self.subscriptions,
            heartbeat_seconds=self.heartbeat_seconds,
            max_batch=MAX_BATCH,
            resume_from=self.position,
        )
        frames = stub.stream_events(req, metadata=client._metadata())
        self._frames = frames
        first = await asyncio.wait_for(frames.__anext__(), self._idle_timeout())
        which, value = _which(first)
        if which == "error":
            assert isinstance(value, v1.StreamError)
            raise GRPCError(_status(value.code), value.message)
        if which != "ready":
            raise ProtocolError(f"expected a ready frame, got {which}")
        assert isinstance(value, v1.StreamReady)
        self.ready = value
        if not self.position:  # the first connection: resume from here on
            self.position = value.position
        self._attempt = 0
        self._refreshed = False
        async with self._connected:
            self.connections += 1
            self._connected.notify_all()

    async def _drop(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None and hasattr(frames, "aclose"):
            with contextlib.suppress(Exception):
                await frames.aclose()
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    async def _sleep(self) -> None:
        delay = self.client.backoff.delay(self._attempt)
        self._attempt += 1
        await asyncio.sleep(delay)

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()
        self.client._streams.discard(self)


def _which(frame: v1.StreamEventsResponse) -> tuple[str, object]:
    name, value = betterproto2.which_one_of(frame, "frame")
    return name, value


def _status(code: str) -> Status:
    return Status.__members__.get(code, Status.UNKNOWN)
