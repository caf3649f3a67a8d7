"""Model access rules: who may read, create, update and delete objects.

Each action of a model has one rule (`ModelSchema.rule`, default
"authenticated"). Operator and server callers pass every rule. Otherwise:

    kind           allows
    public         anyone, anonymous callers included
    authenticated  any user (not anonymous)
    owner          a user whose id is the object's owner_id; create: any user
                   (who becomes the owner)
    filter         a user for whom the rule's FilterQuery, with "$auth.user_id" /
                   "$auth.device_id" replaced by the caller's ids, matches the
                   object's data. create: the new data; update: BOTH the stored
                   object and the result of the patch (a user can neither edit
                   objects outside the filter nor move one out of it); delete:
                   the stored object
    server         operator and server callers only

Writes that are denied raise PermissionDenied (reason ACCESS_DENIED). Reads
return a bool (`can_read`), so the api can answer NOT_FOUND and not reveal
the object; searches get a `ReadScope` to AND into the query. Realtime pushes
use the same decision through `RouterReadGate`.

Rules are checked by the api against the object it read; the writer applies
the change later. For filter rules the api should send the version it checked
as the write's `expected_version` so a concurrent change cannot slip between
check and apply.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nexxus.auth.caller import Caller
from nexxus.core.errors import InvalidArgument, PermissionDenied
from nexxus.core.filterquery import AuthContext, FilterNode, compile_matcher, parse_filter
from nexxus.core.models import StoredObject
from nexxus.core.schema import ACCESS_ACTIONS, ModelSchema

if TYPE_CHECKING:
    from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = ["Action", "ReadScope", "RouterReadGate", "RuleSet", "SchemaLookup", "check_subscription"]

log = logging.getLogger("nexxus.auth")

SchemaLookup = Callable[[str, str], Awaitable[ModelSchema | None]]

Action = Literal["read", "create", "update", "delete"]
_Decision = Literal["allow", "deny", "owner", "filter"]
_Matcher = Callable[[Mapping[str, Any]], bool]

# Subscriber Callers RouterReadGate keeps (cleared when full).
_MAX_CALLERS = 65_536

# The ids a filter rule is validated with when the schema is stored.
_PROBE = AuthContext(user_id="probe-user", device_id="probe-device")


@dataclass(frozen=True, slots=True)
class ReadScope:
    """Which objects a caller may read, in a form every database can apply.

    Exactly one holds: `allow_all`; `deny_all` (answer an empty page);
    `owner_id` (the owner_id column must equal it); `filter` (AND it into the
    search filter)."""

    allow_all: bool = False
    deny_all: bool = False
    owner_id: str | None = None
    filter: FilterNode | None = None


ALL = ReadScope(allow_all=True)
NONE = ReadScope(deny_all=True)


def _denied(action: str, model: str) -> PermissionDenied:
    return PermissionDenied(
        f"the caller may not {action} {model} objects",
        reason="ACCESS_DENIED",
        details={"action": action, "model": model},
    )


class RuleSet:
    """The access rules of one model, with compiled filter-rule matchers cached
    per (action, user, device) (at most `max_cached` of them, LRU)."""

    def __init__(self, schema: ModelSchema, *, max_cached: int = 4096) -> None:
        self.schema = schema
        self.kinds: dict[str, str] = {
            a: str(schema.rule(a).get("kind", "authenticated")) for a in ACCESS_ACTIONS
        }
        self._filters: dict[str, Mapping[str, Any]] = {}
        for action in ACCESS_ACTIONS:
            if self.kinds[action] == "filter":
                raw = schema.rule(action).get("filter")
                self._filters[action] = raw if isinstance(raw, Mapping) else {}
                # Fails now (InvalidArgument naming access.<action>.filter) for a bad filter.
                self._parse(action, _PROBE)
        self._compiled = functools.lru_cache(maxsize=max_cached)(self._compile)

    @classmethod
    def from_schema(cls, schema: ModelSchema) -> RuleSet:
        """The rules of `schema`; InvalidArgument when a filter rule is not a valid
        FilterQuery for the model."""
        return cls(schema)

    # ----------------------------------------------------------------- writes

    def check_create(self, caller: Caller, data: Mapping[str, Any]) -> None:
        """PermissionDenied unless `caller` may create an object with `data`."""
        decision = self._decide("create", caller)
        if decision == "allow" or decision == "owner":
            return
        if decision == "filter" and self._matches("create", caller, data):
            return
        raise _denied("create", self.schema.name)

    def check_update(
        self, caller: Caller, obj: StoredObject, result: Mapping[str, Any] | None = None
    ) -> None:
        """PermissionDenied unless `caller` may update `obj`. For a filter rule both
        `obj.data` and `result` (the data after the patch, when given) must match."""
        allowed = self._may_write("update", caller, obj)
        if allowed and result is not None and self._decide("update", caller) == "filter":
            allowed = self._matches("update", caller, result)
        if not allowed:
            raise _denied("update", self.schema.name)

    def check_delete(self, caller: Caller, obj: StoredObject) -> None:
        if not self._may_write("delete", caller, obj):
            raise _denied("delete", self.schema.name)

    # ------------------------------------------------------------------ reads

    def can_read(self, caller: Caller, obj: StoredObject) -> bool:
        """Whether `caller` may see `obj` (answer NOT_FOUND when not)."""
        return obj.app_id == caller.app_id and self.can_read_data(caller, obj.owner_id, obj.data)

    def can_read_data(self, caller: Caller, owner_id: str, data: Mapping[str, Any]) -> bool:
        """`can_read` for an object given as its owner and data (realtime events)."""
        decision = self._decide("read", caller)
        if decision == "allow":
            return True
        if decision == "owner":
            return owner_id == caller.user_id
        if decision == "filter":
            return self._matches("read", caller, data)
        return False

    def read_scope(self, caller: Caller) -> ReadScope:
        """What a search by `caller` may return."""
        decision = self._decide("read", caller)
        if decision == "allow":
            return ALL
        if decision == "owner":
            return ReadScope(owner_id=caller.user_id)
        if decision == "filter":
            node = self._compiled("read", caller.user_id, caller.device_id)[0]
            return NONE if node is None else ReadScope(filter=node)
        return NONE

    read_filter = read_scope

    def check_subscription(self, caller: Caller, requested_user_id: str) -> None:
        """The module-level `check_subscription` (user-scoped channels)."""
        check_subscription(caller, requested_user_id)

    def check_subscribe(self, caller: Caller) -> None:
        """PermissionDenied when `caller` can read no object of the model at all."""
        if self.read_scope(caller).deny_all:
            raise _denied("read", self.schema.name)

    # -------------------------------------------------------------- internals

    def _decide(self, action: str, caller: Caller) -> _Decision:
        kind = self.kinds[action]
        if caller.is_privileged or kind == "public":
            return "allow"
        if kind == "server" or not caller.is_user:
            return "deny"
        if kind == "authenticated":
            return "allow"
        if kind == "owner":
            return "owner"
        if kind == "filter":
            return "filter"
        return "deny"  # unknown kinds never allow

    def _may_write(self, action: str, caller: Caller, obj: StoredObject) -> bool:
        if obj.app_id != caller.app_id:
            return False
        decision = self._decide(action, caller)
        if decision == "owner":
            return obj.owner_id == caller.user_id
        if decision == "filter":
            return self._matches(action, caller, obj.data)
        return decision == "allow"

    def _matches(self, action: str, caller: Caller, data: Mapping[str, Any]) -> bool:
        return self._compiled(action, caller.user_id, caller.device_id)[1](data)

    def _parse(self, action: str, auth: AuthContext) -> FilterNode:
        return parse_filter(self._filters[action], self.schema, path=f"access.{action}.filter", auth=auth)

    def _compile(self, action: str, user_id: str, device_id: str) -> tuple[FilterNode | None, _Matcher]:
        """The rule's filter for this caller; (None, never) when it cannot apply,
        e.g. it names $auth.device_id and the caller's token is not device-bound
        (the filter itself was validated when the RuleSet was built)."""
        try:
            node = self._parse(action, AuthContext(user_id=user_id, device_id=device_id))
        except InvalidArgument:
            return None, _never
        return node, compile_matcher(node)


def _never(data: Mapping[str, Any]) -> bool:
    return False


def check_subscription(caller: Caller, requested_user_id: str) -> None:
    """A user-scoped subscription (`requested_user_id` set) is allowed only for
    the caller's own user id, unless the caller is privileged. "" means the
    subscription is not user-scoped: nothing to check here."""
    if not requested_user_id or caller.is_privileged:
        return
    if not caller.is_user or caller.user_id != requested_user_id:
        raise PermissionDenied(
            "a user-scoped subscription is only allowed for the caller's own user",
            reason="ACCESS_DENIED",
            field="user_id",
        )


class RouterReadGate:
    """The read rules of every (application, model), for realtime deliveries.

    Schemas are passed in (`set_schema`) or loaded by `prepare(app_id, model)`
    through `schema_lookup` (the router awaits it once per (app, model) per
    batch); the checks themselves are pure and cheap (no I/O): the rule decision
    plus, for filter rules, a matcher compiled once per (app, model, user,
    device) and cached. A changed schema replaces its RuleSet (and its cache).
    Unknown (app, model) pairs are denied (fail closed).
    """

    def __init__(self, schema_lookup: SchemaLookup | None = None, *, max_cached: int = 4096) -> None:
        self._lookup = schema_lookup
        self._max_cached = max_cached
        self._rules: dict[tuple[str, str], RuleSet] = {}
        # The Caller a subscription pushes as, per (app, user, device, privileged):
        # built once, not per delivered device (Callers are immutable).
        self._callers: dict[tuple[str, str, str, bool], Caller] = {}

    def set_schema(self, app_id: str, schema: ModelSchema) -> RuleSet:
        """Use `schema` for (app_id, schema.name); keeps the cached RuleSet when unchanged."""
        key = (app_id, schema.name)
        rules = self._rules.get(key)
        if rules is None or rules.schema != schema:
            rules = self._rules[key] = RuleSet(schema, max_cached=self._max_cached)
        return rules

    def drop(self, app_id: str, model: str | None = None) -> None:
        for key in [k for k in self._rules if k[0] == app_id and model in (None, k[1])]:
            del self._rules[key]

    def rules_for(self, app_id: str, model: str) -> RuleSet | None:
        return self._rules.get((app_id, model))

    async def prepare(self, app_id: str, model: str) -> None:
        """Load (or refresh) the schema of (app_id, model) through `schema_lookup`."""
        if self._lookup is None:
            return
        schema = await self._lookup(app_id, model)
        if schema is None:
            self.drop(app_id, model)
        else:
            self.set_schema(app_id, schema)

    def allows_caller(
        self, app_id: str, model: str, subscriber: Caller, obj_owner_id: str, data: Mapping[str, Any]
    ) -> bool:
        """Whether `subscriber` may receive this object of (app_id, model): the same
        decision as `RuleSet.can_read`."""
        rules = self._rules.get((app_id, model))
        return (
            rules is not None
            and subscriber.app_id == app_id
            and rules.can_read_data(subscriber, obj_owner_id, data)
        )

    def allows(
        self,
        sub: Subscription,
        sub_user_id: str,
        obj_owner_id: str,
        data: Mapping[str, Any],
        app_id: str,
    ) -> bool:
        """The router's `ReadGate.allows`: may the subscription's user receive it?"""
        rules = self._rules.get((app_id, sub.model))
        if rules is None:
            return False
        key = (app_id, sub_user_id, sub.device_id, sub.privileged)
        caller = self._callers.get(key)
        if caller is None:
            if len(self._callers) >= _MAX_CALLERS:
                self._callers.clear()
            caller = self._callers[key] = Caller.subscriber(
                app_id, sub_user_id, sub.device_id, privileged=sub.privileged
            )
        return rules.can_read_data(caller, obj_owner_id, data)
