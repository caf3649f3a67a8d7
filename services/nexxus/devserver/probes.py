"""Readiness probes for the development servers (plain asyncio sockets, no drivers)."""

from __future__ import annotations

import asyncio
import contextlib
import json

__all__ = ["http_get", "nats_probe", "redis_ping"]


async def _exchange(host: str, port: int, send: bytes, *, timeout: float) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        if send:
            writer.write(send)
            await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def nats_probe(host: str, port: int, *, jetstream: bool = True, timeout: float = 1.0) -> bool:
    """True once nats-server sends its INFO line (with JetStream enabled when asked)."""
    line = await _exchange(host, port, b"", timeout=timeout)
    if not line.startswith(b"INFO "):
        return False
    info = json.loads(line[5:])
    return bool(info.get("jetstream")) if jetstream else True


async def redis_ping(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """True once the server answers PING with PONG (not -LOADING while replaying the AOF)."""
    line = await _exchange(host, port, b"PING\r\n", timeout=timeout)
    return line.startswith(b"+PONG")


async def http_get(host: str, port: int, path: str, *, timeout: float = 1.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET (Connection: close): (status code, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body
