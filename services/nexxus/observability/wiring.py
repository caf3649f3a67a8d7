"""What a process's observability port checks and reports, per role it runs
(the readiness checks and scrape-time gauges of docs/observability.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from nexxus.core.config.settings import Settings
from nexxus.core.metrics import (
    CONNECTIONS,
    CONSUMER_ACK_PENDING,
    CONSUMER_PENDING,
    STREAM_BYTES,
    STREAM_MESSAGES,
    SUBSCRIPTIONS,
)
from nexxus.core.ports import DatabaseAdapter, MessageBus, SubscriptionStore
from nexxus.core.tracing import configure_tracing
from nexxus.observability.server import Check, ObservabilityServer


# What the wiring reads of a process's runtime (nexxus.runtime.Runtime), by shape:
# this layer imports no service code.
class _Writer(Protocol):
    @property
    def partitions(self) -> object | None: ...


class _Router(Protocol):
    @property
    def attached(self) -> bool: ...


class _Hub(Protocol):
    @property
    def following(self) -> bool: ...

    @property
    def subscriptions_made(self) -> int: ...

    def connections(self) -> Sequence[object]: ...


class _Transport(Protocol):
    @property
    def node_id(self) -> str: ...

    @property
    def hub(self) -> _Hub: ...


class RuntimeView(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def services(self) -> list[str]: ...
    @property
    def bus(self) -> MessageBus: ...
    @property
    def db(self) -> DatabaseAdapter | None: ...
    @property
    def store(self) -> SubscriptionStore | None: ...
    @property
    def api_port(self) -> int: ...
    @property
    def writer(self) -> _Writer | None: ...
    @property
    def router(self) -> _Router | None: ...
    @property
    def transport(self) -> _Transport | None: ...


__all__ = ["ROLES", "RuntimeView", "build_observability"]

ROLES = ("api", "writer", "router", "transport")
# The stream each role reports at scrape time (the hop it consumes or feeds).
_STREAMS = {"writer": ("writes", "parked"), "router": ("events",), "transport": ("deliveries",)}
_CONNECTION_KINDS = ("grpc", "sse", "websocket")


def build_observability(runtime: RuntimeView) -> ObservabilityServer | None:
    """The observability server of `runtime`'s process (not started), None when
    disabled or when the process runs no built-in role."""
    settings = runtime.settings.observability
    roles = [name for name in runtime.services if name in ROLES]
    if not settings.enabled or not roles:
        return None
    ring = configure_tracing(settings, roles[0])
    server = ObservabilityServer(",".join(roles), settings.host, settings.port_of(roles[0]) or 0, ring)
    for role in roles:
        checks = _checks(runtime, role)
        if len(roles) > 1:
            checks = {name if name != "consumer" else f"{role}.consumer": c for name, c in checks.items()}
        server.add_checks(checks)
        for hop in _STREAMS.get(role, ()):
            server.refreshers.append(_stream_gauges(runtime.bus, hop))
    if "transport" in roles:
        server.refreshers.append(_transport_gauges(runtime))
    return server


def _checks(runtime: RuntimeView, role: str) -> dict[str, Check]:
    async def bus() -> bool:
        return runtime.bus.connected

    async def database() -> bool:
        if runtime.db is None:  # a role that builds no database checks none
            return False
        await runtime.db.ping()
        return True

    async def store() -> bool:
        if runtime.store is None:
            return False
        await runtime.store.ping()
        return True

    async def api_serving() -> bool:
        return runtime.api_port != 0

    async def writer_joined() -> bool:
        return runtime.writer is not None and runtime.writer.partitions is not None

    async def router_attached() -> bool:
        return runtime.router is not None and runtime.router.attached

    async def transport_following() -> bool:
        return runtime.transport is not None and runtime.transport.hub.following

    by_role: dict[str, dict[str, Check]] = {
        "api": {"bus": bus, "database": database, "store": store, "server": api_serving},
        "writer": {"bus": bus, "consumer": writer_joined, "database": database},
        "router": {"bus": bus, "consumer": router_attached, "store": store},
        "transport": {"bus": bus, "consumer": transport_following, "store": store},
    }
    return by_role[role]


def _stream_gauges(bus: MessageBus, hop: str) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        stats = await bus.stream_stats(hop)
        if stats is None:
            return
        STREAM_MESSAGES.labels(stats.stream).set(stats.messages)
        STREAM_BYTES.labels(stats.stream).set(stats.bytes)
        for consumer, (pending, ack_pending) in stats.consumers.items():
            CONSUMER_PENDING.labels(stats.stream, consumer).set(pending)
            CONSUMER_ACK_PENDING.labels(stats.stream, consumer).set(ack_pending)

    return refresh


def _transport_gauges(runtime: RuntimeView) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        transport = runtime.transport
        if transport is None:
            return
        counts = dict.fromkeys(_CONNECTION_KINDS, 0)
        for conn in transport.hub.connections():
            kind = getattr(conn, "transport", "other")
            counts[kind] = counts.get(kind, 0) + 1
        for kind, count in counts.items():
            CONNECTIONS.labels(transport.node_id, kind).set(count)
        SUBSCRIPTIONS.labels(transport.node_id).set(transport.hub.subscriptions_made)

    return refresh
