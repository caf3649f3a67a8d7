"""Contract tests of RedisSubscriptionStore on a real Valkey server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from nexxus.adapters.store.redis import RedisSubscriptionStore
from nexxus.core.config.settings import RedisSettings
from nexxus.core.errors import InvalidArgument, Unavailable
from nexxus.devserver.servers import free_port
from nexxus.v1.internal_pb2 import SubscriptionChange
from nexxus.v1.subscriptions_pb2 import Subscription

Kind = SubscriptionChange.Kind


def make_sub(
    sid: str, *, device: str = "d1", model: str = "task", persistent: bool = False, ts: int = 0
) -> Subscription:
    sub = Subscription(id=sid, model=model, device_id=device, persistent=persistent, user_id="u1")
    sub.create_time.seconds = ts
    return sub


def kinds(changes: list[SubscriptionChange]) -> list[tuple[int, str]]:
    return [(c.kind, c.subscription_id or c.device_id) for c in changes]


async def test_not_started_raises(redis_settings: RedisSettings) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await RedisSubscriptionStore(redis_settings).get_subscription("a", "s")


async def test_connect_failure_is_unavailable() -> None:
    store = RedisSubscriptionStore(RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(Unavailable):
        await store.start()


async def test_add_get_round_trip(store: RedisSubscriptionStore) -> None:
    sub = make_sub("s1", ts=42)
    sub.filter.update({"$and": [{"priority": {"eq": "high"}}]})
    await store.add_subscription("app1", sub)
    got = await store.get_subscription("app1", "s1")
    assert got == sub
    assert got is not None
    assert MessageToDict(got.filter) == {"$and": [{"priority": {"eq": "high"}}]}
    assert await store.get_subscription("app1", "missing") is None


async def test_key_layout_uses_app_hash_tag(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("app1", make_sub("s1", device="dev", model="task"))
    p = store.settings.key_prefix
    keys = {k.decode() async for k in store.redis.scan_iter(match=f"{p}:*")}
    assert keys == {
        f"{p}:apps",
        f"{p}:{{app1}}:sub:s1",
        f"{p}:{{app1}}:subs",
        f"{p}:{{app1}}:device:dev:subs",
        f"{p}:{{app1}}:model:task:subs",
        f"{p}:{{app1}}:changes",
    }


@pytest.mark.parametrize("field", ["id", "model", "device_id"])
async def test_add_requires_fields(store: RedisSubscriptionStore, field: str) -> None:
    sub = make_sub("s1")
    sub.ClearField(field)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await store.add_subscription("app1", sub)


async def test_app_id_with_braces_rejected(store: RedisSubscriptionStore) -> None:
    with pytest.raises(InvalidArgument):
        await store.get_subscription("a}b", "s")


async def test_replacing_a_subscription_reindexes_it(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("app1", make_sub("s1", device="d1", model="task"))
    await store.add_subscription("app1", make_sub("s1", device="d2", model="note"))
    assert await store.list_device_subscriptions("app1", "d1") == []
    assert [s.id for s in await store.list_device_subscriptions("app1", "d2")] == ["s1"]
    assert [s.model async for _, s in store.iter_subscriptions("app1")] == ["note"]


async def test_remove_subscription(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("app1", make_sub("s1"))
    assert await store.remove_subscription("app1", "s1") is True
    assert await store.remove_subscription("app1", "s1") is False
    assert await store.get_subscription("app1", "s1") is None
    assert await store.list_device_subscriptions("app1", "d1") == []
    assert [s async for s in store.iter_subscriptions("app1")] == []


async def test_list_device_subscriptions(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("app1", make_sub("b", device="d1", ts=2))
    await store.add_subscription("app1", make_sub("a", device="d1", ts=1))
    await store.add_subscription("app1", make_sub("c", device="d2", ts=0))
    assert [s.id for s in await store.list_device_subscriptions("app1", "d1")] == ["a", "b"]
    assert [s.id for s in await store.list_device_subscriptions("app1", "d2")] == ["c"]
    assert await store.list_device_subscriptions("app1", "nobody") == []


async def test_remove_device_subscriptions(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("app1", make_sub("v1"))
    await store.add_subscription("app1", make_sub("v2"))
    await store.add_subscription("app1", make_sub("p1", persistent=True))
    await store.add_subscription("app1", make_sub("other", device="d2"))
    cursor = await store.log_cursor("app1")

    assert await store.remove_device_subscriptions("app1", "d1", volatile_only=True) == 2
    assert [s.id for s in await store.list_device_subscriptions("app1", "d1")] == ["p1"]
    changes, _ = (await store.changes_since({"app1": cursor}))["app1"]
    assert sorted(kinds(changes)) == [
        (Kind.KIND_SUBSCRIPTION_REMOVED, "v1"),
        (Kind.KIND_SUBSCRIPTION_REMOVED, "v2"),
    ]

    assert await store.remove_device_subscriptions("app1", "d1", volatile_only=False) == 1
    assert await store.list_device_subscriptions("app1", "d1") == []
    assert [s.id for s in await store.list_device_subscriptions("app1", "d2")] == ["other"]


async def test_iter_subscriptions_all_apps_in_chunks(store: RedisSubscriptionStore) -> None:
    expected = set()
    for app, n in (("a1", 620), ("a2", 3)):
        for i in range(n):
            await store.add_subscription(app, make_sub(f"s{i}", device=f"d{i % 7}"))
            expected.add((app, f"s{i}"))
    seen = [(app, sub.id) async for app, sub in store.iter_subscriptions()]
    assert len(seen) == len(expected)
    assert set(seen) == expected
    only_a2 = {(app, sub.id) async for app, sub in store.iter_subscriptions("a2")}
    assert only_a2 == {("a2", "s0"), ("a2", "s1"), ("a2", "s2")}


async def test_change_log_order_and_cursors(store: RedisSubscriptionStore) -> None:
    start = await store.log_cursor("app1")
    assert start == "0-0"
    await store.add_subscription("app1", make_sub("s1"))
    await store.add_subscription("app1", make_sub("s2"))
    await store.remove_subscription("app1", "s1")
    await store.device_connected("app1", "d1", "node-a", "c1")
    await store.device_disconnected("app1", "d1", "node-a", "c1")

    changes, cursor = (await store.changes_since({"app1": start}))["app1"]
    assert kinds(changes) == [
        (Kind.KIND_SUBSCRIPTION_ADDED, "s1"),
        (Kind.KIND_SUBSCRIPTION_ADDED, "s2"),
        (Kind.KIND_SUBSCRIPTION_REMOVED, "s1"),
        (Kind.KIND_DEVICE_CONNECTED, "d1"),
        # The device's last connection: its volatile subscriptions go in the same step.
        (Kind.KIND_SUBSCRIPTION_REMOVED, "s2"),
        (Kind.KIND_DEVICE_DISCONNECTED, "d1"),
    ]
    assert all(c.app_id == "app1" for c in changes)
    assert changes[0].subscription == make_sub("s1")
    assert changes[2].model == "task"
    assert changes[2].device_id == "d1"
    assert changes[3].node == "node-a"
    assert cursor == await store.log_cursor("app1")

    # Nothing new after the returned cursor; "" means "from now".
    assert (await store.changes_since({"app1": cursor}))["app1"] == ([], cursor)
    assert (await store.changes_since({"app1": ""}))["app1"] == ([], cursor)

    await store.add_subscription("app1", make_sub("s3"))
    later, _ = (await store.changes_since({"app1": cursor}))["app1"]
    assert kinds(later) == [(Kind.KIND_SUBSCRIPTION_ADDED, "s3")]


async def test_changes_since_several_apps(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("a1", make_sub("x"))
    await store.add_subscription("a2", make_sub("y"))
    result = await store.changes_since({"a1": "0-0", "a2": "0-0", "empty": "0-0", "new": ""})
    assert kinds(result["a1"][0]) == [(Kind.KIND_SUBSCRIPTION_ADDED, "x")]
    assert kinds(result["a2"][0]) == [(Kind.KIND_SUBSCRIPTION_ADDED, "y")]
    assert result["empty"] == ([], "0-0")
    assert result["new"] == ([], "0-0")
    assert await store.changes_since({}) == {}


@pytest.fixture
async def small_log_store(redis_settings: RedisSettings) -> AsyncIterator[RedisSubscriptionStore]:
    settings = RedisSettings(
        url=redis_settings.url, key_prefix=redis_settings.key_prefix, change_log_length=10
    )
    store = RedisSubscriptionStore(settings)
    await store.start()
    yield store
    await store.delete_all()
    await store.stop()


async def test_trimmed_cursor_raises_lookup_error(small_log_store: RedisSubscriptionStore) -> None:
    store = small_log_store
    await store.device_connected("app1", "d0", "n", "c0")
    old = await store.log_cursor("app1")
    for i in range(400):  # approximate MAXLEN trims whole stream nodes (100 entries)
        await store.device_connected("app1", f"d{i}", "n", f"c{i}")
    assert await store.redis.xlen(store.keys.changes("app1")) < 400
    with pytest.raises(LookupError):
        await store.changes_since({"app1": old})
    with pytest.raises(LookupError):
        await store.changes_since({"app1": "0-0"})
    recent = await store.log_cursor("app1")
    await store.device_connected("app1", "dx", "n", "cx")
    changes, _ = (await store.changes_since({"app1": recent}))["app1"]
    assert kinds(changes) == [(Kind.KIND_DEVICE_CONNECTED, "dx")]


async def test_deleted_log_raises_lookup_error(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("app1", make_sub("s1"))
    cursor = await store.log_cursor("app1")
    await store.delete_app("app1")
    with pytest.raises(LookupError):
        await store.changes_since({"app1": cursor})


async def test_bad_cursor_is_invalid_argument(store: RedisSubscriptionStore) -> None:
    with pytest.raises(InvalidArgument):
        await store.changes_since({"app1": "not-a-cursor"})


async def test_device_connections_and_nodes(store: RedisSubscriptionStore) -> None:
    await store.device_connected("app1", "d1", "node-a", "c1")
    await store.device_connected("app1", "d2", "node-a", "c2")
    assert await store.device_nodes("app1") == {"d1": ("node-a",), "d2": ("node-a",)}
    # A device may hold connections on several nodes: each gets its events.
    await store.device_connected("app1", "d1", "node-b", "c3")
    assert (await store.device_nodes("app1"))["d1"] == ("node-a", "node-b")
    assert await store.device_connections("app1", "d1") == {"c1": "node-a", "c3": "node-b"}

    cursor = await store.log_cursor("app1")
    assert await store.device_disconnected("app1", "d1", "node-b", "c3") == 1
    assert (await store.device_nodes("app1"))["d1"] == ("node-a",)
    assert await store.device_disconnected("app1", "d1", "node-a", "c1") == 0
    assert await store.device_disconnected("app1", "d1", "node-a", "c1") == 0  # idempotent
    assert await store.device_nodes("app1") == {"d2": ("node-a",)}
    changes, _ = (await store.changes_since({"app1": cursor}))["app1"]
    assert [(c.kind, c.device_id, c.node) for c in changes] == [
        (Kind.KIND_DEVICE_DISCONNECTED, "d1", "node-b"),
        (Kind.KIND_DEVICE_DISCONNECTED, "d1", "node-a"),
    ]


async def test_second_connection_on_a_node_logs_nothing(store: RedisSubscriptionStore) -> None:
    await store.device_connected("app1", "d1", "node-a", "c1")
    cursor = await store.log_cursor("app1")
    await store.device_connected("app1", "d1", "node-a", "c2")
    assert await store.device_disconnected("app1", "d1", "node-a", "c1") == 1
    assert await store.device_nodes("app1") == {"d1": ("node-a",)}
    assert (await store.changes_since({"app1": cursor}))["app1"][0] == []


async def test_connection_bound_subscriptions_go_with_their_connection(
    store: RedisSubscriptionStore,
) -> None:
    await store.device_connected("app1", "d1", "node-a", "old")
    await store.device_connected("app1", "d1", "node-b", "new")
    await store.add_subscription("app1", make_sub("inline-old"))
    await store.add_subscription("app1", make_sub("inline-new"))
    await store.add_subscription("app1", make_sub("rest-made"))
    assert await store.bind_subscription("app1", "d1", "old", "inline-old") is True
    assert await store.bind_subscription("app1", "d1", "new", "inline-new") is True
    # The old connection goes: only its own subscription goes with it.
    assert await store.device_disconnected("app1", "d1", "node-a", "old") == 1
    ids = {s.id for s in await store.list_device_subscriptions("app1", "d1")}
    assert ids == {"inline-new", "rest-made"}
    # Binding to a connection that is gone removes the subscription.
    await store.add_subscription("app1", make_sub("late"))
    assert await store.bind_subscription("app1", "d1", "old", "late") is False
    assert await store.get_subscription("app1", "late") is None
    # The last one goes: every volatile subscription of the device goes.
    assert await store.device_disconnected("app1", "d1", "node-b", "new") == 0
    assert await store.list_device_subscriptions("app1", "d1") == []


async def test_dead_node_is_reaped_after_its_lease_expires(store: RedisSubscriptionStore) -> None:
    assert await store.renew_node_lease("alive", 30) is True  # a new lease: nothing was reaped
    assert await store.renew_node_lease("alive", 30) is True
    assert await store.renew_node_lease("dying", 0.2) is True
    await store.device_connected("app1", "d1", "dying", "c-dead")
    await store.device_connected("app1", "d1", "alive", "c-live")
    await store.device_connected("app2", "d9", "dying", "c-other-app")
    await store.add_subscription("app1", make_sub("dead-inline"))
    await store.bind_subscription("app1", "d1", "c-dead", "dead-inline")
    await store.add_subscription("app2", make_sub("d9-volatile", device="d9"))
    assert await store.dead_nodes() == []
    await asyncio.sleep(0.4)
    assert await store.dead_nodes() == ["dying"]
    assert await store.reap_node("dying") == 2
    assert await store.dead_nodes() == []
    assert await store.device_connections("app1", "d1") == {"c-live": "alive"}
    assert await store.device_nodes("app1") == {"d1": ("alive",)}
    assert await store.get_subscription("app1", "dead-inline") is None
    assert await store.device_nodes("app2") == {}
    assert await store.get_subscription("app2", "d9-volatile") is None
    # A node that lost its lease learns it on its next renewal (once).
    assert await store.renew_node_lease("dying", 30) is False
    assert await store.renew_node_lease("dying", 30) is True
    await store.release_node_lease("alive")
    assert await store.device_nodes("app1") == {}


async def test_a_lapse_nobody_acted_on_keeps_the_connections(store: RedisSubscriptionStore) -> None:
    # A lone node starved past its lease (no other node reaped it) keeps its connections.
    assert await store.renew_node_lease("starved", 0.2) is True
    await store.device_connected("app1", "d1", "starved", "c1")
    await asyncio.sleep(0.4)
    assert await store.dead_nodes() == ["starved"]
    assert await store.renew_node_lease("starved", 30) is True
    assert await store.dead_nodes() == []
    assert await store.reap_node("starved") == 0  # a reaper that saw it dead too late claims nothing
    assert await store.device_connections("app1", "d1") == {"c1": "starved"}
    assert await store.renew_node_lease("starved", 30) is True


async def test_a_reaped_node_learns_it_even_when_it_renews_mid_reap(store: RedisSubscriptionStore) -> None:
    assert await store.renew_node_lease("slow", 0.2) is True
    for i in range(3):
        await store.device_connected("app1", f"d{i}", "slow", f"c{i}")
    await asyncio.sleep(0.4)
    assert await store.dead_nodes() == ["slow"]
    # The node comes back while the reaper works: once claimed, the reap goes on,
    # and the node is told its connections are gone.
    reaping = asyncio.create_task(store.reap_node("slow"))
    await asyncio.sleep(0)
    renewed = await store.renew_node_lease("slow", 30)
    removed = await reaping
    if removed:  # the reaper claimed the node first
        assert renewed is False
        assert removed == 3
        assert await store.device_nodes("app1") == {}
    else:  # the node renewed before the claim: nothing was reaped
        assert renewed is True
        assert len(await store.device_nodes("app1")) == 3


async def test_hit_counts_in_a_window(store: RedisSubscriptionStore) -> None:
    assert [await store.hit("login:app1:bob", 60) for _ in range(3)] == [1, 2, 3]
    assert await store.hit("login:app1:alice", 60) == 1
    ttl = await store.redis.ttl(store.keys.hit("login:app1:bob"))
    assert 0 < ttl <= 60


async def test_app_isolation(store: RedisSubscriptionStore) -> None:
    await store.add_subscription("A", make_sub("s1", device="d1", model="task"))
    await store.add_subscription("B", make_sub("s1", device="d1", model="note"))
    await store.device_connected("A", "d1", "node-a", "c1")

    got_a = await store.get_subscription("A", "s1")
    got_b = await store.get_subscription("B", "s1")
    assert got_a is not None
    assert got_a.model == "task"
    assert got_b is not None
    assert got_b.model == "note"
    assert await store.device_nodes("B") == {}

    assert await store.remove_subscription("A", "s1") is True
    assert await store.get_subscription("B", "s1") == got_b
    assert [s.id for s in await store.list_device_subscriptions("B", "d1")] == ["s1"]
    assert [a async for a, _ in store.iter_subscriptions()] == ["B"]

    changes = await store.changes_since({"A": "0-0", "B": "0-0"})
    assert {c.app_id for c in changes["A"][0]} == {"A"}
    assert kinds(changes["B"][0]) == [(Kind.KIND_SUBSCRIPTION_ADDED, "s1")]

    await store.delete_app("A")
    assert await store.get_subscription("B", "s1") == got_b
    assert await store.device_nodes("A") == {}


async def test_subscription_filter_survives_as_struct(store: RedisSubscriptionStore) -> None:
    sub = make_sub("f")
    flt = Struct()
    flt.update({"status": {"in": ["todo", "doing"]}})
    sub.filter.CopyFrom(flt)
    await store.add_subscription("app1", sub)
    (_, got), *_ = [x async for x in store.iter_subscriptions("app1")]
    assert got.filter == flt


async def test_acknowledged_positions_only_move_forward(store: RedisSubscriptionStore) -> None:
    assert await store.acked_position("app1", "d1") == ""
    assert await store.ack_position("app1", "d1", "ep1", 10) == "ep1.10"
    assert await store.ack_position("app1", "d1", "ep1", 7) == "ep1.10"  # older: ignored
    assert await store.ack_position("app1", "d1", "ep1", 12) == "ep1.12"
    assert await store.acked_position("app1", "d1") == "ep1.12"
    # Another epoch (the history was reset) replaces it.
    assert await store.ack_position("app1", "d1", "ep2", 3) == "ep2.3"
    assert await store.acked_position("app1", "d2") == ""
    assert await store.acked_position("app2", "d1") == ""


async def test_transport_nodes_list_leases_and_connections(store: RedisSubscriptionStore) -> None:
    assert await store.transport_nodes() == []
    await store.renew_node_lease("n-alive", 30)
    await store.renew_node_lease("n-dying", 0.2)
    await store.device_connected("app1", "d1", "n-alive", "c1")
    await store.device_connected("app1", "d2", "n-alive", "c2")
    await store.device_connected("app2", "d3", "n-alive", "c3")
    await store.device_connected("app1", "d1", "n-dying", "c4")
    await asyncio.sleep(0.4)  # the dying node's lease lapses (no assertion on time)

    nodes = {n.node: n for n in await store.transport_nodes()}
    assert sorted(nodes) == ["n-alive", "n-dying"]
    assert nodes["n-alive"].alive is True
    assert nodes["n-dying"].alive is False
    assert [(c.app_id, c.connection_id, c.device_id) for c in nodes["n-alive"].connections] == [
        ("app1", "c1", "d1"),
        ("app1", "c2", "d2"),
        ("app2", "c3", "d3"),
    ]
    only_app2 = {n.node: n.connections for n in await store.transport_nodes("app2")}
    assert [(c.connection_id, c.device_id) for c in only_app2["n-alive"]] == [("c3", "d3")]
    assert only_app2["n-dying"] == ()

    await store.device_disconnected("app1", "d2", "n-alive", "c2")
    await store.reap_node("n-dying")
    nodes = {n.node: n for n in await store.transport_nodes("app1")}
    assert sorted(nodes) == ["n-alive"]
    assert [c.connection_id for c in nodes["n-alive"].connections] == ["c1"]
