"""Common gRPC server set-up: options, health checking and reflection."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nexxus.core import limits
from nexxus.rpc.decode_guard import DecodeGuard

GRPC_OPTIONS = [
    # Above the edge's header limit (Envoy answers 431 first): a long bearer token reaches the
    # authenticator (401) instead of tripping gRPC's default 8 KiB metadata limit (429).
    ("grpc.max_metadata_size", 64 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


def new_server(interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    """A server with our options; every method's undecodable requests answered INVALID_ARGUMENT.
    Messages both ways may be as large as this process's limits allow (`nexxus.core.limits`:
    above the largest object, page and event, so none is refused in between)."""
    options = [*GRPC_OPTIONS, *limits.current().grpc_options()]
    return grpc.aio.server(options=options, interceptors=[*interceptors, DecodeGuard()])


def add_health_and_reflection(
    server: grpc.aio.Server, service_names: Sequence[str]
) -> health.aio.HealthServicer:
    """Register grpc.health.v1 and server reflection (so grpcurl works)."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return servicer


async def set_serving(
    servicer: health.aio.HealthServicer, service_names: Sequence[str], serving: bool = True
) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in [*service_names, ""]:
        await servicer.set(name, status)


def bind(server: grpc.aio.Server, address: str) -> int:
    port: int = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind a gRPC server to {address}")
    return port
