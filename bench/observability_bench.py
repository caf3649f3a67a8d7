"""What the observability hooks cost on the write → push path, per call (no servers).

    .venv/bin/python bench/observability_bench.py [--n 20000]

Times, in one process, each hook the services run per write / event / delivery:
counters and histograms (prometheus-client), the api's root span with its
traceparent, the writer's and router's child spans of a sampled traceparent,
the transport's push span, and the unsampled path (one string check).
The sum per write is the tracing + metrics overhead of one write delivered
to one connection. Prints figures, never asserts on them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nexxus.core.config.settings import ObservabilitySettings  # noqa: E402
from nexxus.observability import metrics as m  # noqa: E402
from nexxus.observability.tracing import (  # noqa: E402
    begin_span,
    configure_tracing,
    record_span,
    sampled_context,
    start_span,
    traceparent_of,
)

SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


def per_call(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call (best of three runs of n calls)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    n = parser.parse_args().n
    configure_tracing(ObservabilitySettings(trace_buffer_spans=4096), "bench")
    attrs = {"nexxus.app": "a1", "nexxus.model": "task", "nexxus.op": "create"}

    def counter() -> None:
        m.WRITES_ACCEPTED.labels("a1", "task", "create").inc()

    def histogram() -> None:
        m.ROUTER_MATCH_SECONDS.observe(0.0001)

    def api_span() -> None:
        with start_span("api", "api.write", parent=None, root=True, attributes=attrs) as span:
            assert span is not None
            traceparent_of(span)

    def writer_span() -> None:
        parent = sampled_context(SAMPLED)
        assert parent is not None
        span = begin_span("writer", "writer.commit", parent, attrs)
        assert span is not None
        traceparent_of(span)
        span.end()

    def router_span() -> None:
        with start_span("router", "router.match", parent=sampled_context(SAMPLED), attributes=attrs) as span:
            assert span is not None
            traceparent_of(span)

    def push_span() -> None:
        parent = sampled_context(SAMPLED)
        assert parent is not None
        record_span("transport", "transport.push", parent, time.time_ns(), attrs)

    def unsampled() -> None:
        sampled_context(UNSAMPLED)

    rows = [
        ("counter labels().inc()", counter),
        ("histogram observe()", histogram),
        ("api.write span + traceparent", api_span),
        ("writer.commit span (child of a traceparent)", writer_span),
        ("router.match span", router_span),
        ("transport.push span", push_span),
        ("unsampled traceparent check", unsampled),
    ]
    figures = {}
    print(f"per call, best of 3 x {n:,} calls")
    for name, fn in rows:
        figures[name] = per_call(fn, n)
        print(f"  {name:<46} {figures[name]:8.2f} µs")
    traced = sum(figures[name] for name, _ in rows[2:6])
    # Per write delivered once: about 6 counter updates and 5 histogram observations along the path.
    metered = 6 * figures[rows[0][0]] + 5 * figures[rows[1][0]]
    print(f"  {'one write, sampled (4 spans)':<46} {traced:8.2f} µs")
    print(f"  {'one write, metrics only (6 counters, 5 obs.)':<46} {metered:8.2f} µs")


if __name__ == "__main__":
    main()
