"""gRPC server interceptors.

`TokenInterceptor` runs before every handler of the api and the transport: a
bearer JWT that is malformed, forged (bad signature) or expired is refused with
UNAUTHENTICATED before the request is even decoded. What needs the request —
which application the call is for, whether the user or device was revoked — is
then checked by the Authenticator in the handler (`nexxus.api.calls.caller_of`,
the transport's stream start). Operator and server keys (not JWTs) and calls
without a token pass through to those checks unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from nexxus.auth.tokens import TokenService
from nexxus.core.errors import NexxusError
from nexxus.rpc.errors import abort_with_error

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


def _bearer(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key == "authorization":
            text = value if isinstance(value, str) else value.decode()
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def _denied(handler: grpc.RpcMethodHandler, err: NexxusError) -> grpc.RpcMethodHandler:
    """A handler of the same shape that only aborts with `err`."""

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await abort_with_error(context, err)

    async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await abort_with_error(context, err)
        yield  # pragma: no cover - abort raises

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming:
        raise NotImplementedError("no client-streaming method in the contracts")
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        token = _bearer(handler_call_details)
        if handler is None or token is None or not _looks_like_jwt(token):
            return handler
        try:
            self._tokens.check(token)
        except NexxusError as err:
            return _denied(handler, err)
        return handler
