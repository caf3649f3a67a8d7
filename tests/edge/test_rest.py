"""Every REST route of the contracts through Envoy's gRPC-JSON transcoder, and the
error mapping (gRPC status → HTTP status with a JSON google.rpc.Status body)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nexxus.core.limits import Limits
from nexxus.devserver.envoy_config import envoy_config_for, write_envoy_config
from nexxus.devserver.mesh import Mesh
from nexxus.devserver.process import free_port
from nexxus.devserver.servers import EnvoyServer
from tests.edge.conftest import PASSWORD, World, make_world
from tests.edge.rest import Reply, Rest

pytestmark = pytest.mark.edge


async def test_applications_and_schemas(rest: Rest, world: World) -> None:
    app = await rest.ok("GET", f"/v1/apps/{world.app_id}")
    assert app["application"]["id"] == world.app_id
    models = await rest.ok("GET", f"/v1/apps/{world.app_id}/models")
    assert [m["name"] for m in models["schemas"]] == ["task"]

    other = await rest.ok("POST", "/v1/apps", {"appId": f"{world.app_id}-x"})
    assert other["serverKey"]
    await rest.ok("DELETE", f"/v1/apps/{world.app_id}-x")
    gone = await rest.call("GET", f"/v1/apps/{world.app_id}-x")
    assert gone.status == 404, gone.body


async def test_users_login_refresh_me(rest: Rest, world: World) -> None:
    base = f"/v1/apps/{world.app_id}"
    refreshed = await rest.as_("").ok("POST", f"{base}/auth:refresh", {"refreshToken": world.refresh_token})
    assert refreshed["tokens"]["accessToken"]

    me = await world.user.ok("GET", f"{base}/users/me")
    assert me["user"]["id"] == world.user_id
    assert me["user"]["username"] == "alice"

    patched = await world.user.ok(
        "PATCH", f"{base}/users/me", {"displayName": "Alice A.", "profile": {"lang": "fr"}}
    )
    assert patched["user"]["displayName"] == "Alice A."
    assert (await world.user.ok("GET", f"{base}/users/me"))["user"]["profile"] == {"lang": "fr"}

    await world.user.ok(
        "POST",
        f"{base}/users/me:changePassword",
        {"currentPassword": PASSWORD, "newPassword": "another fine one"},
    )
    relog = await rest.as_("").call(
        "POST", f"{base}/auth:login", {"login": "alice", "password": "another fine one"}
    )
    assert relog.status == 200, relog.body


async def test_devices(world: World) -> None:
    base = f"/v1/apps/{world.app_id}/devices"
    second = await world.user.ok("POST", base, {"name": "tablet", "platform": "web"})
    dev_id = second["device"]["id"]
    got = await world.user.ok("GET", f"{base}/{dev_id}")
    assert got["device"]["name"] == "tablet"
    listed = await world.user.ok("GET", base, params={"pageSize": "10"})
    assert {d["id"] for d in listed["devices"]} == {world.device_id, dev_id}

    await world.user.ok("DELETE", f"{base}/{dev_id}")
    missing = await world.user.call("GET", f"{base}/{dev_id}")
    assert missing.status == 404, missing.body
    listed = await world.user.ok("GET", base)
    assert [d["id"] for d in listed["devices"]] == [world.device_id]


async def test_objects_crud_search_and_operations(world: World) -> None:
    base = f"/v1/apps/{world.app_id}/models/task/objects"
    created = await world.device.ok(
        "POST", base, {"objectId": "t1", "data": {"title": "write docs", "priority": "high"}, "wait": True}
    )
    assert created["object"]["version"] == "1"
    assert created["operation"]["state"] == "STATE_DONE"
    op_id = created["operation"]["operationId"]

    op = await world.device.ok("GET", f"/v1/apps/{world.app_id}/operations/{op_id}")
    assert op["operation"]["objectId"] == "t1"
    assert op["operation"]["state"] == "STATE_DONE"

    got = await world.device.ok("GET", f"{base}/t1")
    assert got["object"]["data"] == {"title": "write docs", "priority": "high"}

    updated = await world.device.ok(
        "PATCH",
        f"{base}/t1",
        {
            "patch": [{"op": "replace", "path": ["priority"], "value": ["low"]}],
            "expectedVersion": "1",
            "wait": True,
        },
    )
    assert updated["object"]["version"] == "2"
    assert updated["object"]["data"]["priority"] == "low"

    await world.device.ok(
        "POST", base, {"objectId": "t2", "data": {"title": "b", "priority": "high"}, "wait": True}
    )
    found = await world.device.ok("POST", f"{base}:search", {"filter": {"priority": {"eq": "high"}}})
    assert [o["id"] for o in found["objects"]] == ["t2"]

    deleted = await world.device.ok("DELETE", f"{base}/t1", params={"wait": "true"})
    assert deleted["operation"]["state"] == "STATE_DONE"
    gone = await world.device.call("GET", f"{base}/t1")
    assert gone.status == 404, gone.body
    assert gone.json["code"] == 5
    assert gone.reason() == "OBJECT_NOT_FOUND"


async def test_subscriptions(world: World) -> None:
    base = f"/v1/apps/{world.app_id}/subscriptions"
    sub = await world.device.ok("POST", base, {"model": "task", "filter": {"priority": {"eq": "high"}}})
    sub_id = sub["subscription"]["id"]
    assert sub["subscription"]["deviceId"] == world.device_id
    listed = await world.device.ok("GET", base)
    assert [s["id"] for s in listed["subscriptions"]] == [sub_id]
    await world.device.ok("DELETE", f"{base}/{sub_id}")
    assert (await world.device.ok("GET", base))["subscriptions"] == []


# --------------------------------------------------------------------------- errors


def edge_error(reply: Reply, status: int, code: int) -> str:
    """An error Envoy made itself, in the api's JSON shape; returns its message."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    assert reply.json["code"] == code, reply.body
    assert reply.json["details"] == []
    return str(reply.json["message"])


async def test_unknown_route_is_404_at_the_edge(rest: Rest) -> None:
    assert "Could not resolve" in edge_error(await rest.call("GET", "/v1/nothing/here"), 404, 5)
    edge_error(await rest.call("PUT", "/v1/apps"), 404, 5)


async def test_unknown_query_parameter_is_400(rest: Rest, world: World) -> None:
    reply = await rest.call("GET", f"/v1/apps/{world.app_id}", params={"bogus": "1"})
    assert "bogus" in edge_error(reply, 400, 3)


async def test_malformed_json_and_bad_utf8_are_400(rest: Rest) -> None:
    edge_error(await rest.call("POST", "/v1/apps", raw=b'{"appId": '), 400, 3)
    edge_error(await rest.call("POST", "/v1/apps", raw=b'{"appId": "\xff\xfe"}'), 400, 3)


async def test_body_over_the_edge_limit_is_413(world: World) -> None:
    big = {"data": {"title": "x" * (Limits().edge_request_bytes + 1024)}}
    edge_error(await world.device.call("POST", f"/v1/apps/{world.app_id}/models/task/objects", big), 413, 3)


async def test_long_headers_are_431_and_a_long_token_is_401(rest: Rest, world: World) -> None:
    app = f"/v1/apps/{world.app_id}"
    edge_error(await rest.as_("x" * (40 * 1024)).call("GET", app), 431, 3)
    # Under the edge's limit the api reads the token (no gRPC metadata limit on the way) and refuses it.
    reply = await rest.as_("ey" + "x" * (20 * 1024)).call("GET", f"{app}/users/me")
    assert reply.status == 401, reply.body
    assert reply.json["code"] == 16


async def test_wrongly_typed_json_is_400(world: World) -> None:
    reply = await world.device.call(
        "POST", f"/v1/apps/{world.app_id}/models/task/objects:search", {"pageSize": "x"}
    )
    assert reply.status == 400


async def test_bad_filter_is_400_naming_the_field(world: World) -> None:
    reply = await world.device.call(
        "POST", f"/v1/apps/{world.app_id}/models/task/objects:search", {"filter": {"nope": {"eq": 1}}}
    )
    assert reply.status == 400, reply.body
    assert reply.json["code"] == 3  # INVALID_ARGUMENT
    assert reply.error_field() == "filter.nope"


def _nested_filter(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"priority": {"eq": "high"}}
    for _ in range(depth - 1):
        node = {"$and": [node]}
    return node


@pytest.mark.parametrize("depth", [9, 20, 45])
async def test_too_deep_filter_is_a_clean_400(world: World, depth: int) -> None:
    """Past the filter limit (8) and past protobuf's own decoding depth alike: 400, never 500."""
    reply = await world.device.call(
        "POST", f"/v1/apps/{world.app_id}/models/task/objects:search", {"filter": _nested_filter(depth)}
    )
    assert reply.status == 400, reply.body
    assert reply.json["code"] == 3  # INVALID_ARGUMENT
    assert "Error" not in reply.json["message"]  # no Python class names
    assert "8" in reply.json["message"]  # names the limit


async def test_empty_filter_is_400_not_everything(world: World) -> None:
    for path in (
        f"/v1/apps/{world.app_id}/models/task/objects:search",
        f"/v1/apps/{world.app_id}/subscriptions",
    ):
        body = {"filter": {}} if path.endswith(":search") else {"model": "task", "filter": {}}
        reply = await world.device.call("POST", path, body)
        assert reply.status == 400, (path, reply.body)
        assert reply.error_field() == "filter"


async def test_integer_beyond_safe_range_is_refused_not_rounded(rest: Rest, world: World) -> None:
    await rest.ok(
        "PUT",
        f"/v1/apps/{world.app_id}/models/counter",
        {"fields": {"n": {"type": "FIELD_TYPE_INTEGER", "filterable": True}}},
    )
    base = f"/v1/apps/{world.app_id}/models/counter/objects"
    reply = await world.device.call("POST", base, raw=b'{"data": {"n": 9007199254740993}, "wait": true}')
    assert reply.status == 400, reply.body
    assert reply.error_field() == "data.n"
    created = await world.device.ok("POST", base, {"data": {"n": 9007199254740991}, "wait": True})
    object_id = created["operation"]["objectId"]
    got = await world.device.ok("GET", f"{base}/{object_id}")
    assert got["object"]["data"]["n"] == 9007199254740991


async def _until_readable(rest: Rest, path: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await rest.call("GET", path)).status != 200:
        assert asyncio.get_running_loop().time() < deadline, f"{path} never became readable"
        await asyncio.sleep(0.1)


async def test_the_url_path_alone_names_the_tenant_and_the_object(rest: Rest, world: World) -> None:
    other = await make_world(rest, "bob")
    for app, title in ((world.app_id, "in a"), (other.app_id, "in b")):
        await rest.ok(
            "POST", f"/v1/apps/{app}/models/task/objects", {"objectId": "x", "data": {"title": title}}
        )
        await rest.ok(
            "POST", f"/v1/apps/{app}/models/task/objects", {"objectId": "y", "data": {"title": "y"}}
        )
    path = f"/v1/apps/{world.app_id}/models/task/objects/x"
    await _until_readable(rest, path)  # `wait` answers PENDING when the writer is slower than write_wait
    for params in ({"appId": other.app_id}, {"app_id": other.app_id}, {"objectId": "y"}, {"model": "nope"}):
        got = await rest.ok("GET", path, params=params)  # the operator key could read either app
        assert got["object"]["data"]["title"] == "in a", params


async def test_overload_is_429_resource_exhausted_not_a_503(
    edge_mesh: Mesh, http: aiohttp.ClientSession, world: World, tmp_path: Path
) -> None:
    """An Envoy whose api circuit breaker admits one request at a time, under 40 at once."""
    settings = copy.deepcopy(edge_mesh.settings)
    settings.envoy.port, settings.envoy.admin_port = free_port(), free_port()
    config = envoy_config_for(settings)
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "api":
            cluster["circuit_breakers"]["thresholds"] = [{"max_requests": 1, "max_pending_requests": 1}]
    async with EnvoyServer(write_envoy_config(tmp_path / "envoy.yaml", config)):
        tight = Rest(http, f"http://127.0.0.1:{settings.envoy.port}", world.device.token)
        path = f"/v1/apps/{world.app_id}/models/task/objects"
        replies = await asyncio.gather(
            *(tight.call("POST", path, {"data": {"title": f"t{i}"}, "wait": True}) for i in range(40))
        )
    statuses = sorted({r.status for r in replies})
    assert set(statuses) <= {200, 429}, statuses
    shed = [r for r in replies if r.status == 429]
    assert shed, "the breaker never tripped"
    assert {(r.json["code"], r.json["message"]) for r in shed} == {
        (8, "the service is overloaded; retry later")
    }


async def test_unauthenticated_is_401(rest: Rest, world: World) -> None:
    anonymous = await rest.as_("").call("GET", f"/v1/apps/{world.app_id}/users/me")
    assert anonymous.status == 401
    assert anonymous.json["code"] == 16
    garbage = await rest.as_("not-a-token").call("GET", f"/v1/apps/{world.app_id}/users/me")
    assert garbage.status == 401


async def test_forbidden_is_403(world: World) -> None:
    reply = await world.device.call("DELETE", f"/v1/apps/{world.app_id}")
    assert reply.status == 403
    assert reply.json["code"] == 7


async def test_already_exists_is_409(rest: Rest, world: World) -> None:
    reply = await rest.call("POST", "/v1/apps", {"appId": world.app_id})
    assert reply.status == 409
    assert reply.json["code"] == 6


async def test_version_conflict_is_failed_precondition_mapped_to_400(world: World) -> None:
    base = f"/v1/apps/{world.app_id}/models/task/objects"
    await world.device.ok("POST", base, {"objectId": "v1", "data": {"title": "v"}, "wait": True})
    reply = await world.device.call(
        "PATCH",
        f"{base}/v1",
        {
            "patch": [{"op": "replace", "path": ["title"], "value": ["w"]}],
            "expectedVersion": "7",
            "wait": True,
        },
    )
    # Envoy maps FAILED_PRECONDITION (9) to 400, as google.rpc.Code documents (not 409).
    assert reply.status == 400, reply.body
    assert reply.json["code"] == 9
    assert reply.reason() == "VERSION_CONFLICT"


async def test_cors_preflight_and_simple_request(rest: Rest) -> None:
    async with rest.session.options(
        f"{rest.base_url}/v1/apps",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    ) as resp:
        assert resp.status == 200
        assert resp.headers["access-control-allow-origin"] == "http://app.example"
        assert "POST" in resp.headers["access-control-allow-methods"]
        assert "authorization" in resp.headers["access-control-allow-headers"]
    async with rest.session.get(
        f"{rest.base_url}/v1/apps/none", headers={"Origin": "http://evil.example"}
    ) as resp:
        assert "access-control-allow-origin" not in resp.headers
