"""Cross-language proof: clients/node-grpc/stream.mjs (@grpc/grpc-js with
proto-loader reading proto/ at runtime) streams events and writes an object,
directly against the services and through Envoy."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nexxus.devserver.mesh import Mesh
from tests.clients.conftest import ROOT, Edge, TaskApp, node_bin, node_modules
from tests.clients.nodeproc import node_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NODE_GRPC = ROOT / "clients" / "node-grpc"
_GRPC_TOOLS = importlib.util.find_spec("grpc_tools")
assert _GRPC_TOOLS is not None
assert _GRPC_TOOLS.origin is not None
WELL_KNOWN = Path(_GRPC_TOOLS.origin).parent / "_proto"  # google/protobuf/*.proto


async def _run(target: dict[str, str], task_app: TaskApp, object_id: str) -> dict[str, object]:
    node = node_bin()
    node_modules(NODE_GRPC, "@grpc/grpc-js", "@grpc/proto-loader")
    args = {
        **target,
        "appId": task_app.app_id,
        "token": task_app.user.token,
        "model": "task",
        "objectId": object_id,
        "data": {"title": "from node", "status": "todo", "priority": "high"},
        "includeDirs": [str(WELL_KNOWN)],
    }
    async with node_script(node, NODE_GRPC / "stream.mjs", [json.dumps(args)], NODE_GRPC) as script:
        ready = json.loads(await script.expect("READY"))
        created = json.loads(await script.expect("CREATED"))
        result = await script.result()
        assert await script.wait() == 0
    assert len(ready["subscriptions"]) == 1
    assert result["operationId"] == created["operationId"]
    return result


def _expected(object_id: str) -> dict[str, object]:
    return {"kind": "EVENT_KIND_CREATED", "objectId": object_id, "version": "1"}


async def test_node_grpc_direct(mesh: Mesh, task_app: TaskApp) -> None:
    s = mesh.settings
    target = {"apiTarget": f"127.0.0.1:{s.api.port}", "eventsTarget": f"127.0.0.1:{s.transport.grpc_port}"}
    result = await _run(target, task_app, "node-direct")
    assert {k: result[k] for k in ("kind", "objectId", "version")} == _expected("node-direct")
    assert result["data"] == {"title": "from node", "status": "todo", "priority": "high"}


@pytest.mark.edge
async def test_node_grpc_through_envoy(edge: Edge, task_app: TaskApp) -> None:
    result = await _run({"target": f"127.0.0.1:{edge.port}"}, task_app, "node-edge")
    assert {k: result[k] for k in ("kind", "objectId", "version")} == _expected("node-edge")
    assert result["data"] == {"title": "from node", "status": "todo", "priority": "high"}
