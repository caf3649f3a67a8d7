"""The router (the seed's "transport manager"): matches each ModelEvent against
the subscriptions of its (application, model) and publishes one Delivery per
transport node. See docs/router.md."""

from nexxus.router.index import ModelIndex, ObjectState, Predicate
from nexxus.router.matching import AllowAll, ReadGate, build_deliveries, match_devices, route_event
from nexxus.router.service import RouterService
from nexxus.router.state import AppState, SchemaLookup

__all__ = [
    "AllowAll",
    "AppState",
    "ModelIndex",
    "ObjectState",
    "Predicate",
    "ReadGate",
    "RouterService",
    "SchemaLookup",
    "build_deliveries",
    "match_devices",
    "route_event",
]
