"""SubscriptionService: the caller device's channels."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from nexxus.api.calls import caller_of, rpc
from nexxus.api.context import ApiContext
from nexxus.api.paging import page_of
from nexxus.core.errors import InvalidArgument
from nexxus.subscribing import SubscriptionManager
from nexxus.v1 import subscriptions_pb2 as pb
from nexxus.v1.subscriptions_pb2_grpc import SubscriptionServiceServicer

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class SubscriptionServicer(SubscriptionServiceServicer):
    def __init__(self, ctx: ApiContext, manager: SubscriptionManager) -> None:
        self.ctx = ctx
        self.manager = manager

    @rpc
    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Ctx
    ) -> pb.CreateSubscriptionResponse:
        caller = await caller_of(self.ctx, context, request.app_id)
        if request.initial_state:
            raise InvalidArgument(
                "initial_state needs an event stream: subscribe on StreamEvents or the WebSocket",
                field="initial_state",
            )
        return pb.CreateSubscriptionResponse(subscription=await self.manager.create(caller, request))

    @rpc
    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Ctx
    ) -> pb.ListSubscriptionsResponse:
        caller = await caller_of(self.ctx, context, request.app_id)
        subs = await self.manager.list(caller)
        items, token = page_of(
            subs, key=lambda s: s.id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListSubscriptionsResponse(subscriptions=items, next_page_token=token)

    @rpc
    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, context: Ctx
    ) -> pb.DeleteSubscriptionResponse:
        caller = await caller_of(self.ctx, context, request.app_id)
        await self.manager.delete(caller, request.subscription_id)
        return pb.DeleteSubscriptionResponse()
