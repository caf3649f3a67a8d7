"""Fixtures for the client tests: the whole mesh (real nats-server, Valkey and
the four services, SQLite), an app with a `task` model, and — when Envoy is
available (`Mesh.start_envoy`) — the edge in front of it.

Tests that need Node or Chromium skip with a reason when those are missing,
except when CI=true: then they fail (CI installs them).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from nexxus.devserver.mesh import Mesh
from tests.e2e.conftest import _settings, running_mesh
from tests.e2e.harness import Api, User

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")

TASK_SCHEMA = {
    "fields": {
        "title": {"type": "string", "required": True},
        "status": {"type": "string", "filterable": True},
        "priority": {"type": "string", "filterable": True},
    }
}


def require_tool(available: bool, what: str) -> None:
    """Skip (fail under CI=true) when a tool the test drives is missing."""
    if available:
        return
    reason = f"{what} is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: required)")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def node_bin() -> str:
    found = shutil.which("node")
    require_tool(found is not None, "node (Node.js 20)")
    assert found is not None
    return found


def node_modules(package_dir: Path, *names: str) -> None:
    """The npm packages a script imports must be installed (`npm ci` in package_dir)."""
    missing = [n for n in names if not (package_dir / "node_modules" / n).is_dir()]
    require_tool(not missing, f"npm packages {missing} in {package_dir} (run: npm ci --prefix {package_dir})")


@pytest.fixture(scope="session")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """The whole mesh with Envoy (and the static /demo/ and /js/ routes) in front."""
    s = _settings("sqlite", tmp_path_factory.mktemp("clients-mesh"))
    s.envoy.port = 0
    s.envoy.admin_port = 0
    async with running_mesh(s, envoy=True) as m:
        yield m


@pytest.fixture(scope="session")
async def api_channel(mesh: Mesh) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as channel:
        yield channel


@pytest.fixture(scope="session")
def operator(mesh: Mesh, api_channel: grpc.aio.Channel) -> Api:
    return Api(api_channel, mesh.settings.operator_key)


@dataclass
class TaskApp:
    app_id: str
    server_key: str
    user: User


@pytest.fixture
async def task_app(operator: Api) -> TaskApp:
    """A fresh app with the `task` model and one user with a device."""
    app_id = f"app-{uuid.uuid4().hex[:10]}"
    server_key = await operator.create_app(app_id)
    server = operator.as_(server_key)
    await server.put_schema(app_id, "task", TASK_SCHEMA)
    user = await server.user_with_device(app_id, "alice")
    return TaskApp(app_id=app_id, server_key=server_key, user=user)


@dataclass
class Edge:
    """Envoy in front of the mesh, plus the static server for clients/js (/demo/, /js/)."""

    url: str
    port: int
    static_url: str


@pytest.fixture(scope="session")
def edge(mesh: Mesh) -> Edge:
    """Envoy in front of the mesh, with the static routes for clients/js."""
    assert mesh.static is not None, "clients/js is missing from this checkout"
    port = mesh.settings.envoy.port
    return Edge(url=f"http://127.0.0.1:{port}", port=port, static_url=mesh.static.url)
