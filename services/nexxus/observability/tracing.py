"""OpenTelemetry tracing of the write → push path (docs/observability.md).

One tracer provider per process (`configure_tracing`), sampling with
`ParentBased(TraceIdRatioBased(ratio))`; every finished span goes to a bounded
in-memory ring (`SpanRing`, served as JSON on the observability port) and, when
an OTLP endpoint is configured, to a batch exporter.

The context crosses processes as a W3C `traceparent` string (NATS header,
`WriteCommand.traceparent`, `ModelEvent.traceparent`, `Delivery.traceparent`).
Downstream services start a span only for a *sampled* traceparent
(`sampled_context`): with tracing off or a trace not sampled, the hot path
pays one string check.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags

from nexxus.core.config.settings import ObservabilitySettings

__all__ = [
    "SpanRing",
    "begin_span",
    "configure_tracing",
    "record_span",
    "sampled_context",
    "span_ring",
    "start_span",
    "traceparent_of",
]

log = logging.getLogger("nexxus.observability.tracing")

SCOPE_PREFIX = "nexxus."


class SpanRing(SpanProcessor):
    """The last `capacity` finished spans of this process, as plain dicts."""

    def __init__(self, capacity: int) -> None:
        self._spans: deque[ReadableSpan] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            kept = list(self._spans)
        return [span_to_dict(s) for s in kept]

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """The spans of one trace (hex id), oldest first."""
        wanted = int(trace_id, 16)
        with self._lock:
            kept = [s for s in self._spans if s.context is not None and s.context.trace_id == wanted]
        return sorted((span_to_dict(s) for s in kept), key=lambda d: d["start_ns"])

    def traces(self, limit: int) -> list[dict[str, Any]]:
        """Summaries of the most recent traces (by their last span's end), newest first."""
        by_trace: dict[str, dict[str, Any]] = {}
        for span in self.spans():
            summary = by_trace.get(span["trace_id"])
            if summary is None:
                summary = by_trace[span["trace_id"]] = {
                    "trace_id": span["trace_id"],
                    "name": span["name"],
                    "services": [],
                    "start_ns": span["start_ns"],
                    "end_ns": span["end_ns"],
                    "spans": 0,
                }
            summary["spans"] += 1
            if span["service"] not in summary["services"]:
                summary["services"].append(span["service"])
            if span["start_ns"] < summary["start_ns"]:
                summary["start_ns"], summary["name"] = span["start_ns"], span["name"]
            summary["end_ns"] = max(summary["end_ns"], span["end_ns"])
        ordered = sorted(by_trace.values(), key=lambda d: d["end_ns"], reverse=True)
        return ordered[:limit]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.context
    parent = span.parent
    scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
    return {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "service": scope.removeprefix(SCOPE_PREFIX),
        "start_ns": span.start_time or 0,
        "end_ns": span.end_time or 0,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name.lower(),
    }


class _State:
    provider: TracerProvider | None = None
    ring: SpanRing | None = None
    tracers: dict[str, trace.Tracer] = {}


def configure_tracing(settings: ObservabilitySettings, service: str) -> SpanRing | None:
    """Set up this process's tracer provider once (later calls reuse it); None when tracing is off."""
    if not settings.tracing:
        return None
    if _State.provider is not None:
        return _State.ring
    sampler = ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
    provider = TracerProvider(
        sampler=sampler, resource=Resource.create({"service.name": f"nexxus-{service}"})
    )
    ring = SpanRing(settings.trace_buffer_spans)
    provider.add_span_processor(ring)
    endpoint = settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if endpoint:
        _add_otlp(provider, endpoint)
    _State.provider, _State.ring = provider, ring
    return ring


def _add_otlp(provider: TracerProvider, endpoint: str) -> None:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.error(
            "OTLP endpoint %s configured but the exporter is missing: pip install 'nexxus[otlp]'", endpoint
        )
        return
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    log.info("exporting traces to %s", endpoint)


def span_ring() -> SpanRing | None:
    return _State.ring


def tracer(service: str) -> trace.Tracer | None:
    """The tracer of `service` (api, writer, router, transport), None when tracing is off."""
    provider = _State.provider
    if provider is None:
        return None
    found = _State.tracers.get(service)
    if found is None:
        found = _State.tracers[service] = provider.get_tracer(SCOPE_PREFIX + service)
    return found


def sampled_context(traceparent: str, *, sampled_only: bool = True) -> Context | None:
    """The remote parent of a W3C traceparent (`00-<trace>-<span>-<flags>`), None when
    malformed or (with `sampled_only`) not sampled."""
    # The sampled bit is the flags' lowest: the last hex digit is odd ("01", "03": random ids).
    if len(traceparent) != 55 or (sampled_only and traceparent[-1] not in "13579bdf"):
        return None
    try:
        trace_id = int(traceparent[3:35], 16)
        span_id = int(traceparent[36:52], 16)
        flags = int(traceparent[53:55], 16)
    except ValueError:
        return None
    if not trace_id or not span_id or (sampled_only and not flags & 1):
        return None
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def traceparent_of(span: Span) -> str:
    """The W3C traceparent of `span` ("" for an invalid context)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def start_span(
    service: str,
    name: str,
    *,
    parent: Context | None = None,
    attributes: dict[str, Any] | None = None,
    root: bool = False,
) -> AbstractContextManager[Span | None]:
    """A span of `service` as a context manager (yields None when tracing is off).

    Downstream services pass the `sampled_context` of their message as `parent`
    and skip the call when it is None; the api passes `root=True` (a new trace
    when the caller sent no traceparent).
    """
    t = tracer(service)
    if t is None or (parent is None and not root):
        return nullcontext()
    return _span(t, name, parent, attributes)


def _span(
    t: trace.Tracer, name: str, parent: Context | None, attributes: dict[str, Any] | None
) -> AbstractContextManager[Span]:
    return t.start_as_current_span(name, context=parent, attributes=attributes, end_on_exit=True)


def begin_span(
    service: str, name: str, parent: Context, attributes: dict[str, Any] | None = None
) -> Span | None:
    """A started span (not made current; the caller ends it), None when tracing is off."""
    t = tracer(service)
    if t is None:
        return None
    return t.start_span(name, context=parent, attributes=attributes)


def record_span(
    service: str, name: str, parent: Context, start_ns: int, attributes: dict[str, Any] | None = None
) -> None:
    """A span of work that started at `start_ns` (time.time_ns) and ends now."""
    t = tracer(service)
    if t is not None:
        t.start_span(name, context=parent, attributes=attributes, start_time=start_ns).end()


def iter_spans() -> Iterator[dict[str, Any]]:
    """Every kept span of this process (tests)."""
    ring = _State.ring
    if ring is not None:
        yield from ring.spans()
