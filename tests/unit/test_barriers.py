"""Write barriers coalesce per partition: one in flight, the misses that arrive
meanwhile share the next one, and each waiter's barrier is sent after it asked."""

from __future__ import annotations

import asyncio

import pytest

from nexxus.api.barriers import BarrierCoalescer


class FakeWriter:
    """Answers barriers when released; records when each was sent."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.release = asyncio.Event()
        self.ok = True
        self.clock = 0

    async def send(self) -> bool:
        self.sent.append(self.clock)
        await self.release.wait()
        self.release.clear()
        return self.ok


async def _until(check: object) -> None:
    for _ in range(100):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_misses_during_a_barrier_share_the_next_one() -> None:
    coalescer, writer = BarrierCoalescer(), FakeWriter()
    first = asyncio.create_task(coalescer.settle("p1", writer.send))
    await _until(lambda: len(writer.sent) == 1)
    writer.clock = 1  # these ask after the first barrier went out
    later = [asyncio.create_task(coalescer.settle("p1", writer.send)) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(writer.sent) == 1  # they wait, nothing more is sent yet
    writer.release.set()
    assert await first is True
    await _until(lambda: len(writer.sent) == 2)
    assert writer.sent == [0, 1]  # the second barrier left after they asked
    writer.release.set()
    assert await asyncio.gather(*later) == [True] * 50
    assert coalescer.sent == 2


async def test_partitions_are_independent_and_failures_say_not_settled() -> None:
    coalescer, a, b = BarrierCoalescer(), FakeWriter(), FakeWriter()
    b.ok = False
    on_a = asyncio.create_task(coalescer.settle("a", a.send))
    on_b = asyncio.create_task(coalescer.settle("b", b.send))
    await _until(lambda: a.sent and b.sent)
    a.release.set()
    b.release.set()
    assert (await on_a, await on_b) == (True, False)

    async def broken() -> bool:
        raise RuntimeError("bus down")

    assert await coalescer.settle("a", broken) is False


async def test_a_cancelled_waiter_does_not_block_the_others() -> None:
    coalescer, writer = BarrierCoalescer(), FakeWriter()
    first = asyncio.create_task(coalescer.settle("p", writer.send))
    await _until(lambda: writer.sent)
    gone = asyncio.create_task(coalescer.settle("p", writer.send))
    stays = asyncio.create_task(coalescer.settle("p", writer.send))
    await asyncio.sleep(0)
    gone.cancel()
    writer.release.set()
    assert await first is True
    with pytest.raises(asyncio.CancelledError):
        await gone
    await _until(lambda: len(writer.sent) == 2)
    writer.release.set()
    assert await stays is True
