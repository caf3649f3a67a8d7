"""Transport-neutral steps of opening a device session (gRPC stream, WebSocket)."""

from __future__ import annotations

import logging

from google.protobuf import timestamp_pb2

from nexxus.core.errors import FailedPrecondition, InvalidArgument, NexxusError
from nexxus.transport.types import CallerT, Subscribe, Unsubscribe
from nexxus.v1 import events_pb2, subscriptions_pb2

__all__ = [
    "MAX_HEARTBEAT",
    "MIN_HEARTBEAT",
    "create_inline_subscriptions",
    "create_subscription",
    "heartbeat_frame",
    "require_device",
    "resolve_heartbeat",
]

log = logging.getLogger("nexxus.transport")

MIN_HEARTBEAT, MAX_HEARTBEAT = 1, 300


def resolve_heartbeat(requested: int, default: int) -> int:
    """The heartbeat period: the request's (1..300) or, when 0, the default."""
    if requested == 0:
        return default
    if not MIN_HEARTBEAT <= requested <= MAX_HEARTBEAT:
        raise InvalidArgument(
            f"heartbeat_seconds must be between {MIN_HEARTBEAT} and {MAX_HEARTBEAT}",
            field="heartbeat_seconds",
        )
    return requested


def heartbeat_frame() -> events_pb2.Heartbeat:
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return events_pb2.Heartbeat(time=now)


def require_device(caller: CallerT) -> str:
    if not caller.device_id:
        raise FailedPrecondition(
            "the event stream needs a device-bound token", reason="DEVICE_REQUIRED", field="authorization"
        )
    return caller.device_id


async def create_inline_subscriptions(
    caller: CallerT,
    app_id: str,
    requests: list[subscriptions_pb2.CreateSubscriptionRequest],
    subscribe: Subscribe[CallerT],
    unsubscribe: Unsubscribe[CallerT],
    *,
    field_prefix: str = "subscriptions",
) -> list[subscriptions_pb2.Subscription]:
    """Create each subscription (all or none: on an error, the ones created are removed).
    Errors name the failing entry, e.g. ``subscriptions[1].filter.priority``."""
    created: list[subscriptions_pb2.Subscription] = []
    try:
        for index, request in enumerate(requests):
            where = f"{field_prefix}[{index}]"
            created.append(await create_subscription(caller, app_id, request, subscribe, field_prefix=where))
    except NexxusError:
        for sub in created:
            try:
                await unsubscribe(caller, sub.id)
            except NexxusError:
                log.warning("could not roll back subscription %s", sub.id)
        raise
    return created


async def create_subscription(
    caller: CallerT,
    app_id: str,
    request: subscriptions_pb2.CreateSubscriptionRequest,
    subscribe: Subscribe[CallerT],
    *,
    field_prefix: str,
) -> subscriptions_pb2.Subscription:
    """Create one subscription in the session's application; an error's `field`
    is prefixed with `field_prefix` (e.g. ``subscribe.filter.priority``)."""
    if request.app_id and request.app_id != app_id:
        raise InvalidArgument(
            "the subscription's app_id differs from the connection's", field=f"{field_prefix}.app_id"
        )
    req = subscriptions_pb2.CreateSubscriptionRequest()
    req.CopyFrom(request)
    req.app_id = app_id
    try:
        return await subscribe(caller, req)
    except NexxusError as err:
        err.field = f"{field_prefix}.{err.field}" if err.field else field_prefix
        raise
