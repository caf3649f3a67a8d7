"""The transport node's lease on its connections, and the reaping of dead nodes.

Every `lease_seconds / 3` the node renews its lease in the store, then reaps
the nodes whose lease has expired (their connections and the volatile
subscriptions those connections made are removed, as if each had closed). So
`kill -9` of a transport leaves stale connections for about `lease_seconds`,
until any other transport node (or the same one restarted) notices.

A node whose lease lapsed (the store was unreachable for longer than the
lease, or the process was frozen or starved) learns on its next renewal whether
another node claimed it for reaping meanwhile. Only then does it close all its
connections with UNAVAILABLE, so that clients reconnect and resume instead of
silently holding connections no router routes to; a lapse nobody acted on
(a lone node under a connection storm) changes nothing. Renewals run on the
store's own lease connection and are never queued behind a reap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nexxus.core.errors import NexxusError
from nexxus.core.ports import SubscriptionStore

__all__ = ["NodeLease"]

log = logging.getLogger("nexxus.transport.lease")


class NodeLease:
    def __init__(
        self,
        node_id: str,
        store: SubscriptionStore,
        lease_seconds: float,
        on_lapse: Callable[[], Awaitable[None]],
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.lease_seconds = lease_seconds
        self.on_lapse = on_lapse
        self._task: asyncio.Task[None] | None = None
        self._reaping: asyncio.Task[int] | None = None
        self.reaped_nodes = 0

    @property
    def interval(self) -> float:
        return self.lease_seconds / 3

    async def start(self) -> None:
        """Take the lease (and reap what is already dead), then keep renewing it."""
        if self._task is not None:
            return
        await self.store.renew_node_lease(self.node_id, self.lease_seconds)
        await self.reap()
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.node_id}")

    async def stop(self) -> None:
        """Stop renewing and release the lease (call after unregistering the connections)."""
        for task in (self._task, self._reaping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, NexxusError):
                    await task
        self._task = self._reaping = None
        try:
            await self.store.release_node_lease(self.node_id)
        except NexxusError as exc:
            log.warning("could not release the lease of node %s: %s", self.node_id, exc)

    async def reap(self) -> int:
        """Remove the connections of every node whose lease expired; returns how many."""
        removed = 0
        for node in await self.store.dead_nodes():
            if node == self.node_id:
                continue
            count = await self.store.reap_node(node)
            self.reaped_nodes += 1
            removed += count
            log.info("node %s: reaped dead transport node %s (%d connections)", self.node_id, node, count)
        return removed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if not await self.store.renew_node_lease(self.node_id, self.lease_seconds):
                    log.error("node %s: lease lapsed and node reaped; closing its connections", self.node_id)
                    await self.on_lapse()
            except NexxusError as exc:
                log.warning("node %s: lease renewal failed: %s", self.node_id, exc)
            # Reaping (many store calls when a big node died) runs beside the renewals.
            if self._reaping is None or self._reaping.done():
                self._reaping = asyncio.create_task(self._reap_logged(), name=f"reap-{self.node_id}")

    async def _reap_logged(self) -> int:
        try:
            return await self.reap()
        except NexxusError as exc:
            log.warning("node %s: reaping dead nodes failed: %s", self.node_id, exc)
            return 0
