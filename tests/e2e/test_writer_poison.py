"""Poison commands are parked with their reason — never retried forever, never dropped."""

from __future__ import annotations

import asyncio

import nats
import pytest

from nexxus.adapters.bus.nats import NatsBus
from nexxus.devserver.mesh import Mesh
from nexxus.v1.internal_pb2 import WriteCommand
from tests.e2e.conftest import new_app_id
from tests.e2e.harness import Api

pytestmark = pytest.mark.e2e


async def test_undecodable_and_incomplete_commands_are_parked(mesh: Mesh, operator: Api) -> None:
    app_id = new_app_id()
    server = operator.as_(await operator.create_app(app_id))
    await server.put_schema(app_id, "note", {"fields": {"text": {"type": "string"}}})
    bus = NatsBus(mesh.settings.bus.nats)
    await bus.start()
    nc = await nats.connect(mesh.settings.bus.nats.servers)
    try:
        js = nc.jetstream()
        parked_seen: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()

        async def on_parked(msg: nats.aio.msg.Msg) -> None:
            parked_seen.put_nowait((msg.data, dict(msg.headers or {})))
            await msg.ack()

        await js.subscribe(bus.parked_subject(app_id), cb=on_parked, ordered_consumer=True)
        await bus.publish(bus.write_subject(app_id, 0), b"\xff\x00 not a protobuf")
        await bus.publish(bus.write_subject(app_id, 1), WriteCommand(app_id=app_id).SerializeToString())
        # The writer is not stuck behind them: a good write still applies.
        done = await server.create(app_id, "note", {"text": "after the poison"}, object_id="ok")
        assert done.object.version == 1

        got = [await asyncio.wait_for(parked_seen.get(), 15) for _ in range(2)]
        reasons = sorted(h["Nexxus-Park-Reason"] for _, h in got)
        assert reasons[0].startswith("WriteCommand without")
        assert reasons[1] == "undecodable WriteCommand"
        assert {data for data, _ in got} >= {b"\xff\x00 not a protobuf"}
        subjects = {h["Nexxus-Original-Subject"] for _, h in got}
        assert subjects == {bus.write_subject(app_id, p) for p in (0, 1)}
    finally:
        await nc.close()
        await bus.stop()
