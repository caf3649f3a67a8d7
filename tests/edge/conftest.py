"""Edge fixtures: the whole mesh (as in tests/e2e) with Envoy in front, every port free.

edge_mesh   a started `Mesh` plus `start_envoy()` (sqlite and postgres)
edge_url    http://127.0.0.1:<envoy port>
http        one aiohttp session for the run
rest        a `Rest` client through Envoy with the operator key
world       a fresh app (schema `task`) with a user `alice` and her device, made over REST
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nexxus.devserver.mesh import Mesh
from tests.e2e.conftest import BACKENDS, _settings, backend_dsn, running_mesh
from tests.edge.rest import Rest

PASSWORD = "correct horse battery"

TASK_SCHEMA: dict[str, Any] = {
    "fields": {
        "title": {"type": "FIELD_TYPE_STRING", "required": True},
        "priority": {"type": "FIELD_TYPE_STRING", "filterable": True},
        "status": {"type": "FIELD_TYPE_STRING", "filterable": True},
    }
}


@pytest.fixture(scope="session", params=BACKENDS)
async def edge_mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    backend: str = request.param
    settings = _settings(
        backend, Path(tmp_path_factory.mktemp(f"edge-{backend}")), backend_dsn(request, backend)
    )
    settings.envoy.port = 0
    settings.envoy.admin_port = 0
    settings.envoy.cors_allow_origins = ["http://app.example"]
    async with running_mesh(settings, envoy=True) as mesh:
        yield mesh


@pytest.fixture(scope="session")
def edge_url(edge_mesh: Mesh) -> str:
    return f"http://127.0.0.1:{edge_mesh.settings.envoy.port}"


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest.fixture(scope="session")
def rest(http: aiohttp.ClientSession, edge_url: str, edge_mesh: Mesh) -> Rest:
    return Rest(http, edge_url, edge_mesh.settings.operator_key)


@dataclass
class World:
    app_id: str
    server: Rest  # the operator
    user: Rest  # alice's user token (no device)
    device: Rest  # alice's device token
    user_id: str
    device_id: str
    refresh_token: str


async def make_world(rest: Rest, username: str = "alice") -> World:
    app_id = f"edge-{uuid.uuid4().hex[:10]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id})
    await rest.ok("PUT", f"/v1/apps/{app_id}/models/task", TASK_SCHEMA)
    await rest.ok("POST", f"/v1/apps/{app_id}/users", {"username": username, "password": PASSWORD})
    login = await rest.as_("").ok(
        "POST", f"/v1/apps/{app_id}/auth:login", {"login": username, "password": PASSWORD}
    )
    user = rest.as_(login["tokens"]["accessToken"])
    dev = await user.ok("POST", f"/v1/apps/{app_id}/devices", {"name": f"{username}-phone"})
    return World(
        app_id=app_id,
        server=rest,
        user=user,
        device=rest.as_(dev["tokens"]["accessToken"]),
        user_id=login["user"]["id"],
        device_id=dev["device"]["id"],
        refresh_token=login["tokens"]["refreshToken"],
    )


@pytest.fixture
async def world(rest: Rest) -> World:
    return await make_world(rest)
