"""The whole mesh on one machine: real servers plus the four services, each
service in its own process (`nexxus serve <name>`), as in production.

Used by `nexxus dev` and by the end-to-end tests (which kill -9 services and
restart them). Ports that are 0 in the settings are picked free; NATS and
Valkey always get free ports unless external URLs are given, so nothing
collides with servers already on 4222 / 6379.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nexxus.core.config.dump import settings_to_dict
from nexxus.core.config.settings import Settings
from nexxus.core.limits import limits_of
from nexxus.devserver.console_api import ConsoleApi
from nexxus.devserver.endpoints import ENDPOINTS_FILE, ServiceEndpoint, write_endpoints
from nexxus.devserver.envoy_config import (
    DEFAULT_DESCRIPTOR,
    envoy_config_for,
    write_envoy_config,
)
from nexxus.devserver.probes import http_get
from nexxus.devserver.process import ManagedProcess, free_port
from nexxus.devserver.servers import EnvoyServer, NatsServer, ValkeyServer
from nexxus.devserver.static import CONSOLE_ROOT, StaticServer, add_static_routes
from nexxus.runtime import SERVICES, resolve_secrets

# The JS client and its demo page (repository checkout), served through Envoy.
DEMO_ROOT = Path(__file__).resolve().parents[3] / "clients" / "js"


class Mesh:
    def __init__(
        self,
        settings: Settings,
        *,
        start_nats: bool = True,
        start_valkey: bool = True,
        services: tuple[str, ...] = SERVICES,
    ) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir).resolve()
        settings.data_dir = str(self.data_dir)
        max_payload = limits_of(settings).nats_max_payload
        self.nats = NatsServer(self.data_dir / "nats", max_payload=max_payload) if start_nats else None
        self.valkey = ValkeyServer(self.data_dir / "valkey") if start_valkey else None
        self.service_names = services
        self.processes: dict[str, ManagedProcess] = {}
        # process name → its observability port (always a free one, picked here)
        self.observability_ports: dict[str, int] = {}
        self.config_path = self.data_dir / "mesh-config.json"
        self.envoy: EnvoyServer | None = None
        self.static: StaticServer | None = None

    async def start_servers(self) -> None:
        if self.nats is not None:
            await self.nats.start()
            self.settings.bus.nats.servers = [self.nats.url]
        if self.valkey is not None:
            await self.valkey.start()
            self.settings.store.redis.url = self.valkey.url

    def write_config(self) -> None:
        """Freeze the mesh's settings (resolved secrets and ports) for the service processes."""
        s = self.settings
        resolve_secrets(s)
        s.node_id = ""  # each process names itself (host-pid)
        if s.api.port == 0:
            s.api.port = free_port(s.api.host)
        if s.transport.grpc_port == 0:
            s.transport.grpc_port = free_port(s.transport.host)
        if s.transport.ws_port == 0:
            s.transport.ws_port = free_port(s.transport.host)
        if s.transport.sse_port == 0:
            s.transport.sse_port = free_port(s.transport.host)
        raw: dict[str, Any] = settings_to_dict(s, redact=False)
        # Each process gets its observability port on its command line (`process`); any other
        # process started from this file (a test's extra node) binds a free one.
        raw["observability"].update({f"{role}_port": 0 for role in SERVICES})
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(raw, indent=2))
        self.config_path.chmod(0o600)

    def process(self, name: str) -> ManagedProcess:
        """The process of service `name`; "writer@2" is a second copy of the writer."""
        proc = self.processes.get(name)
        if proc is None:
            service = name.split("@", 1)[0]
            command = [
                sys.executable,
                "-m",
                "nexxus.cli",
                "serve",
                service,
                "--config",
                str(self.config_path),
            ]
            obs = self.settings.observability
            if obs.enabled and obs.port_of(service) is not None:
                port = self.observability_ports[name] = free_port(obs.host)
                command += ["--set", f"observability.{service}_port={port}"]
            proc = ManagedProcess(name, command, log_path=self.data_dir / "logs" / f"{name}.log")
            self.processes[name] = proc
            write_endpoints(self.data_dir / ENDPOINTS_FILE, self.endpoints())
        return proc

    def endpoints(self) -> list[ServiceEndpoint]:
        """The observability endpoint of every service process of this mesh (started or not)."""
        host = self.settings.observability.host
        return [
            ServiceEndpoint(name, name.split("@", 1)[0], f"http://{host}:{port}")
            for name, port in self.observability_ports.items()
        ]

    def endpoint(self, name: str) -> ServiceEndpoint:
        """The observability endpoint of process `name` ("api", "writer@2")."""
        host = self.settings.observability.host
        return ServiceEndpoint(name, name.split("@", 1)[0], f"http://{host}:{self.observability_ports[name]}")

    async def readiness(self, name: str) -> tuple[int, bytes]:
        """(status, body) of GET /readyz of process `name`."""
        host = self.settings.observability.host
        return await http_get(host, self.observability_ports[name], "/readyz", timeout=5.0)

    async def start_service(self, name: str, *, timeout: float = 60.0) -> None:
        proc = self.process(name)
        offset = len(proc.log_path.read_bytes()) if proc.log_path.exists() else 0
        await proc.start()

        async def ready() -> bool:
            try:
                text = proc.log_path.read_bytes()[offset:].decode(errors="replace")
            except OSError:
                return False
            service = name.split("@", 1)[0]
            # "started api, writer, …" from nexxus.runtime (any roles, "all" too), or a worker's line.
            started = "nexxus.runtime: started " in text or f"started {service}" in text
            if not started or name not in self.observability_ports:
                return started
            status, _ = await self.readiness(name)  # its real dependencies, not just "started"
            return status == 200

        await proc.wait_ready(ready, timeout=timeout)

    async def start(self) -> None:
        await self.start_servers()
        self.write_config()
        for name in self.service_names:
            await self.start_service(name)

    async def start_envoy(self, *, timeout: float = 30.0) -> EnvoyServer:
        """Render the edge config (envoy/ routes, ports of this mesh) and start Envoy in front.

        Call after `start()`. `envoy.port` / `envoy.admin_port` 0 → free ports picked here.
        """
        s = self.settings.envoy
        if s.port == 0:
            s.port = free_port(s.host)
        if s.admin_port == 0:
            s.admin_port = free_port("127.0.0.1")
        envoy_dir = self.data_dir / "envoy"
        config = envoy_config_for(self.settings, descriptor_path=DEFAULT_DESCRIPTOR)
        # The admin console (in the package), and from a checkout the browser client and
        # the demo task board: same origin as the API.
        demo = DEMO_ROOT if DEMO_ROOT.is_dir() else None
        console = CONSOLE_ROOT if (CONSOLE_ROOT / "index.html").is_file() else None
        if demo is not None or console is not None:
            # /admin/api/: the console's view of every process's metrics, readiness and traces.
            api = ConsoleApi(self.settings.operator_key, self.endpoints) if console is not None else None
            self.static = StaticServer(demo, console=console, console_api=api)
            await self.static.start()
            add_static_routes(config, "127.0.0.1", self.static.port)
        path = write_envoy_config(envoy_dir / "envoy.yaml", config)
        self.envoy = EnvoyServer(path, log_level="warning")
        await self.envoy.start(timeout=timeout)
        return self.envoy

    async def stop(self) -> None:
        if self.envoy is not None:
            await self.envoy.stop()
        if self.static is not None:
            await self.static.stop()
        for name in reversed(list(self.processes)):
            await self.processes[name].stop(timeout=10)
        for server in (self.valkey, self.nats):
            if server is not None:
                await server.stop()

    def summary(self) -> dict[str, str]:
        s = self.settings
        out: dict[str, str] = {}
        if self.envoy is not None:
            out["REST, gRPC, gRPC-web"] = f"http://{s.envoy.host}:{s.envoy.port}"
            out["WebSocket (edge)"] = f"ws://{s.envoy.host}:{s.envoy.port}/v1/apps/<app_id>/ws"
            out["envoy admin"] = f"http://127.0.0.1:{s.envoy.admin_port}"
            if self.static is not None and self.static.console is not None:
                out["admin console"] = f"http://{s.envoy.host}:{s.envoy.port}/admin/"
            if self.static is not None and self.static.root is not None:
                out["demo task board"] = f"http://{s.envoy.host}:{s.envoy.port}/demo/"
        out |= {
            "api (gRPC)": f"{s.api.host}:{s.api.port}",
            "events (gRPC stream)": f"{s.transport.host}:{s.transport.grpc_port}",
            "websocket bridge": f"ws://{s.transport.host}:{s.transport.ws_port}/v1/apps/<app_id>/ws",
            "server-sent events": f"http://{s.transport.host}:{s.transport.sse_port}/v1/apps/<app_id>/events",
            "nats": ",".join(s.bus.nats.servers),
            "redis": s.store.redis.url,
            "database": s.database.adapter,
            **{
                f"{e.name} observability": f"{e.url}  (/metrics /healthz /readyz /debug/traces)"
                for e in self.endpoints()
            },
            "data dir": str(self.data_dir),
        }
        return out
