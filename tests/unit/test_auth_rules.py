"""Access rules: every kind x caller kind x action, filter rules with $auth,
search scopes, the router gate and subscription scoping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nexxus.auth.caller import Caller
from nexxus.auth.rules import ReadScope, RouterReadGate, RuleSet, check_subscription
from nexxus.core.errors import InvalidArgument, PermissionDenied
from nexxus.core.filterquery import compile_matcher
from nexxus.core.models import StoredObject
from nexxus.core.schema import ModelSchema
from nexxus.v1.subscriptions_pb2 import Subscription

APP = "app1"
FIELDS = {
    "title": {"type": "string"},
    "assignee": {"type": "string", "filterable": True},
    "device": {"type": "string", "filterable": True},
    "status": {"type": "string", "filterable": True},
}
ASSIGNED = {"kind": "filter", "filter": {"assignee": {"eq": "$auth.user_id"}}}

OPERATOR = Caller(APP, "operator")
SERVER = Caller(APP, "server")
ALICE = Caller.user(APP, "alice", "d-alice")
BOB = Caller.user(APP, "bob", "d-bob")
ANON = Caller.anonymous(APP)
CALLERS = {"operator": OPERATOR, "server": SERVER, "owner": ALICE, "other": BOB, "anonymous": ANON}


def schema(access: dict[str, Any] | None = None) -> ModelSchema:
    return ModelSchema.from_dict({"name": "task", "fields": FIELDS, "access": access or {}})


def obj(owner: str = "alice", app: str = APP, **data: Any) -> StoredObject:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    body = {"title": "t", "assignee": "alice", "status": "todo", **data}
    return StoredObject(app, "task", "o1", owner, 1, body, now, now)


def uniform(kind: str) -> dict[str, Any]:
    rule = ASSIGNED if kind == "filter" else {"kind": kind}
    return {a: rule for a in ("read", "create", "update", "delete")}


# Expected outcome per rule kind for each caller, on an object owned by and
# assigned to alice. (create is separate: owner rules let any user create.)
MATRIX = {
    "public": {"operator": True, "server": True, "owner": True, "other": True, "anonymous": True},
    "authenticated": {"operator": True, "server": True, "owner": True, "other": True, "anonymous": False},
    "owner": {"operator": True, "server": True, "owner": True, "other": False, "anonymous": False},
    "filter": {"operator": True, "server": True, "owner": True, "other": False, "anonymous": False},
    "server": {"operator": True, "server": True, "owner": False, "other": False, "anonymous": False},
}
CASES = [(k, c, allowed) for k, row in MATRIX.items() for c, allowed in row.items()]


def allowed(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except PermissionDenied as err:
        reason = err.reason
    else:
        return True
    assert reason == "ACCESS_DENIED"
    return False


@pytest.mark.parametrize(("kind", "who", "expected"), CASES)
def test_read_update_delete_matrix(kind: str, who: str, expected: bool) -> None:
    rules = RuleSet.from_schema(schema(uniform(kind)))
    caller, o = CALLERS[who], obj()
    assert rules.can_read(caller, o) is expected
    assert allowed(rules.check_update, caller, o, dict(o.data)) is expected
    assert allowed(rules.check_delete, caller, o) is expected
    # the search scope admits exactly the objects can_read allows
    assert scope_admits(rules.read_scope(caller), o) is expected
    # bob's own task: for owner / filter rules, bob (not alice) may see it
    bobs = obj(owner="bob", assignee="bob")
    expected_bobs = who in ("operator", "server", "other") if kind in ("owner", "filter") else expected
    assert rules.can_read(caller, bobs) is expected_bobs
    assert scope_admits(rules.read_scope(caller), bobs) is expected_bobs


def scope_admits(scope: ReadScope, o: StoredObject) -> bool:
    kinds = [scope.allow_all, scope.deny_all, scope.owner_id is not None, scope.filter is not None]
    assert kinds.count(True) == 1
    if scope.owner_id is not None:
        return o.owner_id == scope.owner_id
    if scope.filter is not None:
        return compile_matcher(scope.filter)(o.data)
    return scope.allow_all


# create: owner and filter rules let any user create (owner: they become the
# owner; filter: the new data must match, here a task assigned to alice).
CREATE_CASES = [(k, c, ok or (k == "owner" and c == "other")) for k, c, ok in CASES]


@pytest.mark.parametrize(("kind", "who", "expected"), CREATE_CASES)
def test_create_matrix(kind: str, who: str, expected: bool) -> None:
    rules = RuleSet.from_schema(schema(uniform(kind)))
    data = {"title": "t", "assignee": "alice", "status": "todo"}
    assert allowed(rules.check_create, CALLERS[who], data) is expected


def test_filter_create_uses_the_new_data() -> None:
    rules = RuleSet.from_schema(schema({"create": ASSIGNED}))
    rules.check_create(BOB, {"title": "t", "assignee": "bob"})
    with pytest.raises(PermissionDenied):
        rules.check_create(BOB, {"title": "t", "assignee": "alice"})


def test_default_is_authenticated() -> None:
    rules = RuleSet.from_schema(schema())
    assert rules.kinds == dict.fromkeys(("read", "create", "update", "delete"), "authenticated")
    assert rules.can_read(BOB, obj())
    assert not rules.can_read(ANON, obj())


def test_read_scopes() -> None:
    assert RuleSet(schema(uniform("public"))).read_scope(ANON) == ReadScope(allow_all=True)
    assert RuleSet(schema(uniform("server"))).read_scope(ALICE) == ReadScope(deny_all=True)
    assert RuleSet(schema(uniform("server"))).read_scope(SERVER).allow_all
    owner = RuleSet(schema(uniform("owner")))
    assert owner.read_scope(BOB) == ReadScope(owner_id="bob")
    assert owner.read_scope(OPERATOR).allow_all
    assert owner.read_scope(ANON).deny_all
    assert owner.read_filter(BOB) == owner.read_scope(BOB)


def test_filter_rule_substitutes_auth_user_id() -> None:
    rules = RuleSet(schema({"read": ASSIGNED}))
    scope = rules.read_scope(BOB)
    assert scope.filter is not None
    assert not scope.allow_all
    assert not scope.deny_all
    assert scope.owner_id is None
    match = compile_matcher(scope.filter)
    assert match({"assignee": "bob"})
    assert not match({"assignee": "alice"})
    assert rules.can_read(BOB, obj(owner="alice", assignee="bob"))  # not the owner, but assigned
    assert not rules.can_read(ALICE, obj(owner="alice", assignee="bob"))


def test_filter_rule_with_device_id_denies_unbound_tokens() -> None:
    rules = RuleSet(schema({"read": {"kind": "filter", "filter": {"device": {"eq": "$auth.device_id"}}}}))
    assert rules.can_read(ALICE, obj(device="d-alice"))
    assert not rules.can_read(ALICE, obj(device="d-bob"))
    unbound = Caller.user(APP, "alice")
    assert not rules.can_read(unbound, obj(device=""))
    assert rules.read_scope(unbound).deny_all


def test_filter_update_checks_stored_and_result() -> None:
    rules = RuleSet(schema({"update": ASSIGNED}))
    mine = obj(assignee="alice")
    rules.check_update(ALICE, mine, {**mine.data, "status": "done"})
    with pytest.raises(PermissionDenied):  # may not move it out of the filter (hand it to bob)
        rules.check_update(ALICE, mine, {**mine.data, "assignee": "bob"})
    with pytest.raises(PermissionDenied):  # may not take someone else's task
        rules.check_update(ALICE, obj(assignee="bob"), {"title": "t", "assignee": "alice"})
    rules.check_update(SERVER, obj(assignee="bob"), {"title": "t", "assignee": "carol"})


def test_cross_application_objects_never_pass() -> None:
    rules = RuleSet(schema(uniform("public")))
    foreign = obj(app="other-app")
    assert not rules.can_read(ALICE, foreign)
    with pytest.raises(PermissionDenied):
        rules.check_delete(OPERATOR, foreign)


def test_bad_filter_rule_rejected_at_build() -> None:
    bad = schema({"read": {"kind": "filter", "filter": {"title": {"eq": "x"}}}})  # not filterable
    with pytest.raises(InvalidArgument) as err:
        RuleSet.from_schema(bad)
    assert err.value.field is not None
    assert err.value.field.startswith("access.read.filter")
    unknown_var = schema({"read": {"kind": "filter", "filter": {"assignee": {"eq": "$auth.email"}}}})
    with pytest.raises(InvalidArgument):
        RuleSet.from_schema(unknown_var)


def test_check_subscribe() -> None:
    RuleSet(schema(uniform("owner"))).check_subscribe(ALICE)
    with pytest.raises(PermissionDenied):
        RuleSet(schema(uniform("server"))).check_subscribe(ALICE)
    with pytest.raises(PermissionDenied):
        RuleSet(schema()).check_subscribe(ANON)


def test_subscription_scoping() -> None:
    check_subscription(ALICE, "alice")
    check_subscription(ALICE, "")  # not user-scoped
    check_subscription(SERVER, "bob")
    check_subscription(OPERATOR, "bob")
    for caller, user in [(ALICE, "bob"), (ANON, "alice"), (ANON, "x")]:
        with pytest.raises(PermissionDenied) as err:
            check_subscription(caller, user)
        assert err.value.reason == "ACCESS_DENIED"
        assert err.value.field == "user_id"


def gate_for(sch: ModelSchema) -> RouterReadGate:
    gate = RouterReadGate()
    gate.set_schema(APP, sch)
    return gate


def test_router_gate_matches_can_read_and_caches() -> None:
    gate = gate_for(schema({"read": ASSIGNED}))
    rules = gate.rules_for(APP, "task")
    assert rules is not None
    for caller in (ALICE, BOB, ANON, SERVER):
        for o in (obj(assignee="alice"), obj(assignee="bob"), obj(owner="bob", assignee="carol")):
            assert gate.allows_caller(APP, "task", caller, o.owner_id, o.data) is rules.can_read(caller, o)
    assert gate.allows_caller(APP, "task", BOB, "alice", {"assignee": "bob"})
    info = rules._compiled.cache_info()
    assert info.hits > 0
    assert info.currsize == 2  # one matcher per (user, device)
    other_app = Caller.user("other-app", "bob", "d-bob")
    assert not gate.allows_caller(APP, "task", other_app, "alice", {"assignee": "bob"})
    assert not gate.allows_caller("other-app", "task", other_app, "alice", {"assignee": "bob"})  # unknown
    assert not gate.allows_caller(APP, "note", BOB, "alice", {"assignee": "bob"})  # unknown model
    assert gate.set_schema(APP, schema({"read": ASSIGNED})) is rules  # unchanged schema: same cache
    assert gate.set_schema(APP, schema(uniform("owner"))) is not rules


def test_router_gate_router_protocol() -> None:
    gate = gate_for(schema(uniform("owner")))
    sub = Subscription(id="s1", model="task", device_id="d-bob", subscriber_user_id="bob")
    assert gate.allows(sub, "bob", "bob", {}, app_id=APP)
    assert not gate.allows(sub, "bob", "alice", {}, app_id=APP)
    assert not gate.allows(sub, "", "bob", {}, app_id=APP)  # anonymous subscriber
    privileged = Subscription(id="s2", model="task", device_id="d", privileged=True)
    assert gate.allows(privileged, "", "alice", {}, app_id=APP)
    # another application's rules never apply: app2's task is public, APP's owner-only
    gate.set_schema("app2", schema(uniform("public")))
    assert not gate.allows(sub, "bob", "alice", {}, app_id=APP)
    assert gate.allows(sub, "bob", "alice", {}, app_id="app2")


async def test_router_gate_prepare_loads_schemas() -> None:
    schemas = {(APP, "task"): schema(uniform("server"))}
    calls: list[tuple[str, str]] = []

    async def lookup(app_id: str, model: str) -> ModelSchema | None:
        calls.append((app_id, model))
        return schemas.get((app_id, model))

    gate = RouterReadGate(lookup)
    await gate.prepare(APP, "task")
    assert calls == [(APP, "task")]
    assert not gate.allows_caller(APP, "task", ALICE, "alice", {})
    assert gate.allows_caller(APP, "task", SERVER, "alice", {})
    schemas[(APP, "task")] = schema(uniform("owner"))
    await gate.prepare(APP, "task")
    assert gate.allows_caller(APP, "task", ALICE, "alice", {})
    del schemas[(APP, "task")]
    await gate.prepare(APP, "task")
    assert gate.rules_for(APP, "task") is None
    assert not gate.allows_caller(APP, "task", SERVER, "alice", {})
