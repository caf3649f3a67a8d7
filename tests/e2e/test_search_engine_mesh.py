"""The whole mesh on a search engine (OpenSearch, on the node the suite starts):
the api, writer, router and transport run as four processes and share one
identity store — the engine — so an application, schema, user and device that
the api created are seen by the writer (the schema), the transport (the device's
token) and the api again (search), and the events reach the device; a deleted
and re-created object continues from its tombstone's version."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import grpc
import pytest

from nexxus.devserver.mesh import Mesh
from nexxus.v1 import events_pb2, objects_pb2
from tests.e2e.conftest import _settings, new_app_id, running_mesh
from tests.e2e.harness import Api, open_stream, patch

pytestmark = [pytest.mark.e2e, pytest.mark.searchengine]

TASK = {
    "fields": {
        "title": {"type": "string", "required": True},
        "points": {"type": "integer", "filterable": True},
    }
}


@pytest.fixture(scope="module")
async def engine_mesh(opensearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    settings = _settings("sqlite", tmp_path_factory.mktemp("mesh-opensearch"))
    settings.database.adapter = "opensearch"
    settings.database.opensearch.hosts = [opensearch_url]
    settings.database.opensearch.index_prefix = f"nexxus-e2e-{secrets.token_hex(4)}"
    # Searches right after a write see it (the default leaves that to the refresh interval).
    settings.database.opensearch.refresh = "wait_for"
    async with running_mesh(settings) as mesh:
        yield mesh


async def test_every_process_shares_the_engine(engine_mesh: Mesh) -> None:
    s = engine_mesh.settings
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{s.api.port}") as api_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{s.transport.grpc_port}") as events_channel,
    ):
        operator = Api(api_channel, s.operator_key)
        app_id = new_app_id()
        server = operator.as_(await operator.create_app(app_id))
        await server.put_schema(app_id, "task", TASK)
        alice = await server.user_with_device(app_id, "alice")
        a = server.as_(alice.token)
        await a.subscribe(app_id, "task")
        async with open_stream(events_channel, app_id, alice.token) as stream:
            assert stream.ready.device_id == alice.device_id
            created = await a.create(app_id, "task", {"title": "on the engine", "points": 2}, object_id="t-1")
            assert created.operation.state == objects_pb2.Operation.STATE_DONE
            await a.update(app_id, "task", "t-1", [patch("increment", ["points"], [3])])
            # Deleted and created again: the new object continues from the tombstone.
            await a.delete(app_id, "task", "t-1")
            again = await a.create(app_id, "task", {"title": "again", "points": 1}, object_id="t-1")
            assert again.object.version == 4
            got = await stream.collect(4)
        assert [(e.object_id, e.kind, e.version) for e in got] == [
            ("t-1", events_pb2.EVENT_KIND_CREATED, 1),
            ("t-1", events_pb2.EVENT_KIND_UPDATED, 2),
            ("t-1", events_pb2.EVENT_KIND_DELETED, 3),
            ("t-1", events_pb2.EVENT_KIND_CREATED, 4),
        ]
        assert got[1].object.data["points"] == 5
        found = await a.objects.SearchObjects(
            objects_pb2.SearchObjectsRequest(app_id=app_id, model="task"), metadata=a.md
        )
        assert [o.id for o in found.objects] == ["t-1"]
