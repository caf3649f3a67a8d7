"""Device connections and transport-node leases of the Redis subscription store.

A transport node holds a *lease* (``P:node:<node>:lease``, a key with a TTL
that the node renews every few seconds). Every connection it holds is recorded
three times, so it can be found from the device (routing), from the node
(reaping) and the subscriptions it created can be found from it::

    P:{app}:conns:<device>          hash  connection id → node
    P:{app}:node:<node>:conns       hash  connection id → device
    P:{app}:conn:<connection>:subs  set   volatile subscriptions the connection created
    P:{app}:nodes                   hash  device → nodes holding one of its connections
                                          (space-separated, sorted: what routers read)
    P:node:<node>:apps              set   apps in which the node holds connections
    P:transport-nodes               set   nodes that hold (or held) connections

When a node dies, its lease expires; any live node then `reap_node`s it: each
of its connections is disconnected exactly as if it had closed. Disconnecting
removes, in one transaction, the connection, the volatile subscriptions it
created and — when it was the device's last connection anywhere — every other
volatile subscription of the device. Since a new connection is recorded before
it creates subscriptions, the cleanup of an old connection can never remove a
reconnecting one's fresh subscriptions.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from nexxus.adapters.store._redis_common import text as _text
from nexxus.adapters.store._redis_common import translate
from nexxus.adapters.store._redis_keys import Keys
from nexxus.core.ports import HeldConnection, NodeConnections
from nexxus.v1.internal_pb2 import SubscriptionChange
from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = ["ConnectionsMixin", "join_nodes", "split_nodes"]

T = TypeVar("T")
Kind = SubscriptionChange.Kind


def split_nodes(value: bytes | str | None) -> tuple[str, ...]:
    return tuple(_text(value).split()) if value else ()


def join_nodes(nodes: Sequence[str]) -> str:
    return " ".join(sorted(set(nodes)))


# Lease renewal, atomically: 1 = held; 2 = lapsed (or new) and nobody claimed the
# node; 0 = lapsed and a reaper claimed it (the mark is consumed: the node closes
# its connections and starts afresh).
_RENEW_LEASE = """
if redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'XX') then return 1 end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
if redis.call('DEL', KEYS[2]) == 1 then return 0 end
return 2
"""
# A reaper claims a node only while its lease is absent; from then on the node,
# should it come back, learns that it was reaped.
_CLAIM_DEAD_NODE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
"""
# How long a reaped node's mark is kept for it to find (a process frozen longer
# than this and then resumed would not learn that it was reaped).
_REAPED_MARK_MS = 7 * 24 * 3600 * 1000


class ConnectionsMixin:
    """The device/connection/lease half of `RedisSubscriptionStore`."""

    keys: Keys

    @property
    @abstractmethod
    def redis(self) -> Redis: ...

    @property
    @abstractmethod
    def lease_redis(self) -> Redis:
        """A connection of its own for node leases (not queued behind the pool)."""

    @abstractmethod
    def _log(self, pipe: Pipeline, app_id: str, change: SubscriptionChange) -> None: ...

    @abstractmethod
    async def _watched(
        self, what: str, watch: Sequence[str], body: Callable[[Pipeline], Awaitable[T]]
    ) -> T: ...

    @abstractmethod
    def _unindex(self, pipe: Pipeline, app_id: str, sub: Subscription) -> None: ...

    @staticmethod
    @abstractmethod
    def _decode_subs(raw: Sequence[bytes | str | None]) -> list[Subscription]: ...

    # ------------------------------------------------------------------ connections

    async def device_connected(self, app_id: str, device_id: str, node: str, connection_id: str) -> None:
        """Record a connection; `node` joins the device's nodes (DEVICE_CONNECTED
        when it was not among them)."""
        k = self.keys
        conns_key, nodes_key = k.conns(app_id, device_id), k.nodes(app_id)
        with translate("record a connection"):
            await self.redis.sadd(k.node_apps(node), app_id)
            await self.redis.sadd(k.transport_nodes, node)

        async def body(pipe: Pipeline) -> None:
            conns = {_text(c): _text(n) for c, n in (await pipe.hgetall(conns_key)).items()}
            before = set(conns.values())
            conns[connection_id] = node
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(conns_key, connection_id, node)
            pipe.hset(k.node_conns(app_id, node), connection_id, device_id)
            pipe.hset(nodes_key, device_id, join_nodes(list(conns.values())))
            if node not in before:
                self._log(
                    pipe,
                    app_id,
                    SubscriptionChange(kind=Kind.KIND_DEVICE_CONNECTED, device_id=device_id, node=node),
                )

        await self._watched("record a connection", [conns_key], body)

    async def bind_subscription(
        self, app_id: str, device_id: str, connection_id: str, subscription_id: str
    ) -> bool:
        """Make a volatile subscription go with the connection that created it.
        False (and the subscription is removed) when the connection is already gone."""
        k = self.keys
        conns_key, sub_key = k.conns(app_id, device_id), k.sub(app_id, subscription_id)

        async def body(pipe: Pipeline) -> bool:
            alive = await pipe.hexists(conns_key, connection_id)
            subs = self._decode_subs([await pipe.get(sub_key)]) if not alive else []
            pipe.multi()  # type: ignore[no-untyped-call]
            if alive:
                pipe.sadd(k.conn_subs(app_id, connection_id), subscription_id)
            for sub in subs:
                self._unindex(pipe, app_id, sub)
            return bool(alive)

        return await self._watched("bind a subscription", [conns_key, sub_key], body)

    async def device_disconnected(self, app_id: str, device_id: str, node: str, connection_id: str) -> int:
        """Forget one connection and the volatile subscriptions it created; when it
        was the device's last connection, every volatile subscription of the
        device goes too. Returns how many connections the device still has.

        `node` leaves the device's nodes (DEVICE_DISCONNECTED with that node) when
        it held no other connection of the device. Idempotent."""
        k = self.keys
        conns_key, nodes_key = k.conns(app_id, device_id), k.nodes(app_id)
        device_subs_key, own_key = k.device_subs(app_id, device_id), k.conn_subs(app_id, connection_id)

        async def body(pipe: Pipeline) -> int:
            conns = {_text(c): _text(n) for c, n in (await pipe.hgetall(conns_key)).items()}
            if connection_id not in conns:
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.delete(own_key)
                pipe.hdel(k.node_conns(app_id, node), connection_id)
                return len(conns)
            conns.pop(connection_id)
            own = {_text(i) for i in await pipe.smembers(own_key)}
            if not conns:  # the device's last connection: all its volatile subscriptions go
                own |= {_text(i) for i in await pipe.smembers(device_subs_key)}
            ids = sorted(own)
            raw = await pipe.mget([k.sub(app_id, i) for i in ids]) if ids else []
            doomed = [s for s in self._decode_subs(raw) if not s.persistent and s.device_id == device_id]
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hdel(conns_key, connection_id)
            pipe.hdel(k.node_conns(app_id, node), connection_id)
            pipe.delete(own_key)
            for sub in doomed:
                self._unindex(pipe, app_id, sub)
            if conns:
                pipe.hset(nodes_key, device_id, join_nodes(list(conns.values())))
            else:
                pipe.hdel(nodes_key, device_id)
            if node not in conns.values():
                self._log(
                    pipe,
                    app_id,
                    SubscriptionChange(kind=Kind.KIND_DEVICE_DISCONNECTED, device_id=device_id, node=node),
                )
            return len(conns)

        return await self._watched("record a disconnection", [conns_key, device_subs_key, own_key], body)

    async def device_nodes(self, app_id: str) -> dict[str, tuple[str, ...]]:
        """device id → the nodes holding its connections, for every connected device."""
        with translate("read device nodes"):
            raw = await self.redis.hgetall(self.keys.nodes(app_id))
        return {_text(d): nodes for d, n in raw.items() if (nodes := split_nodes(n))}

    async def device_connections(self, app_id: str, device_id: str) -> dict[str, str]:
        """connection id → node of one device."""
        with translate("read device connections"):
            raw = await self.redis.hgetall(self.keys.conns(app_id, device_id))
        return {_text(c): _text(n) for c, n in raw.items()}

    # ------------------------------------------------------------------ node leases

    async def renew_node_lease(self, node: str, ttl_seconds: float) -> bool:
        """Create or extend the node's lease. False when a reaper claimed the node
        while its lease had lapsed (its connections are, or are being, removed:
        they must be re-established); a lapse nobody acted on is harmless.

        Runs on the store's own lease connection, so a storm of connection
        registrations queued on the pool cannot delay it into a lapse."""
        k = self.keys
        ttl_ms = max(1, int(ttl_seconds * 1000))
        with translate("renew a node lease"):
            outcome = await self.lease_redis.eval(
                _RENEW_LEASE, 3, k.node_lease(node), k.node_reaped(node), k.transport_nodes, ttl_ms, node
            )
        return int(outcome) != 0

    async def release_node_lease(self, node: str) -> None:
        """A node stopping gracefully (after unregistering its connections)."""
        with translate("release a node lease"):
            await self.redis.delete(self.keys.node_lease(node))
        await self.reap_node(node)

    async def dead_nodes(self) -> list[str]:
        """Known nodes whose lease has expired."""
        k = self.keys
        with translate("list transport nodes"):
            nodes = sorted(_text(n) for n in await self.redis.smembers(k.transport_nodes))
            if not nodes:
                return []
            pipe = self.redis.pipeline(transaction=False)
            for node in nodes:
                pipe.exists(k.node_lease(node))
            alive = await pipe.execute()
        return [node for node, live in zip(nodes, alive, strict=True) if not live]

    async def transport_nodes(self, app_id: str = "") -> list[NodeConnections]:
        k = self.keys
        with translate("list transport nodes"):
            nodes = sorted(_text(n) for n in await self.redis.smembers(k.transport_nodes))
            out = []
            for node in nodes:
                alive = bool(await self.redis.exists(k.node_lease(node)))
                apps = sorted(_text(a) for a in await self.redis.smembers(k.node_apps(node)))
                held: list[HeldConnection] = []
                for app in apps:
                    if app_id and app != app_id:
                        continue
                    conns = await self.redis.hgetall(k.node_conns(app, node))
                    held.extend(HeldConnection(app, _text(c), _text(d)) for c, d in sorted(conns.items()))
                out.append(NodeConnections(node, alive, tuple(held)))
        return out

    async def reap_node(self, node: str) -> int:
        """Disconnect every connection recorded for `node` (a dead node, or one
        that stopped) and forget the node. Returns how many were removed."""
        k = self.keys
        removed = 0
        with translate("claim a dead node"):
            claimed = await self.lease_redis.eval(
                _CLAIM_DEAD_NODE, 2, k.node_lease(node), k.node_reaped(node), _REAPED_MARK_MS
            )
        if not int(claimed):  # it renewed its lease meanwhile: nothing to reap
            return 0
        with translate("list a node's applications"):
            apps = sorted(_text(a) for a in await self.redis.smembers(k.node_apps(node)))
        for app_id in apps:
            with translate("list a node's connections"):
                held = await self.redis.hgetall(k.node_conns(app_id, node))
            for conn_id, device_id in sorted(held.items()):
                await self.device_disconnected(app_id, _text(device_id), node, _text(conn_id))
                removed += 1
        with translate("forget a node"):
            if not await self.redis.exists(k.node_lease(node)):  # not revived meanwhile
                await self.redis.delete(k.node_apps(node))
                await self.redis.srem(k.transport_nodes, node)
        return removed
