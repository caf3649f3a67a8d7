"""The development servers and ManagedProcess: real processes, no orphans."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from nexxus.devserver.dev import check_port_free
from nexxus.devserver.probes import http_get
from nexxus.devserver.servers import (
    EnvoyServer,
    ManagedProcess,
    NatsServer,
    ProcessExited,
    ValkeyServer,
    free_port,
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): check its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


def _time_wait_port() -> int:
    """A port with no listener but a connection in TIME_WAIT (its server side closed first)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the active closer keeps the TIME_WAIT on the listening port
    client.recv(1)
    client.close()
    listener.close()
    return port


def test_preflight_ignores_time_wait_but_not_a_listener() -> None:
    port = _time_wait_port()
    with socket.socket() as plain, pytest.raises(OSError, match="in use"):
        plain.bind(("127.0.0.1", port))  # what the old check did: refused for a minute after Ctrl-C
    assert check_port_free("127.0.0.1", port, "api") is None
    with socket.create_server(("127.0.0.1", 0)) as live:
        taken = live.getsockname()[1]
        assert "already in use" in (check_port_free("127.0.0.1", taken, "api") or "")


async def test_process_output_goes_to_log(tmp_path: Path) -> None:
    proc = ManagedProcess("echo", ["sh", "-c", "echo hello; echo oops >&2"], log_path=tmp_path / "p.log")
    await proc.start()
    assert await proc.wait() == 0
    text = (tmp_path / "p.log").read_text()
    assert "hello" in text
    assert "oops" in text


async def test_wait_ready_reports_early_exit(tmp_path: Path) -> None:
    proc = ManagedProcess("bad", ["sh", "-c", "echo broken config; exit 3"], log_path=tmp_path / "b.log")
    await proc.start()

    async def never() -> bool:
        return False

    with pytest.raises(ProcessExited) as info:
        await proc.wait_ready(never, timeout=5)
    assert info.value.returncode == 3
    assert "broken config" in info.value.log_tail


async def test_wait_ready_times_out(tmp_path: Path) -> None:
    async with ManagedProcess("sleeper", ["sleep", "30"], log_path=tmp_path / "s.log") as proc:

        async def never() -> bool:
            return False

        with pytest.raises(TimeoutError):
            await proc.wait_ready(never, timeout=0.2)
    assert not proc.running


async def test_stop_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    proc = ManagedProcess("parent", ["sh", "-c", script], log_path=tmp_path / "g.log")
    await proc.start()

    async def child_started() -> bool:
        return pid_file.exists() and pid_file.read_text().strip() != ""

    await proc.wait_ready(child_started, timeout=5)
    child = int(pid_file.read_text())
    assert alive(child)
    await proc.stop(timeout=5)
    await asyncio.sleep(0.1)
    assert not alive(child)


async def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"trap '' TERM; touch {ready}; while true; do sleep 0.05; done"
    proc = ManagedProcess("stubborn", ["sh", "-c", script], log_path=tmp_path / "t.log")
    await proc.start()

    async def trapped() -> bool:
        return ready.exists()

    await proc.wait_ready(trapped, timeout=5)
    code = await proc.stop(timeout=0.3)
    assert code == -9


async def test_kill_is_sigkill(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "victim", [sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "k.log"
    )
    await proc.start()
    assert proc.running
    assert await proc.kill() == -9
    assert not proc.running


async def test_nats_server_restarts_on_same_port_with_its_data(tmp_path: Path) -> None:
    import nats

    server = NatsServer(tmp_path / "nats")
    async with server:
        url = server.url
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name="KEEP", subjects=["keep.>"])
        await nc.close()
    assert not server.running
    async with server:
        assert server.url == url
        nc = await nats.connect(url)
        info = await nc.jetstream().stream_info("KEEP")
        await nc.close()
    assert info.config.name == "KEEP"
    assert (tmp_path / "nats" / "jetstream").is_dir()


async def test_valkey_data_survives_restart(tmp_path: Path) -> None:
    server = ValkeyServer(tmp_path / "valkey")
    async with server:
        client = Redis.from_url(server.url)
        await client.set("k", "v")
        await client.aclose()
    async with server:
        client = Redis.from_url(server.url)
        assert await client.get("k") == b"v"
        await client.aclose()
    assert server.url.startswith("redis://127.0.0.1:")
    assert server.url.endswith("/0")


async def test_envoy_server_waits_for_admin_ready(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text("admin:\n  address:\n    socket_address: {address: 127.0.0.1, port_value: 0}\n")
    server = EnvoyServer(config)
    async with server:
        host, port = server.admin_address
        status, body = await http_get(host, port, "/ready")
        assert status == 200
        assert b"LIVE" in body
        pid = server.process.pid
    assert pid is not None
    assert not alive(pid)


async def test_envoy_bad_config_fails_fast(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("this: is: not: envoy\n")
    with pytest.raises(ProcessExited):
        await EnvoyServer(config).start(timeout=20)
