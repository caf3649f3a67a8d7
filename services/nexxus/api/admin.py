"""AdminService: what the operator's console reads and does, on any application.

Every method needs the operator key (`require_operator`). The event inspector
reads the application's event history (the EVENTS stream) from a position on,
so each event it shows carries the same position a device would receive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format

from nexxus.api.applications import app_to_proto
from nexxus.api.calls import require_app, require_operator, rpc
from nexxus.api.context import ApiContext
from nexxus.api.devices import device_to_proto
from nexxus.api.sessions import revoke_device, revoke_user
from nexxus.api.users import user_to_proto
from nexxus.auth.server_keys import generate_server_key, hash_server_key
from nexxus.core.convert import struct_to_dict
from nexxus.core.errors import InvalidArgument, NexxusError, NotFound, Unavailable
from nexxus.core.events import build_event
from nexxus.core.filterquery import compile_matcher, parse_filter
from nexxus.core.filterquery.matcher import Matcher
from nexxus.core.positions import Position, parse_position
from nexxus.rpc.errors import abort_with_error
from nexxus.v1 import admin_pb2 as pb
from nexxus.v1 import events_pb2, internal_pb2
from nexxus.v1.admin_pb2_grpc import AdminServiceServicer

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

# How often the inspector looks for new events, and sends a heartbeat when there were none.
INSPECT_POLL_SECONDS = 0.2
INSPECT_HEARTBEAT_SECONDS = 5.0
# Events read from the history per round (the rest follow in the next rounds).
INSPECT_BATCH = 500
# Pause before reading again after the bus was unavailable.
INSPECT_RETRY_SECONDS = 1.0


def _page_size(value: int) -> int:
    size = value or 100
    if not 0 < size <= 1000:
        raise InvalidArgument("page_size must be 1..1000", field="page_size")
    return size


class EventFilter:
    """Which events of an application the inspector shows, and as what kind."""

    def __init__(self, model: str, matcher: Matcher | None) -> None:
        self.model = model
        self.matcher = matcher

    def kind_of(self, event: internal_pb2.ModelEvent) -> events_pb2.EventKind.ValueType | None:
        """The kind to show `event` as, or None when it is filtered out.

        With a filter: an update that brings the object into the filter is
        ENTERED, out of it LEFT (as a filtered subscription sees it)."""
        if self.model and event.model != self.model:
            return None
        if self.matcher is None:
            return event.kind
        before = self.matcher(struct_to_dict(event.before.data)) if event.HasField("before") else False
        after = self.matcher(struct_to_dict(event.after.data)) if event.HasField("after") else False
        if not (before or after):
            return None
        if event.kind == events_pb2.EVENT_KIND_UPDATED and before != after:
            return events_pb2.EVENT_KIND_ENTERED if after else events_pb2.EVENT_KIND_LEFT
        return event.kind


class AdminServicer(AdminServiceServicer):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    @rpc
    async def ListApplications(
        self, request: pb.ListApplicationsRequest, context: Ctx
    ) -> pb.ListApplicationsResponse:
        require_operator(self.ctx, context)
        apps = await self.ctx.identity.list_apps()
        return pb.ListApplicationsResponse(applications=[app_to_proto(a) for a in apps])

    @rpc
    async def RotateServerKey(
        self, request: pb.RotateServerKeyRequest, context: Ctx
    ) -> pb.RotateServerKeyResponse:
        require_operator(self.ctx, context)
        await require_app(self.ctx, request.app_id)
        server_key = generate_server_key()
        if not await self.ctx.identity.set_server_key_hash(request.app_id, hash_server_key(server_key)):
            raise NotFound(
                f"application {request.app_id!r} does not exist", field="app_id", reason="APP_NOT_FOUND"
            )
        self.ctx.authenticator.invalidate_app(request.app_id)
        return pb.RotateServerKeyResponse(server_key=server_key)

    @rpc
    async def ListUsers(self, request: pb.ListUsersRequest, context: Ctx) -> pb.ListUsersResponse:
        require_operator(self.ctx, context)
        await require_app(self.ctx, request.app_id)
        users, token = await self.ctx.identity.list_users(
            request.app_id, _page_size(request.page_size), request.page_token
        )
        return pb.ListUsersResponse(users=[user_to_proto(u) for u in users], next_page_token=token)

    @rpc
    async def RevokeUser(self, request: pb.RevokeUserRequest, context: Ctx) -> pb.RevokeUserResponse:
        require_operator(self.ctx, context)
        await require_app(self.ctx, request.app_id)
        if await self.ctx.identity.get_user(request.app_id, request.user_id) is None:
            raise NotFound(
                f"user {request.user_id!r} does not exist", field="user_id", reason="USER_NOT_FOUND"
            )
        await revoke_user(self.ctx, request.app_id, request.user_id, "revoked by the operator")
        return pb.RevokeUserResponse()

    @rpc
    async def ListAppDevices(
        self, request: pb.ListAppDevicesRequest, context: Ctx
    ) -> pb.ListAppDevicesResponse:
        require_operator(self.ctx, context)
        await require_app(self.ctx, request.app_id)
        devices, token = await self.ctx.identity.list_devices(
            request.app_id, request.owner_id, _page_size(request.page_size), request.page_token
        )
        return pb.ListAppDevicesResponse(devices=[device_to_proto(d) for d in devices], next_page_token=token)

    @rpc
    async def RevokeDevice(self, request: pb.RevokeDeviceRequest, context: Ctx) -> pb.RevokeDeviceResponse:
        require_operator(self.ctx, context)
        await require_app(self.ctx, request.app_id)
        device = await self.ctx.identity.get_device(request.app_id, request.device_id)
        if device is None:
            raise NotFound(
                f"device {request.device_id!r} does not exist", field="device_id", reason="DEVICE_NOT_FOUND"
            )
        await revoke_device(self.ctx, request.app_id, device.id, "revoked by the operator")
        await self.ctx.store.remove_device_subscriptions(request.app_id, device.id, volatile_only=False)
        await self.ctx.identity.delete_device(request.app_id, device.id)
        return pb.RevokeDeviceResponse()

    @rpc
    async def ListConnections(
        self, request: pb.ListConnectionsRequest, context: Ctx
    ) -> pb.ListConnectionsResponse:
        require_operator(self.ctx, context)
        if request.app_id:
            await require_app(self.ctx, request.app_id)
        out = pb.ListConnectionsResponse()
        subs_of: dict[tuple[str, str], list[Any]] = {}
        for node in await self.ctx.store.transport_nodes(request.app_id):
            entry = out.nodes.add(node_id=node.node, alive=node.alive)
            for held in node.connections:
                key = (held.app_id, held.device_id)
                if key not in subs_of:
                    subs_of[key] = await self.ctx.store.list_device_subscriptions(*key)
                entry.connections.add(
                    app_id=held.app_id,
                    connection_id=held.connection_id,
                    device_id=held.device_id,
                    subscriptions=subs_of[key],
                )
        return out

    async def _event_filter(self, request: pb.InspectEventsRequest) -> EventFilter:
        has_filter = request.HasField("filter") and len(request.filter.fields) > 0
        if not request.model:
            if has_filter:
                raise InvalidArgument("a filter needs a model", field="model")
            return EventFilter("", None)
        schema = await self.ctx.schemas.require(request.app_id, request.model)
        if not has_filter:
            return EventFilter(request.model, None)
        raw = json_format.MessageToDict(request.filter)
        return EventFilter(request.model, compile_matcher(parse_filter(raw, schema)))

    async def InspectEvents(
        self, request: pb.InspectEventsRequest, context: Ctx
    ) -> AsyncIterator[pb.InspectEventsResponse]:
        try:
            require_operator(self.ctx, context)
            await require_app(self.ctx, request.app_id)
            selected = await self._event_filter(request)
            bounds = await self.ctx.bus.history_bounds()
            if request.after_position:
                start = parse_position(request.after_position, field="after_position")
                if start.epoch != bounds.epoch:
                    raise InvalidArgument(
                        "after_position is of another history epoch",
                        field="after_position",
                        reason="BAD_POSITION",
                    )
                last = start.seq
            else:
                last = bounds.last_seq
        except NexxusError as err:
            await abort_with_error(context, err)
        async for frame in self._inspect(request.app_id, selected, bounds.epoch, last):
            yield frame

    async def _inspect(
        self, app_id: str, selected: EventFilter, epoch: str, last: int
    ) -> AsyncIterator[pb.InspectEventsResponse]:
        quiet_since = time.monotonic() - INSPECT_HEARTBEAT_SECONDS  # a first heartbeat at once
        while True:
            try:
                head = (await self.ctx.bus.history_bounds()).last_seq
                if head > last:
                    up_to = min(head, last + INSPECT_BATCH)
                    async for seq, data in self.ctx.bus.read_history(app_id, last, up_to):
                        last = seq  # a retry after a failed read goes on from here: nothing twice
                        event = internal_pb2.ModelEvent.FromString(data)
                        kind = selected.kind_of(event)
                        if kind is not None:
                            shown = build_event(event, kind)
                            shown.position = str(Position(epoch, seq))
                            yield pb.InspectEventsResponse(event=shown)
                            quiet_since = time.monotonic()
                    last = up_to
                    continue
            except Unavailable:
                # The bus is away (a restart, a lost connection): keep the stream and try again.
                await asyncio.sleep(INSPECT_RETRY_SECONDS)
                continue
            if time.monotonic() - quiet_since >= INSPECT_HEARTBEAT_SECONDS:
                frame = pb.InspectEventsResponse()
                frame.heartbeat.GetCurrentTime()
                yield frame
                quiet_since = time.monotonic()
            await asyncio.sleep(INSPECT_POLL_SECONDS)
