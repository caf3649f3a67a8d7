"""The explicit `build_*` switches that turn `Settings` into started-ready
adapters, over the plugin registry of `nexxus.core.plugins` (entry points plus
programmatic registration; its names are re-exported here).

Constructors: database adapters take ``(section, *, data_dir=...)`` where
`section` is ``settings.database.<adapter>``; bus adapters take
``settings.bus.<adapter>``; stores take ``settings.store.<adapter>``. An adapter
from an outside package with no section in `Settings` receives ``None`` and
reads its own configuration.

Identity store: the built-in adapters (SQLite, PostgreSQL, Elasticsearch,
OpenSearch) implement both `DatabaseAdapter` and `IdentityStore`;
`build_identity_store` builds a second instance of the same class, on the same
storage, so every process of a deployment sees the same identities. An outside
database adapter that is not an `IdentityStore` keeps identities in SQLite
(``settings.database.sqlite``): a file private to one process, fit only for a
single-process deployment.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from nexxus.core.plugins import (
    BUS,
    CONFIG_PROVIDERS,
    DATABASE,
    DRIVER_EXTRAS,
    GROUPS,
    STORE,
    TRANSPORTS,
    WORKERS,
    AdapterError,
    Factory,
    MissingDriver,
    UnknownAdapter,
    known_adapters,
    load_adapter,
    register_adapter,
    unregister_adapter,
)
from nexxus.core.ports import DatabaseAdapter, IdentityStore, MessageBus, SubscriptionStore

if TYPE_CHECKING:
    from nexxus.core.config.settings import Settings

__all__ = [
    "BUS",
    "CONFIG_PROVIDERS",
    "DATABASE",
    "DRIVER_EXTRAS",
    "GROUPS",
    "STORE",
    "TRANSPORTS",
    "WORKERS",
    "AdapterError",
    "MissingDriver",
    "UnknownAdapter",
    "build_bus",
    "build_database",
    "build_identity_store",
    "build_store",
    "known_adapters",
    "load_adapter",
    "register_adapter",
    "unregister_adapter",
]

# Identity falls back here when the database adapter is not an IdentityStore.
IDENTITY_FALLBACK: Final = "sqlite"

_log = logging.getLogger("nexxus.adapters")


# --------------------------------------------------------------------------- builders


def _section(part: object, name: str) -> Any:
    return getattr(part, name, None)


def _wrong_type(obj: object, port: str, group: str, name: str) -> AdapterError:
    return AdapterError(f"{group} adapter {name!r} built a {type(obj).__name__}, not a {port}")


def _keeps_identities(factory: Factory) -> bool:
    return not isinstance(factory, type) or issubclass(factory, IdentityStore)


def build_database(settings: Settings) -> DatabaseAdapter:
    """The configured `DatabaseAdapter` (``settings.database.adapter``), not started."""
    name = settings.database.adapter
    db = load_adapter(DATABASE, name)(_section(settings.database, name), data_dir=settings.data_dir)
    if not isinstance(db, DatabaseAdapter):
        raise _wrong_type(db, "DatabaseAdapter", DATABASE, name)
    _log.info("database adapter: %s", name)
    return db


def build_identity_store(settings: Settings) -> IdentityStore:
    """The `IdentityStore`: the database adapter's class when it implements the
    port (every built-in adapter), otherwise SQLite (``settings.database.sqlite``)."""
    name = settings.database.adapter
    factory = load_adapter(DATABASE, name)
    if not _keeps_identities(factory):
        _log.info("database adapter %s keeps no identities; identity store: %s", name, IDENTITY_FALLBACK)
        name = IDENTITY_FALLBACK
        factory = load_adapter(DATABASE, name)
    store = factory(_section(settings.database, name), data_dir=settings.data_dir)
    if not isinstance(store, IdentityStore):
        raise _wrong_type(store, "IdentityStore", DATABASE, name)
    return store


def build_bus(settings: Settings) -> MessageBus:
    """The configured `MessageBus` (``settings.bus.adapter``), not started."""
    name = settings.bus.adapter
    bus = load_adapter(BUS, name)(_section(settings.bus, name))
    if not isinstance(bus, MessageBus):
        raise _wrong_type(bus, "MessageBus", BUS, name)
    _log.info("bus adapter: %s", name)
    return bus


def build_store(settings: Settings) -> SubscriptionStore:
    """The configured `SubscriptionStore` (``settings.store.adapter``), not started."""
    name = settings.store.adapter
    store = load_adapter(STORE, name)(_section(settings.store, name))
    if not isinstance(store, SubscriptionStore):
        raise _wrong_type(store, "SubscriptionStore", STORE, name)
    _log.info("subscription store adapter: %s", name)
    return store
