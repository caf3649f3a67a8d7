"""A tiny static file server for the browser client and its demo page, meant to
sit behind Envoy so that the page, the REST API and the WebSocket share one
origin.

    server = StaticServer(Path("clients/js"))
    await server.start()          # server.port is picked when 0
    ...
    await server.stop()

Paths served (`root` is clients/js):

- ``/demo/…`` → ``root/demo/…`` (``/demo/`` → ``root/demo/index.html``)
- ``/js/…``   → ``root/src/…``  (the client module: ``/js/nexxus.js``)
- ``/src/…``  → ``root/src/…``

`add_static_routes(config, host, port)` adds the two Envoy routes (``/demo/``
and ``/js/`` → cluster ``static``) and the cluster to a bootstrap built by
`nexxus.devserver.envoy_config`, ahead of its catch-all api route.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["STATIC_CLUSTER", "STATIC_PREFIXES", "StaticServer", "add_static_routes"]

STATIC_CLUSTER = "static"
STATIC_PREFIXES = ("/demo/", "/js/")

_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html", ".css": "text/css"}


class StaticServer:
    """Serves `root`'s demo/ and src/ over HTTP/1.1 on `host:port` (0 = a free port)."""

    def __init__(self, root: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _resolve(self, path: str) -> Path | None:
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
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if request.path == "/demo":
            raise web.HTTPFound("/demo/")
        target = self._resolve(request.path)
        if target is None:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": "no-cache"}
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
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def add_static_routes(config: dict[str, Any], host: str, port: int) -> dict[str, Any]:
    """Adds ``/demo/`` and ``/js/`` → the static server to an Envoy bootstrap (in place)."""
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
