"""`nexxus dev` stops on Ctrl-C and starts again at once on the same ports
(connections left in TIME_WAIT by the first run do not block the second)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from nexxus.devserver.process import free_port

pytestmark = pytest.mark.e2e

READY = "Press Ctrl-C to stop."


async def start_dev(data_dir: Path, ports: dict[str, int]) -> tuple[asyncio.subprocess.Process, list[str]]:
    sets = [arg for key, port in ports.items() for arg in ("--set", f"{key}={port}")]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexxus.cli",
        "dev",
        "--data-dir",
        str(data_dir),
        *sets,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    async with asyncio.timeout(180):
        while READY not in "".join(lines):
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"nexxus dev exited ({await proc.wait()}):\n{''.join(lines)}")
            lines.append(line.decode())
    return proc, lines


async def stop_dev(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(90):
            return await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise


async def traffic(envoy_port: int) -> None:
    """Requests through Envoy to the api and the transport, so that closed
    connections sit in TIME_WAIT on the fixed ports when the mesh stops."""
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            async with http.get(f"http://127.0.0.1:{envoy_port}/v1/apps/none/models") as resp:
                assert resp.status == 401, await resp.text()  # answered by the api
            async with http.get(f"http://127.0.0.1:{envoy_port}/v1/apps/none/events") as resp:
                assert resp.status in (401, 404)


async def console_is_served(data_dir: Path, envoy_port: int, lines: list[str]) -> None:
    """`nexxus dev` prints the admin console's URL; the page and its /admin/api/ answer there."""
    url = f"http://127.0.0.1:{envoy_port}/admin/"
    assert any(line.split() == ["admin", "console", url] for line in lines), lines
    key = (data_dir / "operator.key").read_text().strip()
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            assert '<div id="root">' in await resp.text()
        headers = {"authorization": f"Bearer {key}"}
        async with http.get(f"{url}api/services", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            services = (await resp.json())["services"]
        assert sorted(s["name"] for s in services) == ["api", "router", "transport", "writer"]
        assert all(s["ready"] for s in services), services


async def test_dev_stops_and_starts_again_at_once_on_the_same_ports(tmp_path: Path) -> None:
    keys = [
        "api.port",
        "transport.grpc_port",
        "transport.ws_port",
        "transport.sse_port",
        "envoy.port",
        "envoy.admin_port",
    ]
    ports = {key: free_port("127.0.0.1") for key in keys}
    proc, _ = await start_dev(tmp_path / "dev", ports)
    try:
        await traffic(ports["envoy.port"])
    finally:
        assert await stop_dev(proc) == 0
    again, lines = await start_dev(tmp_path / "dev", ports)  # at once, same ports, same data
    try:
        await traffic(ports["envoy.port"])
        assert not any("in use" in line for line in lines), lines
        await console_is_served(tmp_path / "dev", ports["envoy.port"], lines)
    finally:
        assert await stop_dev(again) == 0
