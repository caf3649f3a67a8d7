"""`nexxus dev` waits until every service is ready and prints where each one's
metrics, health and traces are; those URLs answer (docs/observability.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from pathlib import Path

import pytest

from nexxus.devserver.endpoints import ENDPOINTS_FILE, read_endpoints
from nexxus.devserver.probes import http_get

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_LINE = re.compile(
    r"^\s+(\S+) observability\s+http://127\.0\.0\.1:(\d+)\s+\(/metrics /healthz /readyz /debug/traces\)$"
)


async def test_dev_prints_ready_observability_endpoints(tmp_path: Path) -> None:
    ports = ["api.port", "transport.grpc_port", "transport.ws_port", "transport.sse_port"]
    args = [a for key in ports for a in ("--set", f"{key}=0")]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexxus.cli",
        "dev",
        "--no-envoy",
        "--data-dir",
        str(tmp_path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(180):
            while not lines or "Press Ctrl-C" not in lines[-1]:
                raw = await proc.stdout.readline()
                assert raw, "nexxus dev exited:\n" + "".join(lines)
                lines.append(raw.decode())
        printed = {m[1]: int(m[2]) for line in lines if (m := _LINE.match(line.rstrip("\n")))}
        assert set(printed) == {"api", "writer", "router", "transport"}, "".join(lines)
        for name, port in printed.items():
            status, body = await http_get("127.0.0.1", port, "/readyz", timeout=5)
            assert status == 200, (name, body)
            assert json.loads(body)["ready"] is True
            status, body = await http_get("127.0.0.1", port, "/metrics", timeout=5)
            assert status == 200
            assert b"# TYPE nexxus_writes_accepted_total counter" in body
        listed = {e.name: e.url for e in read_endpoints(tmp_path / ENDPOINTS_FILE)}
        assert listed == {name: f"http://127.0.0.1:{port}" for name, port in printed.items()}
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
