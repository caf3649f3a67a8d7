"""The plugin registry: named factories per group, from entry points
(``importlib.metadata``) plus programmatic registration.

* entry points, so an outside package such as ``nexxus-mongodb`` adds
  ``[project.entry-points."nexxus.database"] mongodb = ...``;
* `register_adapter(group, name, factory)`, for a launcher that composes its
  own objects (the seed's Extensibility section). A registered name wins over
  an entry point of the same name.

Groups: ``nexxus.database``, ``nexxus.bus``, ``nexxus.store``,
``nexxus.transports``, ``nexxus.config_providers``, ``nexxus.workers``.

This module belongs to the core (it imports nothing above it), so the
configuration can check adapter names and load custom config providers
without depending on the adapters package; `nexxus.adapters.registry` turns
`Settings` into adapters with it.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from typing import Any, Final

from nexxus.core.config.errors import ConfigError

DATABASE: Final = "nexxus.database"
BUS: Final = "nexxus.bus"
STORE: Final = "nexxus.store"
TRANSPORTS: Final = "nexxus.transports"
CONFIG_PROVIDERS: Final = "nexxus.config_providers"
WORKERS: Final = "nexxus.workers"
GROUPS: Final = (DATABASE, BUS, STORE, TRANSPORTS, CONFIG_PROVIDERS, WORKERS)

# Top-level module of a driver -> the extra of this package that installs it.
DRIVER_EXTRAS: Final[dict[str, str]] = {
    "asyncpg": "postgres",
    "elasticsearch": "elasticsearch",
    "elastic_transport": "elasticsearch",
    "opensearchpy": "opensearch",
}

Factory = Callable[..., Any]

_registered: dict[str, dict[str, Factory]] = {group: {} for group in GROUPS}


class AdapterError(ConfigError):
    """An adapter cannot be found or loaded."""

    default_reason = "ADAPTER_UNAVAILABLE"


class UnknownAdapter(AdapterError):
    """No adapter of that name in the group; the message lists the known names."""

    default_reason = "UNKNOWN_ADAPTER"


class MissingDriver(AdapterError):
    """The adapter's module needs a driver that is not installed; `install` says how."""

    default_reason = "MISSING_DRIVER"

    def __init__(self, message: str, *, module: str, install: str) -> None:
        super().__init__(message)
        self.module = module
        self.install = install


def _check_group(group: str) -> None:
    if group not in _registered:
        raise ValueError(f"unknown adapter group {group!r}; groups: {', '.join(GROUPS)}")


def _entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        # The first distribution on sys.path wins, as for imports.
        found.setdefault(ep.name, ep)
    return found


def register_adapter(group: str, name: str, factory: Factory) -> None:
    """Register `factory` (a class or callable) as adapter `name` of `group`.

    It shadows an entry point of the same name.
    """
    _check_group(group)
    if not name or not callable(factory):
        raise ValueError("register_adapter needs a name and a callable factory")
    _registered[group][name] = factory


def unregister_adapter(group: str, name: str) -> None:
    """Forget a programmatically registered adapter (entry points stay)."""
    _check_group(group)
    _registered[group].pop(name, None)


def known_adapters(group: str) -> list[str]:
    """Every adapter name of `group`, registered or from entry points, sorted."""
    _check_group(group)
    return sorted(set(_registered[group]) | set(_entry_points(group)))


def load_adapter(group: str, name: str) -> Factory:
    """The class or callable registered as `name` in `group`.

    Raises `UnknownAdapter` listing the known names, or `MissingDriver` naming
    the extra to install when the adapter's module needs a missing driver.
    """
    _check_group(group)
    if name in _registered[group]:
        return _registered[group][name]
    ep = _entry_points(group).get(name)
    if ep is None:
        known = ", ".join(known_adapters(group)) or "none"
        raise UnknownAdapter(f"no {group} adapter named {name!r} (known: {known})")
    try:
        loaded: Factory = ep.load()
    except ModuleNotFoundError as exc:
        raise _import_failure(group, ep, exc) from exc
    return loaded


def _import_failure(group: str, ep: importlib.metadata.EntryPoint, exc: ModuleNotFoundError) -> Exception:
    missing = exc.name or ""
    if not missing or ep.module == missing or ep.module.startswith(missing + "."):
        return AdapterError(
            f"{group} adapter {ep.name!r}: its module {ep.module!r} cannot be imported "
            f"(entry point {ep.value!r}; is the package installed?)"
        )
    top = missing.split(".")[0]
    dist = ep.dist.name if ep.dist is not None else None
    extra = DRIVER_EXTRAS.get(top) if dist in (None, "nexxus") else None
    if extra is None and ep.dist is not None:
        extra = _extra_requiring(ep.dist, top)
    install = f"pip install '{dist or 'nexxus'}[{extra}]'" if extra else f"pip install {top}"
    return MissingDriver(
        f"{group} adapter {ep.name!r} needs the {top!r} module, which is not installed: {install}",
        module=top,
        install=install,
    )


_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _extra_requiring(dist: importlib.metadata.Distribution, module: str) -> str | None:
    """The extra of `dist` whose requirement is named like `module`, if any."""
    wanted = _normalize(module)
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        req_name = re.split(r"[\s\[<>=!~;(]", spec.strip(), maxsplit=1)[0]
        found = _EXTRA_MARKER.search(marker)
        if found and _normalize(req_name) == wanted:
            return found.group(1)
    return None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
