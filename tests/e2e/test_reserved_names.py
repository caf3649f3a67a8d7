"""Applications named like internal NATS words work end to end: their writes,
events, pushes and logouts stay in their own namespace (nexxus.core.subjects)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from nexxus.adapters.bus.nats import NatsBus
from nexxus.devserver.mesh import Mesh
from nexxus.v1 import events_pb2, subscriptions_pb2, users_pb2
from tests.e2e.harness import Api, open_stream, patch

pytestmark = pytest.mark.e2e

BOARD = {
    "fields": {"title": {"type": "string"}},
    "access": {"read": {"kind": "authenticated"}, "create": {"kind": "authenticated"}},
}
# Every token an internal subject is made of, and words a client might pick.
NAMES = ["write", "control", "transport", "events", "parked", "results", "sys", "app", "subscribe", "logout"]


async def test_apps_named_like_internal_subjects(
    mesh: Mesh, operator: Api, events_channel: grpc.aio.Channel
) -> None:
    for app_id in NAMES:  # the mesh (its database) is per backend: each name is new there
        server = operator.as_(await operator.create_app(app_id))
        await server.put_schema(app_id, "board", BOARD)
        user = await server.user_with_device(app_id, f"{app_id}-user")
        sub = subscriptions_pb2.CreateSubscriptionRequest(app_id=app_id, model="board")
        async with open_stream(events_channel, app_id, user.token, [sub]) as stream:
            me = server.as_(user.token)
            created = await me.create(app_id, "board", {"title": app_id})
            await me.update(app_id, "board", created.object.id, [patch("replace", ["title"], [f"{app_id}!"])])
            events = await stream.collect(2)
            assert [e.kind for e in events] == [
                events_pb2.EVENT_KIND_CREATED,
                events_pb2.EVENT_KIND_UPDATED,
            ], app_id
            assert all(e.object.id == created.object.id for e in events)
            # The logout reaches this application's transport control, nobody else's.
            md = [("authorization", f"Bearer {user.token}")]
            await server.users.Logout(users_pb2.LogoutRequest(app_id=app_id), metadata=md)
            assert stream.task is not None
            await asyncio.wait_for(asyncio.shield(stream.task), 10)  # closed at once, not at the 30 s sweep
            assert stream.frames.get("error") == 1, (app_id, stream.frames)
    # Every stored message sits in its own namespace: nothing internal (control,
    # results) was stored by a stream, and nothing of these applications was parked.
    bus = NatsBus(mesh.settings.bus.nats)
    await bus.start()
    try:
        js = bus._require_js()
        stored: dict[str, list[str]] = {}
        for name in bus.stream_names.values():
            info = await js.stream_info(name, subjects_filter=">")
            stored[name] = list((info.state.subjects or {}).keys())
    finally:
        await bus.stop()
    internal = (bus.subjects.all_control.removesuffix("*"), bus.subjects.sys("results"))
    for name, subjects in stored.items():
        assert not [s for s in subjects if s.startswith(internal)], (name, subjects)
    parked = {bus.subjects.parked(app) for app in NAMES}
    assert not parked & set(stored[bus.stream_names["parked"]])
    deliveries = stored[bus.stream_names["deliveries"]]
    assert all(s.startswith(bus.subjects.sys("transport") + ".") for s in deliveries), deliveries
