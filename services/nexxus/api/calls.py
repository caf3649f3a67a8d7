"""The gRPC boundary of the api: who is calling, and errors as statuses.

Every servicer method is wrapped by `rpc`, which turns a NexxusError into its
gRPC status (rich ErrorInfo details, see nexxus.rpc.errors) — the one place
where that happens. Unexpected exceptions are not caught here: grpc logs them
and answers UNKNOWN, so bugs stay visible instead of posing as INTERNAL.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from nexxus.api.context import ApiContext
from nexxus.auth.caller import Caller
from nexxus.core.errors import NexxusError, NotFound, PermissionDenied, Unauthenticated
from nexxus.core.models import AppRecord
from nexxus.rpc.errors import abort_with_error

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Servicer = TypeVar("Servicer")


def rpc(
    fn: Callable[[Servicer, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[Servicer, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    @functools.wraps(fn)
    async def wrapper(self: Servicer, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await fn(self, request, context)
        except NexxusError as err:
            await abort_with_error(context, err)
            raise  # unreachable: abort raises

    return wrapper


def authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode()
    return None


def incoming_traceparent(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's W3C `traceparent` (gRPC metadata or, through Envoy, the HTTP header), or ""."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent":
            return value if isinstance(value, str) else value.decode()
    return ""


async def caller_of(ctx: ApiContext, context: grpc.aio.ServicerContext[Any, Any], app_id: str) -> Caller:
    """Authenticate the call for `app_id` (the interceptor's job, done per call)."""
    return await ctx.authenticator.authenticate(app_id, authorization(context))


def require_operator(ctx: ApiContext, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    header = authorization(context)
    if not header:
        raise Unauthenticated("the operator credential is required", reason="TOKEN_MISSING")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("expected 'authorization: Bearer <operator key>'", reason="TOKEN_MALFORMED")
    if not ctx.settings.operator_key or not hmac.compare_digest(token.strip(), ctx.settings.operator_key):
        raise PermissionDenied("only the operator may manage applications", reason="OPERATOR_ONLY")


async def require_app(ctx: ApiContext, app_id: str) -> AppRecord:
    app = await ctx.identity.get_app(app_id)
    if app is None:
        raise NotFound(f"application {app_id!r} does not exist", field="app_id", reason="APP_NOT_FOUND")
    return app


def require_user(caller: Caller) -> None:
    if caller.kind != "user" or not caller.user_id:
        raise Unauthenticated("a user's access token is required", reason="USER_TOKEN_REQUIRED")
