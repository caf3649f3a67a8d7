"""Creating and removing subscriptions (the seed's channels), shared by the
api's SubscriptionService and the transport's inline / SSE / WebSocket
subscribes. It sits below both (it needs only the schemas, the subscription
store and, for snapshots, the database), so neither service imports the other."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import struct_pb2

from nexxus.auth.caller import Caller
from nexxus.auth.rules import RuleSet
from nexxus.core import limits
from nexxus.core.convert import dict_to_struct, stored_to_proto, struct_to_dict
from nexxus.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from nexxus.core.filterquery import And, FilterNode, compile_matcher, filter_to_dict, parse_filter
from nexxus.core.ids import is_valid_id, new_id
from nexxus.core.models import SortKey
from nexxus.core.pages import search_page
from nexxus.core.ports import DatabaseAdapter, SubscriptionStore
from nexxus.core.schema_registry import SchemaRegistry
from nexxus.v1.common_pb2 import Object
from nexxus.v1.subscriptions_pb2 import CreateSubscriptionRequest, Subscription

# Snapshots list objects by id: a stable order across pages.
_SNAPSHOT_SORT = (SortKey(field="id", descending=False),)

MAX_SUBSCRIPTIONS_PER_DEVICE = 1000


class SubscriptionManager:
    def __init__(self, schemas: SchemaRegistry, store: SubscriptionStore, db: DatabaseAdapter) -> None:
        self.schemas = schemas
        self.store = store
        self.db = db

    @staticmethod
    def _device_of(caller: Caller) -> str:
        if not caller.device_id:
            raise FailedPrecondition(
                "subscriptions belong to a device: use an access token bound to a device "
                "(RegisterDevice, or Login with device_id)",
                reason="DEVICE_REQUIRED",
            )
        return caller.device_id

    @staticmethod
    def _object_id(request: CreateSubscriptionRequest) -> str:
        """`object_id`, or the seed's alias `model_id` (never silently dropped)."""
        if request.model_id and request.object_id and request.model_id != request.object_id:
            raise InvalidArgument(
                "model_id is the seed's name of object_id: give one of them, or the same id", field="model_id"
            )
        return request.object_id or request.model_id

    async def create(self, caller: Caller, request: CreateSubscriptionRequest) -> Subscription:
        device_id = self._device_of(caller)
        app_id = caller.app_id
        schema = await self.schemas.require(app_id, request.model)
        rules = RuleSet.from_schema(schema)
        if request.user_id:
            rules.check_subscription(caller, request.user_id)
        object_id = self._object_id(request)
        if object_id and not is_valid_id(object_id):
            raise InvalidArgument("object_id is not a valid object id", field="object_id")
        canonical_filter: struct_pb2.Struct | None = None
        if request.HasField("filter"):  # `{}` is an error (docs/filterquery.md), not "everything"
            node = parse_filter(
                struct_to_dict(request.filter), schema, path="filter", auth=caller.auth_context()
            )
            canonical_filter = dict_to_struct(filter_to_dict(node))
        existing = await self.store.list_device_subscriptions(app_id, device_id)
        if len(existing) >= MAX_SUBSCRIPTIONS_PER_DEVICE:
            raise ResourceExhausted(
                f"a device may hold at most {MAX_SUBSCRIPTIONS_PER_DEVICE} subscriptions",
                reason="TOO_MANY_SUBSCRIPTIONS",
            )
        if caller.kind == "anonymous" and request.persistent:
            raise InvalidArgument(
                "anonymous subscriptions live only as long as their connection", field="persistent"
            )
        sub = Subscription(
            id=new_id(),
            model=request.model,
            user_id=request.user_id,
            object_id=object_id,
            device_id=device_id,
            persistent=request.persistent,
            subscriber_user_id=caller.user_id,
            privileged=caller.is_privileged,
        )
        if canonical_filter is not None:
            sub.filter.CopyFrom(canonical_filter)
        sub.create_time.FromDatetime(datetime.now(UTC))
        await self.store.add_subscription(app_id, sub)
        return sub

    async def snapshot(
        self, app_id: str, sub: Subscription, page_size: int, page_token: str
    ) -> tuple[list[Object], str]:
        """One page of the objects `sub` matches now, as its subscriber may read
        them (the same rules as its realtime pushes); ("", …) ends the pages.
        The search a client would do: filter, owner, object id, read rule."""
        schema = await self.schemas.require(app_id, sub.model)
        rules = RuleSet.from_schema(schema)
        caller = Caller.subscriber(app_id, sub.subscriber_user_id, sub.device_id, privileged=sub.privileged)
        node: FilterNode | None = None
        if sub.HasField("filter") and sub.filter.fields:
            node = parse_filter(struct_to_dict(sub.filter), schema, path="filter")
        scope = rules.read_scope(caller)
        if scope.deny_all:
            return [], ""
        if sub.object_id:
            obj = await self.db.get_object(app_id, sub.model, sub.object_id)
            if (
                obj is None
                or page_token
                or (sub.user_id and obj.owner_id != sub.user_id)
                or (node is not None and not compile_matcher(node)(obj.data))
                or not rules.can_read(caller, obj)
            ):
                return [], ""
            return [stored_to_proto(obj)], ""
        if scope.filter is not None:
            node = scope.filter if node is None else And((node, scope.filter))
        owner_id = sub.user_id or scope.owner_id
        if sub.user_id and scope.owner_id is not None and scope.owner_id != sub.user_id:
            return [], ""
        return await search_page(
            self.db,
            app_id,
            sub.model,
            node,
            _SNAPSHOT_SORT,
            page_size,
            page_token,
            budget=limits.current().page_bytes,
            owner_id=owner_id or None,
        )

    async def delete(self, caller: Caller, subscription_id: str) -> None:
        device_id = self._device_of(caller)
        sub = await self.store.get_subscription(caller.app_id, subscription_id)
        if sub is None or (sub.device_id != device_id and not caller.is_privileged):
            raise NotFound(
                "no such subscription on this device",
                field="subscription_id",
                reason="SUBSCRIPTION_NOT_FOUND",
            )
        await self.store.remove_subscription(caller.app_id, subscription_id)

    async def list(self, caller: Caller) -> list[Subscription]:
        device_id = self._device_of(caller)
        subs = await self.store.list_device_subscriptions(caller.app_id, device_id)
        return sorted(subs, key=lambda s: s.id)
