"""A tiny REST/JSON client for the edge tests (aiohttp), one call per line, and an SSE reader."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def json(self) -> dict[str, Any]:
        assert isinstance(self.body, dict), f"not a JSON object: {self.body!r}"
        return self.body

    def error_field(self) -> str:
        """The `field` of the google.rpc.ErrorInfo in an error body ("" when absent)."""
        for detail in self.json.get("details", []):
            if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return str(detail.get("metadata", {}).get("field", ""))
        return ""

    def reason(self) -> str:
        for detail in self.json.get("details", []):
            if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return str(detail.get("reason", ""))
        return ""


class Rest:
    """REST calls through Envoy's transcoder with one bearer credential."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str = "") -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.token = token

    def as_(self, token: str) -> Rest:
        return Rest(self.session, self.base_url, token)

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        headers = self.headers()
        data: bytes | None = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["content-type"] = "application/json"
        async with self.session.request(
            method, self.base_url + path, data=data, params=params, headers=headers
        ) as resp:
            text = await resp.text()
            parsed: Any
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return Reply(resp.status, parsed, {k.lower(): v for k, v in resp.headers.items()})

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        reply = await self.call(method, path, body, **kw)
        assert reply.status == 200, (method, path, reply.status, reply.body)
        return reply.json if reply.body is not None else {}


async def sse_frames(resp: aiohttp.ClientResponse, wait: float = 20.0) -> AsyncIterator[dict[str, Any]]:
    """The `data:` payloads of an SSE body, read incrementally; a line that does not
    come within `wait` seconds raises TimeoutError instead of hanging the test."""
    while True:
        line = await asyncio.wait_for(resp.content.readline(), wait)
        if not line:
            return
        text = line.decode().strip()
        if text.startswith("data:"):
            yield json.loads(text[len("data:") :])
