"""The observability port of a service process: /metrics, /healthz, /readyz,
/debug/traces (docs/observability.md). Built apart from running it; port 0
binds a free one (`port` after `start()`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from nexxus.observability.tracing import SpanRing

__all__ = ["Check", "ObservabilityServer"]

log = logging.getLogger("nexxus.observability")

# A readiness check: True when the dependency is usable.
Check = Callable[[], Awaitable[bool]]
# Refreshes gauges read from elsewhere (JetStream) just before a scrape.
Refresh = Callable[[], Awaitable[None]]

CHECK_TIMEOUT = 2.0
_HEX = frozenset("0123456789abcdef")


class ObservabilityServer:
    def __init__(self, service: str, host: str, port: int, ring: SpanRing | None) -> None:
        self.service = service
        self.host = host
        self.port = port
        self._ring = ring
        self.checks: dict[str, Check] = {}
        self.refreshers: list[Refresh] = []
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/debug/traces", self._traces)
        app.router.add_get("/debug/traces/{trace_id}", self._trace)
        self._app = app

    def add_checks(self, checks: Mapping[str, Check]) -> None:
        self.checks.update(checks)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        log.info(
            "observability of %s on %s (/metrics /healthz /readyz /debug/traces)", self.service, self.url
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def readiness(self) -> dict[str, bool]:
        results = await asyncio.gather(*(_run_check(check) for check in self.checks.values()))
        return dict(zip(self.checks, results, strict=True))

    # ------------------------------------------------------------------ handlers

    async def _metrics(self, _request: web.Request) -> web.Response:
        for refresh in self.refreshers:
            try:
                await asyncio.wait_for(refresh(), CHECK_TIMEOUT)
            except Exception as exc:  # a scrape must answer even when the bus is down
                log.debug("metrics refresh failed: %r", exc)
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "service": self.service})

    async def _readyz(self, _request: web.Request) -> web.Response:
        checks = await self.readiness()
        ready = bool(checks) and all(checks.values())
        body = {"ready": ready, "service": self.service, "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def _traces(self, request: web.Request) -> web.Response:
        try:
            limit = max(1, min(int(request.query.get("limit", "50")), 1000))
        except ValueError:
            return _error(400, "limit must be an integer")
        traces = self._ring.traces(limit) if self._ring is not None else []
        return web.json_response({"service": self.service, "traces": traces})

    async def _trace(self, request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"].lower()
        if len(trace_id) != 32 or not set(trace_id) <= _HEX:
            return _error(400, "a trace id is 32 hexadecimal characters")
        spans = self._ring.trace(trace_id) if self._ring is not None else []
        if not spans:
            return _error(404, f"no span of trace {trace_id} kept here")
        return web.json_response({"spans": spans})


async def _run_check(check: Check) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), CHECK_TIMEOUT))
    except Exception as exc:
        log.debug("readiness check failed: %r", exc)
        return False


def _error(status: int, message: str) -> web.Response:
    body: dict[str, Any] = {"error": message}
    return web.json_response(body, status=status)
