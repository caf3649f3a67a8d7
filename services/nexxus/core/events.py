"""Building the public `Event` a device receives from an internal `ModelEvent`
(the transport pushes it; the api's event inspector shows it the same way)."""

from __future__ import annotations

from nexxus.v1 import events_pb2, internal_pb2

__all__ = ["build_event"]


def build_event(event: internal_pb2.ModelEvent, kind: events_pb2.EventKind.ValueType) -> events_pb2.Event:
    """The Event for one (model event, kind the device sees), without
    `subscription_ids` (set per target).

    `object` is the object after the change; for DELETED the object as it was;
    unset for LEFT (which carries no object data, nor the patch).
    """
    out = events_pb2.Event(
        event_id=event.event_id,
        operation_id=event.command_id,
        kind=kind,
        model=event.model,
        object_id=event.object_id,
        version=event.version,
    )
    if kind == events_pb2.EVENT_KIND_DELETED:
        if event.HasField("before"):
            out.object.CopyFrom(event.before)
    elif kind != events_pb2.EVENT_KIND_LEFT:
        if event.HasField("after"):
            out.object.CopyFrom(event.after)
        # LEFT also omits the patch: its values may be what the device may no longer read.
        out.patch.extend(event.patch)
    if event.HasField("actor"):
        out.actor.CopyFrom(event.actor)
    if event.HasField("time"):
        out.time.CopyFrom(event.time)
    return out
