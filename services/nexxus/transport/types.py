"""The callables a transport node is built from (provided by auth and the api).

The caller type is generic: the transport only reads `app_id`, `user_id`,
`device_id` and `expires_at`, and hands the caller back to `subscribe` / `unsubscribe` as it
got it from `authenticate`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from nexxus.v1.subscriptions_pb2 import CreateSubscriptionRequest, Subscription

__all__ = ["Authenticate", "CallerLike", "CallerT", "Subscribe", "Unsubscribe"]


class CallerLike(Protocol):
    """What the transport reads from an authenticated caller."""

    @property
    def app_id(self) -> str: ...

    @property
    def user_id(self) -> str | None: ...

    @property
    def device_id(self) -> str | None: ...

    @property
    def expires_at(self) -> float:
        """When the caller's credential expires (epoch seconds; 0: never)."""
        ...


CallerT = TypeVar("CallerT", bound=CallerLike)

# (app_id, authorization header value or None) → caller; raises Unauthenticated & co.
Authenticate = Callable[[str, str | None], Awaitable[CallerT]]
# Creates (validates, checks access, stores) a subscription for the caller's device.
Subscribe = Callable[[CallerT, CreateSubscriptionRequest], Awaitable[Subscription]]
# Removes one of the caller device's subscriptions (NotFound when absent).
Unsubscribe = Callable[[CallerT, str], Awaitable[None]]
