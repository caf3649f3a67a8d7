"""What a process's observability port checks and reports, per role it runs
(the readiness checks and scrape-time gauges of docs/observability.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nexxus.observability.metrics import (
    CONNECTIONS,
    CONSUMER_ACK_PENDING,
    CONSUMER_PENDING,
    STREAM_BYTES,
    STREAM_MESSAGES,
    SUBSCRIPTIONS,
)
from nexxus.observability.server import Check, ObservabilityServer
from nexxus.observability.tracing import configure_tracing

if TYPE_CHECKING:
    from nexxus.core.ports import MessageBus
    from nexxus.runtime import Runtime

__all__ = ["ROLES", "build_observability"]

ROLES = ("api", "writer", "router", "transport")
# The stream each role reports at scrape time (the hop it consumes or feeds).
_STREAMS = {"writer": ("writes", "parked"), "router": ("events",), "transport": ("deliveries",)}
_CONNECTION_KINDS = ("grpc", "sse", "websocket")


def build_observability(runtime: Runtime) -> ObservabilityServer | None:
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


def _checks(runtime: Runtime, role: str) -> dict[str, Check]:
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


def _transport_gauges(runtime: Runtime) -> Callable[[], Awaitable[None]]:
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
