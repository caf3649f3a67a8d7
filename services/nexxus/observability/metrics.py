"""The Prometheus metrics of a Nexxus process (names and labels: docs/observability.md).

Module-level collectors in prometheus-client's default registry, as the
library intends: a process is one scrape target. Labels stay bounded —
application, model, transport kind, reason codes, stream and consumer names;
never object, user or device ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from nexxus.core.errors import NexxusError

__all__ = [
    "AUTH_FAILURES",
    "BUS_ERRORS",
    "CONNECTIONS",
    "CONSUMER_ACK_PENDING",
    "CONSUMER_PENDING",
    "DATABASE_ERRORS",
    "DELIVERIES",
    "RESUMES",
    "ROUTER_EVENTS",
    "ROUTER_MATCHES",
    "ROUTER_MATCH_SECONDS",
    "SLOW_CONSUMER_DROPS",
    "SNAPSHOTS",
    "STREAM_BYTES",
    "STREAM_MESSAGES",
    "SUBSCRIPTIONS",
    "THROTTLED",
    "WRITER_COMMIT_SECONDS",
    "WRITES_ACCEPTED",
    "WRITES_APPLIED",
    "WRITES_FAILED",
    "WRITES_PARKED",
    "WRITE_TO_PUSH_SECONDS",
    "observe_error",
]

# Sub-millisecond to seconds: the write → push path is milliseconds when healthy.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MATCH_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
_COUNT_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 10_000)

WRITES_ACCEPTED = Counter(
    "nexxus_writes_accepted", "Writes queued on the write queue by the api", ["app", "model", "op"]
)
WRITES_APPLIED = Counter("nexxus_writes_applied", "Writes committed by the writer", ["app", "model", "op"])
WRITES_FAILED = Counter(
    "nexxus_writes_failed", "Writes recorded as failed operations by the writer", ["app", "model", "reason"]
)
WRITES_PARKED = Counter("nexxus_writes_parked", "Poison write-queue messages parked by the writer")
WRITER_COMMIT_SECONDS = Histogram(
    "nexxus_writer_commit_seconds",
    "One group commit of the writer (database transaction and event publish)",
    buckets=_LATENCY_BUCKETS,
)
ROUTER_EVENTS = Counter("nexxus_router_events", "Events matched by the router", ["app", "model"])
ROUTER_MATCH_SECONDS = Histogram(
    "nexxus_router_match_seconds", "Matching one event against its subscriptions", buckets=_MATCH_BUCKETS
)
ROUTER_MATCHES = Histogram(
    "nexxus_router_matches_per_event", "Devices matched by one event", buckets=_COUNT_BUCKETS
)
DELIVERIES = Counter("nexxus_deliveries", "Events pushed to a connection", ["kind"])
WRITE_TO_PUSH_SECONDS = Histogram(
    "nexxus_write_to_push_seconds",
    "From the writer's commit of an event to its push to a connection",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
CONNECTIONS = Gauge("nexxus_connections", "Open client connections", ["node", "kind"])
SUBSCRIPTIONS = Gauge(
    "nexxus_subscriptions", "Subscriptions made through the open connections of a node", ["node"]
)
SLOW_CONSUMER_DROPS = Counter(
    "nexxus_slow_consumer_drops", "Connections closed because their buffer was full", ["kind"]
)
RESUMES = Counter("nexxus_resumes", "Streams resumed from a position", ["outcome"])
SNAPSHOTS = Counter("nexxus_snapshots", "Snapshots sent to a stream that could not resume")
AUTH_FAILURES = Counter("nexxus_auth_failures", "Refused credentials", ["reason"])
THROTTLED = Counter("nexxus_throttled", "Requests refused for rate or capacity", ["reason"])
DATABASE_ERRORS = Counter("nexxus_database_errors", "Database adapter errors", ["reason"])
BUS_ERRORS = Counter("nexxus_bus_errors", "Message bus errors", ["reason"])
STREAM_MESSAGES = Gauge("nexxus_stream_messages", "Messages held by a JetStream stream", ["stream"])
STREAM_BYTES = Gauge("nexxus_stream_bytes", "Bytes held by a JetStream stream", ["stream"])
CONSUMER_PENDING = Gauge(
    "nexxus_consumer_pending", "Messages not yet delivered to a consumer (lag)", ["stream", "consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "nexxus_consumer_ack_pending", "Messages delivered, not yet acknowledged", ["stream", "consumer"]
)


def observe_error(err: NexxusError) -> None:
    """Count an error answered to a client: refused credentials and refusals for
    rate or capacity (called where errors become gRPC statuses or stream frames)."""
    if err.code == "UNAUTHENTICATED":
        AUTH_FAILURES.labels(err.reason or "UNAUTHENTICATED").inc()
    elif err.code == "RESOURCE_EXHAUSTED":
        THROTTLED.labels(err.reason or "RESOURCE_EXHAUSTED").inc()


def observe_database_error(err: NexxusError) -> NexxusError:
    """Count a database adapter's translated error when it is an outage or a failure of
    the database itself (not a conflict or a missing object); returns `err`."""
    if err.reason in ("DATABASE_UNAVAILABLE", "DATABASE_ERROR"):
        DATABASE_ERRORS.labels(err.reason).inc()
    return err
