"""DeviceService: the caller's devices, each with its own tokens."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from nexxus.api.calls import caller_of, require_user, rpc
from nexxus.api.context import ApiContext
from nexxus.api.sessions import issue_tokens, revoke_device
from nexxus.auth.caller import Caller
from nexxus.core.errors import InvalidArgument, NotFound
from nexxus.core.ids import new_id
from nexxus.core.models import DeviceRecord
from nexxus.v1 import devices_pb2 as pb
from nexxus.v1.devices_pb2_grpc import DeviceServiceServicer

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
TRANSPORTS = {"", "grpc", "websocket", "sse"}


def device_to_proto(device: DeviceRecord) -> pb.Device:
    out = pb.Device(
        id=device.id,
        user_id=device.user_id,
        name=device.name,
        platform=device.platform,
        transport=device.transport,
    )
    out.create_time.FromDatetime(device.created_at)
    return out


class DeviceServicer(DeviceServiceServicer):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def _user(self, context: Ctx, app_id: str) -> Caller:
        caller = await caller_of(self.ctx, context, app_id)
        require_user(caller)
        return caller

    async def _own(self, caller: Caller, device_id: str) -> DeviceRecord:
        device = await self.ctx.identity.get_device(caller.app_id, device_id)
        if device is None or device.user_id != caller.user_id:
            raise NotFound(
                f"device {device_id!r} does not exist", field="device_id", reason="DEVICE_NOT_FOUND"
            )
        return device

    @rpc
    async def RegisterDevice(
        self, request: pb.RegisterDeviceRequest, context: Ctx
    ) -> pb.RegisterDeviceResponse:
        caller = await self._user(context, request.app_id)
        if request.transport not in TRANSPORTS:
            raise InvalidArgument("transport must be one of grpc, websocket, sse", field="transport")
        for name in ("name", "platform"):
            if len(getattr(request, name)) > 200:
                raise InvalidArgument(f"{name} is longer than 200 characters", field=name)
        device = DeviceRecord(
            app_id=request.app_id,
            id=new_id(),
            user_id=caller.user_id,
            name=request.name,
            platform=request.platform,
            transport=request.transport or "grpc",
        )
        await self.ctx.identity.create_device(device)
        tokens = await issue_tokens(self.ctx, request.app_id, caller.user_id, device.id)
        return pb.RegisterDeviceResponse(device=device_to_proto(device), tokens=tokens)

    @rpc
    async def GetDevice(self, request: pb.GetDeviceRequest, context: Ctx) -> pb.GetDeviceResponse:
        caller = await self._user(context, request.app_id)
        return pb.GetDeviceResponse(device=device_to_proto(await self._own(caller, request.device_id)))

    @rpc
    async def ListDevices(self, request: pb.ListDevicesRequest, context: Ctx) -> pb.ListDevicesResponse:
        caller = await self._user(context, request.app_id)
        page_size = request.page_size or 100
        if not 0 < page_size <= 1000:
            raise InvalidArgument("page_size must be 1..1000", field="page_size")
        devices, token = await self.ctx.identity.list_devices(
            request.app_id, caller.user_id, page_size, request.page_token
        )
        return pb.ListDevicesResponse(devices=[device_to_proto(d) for d in devices], next_page_token=token)

    @rpc
    async def DeleteDevice(self, request: pb.DeleteDeviceRequest, context: Ctx) -> pb.DeleteDeviceResponse:
        caller = await self._user(context, request.app_id)
        device = await self._own(caller, request.device_id)
        await revoke_device(self.ctx, request.app_id, device.id, "device deleted")
        await self.ctx.store.remove_device_subscriptions(request.app_id, device.id, volatile_only=False)
        await self.ctx.identity.delete_device(request.app_id, device.id)
        return pb.DeleteDeviceResponse()
