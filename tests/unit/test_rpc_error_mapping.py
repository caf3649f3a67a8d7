"""Servicer-level: every domain error a handler raises reaches a gRPC client as its
status, with a google.rpc.ErrorInfo (reason, domain, field) and the client's message,
never the operator's internal detail.

An in-process grpc.aio server on a loopback port (grpcio-testing drives only
synchronous servicers; ours are asyncio), running a handler wrapped by the same
`rpc` decorator as every api method, behind `new_server`'s interceptors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from nexxus.api.calls import rpc
from nexxus.core import errors
from nexxus.core.errors import NexxusError
from nexxus.rpc.errors import DOMAIN, STATUS_BY_CODE
from nexxus.rpc.server import new_server

SERVICE = "nexxus.test.Errors"
ALL_ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, NexxusError) and cls is not NexxusError
] + [NexxusError]


class _Servicer:
    def __init__(self) -> None:
        self.error: NexxusError = NexxusError("unset")

    @rpc
    async def Raise(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        raise self.error


@pytest.fixture
async def raising() -> AsyncIterator[tuple[_Servicer, Any]]:
    servicer = _Servicer()
    server = new_server()
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.Raise,
        request_deserializer=struct_pb2.Struct.FromString,
        response_serializer=struct_pb2.Struct.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Raise": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/Raise",
            request_serializer=struct_pb2.Struct.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString,
        )
        yield servicer, call
    await server.stop(None)


def test_every_error_class_is_covered() -> None:
    assert {cls.code for cls in ALL_ERRORS} <= set(STATUS_BY_CODE)
    assert len(ALL_ERRORS) >= 9


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
async def test_error_reaches_the_client_as_its_status(raising: tuple[_Servicer, Any], cls: type) -> None:
    servicer, call = raising
    servicer.error = cls(
        "what the client reads",
        field="data.title",
        details={"limit": 8},
        internal="postgres: connection refused at db-7.internal:5432",
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(struct_pb2.Struct())
    err = raised.value
    assert err.code() == STATUS_BY_CODE[cls.code]
    assert err.details() == "what the client reads"
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    assert status.message == "what the client reads"
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert (info.reason, info.domain) == (servicer.error.reason, DOMAIN)
    assert dict(info.metadata) == {"field": "data.title", "limit": "8"}
    everything = f"{err.details()} {err.debug_error_string()} {status}"
    for secret in ("db-7.internal", "5432", "connection refused"):
        assert secret not in everything


async def test_an_unexpected_exception_is_not_described_to_the_client(raising: tuple[_Servicer, Any]) -> None:
    servicer, call = raising

    class Boom(NexxusError):
        code = "INTERNAL"

    servicer.error = Boom("an internal error occurred", internal="KeyError('secret_column')")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(struct_pb2.Struct())
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "secret_column" not in f"{raised.value.details()} {raised.value.trailing_metadata()}"
