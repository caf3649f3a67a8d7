"""Load and validate `Settings` from layered providers.

Layers, later wins: defaults < file (``config_file`` or ``NEXXUS_CONFIG``) <
environment (``NEXXUS_<SECTION>__<KEY>``) < CLI overrides
(``database.adapter=postgres``) < custom providers (``nexxus.config_providers``
entry points and `register_provider`, or the `providers` argument).

Mappings merge key by key; any other value (lists included) replaces the one
below. The merged tree is converted into the typed dataclasses (unknown keys,
types, string coercion) and checked (adapter names against the registry,
ports, URLs, ranges, log level). Every problem is reported in one
`ConfigError`, each with its full key and the source of the value::

    bus.nats.servers[1]: 'localhost' is not a nats/tls/ws/wss URL ... (from NEXXUS_BUS__NATS__SERVERS)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from nexxus.core.config.checks import check_settings
from nexxus.core.config.coerce import Problems, build_dataclass
from nexxus.core.config.dump import settings_to_dict
from nexxus.core.config.errors import ConfigError
from nexxus.core.config.providers import (
    CliProvider,
    ConfigProvider,
    EnvProvider,
    FileProvider,
    discover_providers,
)
from nexxus.core.config.settings import Settings

__all__ = ["CONFIG_ENV", "ConfigManager", "load_settings", "settings_to_dict"]

CONFIG_ENV = "NEXXUS_CONFIG"


class ConfigManager:
    """Layers the given providers in order (later wins) into a validated `Settings`."""

    def __init__(self, providers: Sequence[ConfigProvider]) -> None:
        self.providers = list(providers)

    def load(self) -> Settings:
        return self._build([(p, p.load()) for p in self.providers])

    async def load_async(self) -> Settings:
        """As `load`, awaiting each provider's `load_async` (remote secret stores)."""
        return self._build([(p, await p.load_async()) for p in self.providers])

    def _build(self, layers: Sequence[tuple[ConfigProvider, Mapping[str, Any]]]) -> Settings:
        merged: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for provider, data in layers:
            if not isinstance(data, Mapping):
                raise ConfigError(
                    f"config provider {provider.name!r} returned a {type(data).__name__}, not a mapping"
                )
            _merge(merged, data, provider, origins)
        problems: Problems = []
        settings = build_dataclass(Settings, merged, problems)
        if not problems:
            check_settings(settings, problems)
        if problems:
            raise ConfigError([(key, _with_origin(key, msg, origins)) for key, msg in problems])
        return settings


def _merge(
    into: dict[str, Any],
    data: Mapping[str, Any],
    provider: ConfigProvider,
    origins: dict[str, str],
    path: str = "",
) -> None:
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        current = into.get(key)
        if isinstance(value, Mapping):
            if not isinstance(current, dict):
                current = into[key] = {}
            _merge(current, value, provider, origins, sub)
        else:
            into[key] = value
            origins[sub] = provider.source_of(sub)


def _with_origin(key: str, message: str, origins: Mapping[str, str]) -> str:
    probe = key
    while probe:
        if probe in origins:
            return f"{message} (from {origins[probe]})"
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return message


def load_settings(
    *,
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
    providers: Sequence[ConfigProvider] | None = None,
) -> Settings:
    """The validated settings of this process.

    `env` defaults to ``os.environ``; `config_file` to ``$NEXXUS_CONFIG``.
    `providers` replaces the discovered custom providers (pass ``[]`` for none).
    Raises `ConfigError` naming every bad key.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    chain: list[ConfigProvider] = []
    path = config_file or environ.get(CONFIG_ENV) or None
    if path:
        chain.append(FileProvider(path))
    chain.append(EnvProvider(environ))
    if overrides:
        chain.append(CliProvider(overrides))
    chain.extend(discover_providers() if providers is None else providers)
    return ConfigManager(chain).load()
