"""The console's view of the mesh's observability ports (docs/observability.md),
served by the dev static server under ``/admin/api/`` (same origin as the
console, behind Envoy), for the operator only.

Every service process serves ``/metrics``, ``/readyz`` and ``/debug/traces`` on a
port of its own, which a browser cannot reach; these handlers ask every process
and answer with one JSON document:

- ``GET /admin/api/services``           each process with its readiness checks
- ``GET /admin/api/metrics``            each process's Prometheus text (the page parses it)
- ``GET /admin/api/traces[?limit=N]``   recent traces, merged across processes, newest first
- ``GET /admin/api/traces/<trace_id>``  every span of one trace, from every process

Without the operator key: 401 (no credential) or 403, as ``{code, message}``
like the API's own errors.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import aiohttp
from aiohttp import web

__all__ = ["API_PREFIX", "ConsoleApi", "Endpoint"]

API_PREFIX = "/admin/api/"
FETCH_SECONDS = 3.0
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class Endpoint(Protocol):
    """One service process and the base URL of its observability port."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def url(self) -> str: ...


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "details": []}, status=status)


class ConsoleApi:
    """The ``/admin/api/`` handlers over `endpoints()` (asked at each request)."""

    def __init__(self, operator_key: str, endpoints: Callable[[], Sequence[Endpoint]]) -> None:
        self._key = operator_key.encode()
        self._endpoints = endpoints
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_SECONDS))
        return self._http

    def _refusal(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return _error(401, 16, "the operator credential is required")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, 16, "expected 'authorization: Bearer <operator key>'")
        if not self._key or not hmac.compare_digest(token.strip().encode(), self._key):
            return _error(403, 7, "only the operator may read the mesh's metrics and traces")
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if request.method != "GET":
            return _error(405, 3, f"{request.method} is not allowed here")
        path = request.path[len(API_PREFIX) :]
        if path == "services":
            return web.json_response({"services": await self._services()})
        if path == "metrics":
            return web.json_response({"services": await self._metrics()})
        if path == "traces":
            try:
                limit = min(max(int(request.query.get("limit", "50")), 1), 500)
            except ValueError:
                return _error(400, 3, "limit must be a number")
            return web.json_response({"traces": await self._traces(limit)})
        if path.startswith("traces/"):
            trace_id = path[len("traces/") :]
            if not _TRACE_ID.match(trace_id):
                return _error(400, 3, "a trace id is 32 lowercase hex characters")
            spans = await self._trace(trace_id)
            if not spans:
                return _error(404, 5, f"no process keeps spans of trace {trace_id}")
            return web.json_response({"spans": spans})
        return _error(404, 5, f"no such console call: {request.path}")

    async def _get(self, url: str) -> tuple[int, bytes]:
        async with self._session().get(url) as resp:
            return resp.status, await resp.read()

    async def _each(self, path: str) -> list[tuple[Endpoint, int, bytes, str]]:
        """(endpoint, status, body, error) of `path` on every process, concurrently."""
        endpoints = list(self._endpoints())

        async def one(e: Endpoint) -> tuple[Endpoint, int, bytes, str]:
            try:
                status, body = await self._get(f"{e.url}{path}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                return e, 0, b"", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return e, status, body, ""

        return list(await asyncio.gather(*(one(e) for e in endpoints)))

    async def _services(self) -> list[dict[str, Any]]:
        out = []
        for e, status, body, error in await self._each("/readyz"):
            checks: dict[str, Any] = {}
            if body:
                try:
                    checks = dict(json.loads(body).get("checks", {}))
                except (ValueError, AttributeError):
                    error = error or "unreadable /readyz answer"
            out.append(
                {
                    "name": e.name,
                    "role": e.role,
                    "url": e.url,
                    "ready": status == 200,
                    "checks": checks,
                    "error": error,
                }
            )
        return out

    async def _metrics(self) -> list[dict[str, Any]]:
        return [
            {
                "name": e.name,
                "role": e.role,
                "text": body.decode(errors="replace") if status == 200 else "",
                "error": error or ("" if status == 200 else f"HTTP {status}"),
            }
            for e, status, body, error in await self._each("/metrics")
        ]

    async def _traces(self, limit: int) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for _e, status, body, _error in await self._each(f"/debug/traces?limit={limit}"):
            if status != 200:
                continue
            for t in json.loads(body).get("traces", []):
                seen = merged.get(t["trace_id"])
                if seen is None:
                    merged[t["trace_id"]] = {**t, "services": sorted(set(t.get("services", [])))}
                    continue
                if t["start_ns"] < seen["start_ns"]:
                    seen["start_ns"], seen["name"] = t["start_ns"], t["name"]
                seen["end_ns"] = max(seen["end_ns"], t["end_ns"])
                seen["spans"] += t["spans"]
                seen["services"] = sorted({*seen["services"], *t.get("services", [])})
        newest = sorted(merged.values(), key=lambda t: t["start_ns"], reverse=True)
        return newest[:limit]

    async def _trace(self, trace_id: str) -> list[dict[str, Any]]:
        spans: list[dict[str, Any]] = []
        for _e, status, body, _error in await self._each(f"/debug/traces/{trace_id}"):
            if status == 200:
                spans.extend(json.loads(body).get("spans", []))
        return sorted(spans, key=lambda s: (s["start_ns"], s["span_id"]))
