"""The demo page (clients/js/demo) in headless Chromium, served through Envoy
with the REST API and the WebSocket: tasks created over REST appear live,
the page's own form creates tasks, an update moves a card between columns; a
resume the server cannot serve (a position of another epoch) shows the gap and
reloads the board from the snapshot (a card the server does not have goes)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import aiohttp
import pytest

from tests.clients.conftest import CHROMIUM, ROOT, Edge, TaskApp, node_bin, node_modules, require_tool
from tests.clients.nodeproc import node_script

pytestmark = [pytest.mark.e2e, pytest.mark.edge, pytest.mark.browser, pytest.mark.timeout(180)]

JS = ROOT / "clients" / "js"


async def test_demo_board_updates_live(edge: Edge, task_app: TaskApp, tmp_path: Path) -> None:
    node = node_bin()
    require_tool(CHROMIUM.exists(), f"Chromium ({CHROMIUM}; apt-get install -y chromium)")
    node_modules(JS, "playwright-core", "ws")
    user = task_app.user
    fragment = urllib.parse.urlencode({"app": task_app.app_id, "token": user.token})
    screenshot = tmp_path / "demo.png"
    args = {
        "url": f"{edge.url}/demo/#{fragment}",
        "screenshot": str(screenshot),
        "userDataDir": str(tmp_path / "chromium-profile"),
        "executablePath": str(CHROMIUM),
    }
    headers = {"authorization": f"Bearer {user.user_token}"}
    objects = f"{edge.url}/v1/apps/{task_app.app_id}/models/task/objects"
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        node_script(node, JS / "test" / "browser-demo.mjs", [json.dumps(args)], JS) as script,
    ):
        await script.expect("READY")
        body = {"objectId": "rest-1", "data": {"title": "Write the report", "status": "todo"}, "wait": True}
        async with http.post(objects, json=body) as resp:
            assert resp.status == 200, await resp.text()
        await script.send("expect Write the report")
        await script.expect("STEP seen")
        await script.expect("STEP form")
        patch = {"patch": [{"op": "replace", "path": ["status"], "value": ["done"]}], "wait": True}
        async with http.patch(f"{objects}/rest-1", json=patch) as resp:
            assert resp.status == 200, await resp.text()
        await script.send("moved Write the report")
        result = await script.result()
        assert await script.wait() == 0

    print(f"screenshot: {screenshot}")
    assert result["columns"] == {
        "todo": [],
        "doing": ["Write the report (browser)"],
        "done": ["Write the report"],
    }
    assert result["gap"] == {"shown": True, "snapshotLoaded": True, "resumed": True}
    assert result["state"] == "live"
    assert result["loginVisible"] is False  # the fragment's token replaced the login form
    assert screenshot.stat().st_size > 0
