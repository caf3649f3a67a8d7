"""The JS client (clients/js/src/nexxus.js) in Node 20, through Envoy: REST
calls, WebSocket events, errors, and re-subscription and resume after a
transport kill -9 (what was written while it was down arrives); an access
token that expires during the stream is refreshed (`getToken`) and the stream
resumes with every event exactly once."""

from __future__ import annotations

import asyncio
import json

import pytest

from nexxus.auth.tokens import TokenService
from nexxus.core.config.settings import AuthSettings
from nexxus.devserver.mesh import Mesh
from tests.clients.conftest import ROOT, Edge, TaskApp, node_bin, node_modules
from tests.clients.nodeproc import node_script
from tests.e2e.harness import Api, patch

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


TOKEN_TTL = 4
OBJECTS = 4
ROUNDS = 24


async def test_js_client_refreshes_an_expired_token_and_resumes(
    mesh: Mesh, edge: Edge, operator: Api, task_app: TaskApp
) -> None:
    """The client's access token lives 4 s; writes keep coming for about twice
    that. The server closes the WebSocket when the token expires (TOKEN_EXPIRED),
    the client gets a fresh token from `getToken`, reconnects and resumes from
    its position: every event arrives once, in per-object version order."""
    node = node_bin()
    node_modules(JS, "ws")
    s = mesh.settings
    user = task_app.user
    short = TokenService(AuthSettings(access_token_ttl_seconds=TOKEN_TTL), signing_key=s.auth.signing_key)
    server = operator.as_(task_app.server_key)
    args = {
        "baseUrl": edge.url,
        "appId": task_app.app_id,
        "freshToken": user.token,
        "objects": OBJECTS,
        "finalVersion": ROUNDS + 1,
    }
    async with node_script(node, JS / "test" / "token-refresh-node.mjs", [json.dumps(args)], JS) as script:
        await script.expect("TOKEN?")
        # Minted once Node is up, so the token's lifetime is the stream's.
        await script.send(short.issue(task_app.app_id, user.user_id, user.device_id).access_token)
        await script.expect("SUBSCRIBED")
        for i in range(OBJECTS):
            await server.create(task_app.app_id, "task", {"title": "t", "status": "todo"}, object_id=f"k{i}")
        for r in range(1, ROUNDS + 1):
            # Spread over ~2 token lifetimes, so the expiry falls mid-stream.
            await asyncio.gather(
                *(
                    server.update(task_app.app_id, "task", f"k{i}", [patch("replace", ["title"], [f"r{r}"])])
                    for i in range(OBJECTS)
                )
            )
            await asyncio.sleep(2 * TOKEN_TTL / ROUNDS)
        result = await script.result()
        assert await script.wait() == 0

    print(
        f"{len(result['events'])} events over {result['connections']} connections; "
        f"getToken called {result['tokensHandedOut']}x; {result['duplicatesDropped']} duplicates dropped; "
        f"errors {result['errors']}"
    )
    assert result["complete"], result
    assert result["tokensHandedOut"] >= 1
    assert result["connections"] >= 2
    assert result["token"] == "fresh"
    assert any(e.endswith("TOKEN_EXPIRED") for e in result["errors"]), result["errors"]
    assert result["resumed"] >= 1
    assert result["gaps"] == 0
    ids = [e["eventId"] for e in result["events"]]
    assert len(ids) == len(set(ids))
    per_object: dict[str, list[int]] = {}
    for e in result["events"]:
        per_object.setdefault(e["objectId"], []).append(e["version"])
    assert per_object == {f"k{i}": list(range(1, ROUNDS + 2)) for i in range(OBJECTS)}
