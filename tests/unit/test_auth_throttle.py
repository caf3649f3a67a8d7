"""LoginThrottle over an in-memory fake of SubscriptionStore.hit."""

from __future__ import annotations

import asyncio

import pytest

from nexxus.auth.throttle import LoginThrottle
from nexxus.core.errors import ResourceExhausted


class FakeCounter:
    """`hit(key, window)`: a fixed-window counter; `tick()` starts the next window."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.windows: list[int] = []

    async def hit(self, key: str, window_seconds: int) -> int:
        self.windows.append(window_seconds)
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    def tick(self) -> None:
        self.counts.clear()


@pytest.fixture
def store() -> FakeCounter:
    return FakeCounter()


def throttle(store: FakeCounter, limit: int = 3) -> LoginThrottle:
    return LoginThrottle(store, limit)  # type: ignore[arg-type]


async def fail_once(t: LoginThrottle, login: str = "ada@x.io", app: str = "app1") -> None:
    await t.check(app, login)
    await t.failed(app, login)


async def test_blocks_after_max_failures(store: FakeCounter) -> None:
    t = throttle(store, 3)
    for _ in range(3):
        await fail_once(t)
    with pytest.raises(ResourceExhausted) as err:
        await t.check("app1", "ada@x.io")
    assert err.value.reason == "LOGIN_THROTTLED"
    assert set(store.windows) == {60}


async def test_not_blocked_below_the_limit(store: FakeCounter) -> None:
    t = throttle(store, 3)
    for _ in range(2):
        await fail_once(t)
    await t.check("app1", "ada@x.io")  # third attempt still allowed


async def test_login_is_case_insensitive_and_not_stored_in_clear(store: FakeCounter) -> None:
    t = throttle(store, 2)
    await fail_once(t, "Ada@X.io")
    await fail_once(t, " ada@x.io ")
    with pytest.raises(ResourceExhausted):
        await t.check("app1", "ADA@X.IO")
    assert all("ada" not in key.lower() for key in store.counts)


async def test_scoped_by_app_and_login(store: FakeCounter) -> None:
    t = throttle(store, 1)
    await fail_once(t)
    with pytest.raises(ResourceExhausted):
        await t.check("app1", "ada@x.io")
    await t.check("app2", "ada@x.io")
    await t.check("app1", "bob@x.io")
    assert all(k.startswith(("app1:", "app2:")) for k in store.counts)


async def test_next_window_unblocks(store: FakeCounter) -> None:
    t = throttle(store, 1)
    await fail_once(t)
    with pytest.raises(ResourceExhausted):
        await t.check("app1", "ada@x.io")
    store.tick()
    await t.check("app1", "ada@x.io")


async def test_successes_cost_less_than_failures(store: FakeCounter) -> None:
    t = throttle(store, 2)
    for _ in range(4):  # four successful sign-ins (checks only)
        await t.check("app1", "ada@x.io")
    with pytest.raises(ResourceExhausted):
        await t.check("app1", "ada@x.io")


async def test_concurrent_burst_is_bounded(store: FakeCounter) -> None:
    t = throttle(store, 2)
    results = await asyncio.gather(*(t.check("app1", "ada@x.io") for _ in range(10)), return_exceptions=True)
    passed = [r for r in results if r is None]
    assert len(passed) == 4  # at most 2 * max attempts get through, even before any failure is counted


async def test_disabled(store: FakeCounter) -> None:
    t = throttle(store, 0)
    for _ in range(10):
        await fail_once(t)
    assert store.counts == {}
