"""Custom workers see every committed change, at least once, with retries."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from nexxus.adapters.bus.nats import NatsBus
from nexxus.devserver.mesh import Mesh
from nexxus.workers import BaseWorker, WorkerEvent
from nexxus.workers.base import diff
from tests.e2e.conftest import new_app_id
from tests.e2e.harness import Api, patch

pytestmark = pytest.mark.e2e
TASK = {"fields": {"title": {"type": "string"}, "status": {"type": "string"}, "tags": {"type": "object"}}}


class Recorder(BaseWorker):
    name = "recorder"
    models = ("task",)
    retry_delay: ClassVar[float] = 0.2

    def __init__(self, bus: NatsBus, app_id: str, fail_first: int = 0) -> None:
        super().__init__(bus)
        self.apps_filter = app_id
        self.seen: asyncio.Queue[WorkerEvent] = asyncio.Queue()
        self.fail_first = fail_first
        self.calls = 0

    async def handle(self, event: WorkerEvent) -> None:
        if event.app_id != self.apps_filter:
            return
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("flaky downstream")
        self.seen.put_nowait(event)


async def test_worker_gets_changes_and_retries(mesh: Mesh, operator: Api) -> None:
    app_id = new_app_id()
    server = operator.as_(await operator.create_app(app_id))
    await server.put_schema(app_id, "task", TASK)
    await server.put_schema(app_id, "note", {"fields": {"text": {"type": "string"}}})
    bus = NatsBus(mesh.settings.bus.nats)
    await bus.start()
    worker = Recorder(bus, app_id, fail_first=1)
    await worker.start()
    try:
        await server.create(app_id, "note", {"text": "not for this worker"})
        await server.create(
            app_id, "task", {"title": "a", "status": "todo", "tags": {"x": 1}}, object_id="w1"
        )
        await server.update(app_id, "task", "w1", [patch("replace", ["status"], ["done"])])
        await server.delete(app_id, "task", "w1")
        got = [await asyncio.wait_for(worker.seen.get(), 15) for _ in range(3)]
        got.sort(key=lambda e: e.version)  # a retried event comes after later ones
        assert [(e.kind, e.version) for e in got] == [("created", 1), ("updated", 2), ("deleted", 3)]
        assert got[0].changes == {"title": "a", "status": "todo", "tags": {"x": 1}}
        assert got[1].changes == {"status": "done"}
        assert got[1].patch == [{"op": "replace", "path": ["status"], "value": ["done"]}]
        assert got[2].before == {"title": "a", "status": "done", "tags": {"x": 1}}
        assert worker.calls == 4  # the first delivery failed and came again
        assert all(e.model == "task" for e in got)
    finally:
        await worker.stop()
        await bus.stop()


def test_diff_is_the_partial_model() -> None:
    before = {"a": 1, "n": {"x": 1, "y": 2}, "gone": True}
    after = {"a": 1, "n": {"x": 1, "y": 3}, "new": "v"}
    assert diff(before, after) == {"n": {"y": 3}, "gone": None, "new": "v"}
