"""`nexxus dev`: the whole mesh on this machine until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from nexxus.core.config.settings import Settings
from nexxus.devserver.mesh import Mesh


async def run_dev(
    settings: Settings, *, config_file: str | None, overrides: Sequence[str], envoy: bool = True
) -> int:
    mesh = Mesh(settings, start_nats=True, start_valkey=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await mesh.start()
        if envoy:
            await mesh.start_envoy()
        print("Nexxus is running:")
        for name, where in mesh.summary().items():
            print(f"  {name:<22} {where}")
        print(f"  {'operator key':<22} {settings.operator_key}")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    except Exception as exc:
        print(f"nexxus dev: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping...", flush=True)
        await mesh.stop()
    return 0
