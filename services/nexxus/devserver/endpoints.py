"""Where each service process of a mesh serves its observability port
(/metrics, /healthz, /readyz, /debug/traces; docs/observability.md).

A running `Mesh` lists them (`Mesh.endpoints()`) and keeps them in
`<data_dir>/endpoints.json`; a console or any aggregator reads that file
(`read_endpoints`) or, for a deployment without it, derives the four roles'
endpoints from the settings (`endpoints_from_settings`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from nexxus.core.config.settings import Settings

__all__ = [
    "ENDPOINTS_FILE",
    "ServiceEndpoint",
    "endpoints_from_settings",
    "read_endpoints",
    "write_endpoints",
]

ENDPOINTS_FILE = "endpoints.json"
ROLES = ("api", "writer", "router", "transport")


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """One service process: `name` ("writer", "writer@2"), its `role`, and the
    base URL of its observability port ("http://127.0.0.1:40123")."""

    name: str
    role: str
    url: str

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    @property
    def ready_url(self) -> str:
        return f"{self.url}/readyz"

    @property
    def traces_url(self) -> str:
        return f"{self.url}/debug/traces"


def endpoints_from_settings(settings: Settings) -> list[ServiceEndpoint]:
    """The four roles at their configured ports (one process per role)."""
    obs = settings.observability
    return [
        ServiceEndpoint(role, role, f"http://{obs.host}:{obs.port_of(role)}")
        for role in ROLES
        if obs.port_of(role)
    ]


def write_endpoints(path: Path, endpoints: list[ServiceEndpoint]) -> None:
    """Replace the file atomically (readers never see half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(e) for e in endpoints], indent=2))
    tmp.replace(path)


def read_endpoints(path: Path) -> list[ServiceEndpoint]:
    """The endpoints a mesh wrote; [] when the file does not exist."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    return [ServiceEndpoint(str(e["name"]), str(e["role"]), str(e["url"])) for e in raw]
