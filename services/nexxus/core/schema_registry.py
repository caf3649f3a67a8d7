"""A read-through cache of model schemas, shared by the api, writer and router.

Schemas change rarely; each process caches an application's schemas for
`ttl` seconds and drops them at once when told (the api publishes
`<prefix>.sys.schemas.changed` with the app id after a PutModelSchema, and every
service subscribes with `listen`).
"""

from __future__ import annotations

import asyncio
import time

from nexxus.core.errors import NotFound
from nexxus.core.ports import BusMessage, IdentityStore, MessageBus
from nexxus.core.schema import ModelSchema


class SchemaRegistry:
    def __init__(self, identity: IdentityStore, *, ttl: float = 5.0) -> None:
        self._identity = identity
        self._ttl = ttl
        self._cache: dict[str, tuple[float, dict[str, ModelSchema]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def app_schemas(self, app_id: str) -> dict[str, ModelSchema]:
        hit = self._cache.get(app_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        lock = self._locks.setdefault(app_id, asyncio.Lock())
        async with lock:
            hit = self._cache.get(app_id)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            raw = await self._identity.list_schemas(app_id)
            schemas = {s.name: s for s in (ModelSchema.from_dict(d) for d in raw)}
            self._cache[app_id] = (time.monotonic() + self._ttl, schemas)
            return schemas

    async def lookup(self, app_id: str, model: str) -> ModelSchema | None:
        return (await self.app_schemas(app_id)).get(model)

    async def require(self, app_id: str, model: str, *, field: str = "model") -> ModelSchema:
        schema = await self.lookup(app_id, model)
        if schema is None:
            raise NotFound(
                f"model {model!r} is not defined in this application", field=field, reason="MODEL_NOT_FOUND"
            )
        return schema

    def invalidate(self, app_id: str) -> None:
        self._cache.pop(app_id, None)

    async def listen(self, bus: MessageBus) -> None:
        """Drop an application's schemas whenever the api announces a change."""

        async def on_change(msg: BusMessage) -> None:
            self.invalidate(msg.data.decode())

        await bus.subscribe(bus.subjects.schemas_changed, on_change)

    @staticmethod
    async def announce(bus: MessageBus, app_id: str) -> None:
        await bus.publish_volatile(bus.subjects.schemas_changed, app_id.encode())
