"""The api's gRPC server: every public service, health and reflection.

Built separately from running (`build_api_server` → server, bound port), so
tests bind "127.0.0.1:0" and production binds the configured address.
"""

from __future__ import annotations

import grpc
from grpc_health.v1._async import HealthServicer

from nexxus.api.admin import AdminServicer
from nexxus.api.applications import ApplicationServicer
from nexxus.api.context import ApiContext
from nexxus.api.devices import DeviceServicer
from nexxus.api.objects import ObjectServicer
from nexxus.api.subscriptions import SubscriptionServicer
from nexxus.api.users import UserServicer
from nexxus.rpc.interceptors import TokenInterceptor
from nexxus.rpc.server import add_health_and_reflection, bind, new_server
from nexxus.subscribing import SubscriptionManager
from nexxus.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    applications_pb2,
    applications_pb2_grpc,
    devices_pb2,
    devices_pb2_grpc,
    objects_pb2,
    objects_pb2_grpc,
    subscriptions_pb2,
    subscriptions_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)

SERVICE_NAMES = [
    applications_pb2.DESCRIPTOR.services_by_name["ApplicationService"].full_name,
    users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    devices_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name,
    objects_pb2.DESCRIPTOR.services_by_name["ObjectService"].full_name,
    subscriptions_pb2.DESCRIPTOR.services_by_name["SubscriptionService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
]


def build_api_server(ctx: ApiContext, address: str) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """The api's server, bound but not started, and its health servicer."""
    server = new_server([TokenInterceptor(ctx.tokens)])
    applications_pb2_grpc.add_ApplicationServiceServicer_to_server(ApplicationServicer(ctx), server)
    users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(ctx), server)
    devices_pb2_grpc.add_DeviceServiceServicer_to_server(DeviceServicer(ctx), server)
    objects_pb2_grpc.add_ObjectServiceServicer_to_server(ObjectServicer(ctx), server)
    subscriptions_pb2_grpc.add_SubscriptionServiceServicer_to_server(
        SubscriptionServicer(ctx, SubscriptionManager(ctx.schemas, ctx.store, ctx.db)), server
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(ctx), server)
    health_servicer = add_health_and_reflection(server, SERVICE_NAMES)
    return server, bind(server, address), health_servicer
