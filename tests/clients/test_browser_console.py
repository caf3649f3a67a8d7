"""The admin console (/admin/, built from console/ and shipped in the package)
in headless Chromium through Envoy: sign in with the operator key, create an
application and a model (a bad schema's error shown inline), watch the event
inspector while the object browser writes and patches objects, and see the
users, devices and live connection of a prepared application, the metrics
charts with every process's readiness, and one write's trace.

The screenshots are kept in ``test-artifacts/console/`` (gitignored; set
NEXXUS_TEST_ARTIFACTS to put them elsewhere)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import aiohttp
import pytest

from nexxus.devserver.mesh import Mesh
from tests.clients.conftest import CHROMIUM, ROOT, Edge, TaskApp, node_bin, node_modules, require_tool
from tests.clients.nodeproc import node_script

pytestmark = [pytest.mark.e2e, pytest.mark.edge, pytest.mark.browser, pytest.mark.timeout(240)]

CONSOLE = ROOT / "console"
SHOTS = (
    "01-signin-refused",
    "02-apps",
    "03-schema-error",
    "04-models",
    "05-objects",
    "06-inspector",
    "07-people",
    "08-connections",
    "09-metrics",
    "10-traces",
)


def artifacts_dir() -> Path:
    base = Path(os.environ.get("NEXXUS_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    out = base / "console"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    return out


async def test_console_end_to_end(edge: Edge, mesh: Mesh, task_app: TaskApp, tmp_path: Path) -> None:
    node = node_bin()
    require_tool(CHROMIUM.exists(), f"Chromium ({CHROMIUM}; apt-get install -y chromium)")
    node_modules(CONSOLE, "playwright-core")
    shots = artifacts_dir()
    app_id = f"console-{uuid.uuid4().hex[:8]}"
    user = task_app.user
    args = {
        "url": edge.url,
        "operatorKey": mesh.settings.operator_key,
        "appId": app_id,
        "watched": {"appId": task_app.app_id, "deviceId": user.device_id, "username": user.username},
        "screenshots": str(shots),
        "userDataDir": str(tmp_path / "chromium-profile"),
        "executablePath": str(CHROMIUM),
    }
    base = f"{edge.url}/v1/apps/{task_app.app_id}"
    headers = {"authorization": f"Bearer {user.token}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=None)) as http:
        # The prepared app's device holds a live connection (an SSE stream) with one subscription.
        sub = {"model": "task", "filter": {"status": {"eq": "todo"}}, "persistent": True}
        async with http.post(f"{base}/subscriptions", json=sub) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(f"{base}/events", params={"heartbeatSeconds": "300"}) as stream:
            assert stream.status == 200
            ready = await asyncio.wait_for(stream.content.readline(), 30)
            assert b"ready" in ready, ready
            async with node_script(
                node, CONSOLE / "test" / "console-e2e.mjs", [json.dumps(args)], CONSOLE
            ) as script:
                result = await script.result()
                assert await script.wait() == 0

    print(f"screenshots: {shots}")
    assert "PERMISSION_DENIED" in result["signinError"] or "403" in result["signinError"]
    assert result["serverKey"].startswith("nxs_")
    assert result["schemaErrorField"] == "schema.fields.priority.enum_values", result["schemaErrorText"]
    assert result["searched"] == ["t-high"]
    assert "nope" in result["patchErrorText"]
    events = result["events"]  # newest first
    assert [(e["objectId"], e["kind"]) for e in events] == [("t-high", "left"), ("t-high", "created")]
    (left_epoch, left_seq), (created_epoch, created_seq) = (e["position"].rsplit(".", 1) for e in events)
    assert left_epoch == created_epoch
    assert int(left_seq) > int(created_seq)
    assert result["users"] == [user.username]
    assert result["subscriptions"] == ['task · {"status":{"eq":"todo"}} · persistent']
    assert len(result["nodes"]) >= 1
    assert float(result["figures"]["connections"]) >= 1  # the prepared device's stream
    assert result["spans"][:3] == ["api.write", "writer.commit", "router.match"]
    assert result["console"] == [], result["console"]
    # The only refused calls are the ones the script provoked: a wrong key, a bad schema, a bad patch.
    assert sorted(result["failedCalls"]) == [
        f"400 PATCH /v1/apps/{app_id}/models/task/objects/t-high",
        f"400 PUT /v1/apps/{app_id}/models/task",
        "403 GET /v1/admin/apps",
    ]
    for name in SHOTS:
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
