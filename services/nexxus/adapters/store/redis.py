"""Redis / Valkey implementation of the `SubscriptionStore` port.

Key layout (`P` = settings.key_prefix, "nxx" by default; `{app}` is a Redis
Cluster hash tag, so all keys of one application live in one slot)::

    P:{app}:sub:<subscription id>     string  serialized nexxus.v1.Subscription
    P:{app}:subs                      set     every subscription id of the app
    P:{app}:device:<device>:subs      set     subscription ids of a device
    P:{app}:model:<model>:subs        set     subscription ids on a model
    P:{app}:conns:<device>            hash    connection id → transport node
    P:{app}:nodes                     hash    device id → nodes holding its connections
    (connections and node leases: see _redis_connections)
    P:{app}:changes                   stream  change log: field "c" = serialized SubscriptionChange,
                                              trimmed with MAXLEN ~ settings.change_log_length
    P:apps                            set     applications that have (or had) subscriptions
    P:hit:<key>                       string  fixed-window counters (`hit`)

Why not the seed's `nxx:subscription:{subscriptionId}:{modelType}:filter:{filterId}:partition:{partitionId}`:
that layout scatters one application's data over the whole key space (the
braces there are placeholders, not hash tags), can only be searched with SCAN,
and cannot be changed atomically on a cluster. Here every mutation updates the
subscription, its indexes and the change log in one MULTI/EXEC on one slot, the
router reads an app's subscriptions by set membership instead of SCAN, and it
follows changes through the per-app stream instead of re-reading everything.
Filters are stored inside the Subscription proto (no separate filter keys);
partitioning is Redis Cluster's job (per-app slot).

Cursors of `changes_since` are stream entry ids ("0-0" for an empty log).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline

from nexxus.adapters.store._redis_common import store_down
from nexxus.adapters.store._redis_common import text as _text
from nexxus.adapters.store._redis_common import translate as _translate
from nexxus.adapters.store._redis_connections import ConnectionsMixin
from nexxus.adapters.store._redis_keys import Keys
from nexxus.core.config.settings import RedisSettings
from nexxus.core.errors import InvalidArgument, Unavailable
from nexxus.core.ports import SubscriptionStore
from nexxus.v1.internal_pb2 import SubscriptionChange
from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = ["RedisSubscriptionStore"]

log = logging.getLogger("nexxus.store.redis")

T = TypeVar("T")
Kind = SubscriptionChange.Kind
_FIELD = b"c"
_SCAN_CHUNK = 500
_WATCH_RETRIES = 50
# Connections to Redis per process, and how long a caller waits for a free one.
POOL_SIZE = 128
POOL_WAIT_SECONDS = 20.0


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        raise InvalidArgument(f"invalid change-log cursor {entry_id!r}", field="cursor") from None


class RedisSubscriptionStore(ConnectionsMixin, SubscriptionStore):
    """Subscriptions, device connections and per-app change logs in Redis / Valkey."""

    name = "redis"

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._redis: Redis | None = None
        self._lease_redis: Redis | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._redis is not None:
            return
        # A bounded pool whose callers wait for a free connection (up to
        # POOL_WAIT_SECONDS) instead of failing at once: a storm of thousands of
        # clients connecting or leaving together queues here rather than
        # failing their registrations (and the node's lease renewal).
        pool = BlockingConnectionPool.from_url(
            self.settings.url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_SECONDS,
            decode_responses=False,
            socket_connect_timeout=2,
            health_check_interval=30,
        )
        client = Redis.from_pool(pool)
        try:
            await client.ping()
        except redis_errors.RedisError as exc:
            await client.aclose()
            raise store_down(f"cannot connect to Redis at {self.settings.url}: {exc!r}") from exc
        self._redis = client
        # Node leases on a connection of their own (see renew_node_lease).
        self._lease_redis = Redis.from_url(
            self.settings.url, max_connections=2, decode_responses=False, socket_connect_timeout=2
        )

    async def stop(self) -> None:
        client, self._redis = self._redis, None
        lease_client, self._lease_redis = self._lease_redis, None
        for c in (client, lease_client):
            if c is not None:
                with contextlib.suppress(redis_errors.RedisError):
                    await c.aclose()

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except redis_errors.RedisError as exc:
            raise store_down(f"redis ping: {exc!r}") from exc

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("RedisSubscriptionStore is not started: call `await store.start()` first")
        return self._redis

    @property
    def lease_redis(self) -> Redis:
        if self._lease_redis is None:
            raise RuntimeError("RedisSubscriptionStore is not started: call `await store.start()` first")
        return self._lease_redis

    # ------------------------------------------------------------------ helpers

    def _log(self, pipe: Pipeline, app_id: str, change: SubscriptionChange) -> None:
        change.app_id = app_id
        pipe.xadd(
            self.keys.changes(app_id),
            {_FIELD: change.SerializeToString()},
            maxlen=self.settings.change_log_length,
            approximate=True,
        )

    async def _watched(self, what: str, watch: Sequence[str], body: Callable[[Pipeline], Awaitable[T]]) -> T:
        """Optimistic transaction: WATCH `watch`, let `body` read (immediate mode), then
        queue writes after `pipe.multi()`; retried when a watched key changed."""
        with _translate(what):
            for _ in range(_WATCH_RETRIES):
                async with self.redis.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(*watch)
                        result = await body(pipe)
                        await pipe.execute()
                        return result
                    except redis_errors.WatchError:
                        continue
        raise Unavailable(f"redis: cannot {what}: too much contention")

    @staticmethod
    def _decode_subs(raw: Sequence[bytes | str | None]) -> list[Subscription]:
        out = []
        for data in raw:
            if data is not None:
                sub = Subscription()
                sub.ParseFromString(data.encode() if isinstance(data, str) else data)
                out.append(sub)
        return out

    def _unindex(self, pipe: Pipeline, app_id: str, sub: Subscription) -> None:
        k = self.keys
        pipe.delete(k.sub(app_id, sub.id))
        pipe.srem(k.app_subs(app_id), sub.id)
        pipe.srem(k.device_subs(app_id, sub.device_id), sub.id)
        pipe.srem(k.model_subs(app_id, sub.model), sub.id)
        self._log(
            pipe,
            app_id,
            SubscriptionChange(
                kind=Kind.KIND_SUBSCRIPTION_REMOVED,
                subscription_id=sub.id,
                model=sub.model,
                device_id=sub.device_id,
            ),
        )

    # ------------------------------------------------------------------ subscriptions

    async def add_subscription(self, app_id: str, subscription: Subscription) -> None:
        """Store (or replace) a subscription, index it and log KIND_SUBSCRIPTION_ADDED."""
        for field in ("id", "model", "device_id"):
            if not getattr(subscription, field):
                raise InvalidArgument(f"subscription.{field} is required", field=f"subscription.{field}")
        k = self.keys
        key = k.sub(app_id, subscription.id)
        with _translate("register the application"):
            await self.redis.sadd(k.apps, app_id)

        async def body(pipe: Pipeline) -> None:
            old = self._decode_subs([await pipe.get(key)])
            pipe.multi()  # type: ignore[no-untyped-call]
            for previous in old:  # replaced: drop its index entries first
                self._unindex(pipe, app_id, previous)
            pipe.set(key, subscription.SerializeToString())
            pipe.sadd(k.app_subs(app_id), subscription.id)
            pipe.sadd(k.device_subs(app_id, subscription.device_id), subscription.id)
            pipe.sadd(k.model_subs(app_id, subscription.model), subscription.id)
            change = SubscriptionChange(
                kind=Kind.KIND_SUBSCRIPTION_ADDED,
                subscription_id=subscription.id,
                model=subscription.model,
                device_id=subscription.device_id,
            )
            change.subscription.CopyFrom(subscription)
            self._log(pipe, app_id, change)

        await self._watched("add a subscription", [key], body)

    async def get_subscription(self, app_id: str, subscription_id: str) -> Subscription | None:
        with _translate("get a subscription"):
            raw = await self.redis.get(self.keys.sub(app_id, subscription_id))
        subs = self._decode_subs([raw])
        return subs[0] if subs else None

    async def remove_subscription(self, app_id: str, subscription_id: str) -> bool:
        key = self.keys.sub(app_id, subscription_id)

        async def body(pipe: Pipeline) -> bool:
            old = self._decode_subs([await pipe.get(key)])
            pipe.multi()  # type: ignore[no-untyped-call]
            for sub in old:
                self._unindex(pipe, app_id, sub)
            return bool(old)

        return await self._watched("remove a subscription", [key], body)

    async def list_device_subscriptions(self, app_id: str, device_id: str) -> list[Subscription]:
        k = self.keys
        with _translate("list device subscriptions"):
            ids = sorted(await self.redis.smembers(k.device_subs(app_id, device_id)))
            raw = await self.redis.mget([k.sub(app_id, _text(i)) for i in ids]) if ids else []
        subs = [s for s in self._decode_subs(raw) if s.device_id == device_id]
        subs.sort(key=lambda s: (s.create_time.seconds, s.create_time.nanos, s.id))
        return subs

    async def remove_device_subscriptions(self, app_id: str, device_id: str, *, volatile_only: bool) -> int:
        """Remove a device's subscriptions (only the non-persistent ones when `volatile_only`)."""
        k = self.keys
        device_key = k.device_subs(app_id, device_id)

        async def body(pipe: Pipeline) -> int:
            ids = [_text(i) for i in await pipe.smembers(device_key)]
            raw = await pipe.mget([k.sub(app_id, i) for i in ids]) if ids else []
            doomed = [s for s in self._decode_subs(raw) if not (volatile_only and s.persistent)]
            pipe.multi()  # type: ignore[no-untyped-call]
            for sub in doomed:
                self._unindex(pipe, app_id, sub)
            return len(doomed)

        # Watching the device's set covers every add / remove of its subscriptions.
        return await self._watched("remove device subscriptions", [device_key], body)

    async def iter_subscriptions(self, app_id: str | None = None) -> AsyncIterator[tuple[str, Subscription]]:
        """Every (app_id, subscription), app by app, fetched in chunks (SSCAN + MGET)."""
        k = self.keys
        if app_id is not None:
            apps: list[str] = [app_id]
        else:
            with _translate("list applications"):
                apps = sorted({_text(a) async for a in self.redis.sscan_iter(k.apps, count=_SCAN_CHUNK)})
        for app in apps:
            chunk: list[str] = []
            with _translate("scan subscriptions"):
                async for sid in self.redis.sscan_iter(k.app_subs(app), count=_SCAN_CHUNK):
                    chunk.append(_text(sid))
                    if len(chunk) >= _SCAN_CHUNK:
                        for sub in await self._mget_subs(app, chunk):
                            yield app, sub
                        chunk = []
                if chunk:
                    for sub in await self._mget_subs(app, chunk):
                        yield app, sub

    async def _mget_subs(self, app_id: str, ids: Sequence[str]) -> list[Subscription]:
        raw = await self.redis.mget([self.keys.sub(app_id, i) for i in ids])
        return self._decode_subs(raw)

    # ------------------------------------------------------------------ change log

    async def changes_since(
        self, cursors: Mapping[str, str]
    ) -> dict[str, tuple[list[SubscriptionChange], str]]:
        """Changes after each app's cursor: one pipelined round trip when nothing
        changed (the newest entry of each log is its cursor), two otherwise.

        Per changed app: XRANGE (cursor, +] then XINFO STREAM (in that order, so a trim in
        between is detected rather than missed). LookupError when entries after the
        cursor may have been trimmed away, or the log was deleted.
        """
        if not cursors:
            return {}
        out: dict[str, tuple[list[SubscriptionChange], str]] = {}
        with _translate("read change logs"):
            # Cheap first look (the common case): an app whose newest entry is still
            # its cursor has no change after it, and the log only grows at its head.
            pipe = self.redis.pipeline(transaction=False)
            for app in cursors:
                pipe.xrevrange(self.keys.changes(app), "+", "-", count=1)
            heads: list[Any] = await pipe.execute(raise_on_error=False)
        apps = []
        for app, head in zip(cursors, heads, strict=True):
            cursor = cursors[app]
            if cursor and isinstance(head, list) and head and _text(head[0][0]) == cursor:
                out[app] = ([], cursor)
            else:
                apps.append(app)
        if not apps:
            return out
        with _translate("read change logs"):
            pipe = self.redis.pipeline(transaction=False)
            for app in apps:
                key = self.keys.changes(app)
                cursor = cursors[app]
                if cursor:
                    _parse_id(cursor)
                    pipe.xrange(key, f"({cursor}", "+")
                pipe.xinfo_stream(key)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        pos = 0
        for app in apps:
            cursor = cursors[app]
            entries: list[tuple[bytes, dict[bytes, bytes]]] = []
            if cursor:
                entries = results[pos]
                pos += 1
            info = results[pos]
            pos += 1
            if isinstance(entries, Exception):
                raise Unavailable(f"redis: cannot read the change log of {app}: {entries!r}") from entries
            out[app] = self._since(app, cursor, entries, info)
        return out

    @staticmethod
    def _since(
        app: str, cursor: str, entries: list[tuple[bytes, dict[bytes, bytes]]], info: Any
    ) -> tuple[list[SubscriptionChange], str]:
        if isinstance(info, redis_errors.ResponseError):  # no such key: empty or deleted log
            if cursor in ("", "0-0", "0"):
                return [], "0-0"
            raise LookupError(f"change log of {app} is gone (cursor {cursor})")
        if isinstance(info, Exception):
            raise Unavailable(f"redis: cannot read the change log of {app}: {info!r}") from info
        if not cursor:
            return [], _text(info["last-generated-id"])
        trimmed = int(info["entries-added"]) > int(info["length"])
        first = info.get("first-entry")
        if trimmed and first is not None and _parse_id(cursor) < _parse_id(_text(first[0])):
            raise LookupError(f"cursor {cursor} of {app} is older than the retained change log")
        changes = []
        for entry_id, fields in entries:
            change = SubscriptionChange()
            change.ParseFromString(fields[_FIELD])
            changes.append(change)
            cursor = _text(entry_id)
        return changes, cursor

    async def log_cursor(self, app_id: str) -> str:
        with _translate("read the change log cursor"):
            newest = await self.redis.xrevrange(self.keys.changes(app_id), "+", "-", count=1)
        if not newest or newest[0][0] is None:
            return "0-0"
        return _text(newest[0][0])

    # ------------------------------------------------------------------ acknowledged positions

    async def ack_position(self, app_id: str, device_id: str, epoch: str, seq: int) -> str:
        with _translate("store an acknowledged position"):
            raw = await self.redis.eval(_ACK_SCRIPT, 1, self.keys.acks(app_id), device_id, epoch, str(seq))
        return _text(raw)

    async def acked_position(self, app_id: str, device_id: str) -> str:
        with _translate("read an acknowledged position"):
            raw = await self.redis.hget(self.keys.acks(app_id), device_id)
        return "" if raw is None else _text(raw)

    # ------------------------------------------------------------------ misc

    async def hit(self, key: str, window_seconds: int) -> int:
        full = self.keys.hit(key)
        with _translate("count a hit"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(full)
                pipe.expire(full, window_seconds, nx=True)
                count, _ = await pipe.execute()
        return int(count)

    async def delete_app(self, app_id: str) -> None:
        """Delete every key of an application (its change log too: routers then reload it)."""
        with _translate("delete an application"):
            await self._unlink_matching(self.keys.app_pattern(app_id))
            await self.redis.srem(self.keys.apps, app_id)

    async def delete_all(self) -> None:
        """Delete every key under the prefix (tests, `nexxus dev --reset`)."""
        with _translate("delete all keys"):
            await self._unlink_matching(self.keys.all_pattern)

    async def _unlink_matching(self, pattern: str) -> None:
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=pattern, count=_SCAN_CHUNK):
            batch.append(key)
            if len(batch) >= _SCAN_CHUNK:
                await self.redis.unlink(*batch)
                batch = []
        if batch:
            await self.redis.unlink(*batch)


# KEYS[1] acks hash; ARGV device, epoch, seq. Positions move forward within an
# epoch; a position of another epoch replaces the stored one (history reset).
_ACK_SCRIPT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local e, s = string.match(cur, '^(.*)%.(%d+)$')
  if e == ARGV[2] and tonumber(s) >= tonumber(ARGV[3]) then return cur end
end
local pos = ARGV[2] .. '.' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], pos)
return pos
"""
