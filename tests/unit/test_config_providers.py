from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nexxus.core.config import (
    CliProvider,
    ConfigError,
    ConfigProvider,
    EnvProvider,
    discover_providers,
    load_settings,
    register_provider,
)
from nexxus.core.config.coerce import Problems, build_dataclass

FakeDist = Callable[..., Path]


class VaultProvider(ConfigProvider):
    name = "vault"

    def load(self) -> Mapping[str, Any]:
        return {"auth": {"signing_key": "from-vault-a-signing-key-of-32-chars"}}


def test_env_provider_builds_nested_strings() -> None:
    data = EnvProvider({"NEXXUS_BUS__NATS__REPLICAS": "3", "NEXXUS_NODE_ID": "n", "OTHER": "x"}).load()
    assert data == {"bus": {"nats": {"replicas": "3"}}, "node_id": "n"}


def test_env_provider_custom_prefix_and_empty_segment() -> None:
    assert EnvProvider({"APP_API__PORT": "1"}, prefix="APP_").load() == {"api": {"port": "1"}}
    with pytest.raises(ConfigError, match="empty key segment"):
        EnvProvider({"NEXXUS_API____PORT": "1"}).load()


def test_cli_provider_conflicting_paths() -> None:
    assert CliProvider(["a.b=1", "a.c=x=y"]).load() == {"a": {"b": "1", "c": "x=y"}}
    with pytest.raises(ConfigError, match="both as a value and a section"):
        CliProvider(["a=1", "a.b=2"]).load()


def test_registered_provider_is_applied_by_load_settings() -> None:
    register_provider("vault", VaultProvider)
    assert [type(p) for p in discover_providers()] == [VaultProvider]
    assert load_settings(env={}).auth.signing_key == "from-vault-a-signing-key-of-32-chars"
    # An explicit provider list replaces discovery.
    assert load_settings(env={}, providers=[]).auth.signing_key == ""


def test_entry_point_provider_is_discovered(fake_dist: FakeDist) -> None:
    fake_dist(
        "nexxus-vault",
        entry_points={"nexxus.config_providers": {"vault": "nexxus_vault_fake:Provider"}},
        modules={
            "nexxus_vault_fake": """
                from nexxus.core.config import ConfigProvider

                class Provider(ConfigProvider):
                    name = "vault"

                    def load(self):
                        return {"node_id": "from-entry-point"}
            """
        },
    )
    assert load_settings(env={}).node_id == "from-entry-point"


def test_builtin_entry_points_are_not_instantiated_as_custom() -> None:
    # pyproject registers FileProvider/EnvProvider under the group; discovery skips them.
    assert discover_providers() == []


def test_provider_factory_must_build_a_provider() -> None:
    register_provider("bad", lambda: object())  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigError, match="not a ConfigProvider"):
        discover_providers()


@dataclass
class Inner:
    flag: bool = False
    ratio: float = 1.0
    maybe: int | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    counts: list[int] = field(default_factory=list)
    named: dict[str, Inner] = field(default_factory=dict)


@pytest.mark.parametrize(
    ("raw", "flag"), [("true", True), ("1", True), ("FALSE", False), ("0", False), (True, True)]
)
def test_bool_coercion(raw: object, flag: bool) -> None:
    problems: Problems = []
    assert build_dataclass(Outer, {"inner": {"flag": raw}}, problems).inner.flag is flag
    assert problems == []


def test_coercion_and_errors() -> None:
    problems: Problems = []
    built = build_dataclass(
        Outer,
        {"inner": {"ratio": "0.5", "maybe": None}, "counts": "1, 2,3", "named": {"a": {"maybe": "4"}}},
        problems,
    )
    assert problems == []
    assert built == Outer(Inner(ratio=0.5), [1, 2, 3], {"a": Inner(maybe=4)})

    problems = []
    build_dataclass(
        Outer, {"inner": {"flag": "maybe", "ratio": True}, "counts": [1, "x"], "named": {"b": 3}}, problems
    )
    assert problems == [
        ("inner.flag", "expected a boolean (true/false/1/0), got 'maybe'"),
        ("inner.ratio", "expected a number, got True"),
        ("counts[1]", "expected an integer, got 'x'"),
        ("named.b", "expected a section (mapping), got 3"),
    ]
