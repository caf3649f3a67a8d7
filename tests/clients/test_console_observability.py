"""The console's /admin/api/ (the dev static server behind Envoy): every service
process's readiness, metrics and traces, for the operator only, on the real mesh."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import aiohttp
import pytest

from nexxus.devserver.mesh import Mesh
from tests.clients.conftest import Edge, TaskApp

pytestmark = [pytest.mark.e2e, pytest.mark.edge]

WAIT = 30.0  # a bound on waits, not a speed assertion


async def _get(http: aiohttp.ClientSession, url: str, key: str | None) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_console_api_needs_the_operator_key(edge: Edge, task_app: TaskApp) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("services", "metrics", "traces", f"traces/{secrets.token_hex(16)}"):
            url = f"{edge.url}/admin/api/{path}"
            status, body = await _get(http, url, None)
            assert (status, body["code"]) == (401, 16), (path, body)
            for other in (task_app.server_key, task_app.user.token, "nope"):
                status, body = await _get(http, url, other)
                assert (status, body["code"]) == (403, 7), (path, body)


async def test_services_metrics_and_one_traced_write(edge: Edge, mesh: Mesh, task_app: TaskApp) -> None:
    key = mesh.settings.operator_key
    async with aiohttp.ClientSession() as http:
        status, body = await _get(http, f"{edge.url}/admin/api/services", key)
        assert status == 200
        services = {s["name"]: s for s in body["services"]}
        assert {"api", "writer", "router", "transport"} <= set(services)
        for name in ("api", "writer", "router", "transport"):
            assert services[name]["ready"] is True, services[name]
            assert services[name]["checks"], services[name]
            assert all(services[name]["checks"].values()), services[name]

        # One write with a caller's traceparent: its trace is found across the services.
        trace_id = secrets.token_hex(16)
        headers = {
            "authorization": f"Bearer {task_app.server_key}",
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        }
        objects = f"{edge.url}/v1/apps/{task_app.app_id}/models/task/objects"
        body = {"data": {"title": "traced", "status": "todo"}, "wait": True}
        async with http.post(objects, json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()

        deadline = time.monotonic() + WAIT
        names: set[str] = set()
        while not {"api.write", "writer.commit", "router.match"} <= names:
            assert time.monotonic() < deadline, f"spans seen: {names}"
            status, trace = await _get(http, f"{edge.url}/admin/api/traces/{trace_id}", key)
            names = {s["name"] for s in trace.get("spans", [])} if status == 200 else set()
            await asyncio.sleep(0.2)
        spans = trace["spans"]
        assert all(s["trace_id"] == trace_id for s in spans)
        assert [s["start_ns"] for s in spans] == sorted(s["start_ns"] for s in spans)
        status, listing = await _get(http, f"{edge.url}/admin/api/traces?limit=500", key)
        assert status == 200
        (summary,) = [t for t in listing["traces"] if t["trace_id"] == trace_id]
        assert {"api", "writer", "router"} <= set(summary["services"])
        assert summary["spans"] >= 3

        status, metrics = await _get(http, f"{edge.url}/admin/api/metrics", key)
        assert status == 200
        texts = {m["name"]: m["text"] for m in metrics["services"]}
        assert all(not m["error"] for m in metrics["services"]), metrics["services"]
        accepted = [
            line
            for line in texts["api"].splitlines()
            if line.startswith("nexxus_writes_accepted_total{") and f'app="{task_app.app_id}"' in line
        ]
        assert accepted, texts["api"][:2000]
        assert float(accepted[0].rsplit(" ", 1)[1]) >= 1
