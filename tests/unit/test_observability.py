"""The observability building blocks without the mesh: traceparent parsing, the
span ring and its JSON, consumer names for labels, and the HTTP port itself."""

from __future__ import annotations

import json

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import set_span_in_context

from nexxus.adapters.bus._nats_stats import consumer_family
from nexxus.core.errors import ResourceExhausted, Unauthenticated
from nexxus.observability.metrics import AUTH_FAILURES, THROTTLED, observe_error
from nexxus.observability.server import ObservabilityServer
from nexxus.observability.tracing import SpanRing, sampled_context, traceparent_of

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize("flags", ["01", "03"])
def test_a_sampled_traceparent_is_followed(flags: str) -> None:
    ctx = sampled_context(f"00-{TRACE}-{SPAN}-{flags}")
    assert ctx is not None
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("child", context=ctx) as span:
        assert f"{span.get_span_context().trace_id:032x}" == TRACE
        assert traceparent_of(span).startswith(f"00-{TRACE}-")


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE}-{SPAN}-00",
        f"00-{TRACE}-{SPAN}-02",
        "",
        "garbage",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-xyz-01",
    ],
)
def test_unsampled_or_malformed_traceparents_start_nothing(value: str) -> None:
    assert sampled_context(value) is None


def test_an_unsampled_caller_is_still_a_parent_for_the_api() -> None:
    assert sampled_context(f"00-{TRACE}-{SPAN}-00", sampled_only=False) is not None
    assert sampled_context("garbage", sampled_only=False) is None


def _ring_with_spans(capacity: int) -> SpanRing:
    ring = SpanRing(capacity)
    provider = TracerProvider()
    provider.add_span_processor(ring)
    api = provider.get_tracer("nexxus.api")
    writer = provider.get_tracer("nexxus.writer")
    with api.start_as_current_span("api.write", attributes={"nexxus.app": "a1"}) as root:
        writer.start_span("writer.commit", context=set_span_in_context(root)).end()
    api.start_span("api.write").end()  # a second trace
    return ring


def test_the_ring_groups_spans_by_trace_newest_first() -> None:
    ring = _ring_with_spans(100)
    spans = ring.spans()
    assert len(spans) == 3
    first_trace = spans[0]["trace_id"]
    traces = ring.traces(10)
    assert [t["spans"] for t in traces] == [1, 2]
    assert traces[1]["trace_id"] == first_trace
    assert traces[1]["services"] == ["writer", "api"] or traces[1]["services"] == ["api", "writer"]
    assert traces[1]["name"] == "api.write"
    one = ring.trace(first_trace)
    assert [s["name"] for s in one] == ["api.write", "writer.commit"]
    root, child = one
    assert root["parent_id"] is None
    assert child["parent_id"] == root["span_id"]
    assert root["attributes"] == {"nexxus.app": "a1"}
    assert child["service"] == "writer"
    assert set(root) == {
        "trace_id",
        "span_id",
        "parent_id",
        "name",
        "service",
        "start_ns",
        "end_ns",
        "attributes",
        "status",
    }
    assert ring.traces(1) == traces[:1]


def test_the_ring_is_bounded() -> None:
    ring = _ring_with_spans(2)
    assert len(ring.spans()) == 2
    ring.clear()
    assert ring.spans() == []


def test_consumer_names_lose_their_incarnation_suffix() -> None:
    assert consumer_family("writer-p3-01JDXK4M2Q7Z") == "writer-p3"
    assert consumer_family("router") == "router"
    assert consumer_family("my-worker") == "my-worker"


def test_refusals_are_counted_by_reason() -> None:
    auth = AUTH_FAILURES.labels("TOKEN_EXPIRED")
    full = THROTTLED.labels("QUEUE_FULL")
    before = auth._value.get(), full._value.get()
    observe_error(Unauthenticated("expired", reason="TOKEN_EXPIRED"))
    observe_error(ResourceExhausted("full", reason="QUEUE_FULL"))
    observe_error(ResourceExhausted("full", reason="QUEUE_FULL"))
    assert (auth._value.get(), full._value.get()) == (before[0] + 1, before[1] + 2)


async def test_the_http_port_serves_metrics_health_and_traces() -> None:
    ring = _ring_with_spans(10)
    server = ObservabilityServer("writer", "127.0.0.1", 0, ring)
    state = {"bus": True}

    async def bus() -> bool:
        return state["bus"]

    async def database() -> bool:
        raise ConnectionError("down")

    server.add_checks({"bus": bus})
    refreshed: list[int] = []

    async def refresh() -> None:
        refreshed.append(1)

    server.refreshers.append(refresh)
    await server.start()
    try:
        assert server.port > 0
        async with aiohttp.ClientSession(base_url=server.url) as http:
            async with http.get("/metrics") as resp:
                text = await resp.text()
                assert resp.status == 200
                assert resp.content_type == "text/plain"
                assert "# TYPE nexxus_writes_applied_total counter" in text
                assert refreshed == [1]
            async with http.get("/healthz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "alive", "service": "writer"}
            async with http.get("/readyz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"ready": True, "service": "writer", "checks": {"bus": True}}
            state["bus"] = False
            server.add_checks({"database": database})
            async with http.get("/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["checks"] == {"bus": False, "database": False}
            async with http.get("/debug/traces", params={"limit": "1"}) as resp:
                body = await resp.json()
                assert body["service"] == "writer"
                assert len(body["traces"]) == 1
            trace_id = ring.traces(10)[1]["trace_id"]
            async with http.get(f"/debug/traces/{trace_id}") as resp:
                spans = (await resp.json())["spans"]
                assert [s["name"] for s in spans] == ["api.write", "writer.commit"]
            async with http.get(f"/debug/traces/{'f' * 32}") as resp:
                assert resp.status == 404
            async with http.get("/debug/traces/nothex") as resp:
                assert resp.status == 400
                assert "hexadecimal" in json.loads(await resp.text())["error"]
            async with http.get("/debug/traces", params={"limit": "x"}) as resp:
                assert resp.status == 400
    finally:
        await server.stop()
