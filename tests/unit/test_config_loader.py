from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from nexxus.core.config import (
    ConfigError,
    ConfigManager,
    ConfigProvider,
    EnvProvider,
    FileProvider,
    Settings,
    load_settings,
    settings_to_dict,
)


def load(**kwargs: Any) -> Settings:
    """load_settings isolated from the real environment and installed providers."""
    kwargs.setdefault("env", {})
    kwargs.setdefault("providers", [])
    return load_settings(**kwargs)


class DictProvider(ConfigProvider):
    name = "dict"

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def load(self) -> Mapping[str, Any]:
        return self.data


def test_defaults() -> None:
    assert load() == Settings()


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "nexxus.json"
    path.write_text(json.dumps({"database": {"adapter": "postgres", "postgres": {"max_pool": 3}}}))
    settings = load(config_file=str(path))
    assert settings.database.adapter == "postgres"
    assert settings.database.postgres.max_pool == 3
    assert settings.database.postgres.min_pool == 1


def test_toml_file_from_nexxus_config_env(tmp_path: Path) -> None:
    path = tmp_path / "nexxus.toml"
    path.write_text('node_id = "n1"\n[bus.nats]\nservers = ["nats://a:4222", "nats://b:4222"]\n')
    settings = load(env={"NEXXUS_CONFIG": str(path)})
    assert settings.node_id == "n1"
    assert settings.bus.nats.servers == ["nats://a:4222", "nats://b:4222"]


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "nexxus.yaml"
    path.write_text("api:\n  port: 6000\n")
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(ConfigError, match="PyYAML"):
            load(config_file=str(path))
    else:
        assert load(config_file=str(path)).api.port == 6000


def test_missing_file_and_bad_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(config_file=str(tmp_path / "absent.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load(config_file=str(bad))
    (tmp_path / "x.ini").write_text("")
    with pytest.raises(ConfigError, match="unknown format"):
        load(config_file=str(tmp_path / "x.ini"))


def test_env_nested_lists_and_top_level_keys() -> None:
    settings = load(
        env={
            "NEXXUS_DATABASE__ADAPTER": "postgres",
            "NEXXUS_BUS__NATS__SERVERS": "nats://a:4222, nats://b:4222",
            "NEXXUS_API__WRITE_WAIT_SECONDS": "2.5",
            "NEXXUS_OPERATOR_KEY": "op",
            "NEXXUS_AUTH__OIDC__GOOGLE__ISSUER": "https://accounts.google.com",
            # Not settings: ignored.
            "NEXXUS_CONFIG_UNRELATED": "x",
            "NEXXUS_TEST_POSTGRES_DSN": "postgresql://x",
            "PATH": "/bin",
        }
    )
    assert settings.database.adapter == "postgres"
    assert settings.bus.nats.servers == ["nats://a:4222", "nats://b:4222"]
    assert settings.api.write_wait_seconds == 2.5
    assert settings.operator_key == "op"
    assert settings.auth.oidc["google"].issuer == "https://accounts.google.com"


def test_env_section_name_alone_is_an_error() -> None:
    with pytest.raises(ConfigError, match="NEXXUS_LOGGING: logging is a section"):
        load(env={"NEXXUS_LOGGING": "debug"})


def test_layering_order(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"api": {"port": 1, "host": "file"}, "writer": {"batch_size": 1}, "node_id": "f"})
    )
    settings = load(
        config_file=str(path),
        env={"NEXXUS_API__PORT": "2", "NEXXUS_WRITER__BATCH_SIZE": "2"},
        overrides=["api.port=3"],
        providers=[DictProvider({"api": {"port": 4}})],
    )
    assert settings.api.port == 4  # custom provider > cli > env > file
    assert settings.writer.batch_size == 2  # env > file
    assert settings.api.host == "file"  # sections merge key by key
    assert settings.node_id == "f"


def test_cli_override_syntax() -> None:
    assert load(overrides=["database.adapter=postgres"]).database.adapter == "postgres"
    with pytest.raises(ConfigError, match="expected key=value"):
        load(overrides=["database.adapter"])


def test_unknown_key_names_full_key_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"NEXXUS_DATABASE__POSTGRES__MAXPOOL": "3"})
    assert info.value.field == "database.postgres.maxpool"
    assert "did you mean 'max_pool'" in str(info.value)
    assert "NEXXUS_DATABASE__POSTGRES__MAXPOOL" in str(info.value)


def test_wrong_type_from_file_is_not_coerced_from_int_to_str(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"node_id": 5, "api": {"port": "80x"}}))
    with pytest.raises(ConfigError) as info:
        load(config_file=str(path))
    assert [key for key, _ in info.value.problems] == ["node_id", "api.port"]
    assert "expected a string" in str(info.value)
    assert f"from {path}" in str(info.value)


def test_list_item_error_names_index() -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"NEXXUS_BUS__NATS__SERVERS": "nats://a:4222,localhost:4222"})
    message = str(info.value)
    assert message.startswith("bus.nats.servers[1]: 'localhost:4222' is not a nats")
    assert "NEXXUS_BUS__NATS__SERVERS" in message


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("api.port=70000", "api.port", "out of range 0..65535"),
        ("envoy.admin_port=-1", "envoy.admin_port", "out of range"),
        ("logging.level=verbose", "logging.level", "not one of DEBUG"),
        ("logging.format=xml", "logging.format", "not one of text, json"),
        ("logging.handler=nocolon", "logging.handler", "module:callable"),
        ("bus.nats.replicas=7", "bus.nats.replicas", "in 1..5"),
        ("writer.batch_size=0", "writer.batch_size", ">= 1"),
        ("database.postgres.dsn=mysql://x/y", "database.postgres.dsn", "postgresql"),
        ("store.redis.url=http://x", "store.redis.url", "redis"),
        ("database.elasticsearch.refresh=sometimes", "database.elasticsearch.refresh", "one of"),
        ("bus.nats.servers=", "bus.nats.servers", "at least one"),
    ],
)
def test_bad_values(override: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(overrides=[override])
    assert info.value.field == key
    assert fragment in str(info.value)


def test_unknown_adapter_lists_known_names() -> None:
    with pytest.raises(ConfigError) as info:
        load(overrides=["database.adapter=mongodb", "store.adapter=memcached"])
    message = str(info.value)
    assert "database.adapter: unknown adapter 'mongodb'" in message
    assert "elasticsearch, opensearch, postgres, sqlite" in message
    assert "store.adapter: unknown adapter 'memcached'" in message


def test_log_level_is_normalized() -> None:
    assert load(overrides=["logging.level=debug"]).logging.level == "DEBUG"


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load(overrides=["api.port=x", "router.batch_size=y", "nope=1"])
    assert {key for key, _ in info.value.problems} == {"api.port", "router.batch_size", "nope"}


def test_config_manager_is_the_seed_example(tmp_path: Path) -> None:
    """new ConfigManager([new FileConfigProvider(...), new EnvConfigProvider(),
    new AWSSecretsConfigProvider()])"""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"database": {"adapter": "postgres"}}))

    class SecretsProvider(ConfigProvider):
        name = "secrets"

        def load(self) -> Mapping[str, Any]:
            return {"database": {"postgres": {"dsn": "postgresql://u:pw@db/nexxus"}}}

    manager = ConfigManager(
        [FileProvider(path), EnvProvider({"NEXXUS_API__PORT": "7000"}), SecretsProvider()]
    )
    settings = manager.load()
    assert settings.database.adapter == "postgres"
    assert settings.api.port == 7000
    assert settings.database.postgres.dsn == "postgresql://u:pw@db/nexxus"


async def test_async_providers() -> None:
    class RemoteProvider(ConfigProvider):
        name = "remote"

        def load(self) -> Mapping[str, Any]:
            raise AssertionError("the async path must call load_async")

        async def load_async(self) -> Mapping[str, Any]:
            return {"node_id": "remote"}

    settings = await ConfigManager([RemoteProvider()]).load_async()
    assert settings.node_id == "remote"


def test_provider_returning_non_mapping() -> None:
    class Broken(ConfigProvider):
        def load(self) -> Any:
            return ["x"]

    with pytest.raises(ConfigError, match="returned a list"):
        load(providers=[Broken()])


def test_settings_to_dict_redacts_secrets() -> None:
    settings = load(
        env={
            "NEXXUS_OPERATOR_KEY": "op-secret",
            "NEXXUS_AUTH__SIGNING_KEY": "sign-secret-of-at-least-thirty-two-chars",
            "NEXXUS_DATABASE__POSTGRES__DSN": "postgresql://nexxus:pg-secret@db:5432/nexxus",
            "NEXXUS_STORE__REDIS__URL": "redis://:redis-secret@cache:6379/0",
            "NEXXUS_DATABASE__ELASTICSEARCH__API_KEY": "es-secret",
        }
    )
    data = settings_to_dict(settings)
    text = json.dumps(data)
    assert "secret" not in text
    assert data["operator_key"] == "***"
    assert data["database"]["postgres"]["dsn"] == "postgresql://nexxus:***@db:5432/nexxus"
    assert data["store"]["redis"]["url"] == "redis://:***@cache:6379/0"
    assert data["store"]["redis"]["key_prefix"] == "nxx"  # not a secret
    unredacted = settings_to_dict(settings, redact=False)
    assert unredacted["auth"]["signing_key"] == "sign-secret-of-at-least-thirty-two-chars"
    # Empty secrets stay empty (nothing to hide, and shows they are unset).
    assert settings_to_dict(load())["operator_key"] == ""


def test_short_signing_key_is_refused_by_validation() -> None:
    with pytest.raises(ConfigError, match=r"auth\.signing_key.*at least 32"):
        load_settings(env={"NEXXUS_AUTH__SIGNING_KEY": "x" * 27}, providers=[])
    assert load_settings(env={"NEXXUS_AUTH__SIGNING_KEY": "x" * 32}, providers=[]).auth.signing_key
