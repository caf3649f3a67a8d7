"""A REST write through Envoy joins the caller's trace: Envoy passes the W3C
`traceparent` header on as gRPC metadata, and the api, the writer and the
router record their spans under it (docs/observability.md)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiohttp
import pytest

from nexxus.devserver.mesh import Mesh
from tests.edge.conftest import World

pytestmark = [pytest.mark.e2e, pytest.mark.edge]


async def _spans(http: aiohttp.ClientSession, mesh: Mesh, name: str, trace_id: str) -> list[dict[str, Any]]:
    async with http.get(f"{mesh.endpoint(name).traces_url}/{trace_id}") as resp:
        if resp.status == 404:
            return []
        assert resp.status == 200
        spans: list[dict[str, Any]] = json.loads(await resp.text())["spans"]
        return spans


async def test_a_rest_write_joins_the_callers_trace(
    world: World, edge_url: str, edge_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    trace_id, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    headers = {**world.server.headers(), "traceparent": f"00-{trace_id}-{caller_span}-01"}
    body = {"objectId": "traced", "data": {"title": "t", "priority": "high"}, "wait": True}
    url = f"{edge_url}/v1/apps/{world.app_id}/models/task/objects"
    async with http.post(url, json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()

    deadline = time.monotonic() + 30
    while True:
        found = {name: await _spans(http, edge_mesh, name, trace_id) for name in ("api", "writer", "router")}
        if all(found.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    (api,) = found["api"]
    (writer,) = found["writer"]
    (router,) = found["router"]
    assert api["name"] == "api.write"
    assert api["parent_id"] == caller_span
    assert writer["parent_id"] == api["span_id"]
    assert router["parent_id"] == writer["span_id"]
