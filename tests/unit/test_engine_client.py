"""The search-engine port's retry of transient shard answers, offline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from nexxus.adapters.database._engine_client import EngineClient, EngineError, RetryingClient


class Scripted(EngineClient):
    """Answers with the queued errors first, then {"ok": True}."""

    def __init__(self, *errors: EngineError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"ok": True}

    async def close(self) -> None:
        pass


NOT_READY = EngineError(503, "no_shard_available_action_exception", "shard RECOVERING")


async def test_transient_shard_answers_are_retried() -> None:
    inner = Scripted(NOT_READY, NOT_READY)
    assert await RetryingClient(inner, delay=0).request("GET", "/i/_doc/1") == {"ok": True}
    assert inner.calls == 3


@pytest.mark.parametrize(
    "error",
    [
        EngineError(409, "version_conflict_engine_exception", ""),
        EngineError(503, "cluster_block_exception", ""),
    ],
)
async def test_other_answers_are_not(error: EngineError) -> None:
    inner = Scripted(error)
    with pytest.raises(EngineError) as info:
        await RetryingClient(inner, delay=0).request("GET", "/i/_doc/1")
    assert info.value is error
    assert inner.calls == 1


async def test_retries_are_bounded() -> None:
    inner = Scripted(*([NOT_READY] * 5))
    with pytest.raises(EngineError):
        await RetryingClient(inner, attempts=3, delay=0).request("GET", "/i/_doc/1")
    assert inner.calls == 3
