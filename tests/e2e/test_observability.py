"""The observability ports of a real mesh (docs/observability.md): counters
moved by a small workload by exactly its amounts, one write's trace followed
through the api, the writer, the router and each push, and readiness (HTTP
/readyz and grpc.health.v1) that follows NATS going away and coming back."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from nexxus.devserver.endpoints import ENDPOINTS_FILE, read_endpoints
from nexxus.devserver.mesh import Mesh
from nexxus.v1 import objects_pb2
from tests.e2e.conftest import _settings, new_app_id, running_mesh
from tests.e2e.harness import Api, patch, struct
from tests.e2e.resume_client import GrpcClient, Replica, SseClient, WsClient, until

pytestmark = pytest.mark.e2e

TASK = {"fields": {"title": {"type": "string"}, "n": {"type": "integer", "filterable": True}}}
WAIT = 30.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def scrape(mesh: Mesh, name: str) -> Samples:
    status, text = await _get(mesh.endpoint(name).metrics_url)
    assert status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def _device(operator: Api) -> tuple[str, Api, Api, str]:
    app_id = new_app_id()
    server = operator.as_(await operator.create_app(app_id))
    await server.put_schema(app_id, "task", TASK)
    user = await server.user_with_device(app_id, "ann")
    device = server.as_(user.token)
    await device.subscribe(app_id, "task", persistent=True)
    return app_id, server, device, user.token


async def test_endpoints_are_listed_and_healthy(mesh: Mesh) -> None:
    endpoints = mesh.endpoints()
    assert {e.role for e in endpoints} == {"api", "writer", "router", "transport"}
    assert read_endpoints(mesh.data_dir / ENDPOINTS_FILE) == endpoints
    for endpoint in endpoints:
        status, body = await _get(f"{endpoint.url}/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "alive", "service": endpoint.role}
        status, body = await _get(endpoint.ready_url)
        ready = json.loads(body)
        assert status == 200, ready
        assert ready["ready"] is True
        assert ready["checks"]["bus"] is True
        assert len(ready["checks"]) >= 3


async def test_a_workload_moves_the_counters_by_its_amounts(
    mesh: Mesh, operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, server, _, token = await _device(operator)
    before = {name: await scrape(mesh, name) for name in ("api", "writer", "router", "transport")}
    replica = Replica()
    client = GrpcClient(events_channel, app_id, token, replica)
    async with client.stream():
        for n in range(3):
            await server.create(app_id, "task", {"title": f"t{n}", "n": n}, object_id=f"t{n}")
        await server.update(app_id, "task", "t0", [patch("replace", ["title"], ["first"])])
        await server.delete(app_id, "task", "t2")
        with pytest.raises(grpc.aio.AioRpcError) as conflict:  # fails in the writer
            await server.update(
                app_id, "task", "t1", [patch("replace", ["title"], ["x"])], expected_version=9
            )
        assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await server.as_("not-a-token").create(app_id, "task", {"title": "x"})
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await until(lambda: len(replica.events) == 5, client.changed)
        transport_open = await scrape(mesh, "transport")
    after = {name: await scrape(mesh, name) for name in ("api", "writer", "router", "transport")}

    def delta(service: str, name: str, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    task = {"app": app_id, "model": "task"}
    assert delta("api", "nexxus_writes_accepted_total", **task, op="create") == 3
    assert delta("api", "nexxus_writes_accepted_total", **task, op="update") == 2
    assert delta("api", "nexxus_writes_accepted_total", **task, op="delete") == 1
    assert delta("api", "nexxus_auth_failures_total") == 1
    assert delta("writer", "nexxus_writes_applied_total", **task, op="create") == 3
    assert delta("writer", "nexxus_writes_applied_total", **task, op="update") == 1
    assert delta("writer", "nexxus_writes_applied_total", **task, op="delete") == 1
    assert (
        delta(
            "writer",
            "nexxus_writes_failed_total",
            **task,
        )
        == 1
    )
    assert delta("writer", "nexxus_writer_commit_seconds_count") >= 1
    assert delta("router", "nexxus_router_events_total", **task) == 5
    assert delta("router", "nexxus_router_match_seconds_count") >= 5
    assert delta("router", "nexxus_router_matches_per_event_sum") >= 5
    assert delta("transport", "nexxus_deliveries_total", kind="grpc") == 5
    assert delta("transport", "nexxus_write_to_push_seconds_count", kind="grpc") == 5
    assert value(transport_open, "nexxus_connections", kind="grpc") >= 1
    # The hops' queues, read from JetStream at scrape time by the process that owns each.
    assert value(after["writer"], "nexxus_stream_messages", stream="NEXXUS_WRITES") >= 0
    assert ("nexxus_stream_messages", frozenset({("stream", "NEXXUS_EVENTS")})) in after["router"]
    assert value(after["router"], "nexxus_consumer_pending", stream="NEXXUS_EVENTS", consumer="router") >= 0
    assert any(
        n == "nexxus_consumer_pending" and ("consumer", "router") in lbls for n, lbls in after["router"]
    )


async def _spans(mesh: Mesh, name: str, trace_id: str) -> list[dict[str, Any]]:
    status, body = await _get(f"{mesh.endpoint(name).traces_url}/{trace_id}")
    if status == 404:
        return []
    assert status == 200, body
    spans: list[dict[str, Any]] = json.loads(body)["spans"]
    return spans


async def test_one_write_is_one_trace_through_every_service(
    mesh: Mesh, operator: Api, events_channel: grpc.aio.Channel
) -> None:
    app_id, server, _, token = await _device(operator)
    s = mesh.settings
    replicas = {"grpc": Replica(), "websocket": Replica(), "sse": Replica()}
    grpc_client = GrpcClient(events_channel, app_id, token, replicas["grpc"])
    ws_client = WsClient(f"ws://127.0.0.1:{s.transport.ws_port}", app_id, token, replicas["websocket"])
    sse_client = SseClient(f"http://127.0.0.1:{s.transport.sse_port}", app_id, token, replicas["sse"])
    trace_id, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    async with grpc_client.stream(), ws_client.stream(), sse_client.stream():
        await server.objects.CreateObject(
            objects_pb2.CreateObjectRequest(
                app_id=app_id, model="task", object_id="traced", data=struct({"title": "t"}), wait=True
            ),
            metadata=[*server.md, ("traceparent", f"00-{trace_id}-{caller_span}-01")],
        )
        for replica, client in zip(replicas.values(), (grpc_client, ws_client, sse_client), strict=True):
            await until(lambda r=replica: len(r.events) == 1, client.changed)

    found: dict[str, list[dict[str, Any]]] = {}

    async def complete() -> bool:
        for name in ("api", "writer", "router", "transport"):
            found[name] = await _spans(mesh, name, trace_id)
        return len(found["transport"]) >= 3 and all(found.values())

    await eventually(complete)
    (api,) = [x for x in found["api"] if x["name"] == "api.write"]
    (writer,) = [x for x in found["writer"] if x["name"] == "writer.commit"]
    (router,) = [x for x in found["router"] if x["name"] == "router.match"]
    pushes = [x for x in found["transport"] if x["name"] == "transport.push"]
    assert api["parent_id"] == caller_span
    assert api["service"] == "api"
    assert writer["parent_id"] == api["span_id"]
    assert writer["service"] == "writer"
    assert router["parent_id"] == writer["span_id"]
    assert router["service"] == "router"
    assert {p["attributes"]["nexxus.transport"] for p in pushes} == {"grpc", "websocket", "sse"}
    assert all(p["parent_id"] == router["span_id"] and p["service"] == "transport" for p in pushes)
    assert api["attributes"]["nexxus.app"] == app_id
    assert writer["attributes"]["nexxus.op"] == "create"
    assert router["attributes"]["nexxus.matched_devices"] == 1
    spans = [api, writer, router, *pushes]
    assert all(x["trace_id"] == trace_id and x["end_ns"] >= x["start_ns"] > 0 for x in spans)
    # The summaries list it too.
    status, body = await _get(mesh.endpoint("router").traces_url)
    assert status == 200
    assert trace_id in {t["trace_id"] for t in json.loads(body)["traces"]}


async def test_a_write_without_traceparent_starts_its_own_trace(mesh: Mesh, operator: Api) -> None:
    app_id, server, _, _ = await _device(operator)
    await server.create(app_id, "task", {"title": "x"}, object_id="own")

    async def traced() -> bool:
        status, body = await _get(mesh.endpoint("writer").traces_url + "?limit=1000")
        traces = json.loads(body)["traces"] if status == 200 else []
        for summary in traces:
            spans = await _spans(mesh, "writer", summary["trace_id"])
            if any(x["attributes"].get("nexxus.app") == app_id for x in spans):
                api_spans = await _spans(mesh, "api", summary["trace_id"])
                return any(x["name"] == "api.write" and x["parent_id"] is None for x in api_spans)
        return False

    await eventually(traced)


async def test_readiness_follows_nats_going_away_and_back(tmp_path: Path) -> None:
    async with running_mesh(_settings("sqlite", tmp_path / "mesh")) as mesh:
        assert mesh.nats is not None
        names = ["api", "writer", "router", "transport"]

        async def readiness(name: str) -> tuple[int, dict[str, Any]]:
            status, body = await mesh.readiness(name)
            return status, json.loads(body)

        s = mesh.settings
        grpc_ports = {"api": s.api.port, "transport": s.transport.grpc_port}

        async def grpc_health(name: str) -> int:
            """grpc.health.v1 of the api / transport server (the overall status, service "")."""
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_ports[name]}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                return int(reply.status)

        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        for name in names:
            assert (await readiness(name))[0] == 200
        for name in grpc_ports:
            assert await grpc_health(name) == serving
        await mesh.nats.kill()

        async def all_not_ready() -> bool:
            results = [await readiness(name) for name in names]
            healths = [await grpc_health(name) for name in grpc_ports]
            return healths == [not_serving] * len(grpc_ports) and all(
                status == 503 and body["checks"]["bus"] is False for status, body in results
            )

        await eventually(all_not_ready)
        for name in names:  # alive all the same
            status, _ = await _get(f"{mesh.endpoint(name).url}/healthz")
            assert status == 200
        await mesh.nats.restart()

        async def all_ready() -> bool:
            statuses = [(await readiness(name))[0] for name in names]
            healths = [await grpc_health(name) for name in grpc_ports]
            return statuses == [200] * len(names) and healths == [serving] * len(grpc_ports)

        await eventually(all_ready, within=60)
