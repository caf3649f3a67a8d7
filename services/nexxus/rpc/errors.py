"""Domain errors → gRPC statuses: one table, rich details (AIP-193).

`STATUS_BY_CODE` maps a `NexxusError.code` (a google.rpc.Code name) to a
`grpc.StatusCode`; anything not listed is INTERNAL. `abort_with_error` ends an
RPC with a `google.rpc.Status` carrying a `google.rpc.ErrorInfo` (reason,
domain ``nexxus.dev``, metadata incl. ``field``); `error_to_stream_error` gives
the in-stream form (`nexxus.v1.StreamError`) used by event streams and the
WebSocket bridge.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from nexxus.core.errors import NexxusError
from nexxus.observability.metrics import observe_error
from nexxus.v1 import events_pb2

__all__ = [
    "DOMAIN",
    "STATUS_BY_CODE",
    "abort_with_error",
    "error_to_status",
    "error_to_stream_error",
    "grpc_status_code",
]

DOMAIN = "nexxus.dev"

log = logging.getLogger("nexxus.rpc")

STATUS_BY_CODE: dict[str, grpc.StatusCode] = {
    "OK": grpc.StatusCode.OK,
    "CANCELLED": grpc.StatusCode.CANCELLED,
    "UNKNOWN": grpc.StatusCode.UNKNOWN,
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "ABORTED": grpc.StatusCode.ABORTED,
    "OUT_OF_RANGE": grpc.StatusCode.OUT_OF_RANGE,
    "UNIMPLEMENTED": grpc.StatusCode.UNIMPLEMENTED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DATA_LOSS": grpc.StatusCode.DATA_LOSS,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
}


def grpc_status_code(err: NexxusError) -> grpc.StatusCode:
    """The gRPC status code of a domain error (INTERNAL when unmapped)."""
    return STATUS_BY_CODE.get(err.code, grpc.StatusCode.INTERNAL)


def _rpc_code_value(err: NexxusError) -> int:
    return int(code_pb2.Code.Value(grpc_status_code(err).name))


def _log_internal(err: NexxusError) -> None:
    """The operator's half of an error: what `err.internal` holds never reaches a client."""
    if err.internal:
        log.warning("%s answered %s (%s): %s", err.code, err.message, err.reason, err.internal)


def error_to_status(err: NexxusError) -> grpc.Status:
    """A rich `grpc.Status` (google.rpc.Status + ErrorInfo) for `err`."""
    _log_internal(err)
    observe_error(err)
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata())
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=_rpc_code_value(err), message=err.message, details=[detail])
    return rpc_status.to_status(status)


async def abort_with_error(context: grpc.aio.ServicerContext, err: NexxusError) -> NoReturn:
    """End the RPC with `err` as a rich status. Never returns."""
    await context.abort_with_status(error_to_status(err))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def error_to_stream_error(err: NexxusError) -> events_pb2.StreamError:
    """The in-stream error frame payload: code name, message, and the ErrorInfo
    metadata plus ``reason`` as `details`."""
    _log_internal(err)
    observe_error(err)
    details = struct_pb2.Struct()
    details.update({"reason": err.reason, **err.metadata()})
    return events_pb2.StreamError(code=grpc_status_code(err).name, message=err.message, details=details)
