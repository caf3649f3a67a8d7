"""Keep a process's grpc.health.v1 status in step with its readiness.

The gRPC servers say SERVING once they start; from then on a `HealthFollower`
re-runs the process's readiness checks (the same ones `/readyz` answers with)
every few seconds and flips every registered health servicer to NOT_SERVING
while any check fails, and back. Load balancers and Kubernetes gRPC probes
then stop sending traffic to a process whose bus or store is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from grpc_health.v1 import health

from nexxus.rpc.server import set_serving

__all__ = ["HealthFollower"]

log = logging.getLogger("nexxus.rpc.health")

Readiness = Callable[[], Awaitable[dict[str, bool]]]


class HealthFollower:
    def __init__(self, readiness: Readiness, interval: float = 2.0) -> None:
        self.readiness = readiness
        self.interval = interval
        self._servicers: list[tuple[health.aio.HealthServicer, Sequence[str]]] = []
        self._serving = True
        self._task: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._serving

    def follow(self, servicer: health.aio.HealthServicer, service_names: Sequence[str]) -> None:
        self._servicers.append((servicer, list(service_names)))

    async def check(self) -> bool:
        """Run the checks once and set every servicer accordingly; returns whether serving."""
        checks = await self.readiness()
        serving = bool(checks) and all(checks.values())
        if serving != self._serving:
            failing = sorted(name for name, ok in checks.items() if not ok)
            if serving:
                log.info("ready again: gRPC health SERVING")
            else:
                log.warning("not ready (%s): gRPC health NOT_SERVING", ", ".join(failing))
            self._serving = serving
            for servicer, names in self._servicers:
                await set_serving(servicer, names, serving)
        return serving

    def start(self) -> None:
        if self._task is None and self._servicers:
            self._task = asyncio.create_task(self._run(), name="health-follower")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # the follower must outlive any one failed check
                log.exception("health check failed")
