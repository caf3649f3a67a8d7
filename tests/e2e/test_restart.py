"""`nexxus dev`'s promise: data survives a restart of the whole mesh."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from nexxus.devserver.mesh import Mesh
from nexxus.v1 import objects_pb2, subscriptions_pb2
from tests.e2e.conftest import _settings, new_app_id
from tests.e2e.harness import Api

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_objects_users_and_subscriptions_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "nexxus"
    app_id = new_app_id()
    mesh = Mesh(_settings("sqlite", data_dir))
    try:
        await mesh.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as ch:
            operator = Api(ch, mesh.settings.operator_key)
            server = operator.as_(await operator.create_app(app_id))
            await server.put_schema(app_id, "note", {"fields": {"text": {"type": "string"}}})
            user = await server.user_with_device(app_id, "kim")
            api = server.as_(user.token)
            sub = await api.subscribe(app_id, "note", persistent=True)
            await api.create(app_id, "note", {"text": "kept"}, object_id="n1")
    finally:
        await mesh.stop()

    # A new mesh on the same data dir: new ports, same secrets and data.
    again = Mesh(_settings("sqlite", data_dir))
    try:
        await again.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{again.settings.api.port}") as ch:
            api = Api(ch, user.token)  # tokens stay valid: the signing key was kept
            got = await api.objects.GetObject(
                objects_pb2.GetObjectRequest(app_id=app_id, model="note", object_id="n1"), metadata=api.md
            )
            assert got.object.data["text"] == "kept"
            listed = await api.subs.ListSubscriptions(
                subscriptions_pb2.ListSubscriptionsRequest(app_id=app_id), metadata=api.md
            )
            assert [s.id for s in listed.subscriptions] == [sub.id]
    finally:
        await again.stop()
