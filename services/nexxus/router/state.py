"""The router's view of one application: match indexes per model, the device →
node map, and the change-log cursor they are exact up to."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from nexxus.core.convert import struct_to_dict
from nexxus.core.errors import NexxusError
from nexxus.core.filterquery import FilterNode, parse_filter
from nexxus.core.schema import ModelSchema
from nexxus.router.index import ModelIndex
from nexxus.v1.internal_pb2 import SubscriptionChange
from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = ["AppState", "SchemaLookup"]

log = logging.getLogger("nexxus.router")

SchemaLookup = Callable[[str, str], Awaitable[ModelSchema | None]]

_Change = SubscriptionChange


@dataclass(slots=True)
class AppState:
    app_id: str
    cursor: str = ""
    models: dict[str, ModelIndex] = field(default_factory=dict)
    # subscription id → model (removals name the id; the model is a hint).
    sub_models: dict[str, str] = field(default_factory=dict)
    # device id → the nodes holding its connections (sorted), as the store's
    # `device_nodes`: CONNECTED adds a node, DISCONNECTED (the node's last
    # connection of the device closed, or the node's lease expired) removes it.
    nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def index(self, model: str) -> ModelIndex | None:
        return self.models.get(model)

    def subscription_count(self) -> int:
        return len(self.sub_models)

    # ------------------------------------------------------------------ devices

    def set_device_nodes(self, device_nodes: Mapping[str, Iterable[str]]) -> None:
        self.nodes = {device: tuple(sorted(set(nodes))) for device, nodes in device_nodes.items() if nodes}

    def device_connected(self, device_id: str, node: str) -> None:
        if device_id and node:
            current = self.nodes.get(device_id, ())
            if node not in current:
                self.nodes[device_id] = tuple(sorted((*current, node)))

    def device_disconnected(self, device_id: str, node: str = "") -> None:
        """`node` no longer holds a connection of the device (no node: none does)."""
        current = self.nodes.get(device_id)
        if current is None:
            return
        remaining = tuple(n for n in current if node and n != node)
        if remaining:
            self.nodes[device_id] = remaining
        else:
            del self.nodes[device_id]

    # ------------------------------------------------------------------ subscriptions

    def remove_subscription(self, subscription_id: str) -> None:
        model = self.sub_models.pop(subscription_id, None)
        if model is None:
            return
        index = self.models.get(model)
        if index is not None:
            index.remove(subscription_id)
            if not len(index):
                del self.models[model]

    def add_parsed(self, sub: Subscription, node: FilterNode | None) -> None:
        self.remove_subscription(sub.id)
        index = self.models.get(sub.model)
        if index is None:
            index = self.models[sub.model] = ModelIndex()
        index.add(sub, node)
        self.sub_models[sub.id] = sub.model


class FilterParser:
    """Parses stored subscription filters with the model's schema (cached; a
    failed parse retries once with a fresh schema, in case it changed)."""

    def __init__(self, schema_lookup: SchemaLookup) -> None:
        self._lookup = schema_lookup
        self._schemas: dict[tuple[str, str], ModelSchema | None] = {}

    def forget(self, app_id: str) -> None:
        for key in [k for k in self._schemas if k[0] == app_id]:
            del self._schemas[key]

    async def _schema(self, app_id: str, model: str, fresh: bool) -> ModelSchema | None:
        key = (app_id, model)
        if fresh or key not in self._schemas:
            self._schemas[key] = await self._lookup(app_id, model)
        return self._schemas[key]

    async def parse(self, app_id: str, sub: Subscription) -> tuple[FilterNode | None] | None:
        """(node,) of a subscription's filter; (None,) without one; None when it
        cannot be parsed (logged; the subscription is skipped)."""
        if not sub.HasField("filter") or not sub.filter.fields:
            return (None,)
        raw = struct_to_dict(sub.filter)
        error: Exception | None = None
        for fresh in (False, True):
            schema = await self._schema(app_id, sub.model, fresh)
            if schema is None:
                error = LookupError(f"model {sub.model!r} has no schema")
                continue
            try:
                return (parse_filter(raw, schema),)
            except NexxusError as exc:
                error = exc
        log.warning(
            "skipping subscription %s of %s/%s: its filter does not parse: %s",
            sub.id,
            app_id,
            sub.model,
            error,
        )
        return None

    async def apply(self, state: AppState, sub: Subscription) -> None:
        parsed = await self.parse(state.app_id, sub)
        if parsed is None:
            state.remove_subscription(sub.id)
            return
        state.add_parsed(sub, parsed[0])

    async def apply_change(self, state: AppState, change: _Change) -> None:
        kind = change.kind
        if kind == _Change.KIND_SUBSCRIPTION_ADDED:
            await self.apply(state, change.subscription)
        elif kind == _Change.KIND_SUBSCRIPTION_REMOVED:
            state.remove_subscription(change.subscription_id or change.subscription.id)
        elif kind == _Change.KIND_DEVICE_CONNECTED:
            state.device_connected(change.device_id, change.node)
        elif kind == _Change.KIND_DEVICE_DISCONNECTED:
            state.device_disconnected(change.device_id, change.node)
