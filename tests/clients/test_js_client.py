"""The JS client (clients/js/src/nexxus.js) in Node 20, through Envoy: REST
calls, WebSocket events, errors, and re-subscription and resume after a
transport kill -9 (what was written while it was down arrives)."""

from __future__ import annotations

import json

import pytest

from nexxus.devserver.mesh import Mesh
from tests.clients.conftest import ROOT, Edge, TaskApp, node_bin, node_modules
from tests.clients.nodeproc import node_script
from tests.e2e.harness import Api

pytestmark = [pytest.mark.e2e, pytest.mark.edge, pytest.mark.timeout(180)]

JS = ROOT / "clients" / "js"


async def test_js_client_in_node(mesh: Mesh, edge: Edge, operator: Api, task_app: TaskApp) -> None:
    node = node_bin()
    node_modules(JS, "ws")
    server = operator.as_(task_app.server_key)
    args = {
        "baseUrl": edge.url,
        "appId": task_app.app_id,
        "username": "alice",
        "password": task_app.user.password,
    }
    async with node_script(node, JS / "test" / "client-node.mjs", [json.dumps(args)], JS) as script:
        await script.expect("RECONNECT-ME")
        await mesh.processes["transport"].kill()
        await server.create(task_app.app_id, "task", {"title": "m", "status": "todo"}, object_id="m")
        await mesh.start_service("transport")
        await script.send("restarted")
        await script.expect("RESUBSCRIBED")
        await server.create(task_app.app_id, "task", {"title": "n2", "status": "todo"}, object_id="n2")
        result = await script.result()
        assert await script.wait() == 0

    assert result["badWrite"] == {"code": "INVALID_ARGUMENT", "status": 400}
    assert result["subscription"] == {"model": "task", "hasId": True}
    assert result["createdVersion"] == "1"
    assert result["created"] == {"kind": "EVENT_KIND_CREATED", "title": "n1"}
    assert result["left"] == {"kind": "EVENT_KIND_LEFT", "version": "2"}
    assert result["searched"] == ["n1"]
    assert result["pong"] == {"n": 7}
    assert result["badSubscription"]["code"] in {"NOT_FOUND", "INVALID_ARGUMENT"}
    assert result["resubscribed"]["model"] == "task"
    assert result["resubscribed"]["newId"] is True
    assert result["resubscribed"]["connections"] >= 2
    assert result["afterReconnect"] == {"kind": "EVENT_KIND_CREATED", "title": "n2"}
    # Resumed from its position: the write made while the transport was down arrived, nothing twice.
    assert result["missedWhileDown"] == {"kind": "EVENT_KIND_CREATED", "title": "m"}
    assert len(result["eventIds"]) == len(set(result["eventIds"]))
    assert result["position"]
