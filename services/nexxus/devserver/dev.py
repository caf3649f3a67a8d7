"""`nexxus dev`: the whole mesh on this machine until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

from nexxus.core.config.settings import Settings
from nexxus.devserver.mesh import Mesh
from nexxus.devserver.process import ProcessExited


def check_port_free(host: str, port: int, what: str) -> str | None:
    """An error message when something listens on (host, port), else None.

    SO_REUSEADDR, as every server of the mesh binds with it: connections of the
    previous run still in TIME_WAIT (a minute after Ctrl-C) do not count.
    """
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return f"{what} port {host}:{port} is already in use (choose another with --set)"
    return None


def preflight(settings: Settings, *, envoy: bool) -> list[str]:
    s = settings
    checks = [
        (s.api.host, s.api.port, "api", "api.port"),
        (s.transport.host, s.transport.grpc_port, "transport gRPC", "transport.grpc_port"),
        (s.transport.host, s.transport.ws_port, "WebSocket", "transport.ws_port"),
        (s.transport.host, s.transport.sse_port, "server-sent events", "transport.sse_port"),
    ]
    if envoy:
        checks.append((s.envoy.host, s.envoy.port, "Envoy", "envoy.port"))
    problems = []
    for host, port, what, key in checks:
        message = check_port_free(host, port, what)
        if message:
            problems.append(f"{message}, e.g. --set {key}=0 for a free one")
    return problems


async def run_dev(settings: Settings, *, envoy: bool = True) -> int:
    problems = preflight(settings, envoy=envoy)
    if problems:
        for problem in problems:
            print(f"nexxus dev: {problem}", file=sys.stderr)
        return 2
    mesh = Mesh(settings, start_nats=True, start_valkey=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def start() -> None:
        await mesh.start()
        if envoy:
            await mesh.start_envoy()

    starting = asyncio.create_task(start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # Ctrl-C during start-up
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return 130
        error = starting.exception()
        if error is not None:
            detail = f"{error}" if isinstance(error, ProcessExited) else repr(error)
            print(f"nexxus dev: start-up failed: {detail}", file=sys.stderr)
            return 1
        print("Nexxus is running:")
        for name, where in mesh.summary().items():
            print(f"  {name:<28} {where}")
        print(f"  {'operator key':<28} {settings.operator_key}")
        print(f"  {'logs':<28} {mesh.data_dir / 'logs'}")
        print("Press Ctrl-C to stop.", flush=True)
        await stopping
        return 0
    finally:
        stopping.cancel()
        print("stopping...", flush=True)
        await mesh.stop()
        print("stopped.", flush=True)
