"""The operator's event inspector (AdminService.InspectEvents) keeps its stream
through a kill -9 of nats-server and seconds without it: events written after the restart arrive on the
same stream, none of those before it twice, each with a growing position."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from nexxus.v1 import admin_pb2, admin_pb2_grpc
from tests.e2e.conftest import _settings, running_mesh
from tests.e2e.harness import Api

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

WAIT = 60.0  # a bound on every wait, not a speed assertion
DOWN_SECONDS = 4.0
SCHEMA = {"fields": {"title": {"type": "string", "required": True}}}


async def test_inspector_survives_a_nats_server_kill(tmp_path: Path) -> None:
    async with (
        running_mesh(_settings("sqlite", tmp_path)) as mesh,
        grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as channel,
    ):
        operator = Api(channel, mesh.settings.operator_key)
        server = operator.as_(await operator.create_app("inspected"))
        await server.put_schema("inspected", "task", SCHEMA)
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        call = stub.InspectEvents(
            admin_pb2.InspectEventsRequest(app_id="inspected", model="task"), metadata=operator.md
        )
        seen: list[tuple[str, str]] = []

        async def events_until(object_id: str) -> None:
            while object_id not in [o for o, _ in seen]:
                frame = await asyncio.wait_for(call.read(), WAIT)
                assert frame is not grpc.aio.EOF, "the inspector stream ended"
                if frame.WhichOneof("frame") == "event":
                    seen.append((frame.event.object_id, frame.event.position))

        await server.create("inspected", "task", {"title": "before"}, object_id="before")
        await events_until("before")

        assert mesh.nats is not None
        await mesh.nats.kill()
        # Down for a while: the inspector's reads of the history fail meanwhile (Unavailable).
        await asyncio.sleep(DOWN_SECONDS)
        await mesh.nats.restart()
        deadline = time.monotonic() + WAIT
        while True:  # the api reconnects to the restarted server; a write may be refused meanwhile
            try:
                await server.create("inspected", "task", {"title": "after"}, object_id="after")
                break
            except grpc.aio.AioRpcError as err:
                refused = f"{err.code()} {err.details()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"writes still refused: {refused}")
            await asyncio.sleep(0.5)
        await events_until("after")
        call.cancel()

    assert [o for o, _ in seen] == ["before", "after"]
    (epoch_a, seq_a), (epoch_b, seq_b) = (p.rsplit(".", 1) for _, p in seen)
    assert epoch_a == epoch_b
    assert int(seq_a) < int(seq_b)
