"""Which write partitions this writer copy applies: a fair share, held by leases.

Every copy registers itself (lease ``member.<holder>``) and, every third of the
lease ttl, renews what it holds and counts the live copies: its fair share is
ceil(partitions / copies). It releases partitions above its share (after the
batch in hand is done and acked) and acquires free ones below it (lease
``partition.<n>``), starting an in-order consumer on each. A copy that dies
stops renewing: ttl seconds later its partitions are free, and the next tick of
a live copy takes them over; the new consumer first redelivers what the dead
copy had fetched but not acked. A copy that fails to renew a lease (lost it)
stops that partition's consumer at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import zlib
from collections.abc import Awaitable, Callable

from nexxus.core.errors import NexxusError
from nexxus.core.ports import BusSubscription, Lease, LeaseTable

log = logging.getLogger("nexxus.writer")

__all__ = ["PartitionOwner"]

StartPartition = Callable[[int], Awaitable[BusSubscription]]


class PartitionOwner:
    def __init__(
        self, leases: LeaseTable, holder: str, partitions: int, start_partition: StartPartition
    ) -> None:
        self._leases = leases
        self.holder = holder
        self.partitions = partitions
        self._start_partition = start_partition
        self._member: Lease | None = None
        self.owned: dict[int, tuple[Lease, BusSubscription]] = {}
        # Partitions being given up: their consumer finishes its batch, then the
        # lease goes (renewed meanwhile, so nobody starts on them too early).
        self._releasing: dict[int, Lease] = {}
        self._release_tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Where this copy starts looking for free partitions (spreads copies apart).
        self._offset = zlib.crc32(holder.encode()) % partitions

    @property
    def interval(self) -> float:
        return self._leases.ttl / 3

    async def start(self) -> None:
        try:
            await self.tick()
        except NexxusError as exc:  # the loop tries again
            log.warning("partition leases: %s", exc)
        self._task = asyncio.create_task(self._run(), name="writer-partitions")

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except NexxusError as exc:
                log.warning("partition leases: %s", exc)
            except Exception:
                log.exception("partition leases tick failed")

    async def tick(self) -> None:
        await self._renew()
        if self._member is None or not await self._member.renew():
            self._member = await self._leases.acquire(f"member.{self.holder}", self.holder)
        copies = max(await self._leases.count("member."), 1)
        share = math.ceil(self.partitions / copies)
        while len(self.owned) > share:
            self._start_release(max(self.owned))
        for i in range(self.partitions):
            if len(self.owned) + len(self._releasing) >= share or self._stopping:
                break
            p = (self._offset + i) % self.partitions
            if p not in self.owned and p not in self._releasing:
                await self._acquire(p)

    async def _renew(self) -> None:
        for lease in list(self._releasing.values()):
            with contextlib.suppress(NexxusError):
                await lease.renew()
        for p, (lease, sub) in list(self.owned.items()):
            try:
                kept = await lease.renew()
            except NexxusError as exc:
                log.warning("cannot renew partition %d: %s", p, exc)
                continue  # maybe a blip; it expires if this persists
            if not kept:
                log.warning("lost partition %d; stopping its consumer", p)
                del self.owned[p]
                await sub.unsubscribe()

    async def _acquire(self, p: int) -> None:
        lease = await self._leases.acquire(f"partition.{p}", self.holder)
        if lease is None:
            return
        try:
            sub = await self._start_partition(p)
        except BaseException:
            await lease.release()
            raise
        self.owned[p] = (lease, sub)
        log.info("writer %s took partition %d", self.holder, p)

    def _start_release(self, p: int) -> None:
        """Give `p` up in the background (the lease loop keeps renewing meanwhile)."""
        lease, sub = self.owned.pop(p)
        self._releasing[p] = lease
        task = asyncio.create_task(self._release(p, lease, sub), name=f"writer-release-{p}")
        self._release_tasks.add(task)
        task.add_done_callback(self._release_tasks.discard)

    async def _release(self, p: int, lease: Lease, sub: BusSubscription) -> None:
        try:
            await sub.unsubscribe()  # the batch in hand finishes and is acked first
            await lease.release()
            log.info("writer %s released partition %d", self.holder, p)
        finally:
            self._releasing.pop(p, None)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for p in sorted(self.owned):
            self._start_release(p)
        if self._release_tasks:
            await asyncio.gather(*self._release_tasks, return_exceptions=True)
        if self._member is not None:
            await self._member.release()
            self._member = None
