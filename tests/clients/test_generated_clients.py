"""Clients generated from proto/ by buf (buf.gen.yaml) in two more languages: a Go
program (protoc-gen-go + protoc-gen-go-grpc) and a Java program (grpc-java). Each
signs in, registers a device, opens StreamEvents, creates an object and receives
its event, through Envoy on the running stack. `tests.clients.codegen` installs
the generators and builds the programs (cached)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.clients.codegen import JavaProgram, ToolMissing, build
from tests.clients.conftest import ROOT, Edge, TaskApp, require_tool
from tests.clients.nodeproc import program

pytestmark = [pytest.mark.e2e, pytest.mark.edge, pytest.mark.timeout(900)]

DATA = {"title": "from a generated client", "status": "todo", "priority": "high"}


@pytest.fixture(scope="module")
async def programs() -> tuple[str, JavaProgram]:
    """The built Go and Java programs (a first build installs the tools: minutes)."""
    try:
        go, java = await asyncio.to_thread(build)
    except ToolMissing as exc:
        require_tool(False, str(exc).removesuffix(" is not installed"))
        raise
    return str(go), java


async def _run(argv: list[str], edge: Edge, task_app: TaskApp, object_id: str) -> None:
    args = {
        "target": f"127.0.0.1:{edge.port}",
        "appId": task_app.app_id,
        "login": task_app.user.username,
        "password": task_app.user.password,
        "model": "task",
        "objectId": object_id,
        "data": DATA,
    }
    async with program([*argv, json.dumps(args)], ROOT) as proc:
        ready = json.loads(await proc.expect("READY", timeout=60))
        created = json.loads(await proc.expect("CREATED", timeout=60))
        result = await proc.result()
        assert await proc.wait() == 0, await proc.stderr()
    assert len(ready["subscriptions"]) == 1
    # A device of its own, not the fixture user's.
    assert ready["deviceId"]
    assert ready["deviceId"] != task_app.user.device_id
    assert result["operationId"] == created["operationId"]
    assert {k: result[k] for k in ("kind", "objectId", "version")} == {
        "kind": "EVENT_KIND_CREATED",
        "objectId": object_id,
        "version": "1",
    }
    assert result["data"] == DATA


async def test_go_client_through_envoy(
    programs: tuple[str, JavaProgram], edge: Edge, task_app: TaskApp
) -> None:
    go, _ = programs
    await _run([go], edge, task_app, "go-edge")


async def test_java_client_through_envoy(
    programs: tuple[str, JavaProgram], edge: Edge, task_app: TaskApp
) -> None:
    _, java = programs
    await _run(java.argv(), edge, task_app, "java-edge")
