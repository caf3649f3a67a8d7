"""A JetStream stream's depth and its consumers' lag, for the metrics (`NatsBus.stream_stats`)."""

from __future__ import annotations

from nats.js import JetStreamContext

from nexxus.core.ports import StreamStats


def consumer_family(name: str) -> str:
    """A consumer's name without its per-incarnation suffix ("writer-p3-0a1b2c3d4e5f" → "writer-p3"),
    so the metric's label set stays bounded."""
    head, sep, tail = name.rpartition("-")
    if sep and len(tail) == 12 and tail.isalnum():
        return head
    return name


async def read_stream_stats(js: JetStreamContext, stream: str) -> StreamStats:
    """Messages and bytes held by `stream`, and per consumer family (not yet delivered, not yet acked).
    Raises the driver's errors (the adapter translates them)."""
    info = await js.stream_info(stream)
    lag: dict[str, tuple[int, int]] = {}
    for consumer in await js.consumers_info(stream):
        key = consumer_family(consumer.name or "")
        pending, acks = lag.get(key, (0, 0))
        lag[key] = (pending + (consumer.num_pending or 0), acks + (consumer.num_ack_pending or 0))
    return StreamStats(stream, info.state.messages, info.state.bytes, lag)
