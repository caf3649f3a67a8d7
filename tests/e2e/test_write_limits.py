"""Versions only grow (delete → re-create → update), operations are PENDING from
the moment they are accepted, an accepted create is never reported missing, and
a full write queue refuses (RESOURCE_EXHAUSTED, HTTP 429) instead of dropping."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from nexxus.devserver.mesh import Mesh
from nexxus.v1 import objects_pb2
from tests.e2e.conftest import _settings, new_app_id, running_mesh
from tests.e2e.harness import Api, patch

pytestmark = pytest.mark.e2e

SCHEMA = {"fields": {"title": {"type": "string"}, "n": {"type": "integer"}}}


async def _operation(api: Api, app_id: str, op_id: str) -> objects_pb2.Operation:
    r = await api.objects.GetOperation(
        objects_pb2.GetOperationRequest(app_id=app_id, operation_id=op_id), metadata=api.md
    )
    return r.operation


async def test_delete_recreate_update_versions_keep_growing(mesh: Mesh, operator: Api) -> None:
    app_id = new_app_id()
    api = operator.as_(await operator.create_app(app_id))
    await api.put_schema(app_id, "note", SCHEMA)
    made = await api.create(app_id, "note", {"title": "a", "n": 0}, object_id="x")
    assert made.object.version == 1
    upd = await api.update(app_id, "note", "x", [patch("increment", ["n"], [1])])
    assert upd.object.version == 2
    gone = await api.objects.DeleteObject(
        objects_pb2.DeleteObjectRequest(app_id=app_id, model="note", object_id="x", wait=True),
        metadata=api.md,
    )
    assert (gone.operation.state, gone.operation.version) == (objects_pb2.Operation.STATE_DONE, 3)
    again = await api.create(app_id, "note", {"title": "b", "n": 10}, object_id="x")
    assert again.object.version == 4  # continues from the tombstone, never back to 1
    upd = await api.update(app_id, "note", "x", [patch("increment", ["n"], [1])], expected_version=4)
    assert (upd.object.version, upd.object.data["n"]) == (5, 11)
    op = await _operation(api, app_id, upd.operation.operation_id)
    assert (op.state, op.version) == (objects_pb2.Operation.STATE_DONE, 5)


async def test_unknown_operation_ids_are_not_found(mesh: Mesh, operator: Api) -> None:
    app_id = new_app_id()
    api = operator.as_(await operator.create_app(app_id))
    await api.put_schema(app_id, "note", SCHEMA)
    made = await api.create(app_id, "note", {"title": "a"}, wait=False)
    other_app = new_app_id()
    other = operator.as_(await operator.create_app(other_app))
    for app, caller, op_id in (
        (app_id, api, "01m8s47r349g0kbr7fb168agkx-4fkhs30rz8kf"),  # well-formed, not ours
        (app_id, api, "nope"),
        (other_app, other, made.operation.operation_id),  # another application's
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _operation(caller, app, op_id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_accepted_create_is_never_reported_missing(mesh: Mesh, operator: Api) -> None:
    """GET, PATCH and DELETE right after a create answered PENDING wait for the
    writer to apply it (a barrier on the object's partition) instead of answering
    404; an object that was never created is still 404."""
    app_id = new_app_id()
    api = operator.as_(await operator.create_app(app_id))
    await api.put_schema(app_id, "note", SCHEMA)
    pid = mesh.processes["writer"].pid
    assert pid is not None

    async def read_object(object_id: str) -> objects_pb2.GetObjectResponse:
        req = objects_pb2.GetObjectRequest(app_id=app_id, model="note", object_id=object_id)
        response: objects_pb2.GetObjectResponse = await api.objects.GetObject(req, metadata=api.md)
        return response

    def get(object_id: str) -> asyncio.Task[objects_pb2.GetObjectResponse]:
        return asyncio.create_task(read_object(object_id))

    os.kill(pid, signal.SIGSTOP)  # the writer holds every create as PENDING
    try:
        made = await api.create(app_id, "note", {"title": "a", "n": 1}, object_id="fresh", wait=False)
        assert made.operation.state == objects_pb2.Operation.STATE_PENDING
        doomed = await api.create(app_id, "note", {"title": "b"}, object_id="doomed", wait=False)
        assert doomed.operation.state == objects_pb2.Operation.STATE_PENDING
        read = get("fresh")
        update = asyncio.create_task(api.update(app_id, "note", "fresh", [patch("replace", ["n"], [2])]))
        delete = asyncio.create_task(api.delete(app_id, "note", "doomed"))
        await asyncio.sleep(1.0)
        # Not answered 404: each waits for the writer.
        assert not read.done()
        assert not update.done()
        assert not delete.done()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (await read).object.version in (1, 2)
    updated = await update
    assert (updated.operation.state, updated.operation.version) == (objects_pb2.Operation.STATE_DONE, 2)
    assert updated.object.data["n"] == 2
    await delete
    for gone in ("doomed", "never-created"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await get(gone)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _post(url: str, token: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def test_full_write_queue_refuses_and_drops_nothing(tmp_path: Path) -> None:
    settings = _settings("sqlite", tmp_path / "mesh")
    settings.bus.nats.writes_max_bytes = 16 * 1024
    settings.envoy.port = 0
    settings.envoy.admin_port = 0
    async with (
        running_mesh(settings, envoy=True) as mesh,
        grpc.aio.insecure_channel(f"127.0.0.1:{mesh.settings.api.port}") as channel,
    ):
        await _fill_the_queue(mesh, Api(channel, mesh.settings.operator_key))


async def _fill_the_queue(mesh: Mesh, operator: Api) -> None:
    pending = objects_pb2.Operation.STATE_PENDING
    app_id = new_app_id()
    server_key = await operator.create_app(app_id)
    api = operator.as_(server_key)
    await api.put_schema(app_id, "note", SCHEMA)
    await api.create(app_id, "note", {"title": "warm-up"}, object_id="w")
    await mesh.processes["writer"].stop()  # nothing drains the queue now

    accepted: list[tuple[str, str]] = []
    refused: grpc.aio.AioRpcError | None = None
    for i in range(5000):
        oid = f"n{i}"
        try:
            r = await api.create(app_id, "note", {"title": "x" * 100}, object_id=oid, wait=False)
        except grpc.aio.AioRpcError as exc:
            refused = exc
            break
        accepted.append((oid, r.operation.operation_id))
    assert refused is not None, "the write queue never filled up"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
    assert accepted
    # Accepted writes are PENDING while no writer runs, not unknown.
    op = await _operation(api, app_id, accepted[-1][1])
    assert op.state == objects_pb2.Operation.STATE_PENDING

    # The edge answers 429.
    url = f"http://127.0.0.1:{mesh.settings.envoy.port}/v1/apps/{app_id}/models/note/objects"
    status, body = await asyncio.to_thread(
        _post, url, server_key, {"objectId": "over", "data": {"title": "x" * 100}}
    )
    assert status == 429, body

    await mesh.start_service("writer")
    deadline = time.monotonic() + 60
    for oid, op_id in accepted:
        while (state := (await _operation(api, app_id, op_id)).state) == pending:
            assert time.monotonic() < deadline, f"{oid} still pending"
            await asyncio.sleep(0.1)
        assert state == objects_pb2.Operation.STATE_DONE
    for oid in ("over", f"n{len(accepted)}"):  # the refused writes were not queued
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.objects.GetObject(
                objects_pb2.GetObjectRequest(app_id=app_id, model="note", object_id=oid),
                metadata=api.md,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Room again: writes are accepted.
    done = await api.create(app_id, "note", {"title": "after"}, object_id="after")
    assert done.object.version == 1
