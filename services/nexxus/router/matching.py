"""From one ModelEvent to the Deliveries of each transport node (pure code).

Kinds, per subscription (after the model's read rule, see `ReadGate`):

    CREATED  subscriptions matching `after`                     → CREATED
    DELETED  subscriptions matching `before`                    → DELETED
    UPDATED  matching before and after                          → UPDATED
             matching after only                                → ENTERED
             matching before only                               → LEFT

Whole-model and object subscriptions always match both sides, so they see
UPDATED; owner subscriptions see ENTERED / LEFT only if the owner changes; an
object that becomes unreadable to the subscriber is LEFT.

Per device, the same rule is applied to the union of its subscriptions: the
device saw the object before if any of its subscriptions matched before, and
sees it after if any matches after. So one device with an UPDATED and a LEFT
(or an ENTERED and a LEFT) from two subscriptions gets UPDATED: the object is
still on its screen. The target lists every subscription of the device that
matched either side.

An UPDATED event without `before` is treated as if before == after (never a
spurious ENTERED).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from nexxus.core.convert import struct_to_dict
from nexxus.router.index import ModelIndex, ObjectState, Predicate
from nexxus.v1.common_pb2 import Object
from nexxus.v1.events_pb2 import (
    EVENT_KIND_CREATED,
    EVENT_KIND_DELETED,
    EVENT_KIND_ENTERED,
    EVENT_KIND_LEFT,
    EVENT_KIND_UPDATED,
    EventKind,
)
from nexxus.v1.internal_pb2 import Delivery, DeliveryTarget, ModelEvent
from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = [
    "AllowAll",
    "DeviceMatch",
    "ReadGate",
    "build_deliveries",
    "device_kind",
    "encode_deliveries",
    "event_states",
    "match_devices",
    "position_field",
    "route_event",
    "route_event_bytes",
    "route_event_counted",
    "traceparent_field",
]

# seen before, seen after → kind (for UPDATED events)
_UPDATE_KINDS: dict[tuple[bool, bool], EventKind.ValueType] = {
    (True, True): EVENT_KIND_UPDATED,
    (False, True): EVENT_KIND_ENTERED,
    (True, False): EVENT_KIND_LEFT,
}


class ReadGate(Protocol):
    """The model's read rule, plugged in by `nexxus.auth`.

    `prepare` is awaited once per (app, model) per batch before `allows` is
    called for its events (load / refresh rules there); `allows` is then called
    synchronously per matched subscription and object side. Privileged
    subscriptions (created with the server key) bypass the gate.
    """

    def prepare(self, app_id: str, model: str) -> Awaitable[None]: ...

    def allows(
        self, sub: Subscription, sub_user_id: str, obj_owner_id: str, data: Mapping[str, Any], app_id: str
    ) -> bool: ...


class AllowAll:
    """The default gate: every matched subscription may read."""

    async def prepare(self, app_id: str, model: str) -> None:
        return None

    def allows(
        self, sub: Subscription, sub_user_id: str, obj_owner_id: str, data: Mapping[str, Any], app_id: str
    ) -> bool:
        return True


class DeviceMatch:
    """What one device gets from one event."""

    __slots__ = ("after", "before", "subscription_ids")

    def __init__(self) -> None:
        self.before = False
        self.after = False
        self.subscription_ids: list[str] = []

    def __repr__(self) -> str:
        return f"DeviceMatch(before={self.before}, after={self.after}, subs={self.subscription_ids})"


def _state(event: ModelEvent, obj: Object) -> ObjectState:
    return ObjectState(
        object_id=event.object_id or obj.id,
        owner_id=obj.owner_id or event.owner_id,
        data=struct_to_dict(obj.data),
    )


def event_states(event: ModelEvent) -> tuple[ObjectState | None, ObjectState | None]:
    """(before, after) as the matcher sees them; data converted once."""
    before = _state(event, event.before) if event.HasField("before") else None
    after = _state(event, event.after) if event.HasField("after") else None
    if event.kind == EVENT_KIND_UPDATED:
        if before is None:
            before = after
        elif after is None:
            after = before
    return before, after


def _visible(
    preds: Iterable[Predicate], state: ObjectState, gate: ReadGate | None, app_id: str
) -> Iterator[tuple[str, str]]:
    """(subscription id, device id) of the matched subscriptions the gate lets read."""
    for pred in preds:
        if gate is None:
            for _, sid, device in pred.members:
                yield sid, device
            continue
        owner, data = state.owner_id, state.data
        for sub, sid, device in pred.members:
            if sub.privileged or gate.allows(sub, sub.subscriber_user_id, owner, data, app_id):
                yield sid, device


def match_devices(
    index: ModelIndex,
    kind: EventKind.ValueType,
    before: ObjectState | None,
    after: ObjectState | None,
    gate: ReadGate | None = None,
    app_id: str = "",
) -> dict[str, DeviceMatch]:
    """device id → what it saw of the object before and after the change.

    For CREATED only `after` is looked at, for DELETED only `before`.
    """
    devices: dict[str, DeviceMatch] = {}
    get = devices.get
    use_before = before is not None and kind != EVENT_KIND_CREATED
    use_after = after is not None and kind != EVENT_KIND_DELETED
    if use_before:
        assert before is not None
        for sid, device in _visible(index.match(before), before, gate, app_id):
            dm = get(device)
            if dm is None:
                dm = devices[device] = DeviceMatch()
            dm.before = True
            dm.subscription_ids.append(sid)
    if use_after:
        assert after is not None
        for sid, device in _visible(index.match(after), after, gate, app_id):
            dm = get(device)
            if dm is None:
                dm = devices[device] = DeviceMatch()
                dm.after = True
                dm.subscription_ids.append(sid)
                continue
            dm.after = True
            if not dm.before or sid not in dm.subscription_ids:
                dm.subscription_ids.append(sid)
    return devices


def device_kind(kind: EventKind.ValueType, dm: DeviceMatch) -> EventKind.ValueType:
    if kind == EVENT_KIND_UPDATED:
        return _UPDATE_KINDS[(dm.before, dm.after)]
    return kind


def _group_by_node(
    kind: EventKind.ValueType,
    devices: Mapping[str, DeviceMatch],
    device_nodes: Mapping[str, Iterable[str]],
) -> dict[str, list[DeliveryTarget]]:
    per_node: dict[str, list[DeliveryTarget]] = {}
    for device_id in sorted(devices):
        nodes = device_nodes.get(device_id)
        if not nodes:
            continue
        dm = devices[device_id]
        target = DeliveryTarget(
            device_id=device_id, kind=device_kind(kind, dm), subscription_ids=sorted(dm.subscription_ids)
        )
        for node in nodes:
            per_node.setdefault(node, []).append(target)
    return per_node


def build_deliveries(
    event: ModelEvent,
    devices: Mapping[str, DeviceMatch],
    device_nodes: Mapping[str, Iterable[str]],
) -> list[Delivery]:
    """One Delivery per node holding at least one matched device (sorted by node;
    targets sorted by device id). Devices with no node are skipped."""
    per_node = _group_by_node(event.kind, devices, device_nodes)
    return [
        Delivery(app_id=event.app_id, node=node, event=event, targets=per_node[node])
        for node in sorted(per_node)
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_deliveries(
    event: ModelEvent,
    devices: Mapping[str, DeviceMatch],
    device_nodes: Mapping[str, Iterable[str]],
) -> list[tuple[str, bytes]]:
    """`build_deliveries`, serialized: (node, Delivery bytes). The event is
    serialized once and appended to each node's Delivery as its field 3
    (protobuf parsers merge fields in any order), instead of copied per node."""
    kind = event.kind
    per_node: dict[str, list[bytes]] = {}
    for device_id in sorted(devices):
        nodes = device_nodes.get(device_id)
        if not nodes:
            continue
        dm = devices[device_id]
        sids = dm.subscription_ids
        target = _target_field(
            device_id, device_kind(kind, dm), sids[0] if len(sids) == 1 else tuple(sorted(sids))
        )
        for node in nodes:
            per_node.setdefault(node, []).append(target)
    if not per_node:
        return []
    event_bytes = event.SerializeToString()
    event_field = _EVENT_TAG + _varint(len(event_bytes)) + event_bytes
    return [
        (
            node,
            Delivery(app_id=event.app_id, node=node).SerializeToString()
            + b"".join(per_node[node])
            + event_field,
        )
        for node in sorted(per_node)
    ]


# Delivery.event: field 3, wire type 2 (length-delimited).
_EVENT_TAG = bytes([3 << 3 | 2])
# Delivery.position: field 5, wire type 2.
_POSITION_TAG = bytes([5 << 3 | 2])


def position_field(position: str) -> bytes:
    """`Delivery.position`, serialized: append it to a serialized Delivery."""
    return _len_field(_POSITION_TAG, position)


_TRACEPARENT_TAG = bytes([6 << 3 | 2])


def traceparent_field(traceparent: str) -> bytes:
    """`Delivery.traceparent`, serialized: append it to a serialized Delivery."""
    return _len_field(_TRACEPARENT_TAG, traceparent)


# Delivery.targets (field 4) and DeliveryTarget's device_id (1), kind (2, varint), subscription_ids (3).
_TARGETS_TAG = bytes([4 << 3 | 2])
_DEVICE_TAG = bytes([1 << 3 | 2])
_KIND_TAG = bytes([2 << 3 | 0])
_SID_TAG = bytes([3 << 3 | 2])

# Encoded Delivery.targets fields, per (device, kind, subscription id(s)): a device
# matched by the same subscriptions gets the same bytes event after event.
_TARGET_CACHE: dict[tuple[str, int, str | tuple[str, ...]], bytes] = {}
_TARGET_CACHE_MAX = 65_536


def _len_field(tag: bytes, value: str) -> bytes:
    raw = value.encode()
    return tag + _varint(len(raw)) + raw


def _target_field(device_id: str, kind: EventKind.ValueType, sids: str | tuple[str, ...]) -> bytes:
    """One `Delivery.targets` entry, serialized exactly as protobuf would
    (fields in number order, proto3 defaults omitted)."""
    key = (device_id, int(kind), sids)
    cached = _TARGET_CACHE.get(key)
    if cached is not None:
        return cached
    body = _len_field(_DEVICE_TAG, device_id) if device_id else b""
    if kind:
        body += _KIND_TAG + _varint(int(kind))
    for sid in (sids,) if isinstance(sids, str) else sids:
        body += _len_field(_SID_TAG, sid)
    field = _TARGETS_TAG + _varint(len(body)) + body
    if len(_TARGET_CACHE) >= _TARGET_CACHE_MAX:
        _TARGET_CACHE.clear()
    _TARGET_CACHE[key] = field
    return field


def route_event(
    index: ModelIndex,
    event: ModelEvent,
    device_nodes: Mapping[str, Iterable[str]],
    gate: ReadGate | None = None,
) -> list[Delivery]:
    """Match one event and group the matched devices by node."""
    if event.kind not in (EVENT_KIND_CREATED, EVENT_KIND_UPDATED, EVENT_KIND_DELETED):
        return []
    before, after = event_states(event)
    devices = match_devices(index, event.kind, before, after, gate, event.app_id)
    if not devices:
        return []
    return build_deliveries(event, devices, device_nodes)


def route_event_bytes(
    index: ModelIndex,
    event: ModelEvent,
    device_nodes: Mapping[str, Iterable[str]],
    gate: ReadGate | None = None,
) -> list[tuple[str, bytes]]:
    """`route_event`, serialized for publishing: (node, Delivery bytes)."""
    return route_event_counted(index, event, device_nodes, gate)[0]


def route_event_counted(
    index: ModelIndex,
    event: ModelEvent,
    device_nodes: Mapping[str, Iterable[str]],
    gate: ReadGate | None = None,
) -> tuple[list[tuple[str, bytes]], int]:
    """`route_event_bytes` and how many devices matched (metrics)."""
    if event.kind not in (EVENT_KIND_CREATED, EVENT_KIND_UPDATED, EVENT_KIND_DELETED):
        return [], 0
    before, after = event_states(event)
    devices = match_devices(index, event.kind, before, after, gate, event.app_id)
    if not devices:
        return [], 0
    return encode_deliveries(event, devices, device_nodes), len(devices)
