"""A tiny static file server for the admin console, the browser client and its
demo page, meant to sit behind Envoy so that the pages, the REST API and the
WebSocket share one origin.

    server = StaticServer(Path("clients/js"), console=CONSOLE_ROOT)
    await server.start()          # server.port is picked when 0
    ...
    await server.stop()

Paths served (`root` is clients/js of a checkout, or None; `console` is the
console's built assets, shipped in the package as ``nexxus/console/static``):

- ``/admin/…`` → ``console/…`` (any path that is not a file → ``index.html``:
  the console routes in the page)
- ``/admin/api/…`` → `console_api` (the mesh's metrics, readiness and traces,
  for the operator; see `nexxus.devserver.console_api`)
- ``/demo/…`` → ``root/demo/…`` (``/demo/`` → ``root/demo/index.html``)
- ``/js/…``   → ``root/src/…``  (the client module: ``/js/nexxus.js``)
- ``/src/…``  → ``root/src/…``

`add_static_routes(config, host, port)` adds the routes (``/admin``,
``/admin/``, ``/demo/`` and ``/js/`` → cluster ``static``) and the cluster to a
bootstrap built by `nexxus.devserver.envoy_config`, ahead of its catch-all api
route.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from aiohttp import web

from nexxus.devserver.console_api import API_PREFIX, ConsoleApi

__all__ = ["CONSOLE_ROOT", "STATIC_CLUSTER", "STATIC_PREFIXES", "StaticServer", "add_static_routes"]

STATIC_CLUSTER = "static"
STATIC_PREFIXES = ("/admin/", "/demo/", "/js/")
# The admin console's built assets (console/ of a checkout builds them here; shipped in the package).
CONSOLE_ROOT = Path(__file__).resolve().parents[1] / "console" / "static"

_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".html": "text/html",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


class StaticServer:
    """Serves the console and `root`'s demo/ and src/ over HTTP/1.1 on `host:port` (0 = a free port)."""

    def __init__(
        self,
        root: Path | None,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        console: Path | None = None,
        console_api: ConsoleApi | None = None,
    ) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.console = Path(console).resolve() if console is not None else None
        self.console_api = console_api
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _console_file(self, path: str) -> Path | None:
        if self.console is None:
            return None
        base = self.console
        target = (base / path[len("/admin/") :]).resolve()
        if target.is_relative_to(base) and target.is_file():
            return target
        index = base / "index.html"
        # Not a file: a page of the console (its own router), unless it looks like a missing asset.
        return index if index.is_file() and "." not in path.rsplit("/", 1)[-1] else None

    def _resolve(self, path: str) -> Path | None:
        if path.startswith("/admin/"):
            return self._console_file(path)
        if self.root is None:
            return None
        for prefix, sub in (("/demo/", "demo"), ("/js/", "src"), ("/src/", "src")):
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                rest = path[len(prefix) :] if path.startswith(prefix) else ""
                base = (self.root / sub).resolve()
                target = (base / (rest or "index.html")).resolve()
                if target.is_dir():
                    target = target / "index.html"
                if target.is_relative_to(base) and target.is_file():
                    return target
                return None
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX) and self.console_api is not None:
            return await self.console_api.handle(request)
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if request.path in ("/demo", "/admin"):
            raise web.HTTPFound(f"{request.path}/")
        target = self._resolve(request.path)
        if target is None:
            raise web.HTTPNotFound()
        # Built assets have content hashes in their names: cached for good; the rest revalidated.
        immutable = (
            target.parent.name == "assets"
            and self.console is not None
            and target.is_relative_to(self.console)
        )
        headers = {"Cache-Control": "public, max-age=31536000, immutable" if immutable else "no-cache"}
        content_type = _TYPES.get(target.suffix)
        if content_type:
            headers["Content-Type"] = f"{content_type}; charset=utf-8"
        return web.FileResponse(target, headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self.console_api is not None:
            await self.console_api.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def add_static_routes(config: dict[str, Any], host: str, port: int) -> dict[str, Any]:
    """Adds the static routes (``/admin``, ``/admin/``, ``/demo/``, ``/js/``) to a bootstrap, in place."""
    static_resources = config["static_resources"]
    hcm = static_resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    vhost = hcm["route_config"]["virtual_hosts"][0]
    no_filters = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    disabled = {
        name: no_filters
        for name in ("envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.grpc_web")
        if any(f.get("name") == name for f in hcm.get("http_filters", []))
    }
    routes = [
        {
            "name": f"static{prefix.rstrip('/').replace('/', '_')}",
            "match": {"prefix": prefix},
            "route": {"cluster": STATIC_CLUSTER, "timeout": "10s"},
            **({"typed_per_filter_config": disabled} if disabled else {}),
        }
        for prefix in STATIC_PREFIXES
    ]
    routes.append(
        {
            "name": "static_admin_redirect",
            "match": {"path": "/admin"},
            "route": {"cluster": STATIC_CLUSTER, "timeout": "10s"},
            **({"typed_per_filter_config": disabled} if disabled else {}),
        }
    )
    vhost["routes"] = routes + [
        r for r in vhost["routes"] if r.get("route", {}).get("cluster") != STATIC_CLUSTER
    ]
    clusters = [c for c in static_resources["clusters"] if c.get("name") != STATIC_CLUSTER]
    clusters.append(
        {
            "name": STATIC_CLUSTER,
            "connect_timeout": "2s",
            "type": "STATIC",
            "lb_policy": "ROUND_ROBIN",
            "load_assignment": {
                "cluster_name": STATIC_CLUSTER,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {"socket_address": {"address": host, "port_value": port}}
                                }
                            }
                        ]
                    }
                ],
            },
        }
    )
    static_resources["clusters"] = clusters
    return config
