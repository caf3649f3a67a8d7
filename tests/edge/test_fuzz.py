"""A bounded fuzzer of the REST surface, through a real Envoy.

Every route of the contracts (read from the `google.api.http` annotations, so a new
route is fuzzed without touching this file) gets generated requests: hostile and
valid path values, JSON bodies built from the method's own field names and from
random keys, query strings, and credentials of every kind. The properties:

- never a 5xx (a client's input is never the server's error);
- never a hang (every answer within `REPLY_SECONDS`);
- every error body is the JSON error shape;
- afterwards the stack still answers.

Deterministic by default (seeded, so CI is repeatable); `NEXXUS_FUZZ_SEED` and
`NEXXUS_FUZZ_ROUNDS` explore further, and a failure prints the seed and request.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from nexxus.v1 import applications_pb2, devices_pb2, objects_pb2, subscriptions_pb2, users_pb2
from tests.edge.conftest import World, make_world
from tests.edge.rest import Rest

pytestmark = [pytest.mark.edge, pytest.mark.slow]

SEED = int(os.environ.get("NEXXUS_FUZZ_SEED", "20261201"))
ROUNDS = int(os.environ.get("NEXXUS_FUZZ_ROUNDS", "6"))  # requests per route
REPLY_SECONDS = 20.0
_VARIABLE = re.compile(r"\{([a-z_]+)\}")

# Words the api reacts to, so generated bodies reach past the first validation.
_DOMAIN_KEYS = [
    "data", "filter", "patch", "op", "path", "value", "eq", "ne", "in", "gt", "lt", "$and", "$or",
    "and", "or", "title", "priority", "status", "model", "objectId", "userId", "sort", "field",
    "pageSize", "pageToken", "wait", "expectedVersion", "fields", "type", "required", "filterable",
]  # fmt: skip
_HOSTILE_TEXT = [
    "", " ", "..", "../../etc/passwd", "%00", "\u0000", "💥", "a" * 300, "$where", "*", ">", "write",
    "control", "events", "parked", "nexxus.x.write", "SELECT 1;--", "'\"", "-1", "1e309",
]  # fmt: skip


@dataclass(frozen=True)
class Route:
    verb: str
    template: str
    body: str
    method: MethodDescriptor


def _routes() -> list[Route]:
    out = []
    for module in (applications_pb2, users_pb2, devices_pb2, objects_pb2, subscriptions_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                out.append(Route(verb.upper(), getattr(rule, verb), rule.body, method))
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class Fuzz:
    def __init__(self, rng: random.Random, world: World) -> None:
        self.rng = rng
        self.world = world

    def text(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(_HOSTILE_TEXT)
        return "".join(self.rng.choice(string.printable) for _ in range(self.rng.randint(0, 12)))

    def json_value(self, depth: int = 0) -> Any:
        kinds = ["str", "int", "float", "bool", "null"] + (["list", "dict"] if depth < 4 else [])
        kind = self.rng.choice(kinds)
        if kind == "str":
            return self.text()
        if kind == "int":
            return self.rng.choice([0, 1, -1, 2**31, 2**53, 2**63, -(2**70), self.rng.randint(-9, 9)])
        if kind == "float":
            return self.rng.choice([0.5, -1e300, 3.14, 1e-300])
        if kind == "bool":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "list":
            return [self.json_value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return self.json_object(None, depth + 1)

    def json_object(self, message: Descriptor | None, depth: int = 0) -> dict[str, Any]:
        names = [_camel(f.name) for f in message.fields] if message is not None else []
        out: dict[str, Any] = {}
        for _ in range(self.rng.randint(0, 5)):
            pool = self.rng.choice([names or _DOMAIN_KEYS, _DOMAIN_KEYS, [self.text()]])
            key = self.rng.choice(pool)
            field = message.fields_by_camelcase_name.get(key) if message is not None else None
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE and self.rng.random() < 0.6:
                if field.message_type.full_name.startswith("google.protobuf."):
                    out[key] = self.json_value(depth + 1)
                else:
                    out[key] = self.json_object(field.message_type, depth + 1)
            else:
                out[key] = self.json_value(depth + 1)
        return out

    def path_value(self, name: str) -> str:
        w = self.world
        valid = {
            "app_id": w.app_id,
            "model": "task",
            "object_id": "fuzz-1",
            "device_id": w.device_id,
            "operation_id": "op-none",
            "subscription_id": "sub-none",
        }
        return valid.get(name, "x") if self.rng.random() < 0.7 else self.text()

    def path(self, template: str) -> str:
        return _VARIABLE.sub(lambda m: quote(self.path_value(m.group(1)), safe=""), template)

    def credential(self) -> Rest:
        w = self.world
        junk = "".join(self.rng.choice(string.ascii_letters + ".-_") for _ in range(self.rng.randint(1, 60)))
        return self.rng.choice([w.server, w.user, w.device, w.server.as_(""), w.server.as_(junk)])


async def _check(route: Route, seed: int, world: World) -> None:
    fuzz = Fuzz(random.Random(seed), world)
    for attempt in range(ROUNDS):
        path = fuzz.path(route.template)
        body: Any = None
        raw: bytes | None = None
        if route.body:
            message = route.method.input_type
            if route.body != "*":
                message = message.fields_by_name[route.body].message_type
            shape = fuzz.rng.random()
            if shape < 0.8:
                body = fuzz.json_object(message)
            elif shape < 0.9:
                body = fuzz.json_value()
            else:
                raw = bytes(fuzz.rng.randrange(256) for _ in range(fuzz.rng.randint(0, 40)))
        params = {fuzz.text() or "q": fuzz.text()} if fuzz.rng.random() < 0.15 else None
        where = (
            f"seed={seed} attempt={attempt} {route.verb} {path} body={json.dumps(body)[:300]!s} raw={raw!r}"
        )
        try:
            reply = await asyncio.wait_for(
                fuzz.credential().call(route.verb, path, body, raw=raw, params=params), REPLY_SECONDS
            )
        except TimeoutError:
            pytest.fail(f"no answer within {REPLY_SECONDS}s: {where}")
        assert reply.status < 500, f"{reply.status} {reply.body!r}: {where}"
        if reply.status >= 400:
            assert isinstance(reply.body, dict), f"not a JSON error: {reply.body!r}: {where}"
            assert isinstance(reply.body.get("code"), int), f"{reply.body!r}: {where}"


async def test_every_route_survives_generated_requests(rest: Rest) -> None:
    world = await make_world(rest, "fuzzer")
    # An object to address, so valid paths reach deep code too.
    await world.device.ok(
        "POST", f"/v1/apps/{world.app_id}/models/task/objects", {"objectId": "fuzz-1", "data": {"title": "t"}}
    )
    routes = [r for r in _routes() if r.method.name != "DeleteApplication"]  # keep the app to fuzz
    for index, route in enumerate(routes):
        await _check(route, SEED + index, world)
    # The stack still answers, and the app survived its fuzzing.
    await rest.ok("GET", f"/v1/apps/{world.app_id}")
