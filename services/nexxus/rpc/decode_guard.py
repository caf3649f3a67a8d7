"""Requests that cannot be decoded get INVALID_ARGUMENT, not a 500 naming a Python class.

grpcio calls a method's request deserializer before any handler or error
mapping runs; when it raises (protobuf's `DecodeError`, e.g. nesting past the
decoder's depth limit of 100 messages: a JSON value ~45 levels deep, since
each level of a `google.protobuf.Struct` is two or three messages), grpcio
answers UNKNOWN with the exception's class and text, which Envoy turns into a
500. `DecodeGuard` wraps every method's deserializer so that a failure becomes
a marker, and the method answers it with a clean INVALID_ARGUMENT that names
the documented limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from nexxus.core.errors import InvalidArgument
from nexxus.rpc.errors import abort_with_error

__all__ = ["DecodeGuard", "undecodable_error"]

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """What the guarded deserializer returns instead of raising."""

    detail: str


def undecodable_error(detail: str) -> InvalidArgument:
    if "MaxDepth" in detail:
        return InvalidArgument(
            "the request nests too deeply to be read (object data may nest at most 32 levels, "
            "filters at most 8)",
            reason="REQUEST_TOO_DEEP",
        )
    return InvalidArgument("the request is not a valid message of this method", reason="REQUEST_MALFORMED")


def _guarded(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return deserialize


_GUARDED_CACHE = 1024


def _guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    kwargs = {
        "request_deserializer": _guarded(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming:
        return handler  # no client-streaming method in the contracts
    if handler.response_streaming:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, _Undecodable):
                await abort_with_error(context, undecodable_error(request.detail))
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    inner_unary = handler.unary_unary

    async def unary(request: Any, context: Context) -> Any:
        if isinstance(request, _Undecodable):
            await abort_with_error(context, undecodable_error(request.detail))
        return await inner_unary(request, context)

    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


class DecodeGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Installed on every Nexxus gRPC server by `nexxus.rpc.server.new_server`."""

    def __init__(self) -> None:
        # The guarded handler of each registered handler, made once instead of per call
        # (new closures and a new handler tuple per call showed in the api's profile).
        # Handlers made per call (a refused token's) are not worth keeping: the bound
        # keeps such a stream of new keys from growing the cache without limit.
        self._guarded: dict[grpc.RpcMethodHandler, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        guarded = self._guarded.get(handler)
        if guarded is None:
            if len(self._guarded) >= _GUARDED_CACHE:
                self._guarded.clear()
            guarded = self._guarded[handler] = _guard(handler)
        return guarded
