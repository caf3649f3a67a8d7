"""A small gRPC client for end-to-end tests: one call per line in the tests.

Talks to a running mesh with the generated grpcio stubs (the product's own
asyncio client lives in clients/python and has its own tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from nexxus.core.schema import ModelSchema
from nexxus.v1 import (
    applications_pb2,
    applications_pb2_grpc,
    common_pb2,
    devices_pb2,
    devices_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    objects_pb2,
    objects_pb2_grpc,
    subscriptions_pb2,
    subscriptions_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)


def struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(dict(data))
    return out


def to_dict(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def patch(op: str, paths: list[str], values: list[Any] | None = None) -> common_pb2.JsonPatchOperation:
    out = common_pb2.JsonPatchOperation(op=op, path=paths)
    for v in values or []:
        val = struct_pb2.Value()
        json_format.ParseDict(v, val)
        out.value.append(val)
    return out


class Api:
    """Stubs bound to one api address and one credential."""

    def __init__(self, channel: grpc.aio.Channel, token: str = "") -> None:
        self.channel = channel
        self.token = token
        self.apps = applications_pb2_grpc.ApplicationServiceStub(channel)
        self.users = users_pb2_grpc.UserServiceStub(channel)
        self.devices = devices_pb2_grpc.DeviceServiceStub(channel)
        self.objects = objects_pb2_grpc.ObjectServiceStub(channel)
        self.subs = subscriptions_pb2_grpc.SubscriptionServiceStub(channel)

    @property
    def md(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    def as_(self, token: str) -> Api:
        return Api(self.channel, token)

    # ---------------------------------------------------------------- conveniences

    async def create_app(self, app_id: str, *, optional_auth: bool = False) -> str:
        resp = await self.apps.CreateApplication(
            applications_pb2.CreateApplicationRequest(app_id=app_id, optional_auth=optional_auth),
            metadata=self.md,
        )
        return resp.server_key

    async def put_schema(self, app_id: str, model: str, schema: Mapping[str, Any]) -> None:
        pb = ModelSchema.from_dict({**schema, "name": model}).to_proto()
        await self.apps.PutModelSchema(
            applications_pb2.PutModelSchemaRequest(app_id=app_id, model=model, schema=pb), metadata=self.md
        )

    async def user_with_device(
        self, app_id: str, username: str, password: str = "correct horse battery"
    ) -> User:
        await self.users.RegisterUser(
            users_pb2.RegisterUserRequest(app_id=app_id, username=username, password=password),
            metadata=self.md,
        )
        login = await self.users.Login(
            users_pb2.LoginRequest(app_id=app_id, login=username, password=password)
        )
        user_api = self.as_(login.tokens.access_token)
        dev = await user_api.devices.RegisterDevice(
            devices_pb2.RegisterDeviceRequest(app_id=app_id, name=f"{username}-phone"), metadata=user_api.md
        )
        return User(
            app_id=app_id,
            user_id=login.user.id,
            device_id=dev.device.id,
            token=dev.tokens.access_token,
            user_token=login.tokens.access_token,
            password=password,
            username=username,
        )

    async def add_device(self, user: User, name: str) -> User:
        api = self.as_(user.user_token)
        dev = await api.devices.RegisterDevice(
            devices_pb2.RegisterDeviceRequest(app_id=user.app_id, name=name), metadata=api.md
        )
        return User(
            app_id=user.app_id,
            user_id=user.user_id,
            device_id=dev.device.id,
            token=dev.tokens.access_token,
            user_token=user.user_token,
            password=user.password,
            username=user.username,
        )

    async def subscribe(self, app_id: str, model: str, **kw: Any) -> subscriptions_pb2.Subscription:
        flt = kw.pop("filter", None)
        req = subscriptions_pb2.CreateSubscriptionRequest(app_id=app_id, model=model, **kw)
        if flt is not None:
            req.filter.CopyFrom(struct(flt))
        resp = await self.subs.CreateSubscription(req, metadata=self.md)
        return resp.subscription

    async def create(
        self, app_id: str, model: str, data: Mapping[str, Any], *, object_id: str = "", wait: bool = True
    ) -> objects_pb2.CreateObjectResponse:
        return await self.objects.CreateObject(
            objects_pb2.CreateObjectRequest(
                app_id=app_id, model=model, object_id=object_id, data=struct(data), wait=wait
            ),
            metadata=self.md,
        )

    async def update(
        self,
        app_id: str,
        model: str,
        object_id: str,
        ops: list[common_pb2.JsonPatchOperation],
        *,
        expected_version: int = 0,
        wait: bool = True,
    ) -> objects_pb2.UpdateObjectResponse:
        return await self.objects.UpdateObject(
            objects_pb2.UpdateObjectRequest(
                app_id=app_id,
                model=model,
                object_id=object_id,
                patch=ops,
                expected_version=expected_version,
                wait=wait,
            ),
            metadata=self.md,
        )

    async def delete(self, app_id: str, model: str, object_id: str, *, wait: bool = True) -> None:
        await self.objects.DeleteObject(
            objects_pb2.DeleteObjectRequest(app_id=app_id, model=model, object_id=object_id, wait=wait),
            metadata=self.md,
        )


@dataclass
class User:
    app_id: str
    user_id: str
    device_id: str
    token: str
    user_token: str
    password: str
    username: str


@dataclass
class EventStream:
    """A device's open event stream collecting events in the background."""

    call: Any
    ready: events_pb2.StreamReady
    events: asyncio.Queue[events_pb2.Event] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    # How many frames of each kind arrived (event, batch, heartbeat...).
    frames: dict[str, int] = field(default_factory=dict)
    # The error frames (a stream's in-band reason for closing).
    errors: list[events_pb2.StreamError] = field(default_factory=list)

    async def next(self, timeout: float = 10.0) -> events_pb2.Event:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def collect(self, n: int, timeout: float = 15.0) -> list[events_pb2.Event]:
        return [await self.next(timeout) for _ in range(n)]

    async def quiet(self, seconds: float = 1.0) -> list[events_pb2.Event]:
        """Whatever arrives within `seconds` (to assert that nothing more comes)."""
        await asyncio.sleep(seconds)
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    async def close(self) -> None:
        self.call.cancel()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self.task


@contextlib.asynccontextmanager
async def open_stream(
    channel: grpc.aio.Channel,
    app_id: str,
    token: str,
    subscriptions: list[subscriptions_pb2.CreateSubscriptionRequest] | None = None,
    max_batch: int = 0,
) -> AsyncIterator[EventStream]:
    stub = events_pb2_grpc.EventServiceStub(channel)
    call = stub.StreamEvents(
        events_pb2.StreamEventsRequest(
            app_id=app_id, subscriptions=subscriptions or [], heartbeat_seconds=30, max_batch=max_batch
        ),
        metadata=[("authorization", f"Bearer {token}")] if token else [],
    )
    first = await asyncio.wait_for(call.read(), 15)
    assert first.WhichOneof("frame") == "ready", first
    stream = EventStream(call=call, ready=first.ready)

    async def pump() -> None:
        while True:
            frame = await call.read()
            if frame is grpc.aio.EOF:
                return
            which = frame.WhichOneof("frame")
            stream.frames[which] = stream.frames.get(which, 0) + 1
            if which == "event":
                stream.events.put_nowait(frame.event)
            elif which == "batch":
                for event in frame.batch.events:
                    stream.events.put_nowait(event)
            elif which == "error":
                stream.errors.append(frame.error)

    stream.task = asyncio.create_task(pump())
    try:
        yield stream
    finally:
        await stream.close()
