"""Configuration providers: each returns a nested mapping of raw values.

Built in: `FileProvider` (JSON, TOML, or YAML when PyYAML is installed),
`EnvProvider` (``NEXXUS_<SECTION>__<KEY>``) and `CliProvider`
(``database.adapter=postgres``). Custom providers subclass `ConfigProvider`
and are found through the ``nexxus.config_providers`` entry-point group or
registered with `register_provider` (both end in the adapter registry).

The seed's ``new ConfigManager([new FileConfigProvider('./config.json'),
new EnvConfigProvider(), new AWSSecretsConfigProvider()])`` is::

    class AwsSecretsProvider(ConfigProvider):
        name = "aws-secrets"

        def load(self) -> Mapping[str, Any]:
            secret = boto3.client("secretsmanager").get_secret_value(SecretId="nexxus-config")
            return json.loads(secret["SecretString"])

    settings = ConfigManager([FileProvider("./config.json"), EnvProvider(), AwsSecretsProvider()]).load()

or, keeping the standard layers and adding the custom one on top:
``load_settings(providers=[AwsSecretsProvider()])``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nexxus.core.config.errors import ConfigError
from nexxus.core.config.settings import Settings

__all__ = [
    "BUILTIN_PROVIDERS",
    "CliProvider",
    "ConfigProvider",
    "EnvProvider",
    "FileProvider",
    "discover_providers",
    "register_provider",
]

ENV_PREFIX = "NEXXUS_"
# Names of the built-in providers in the entry-point group; discovery skips them.
BUILTIN_PROVIDERS = frozenset({"file", "env", "cli"})


class ConfigProvider(ABC):
    """A source of configuration: a nested mapping (sections are mappings)."""

    name: ClassVar[str] = "custom"

    @abstractmethod
    def load(self) -> Mapping[str, Any]:
        """The raw configuration of this layer."""

    async def load_async(self) -> Mapping[str, Any]:
        """Async variant (secret managers, remote stores); defaults to `load`."""
        return self.load()

    def source_of(self, key: str) -> str:
        """Where the value of `key` (a dotted path) came from, for error messages."""
        return self.name


class FileProvider(ConfigProvider):
    """A JSON, TOML or YAML file; the format comes from the extension."""

    name = "file"

    def __init__(self, path: str | os.PathLike[str], *, required: bool = True) -> None:
        self.path = Path(path)
        self.required = required

    def load(self) -> Mapping[str, Any]:
        if not self.path.exists():
            if self.required:
                raise ConfigError(f"config file {self.path} does not exist")
            return {}
        suffix = self.path.suffix.lower()
        try:
            text = self.path.read_text(encoding="utf-8")
            data = _parse(text, suffix, self.path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"config file {self.path}: {exc}") from exc
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {self.path}: the top level must be a mapping")
        return data

    def source_of(self, key: str) -> str:
        return str(self.path)


def _parse(text: str, suffix: str, path: Path) -> Any:
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        return tomllib.loads(text)
    if suffix in (".yaml", ".yml"):
        try:
            yaml = importlib.import_module("yaml")
        except ModuleNotFoundError:
            raise ValueError("YAML needs PyYAML: pip install pyyaml (or use JSON / TOML)") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc)) from exc
    raise ValueError(f"unknown format {suffix or '(no extension)'!r}; use .json, .toml, .yaml or .yml")


def _top_level_fields() -> dict[str, bool]:
    """Top-level Settings field name -> whether it is a section (a dataclass)."""
    defaults = Settings()
    return {f.name: dataclasses.is_dataclass(getattr(defaults, f.name)) for f in dataclasses.fields(Settings)}


class EnvProvider(ConfigProvider):
    """``NEXXUS_<SECTION>__<KEY>[__<KEY>]`` variables, and ``NEXXUS_<KEY>`` for
    top-level keys (``NEXXUS_OPERATOR_KEY``). Values stay strings; the loader
    coerces them (lists are comma-separated).

    Other ``NEXXUS_<NAME>`` variables without ``__`` that name no top-level
    setting (``NEXXUS_CONFIG``, ``NEXXUS_TEST_POSTGRES_DSN``...) are ignored.
    """

    name = "env"

    def __init__(self, env: Mapping[str, str] | None = None, *, prefix: str = ENV_PREFIX) -> None:
        self.env = os.environ if env is None else env
        self.prefix = prefix

    def load(self) -> Mapping[str, Any]:
        top = _top_level_fields()
        out: dict[str, Any] = {}
        for var, value in sorted(self.env.items()):
            if not var.startswith(self.prefix):
                continue
            rest = var[len(self.prefix) :].lower()
            parts = rest.split("__")
            if len(parts) == 1:
                if rest not in top:
                    continue
                if top[rest]:
                    raise ConfigError(f"{var}: {rest} is a section; set {var}__<KEY>", key=rest)
            if any(not p for p in parts):
                raise ConfigError(f"{var}: empty key segment", key=".".join(parts))
            _set_path(out, parts, value, var)
        return out

    def source_of(self, key: str) -> str:
        return self.prefix + "__".join(key.split(".")).upper()


class CliProvider(ConfigProvider):
    """``--set`` overrides: ``section.key=value`` (values are strings, coerced later)."""

    name = "cli"

    def __init__(self, overrides: Sequence[str]) -> None:
        self.overrides = list(overrides)

    def load(self) -> Mapping[str, Any]:
        out: dict[str, Any] = {}
        for item in self.overrides:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r}: expected key=value, e.g. database.adapter=postgres")
            parts = key.split(".")
            if any(not p for p in parts):
                raise ConfigError(f"override {item!r}: empty key segment", key=key)
            _set_path(out, parts, value, f"override {item!r}")
        return out

    def source_of(self, key: str) -> str:
        return f"--set {key}"


def _set_path(out: dict[str, Any], parts: Sequence[str], value: str, origin: str) -> None:
    node = out
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(parts[: i + 1])} is set both as a value and a section")
        node = child
    if isinstance(node.get(parts[-1]), dict):
        raise ConfigError(f"{origin}: {'.'.join(parts)} is set both as a value and a section")
    node[parts[-1]] = value


ProviderFactory = Callable[[], ConfigProvider]


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Register a custom provider (a class or a zero-argument callable) so that
    `load_settings` applies it on top of the standard layers."""
    from nexxus.core.plugins import CONFIG_PROVIDERS, register_adapter

    register_adapter(CONFIG_PROVIDERS, name, factory)


def discover_providers() -> list[ConfigProvider]:
    """Every custom provider, registered or from the ``nexxus.config_providers``
    entry points (built-ins skipped), instantiated with no arguments, by name."""
    from nexxus.core.plugins import CONFIG_PROVIDERS, known_adapters, load_adapter

    found: list[ConfigProvider] = []
    for name in known_adapters(CONFIG_PROVIDERS):
        if name in BUILTIN_PROVIDERS:
            continue
        provider = load_adapter(CONFIG_PROVIDERS, name)()
        if not isinstance(provider, ConfigProvider):
            raise ConfigError(
                f"config provider {name!r} built a {type(provider).__name__}, not a ConfigProvider"
            )
        found.append(provider)
    return found
