from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nexxus.adapters.registry import (
    BUS,
    DATABASE,
    STORE,
    AdapterError,
    MissingDriver,
    UnknownAdapter,
    build_bus,
    build_database,
    build_identity_store,
    build_store,
    known_adapters,
    load_adapter,
    register_adapter,
    unregister_adapter,
)
from nexxus.core import plugins as registry
from nexxus.core.config import Settings
from nexxus.core.ports import DatabaseAdapter, IdentityStore, MessageBus, SubscriptionStore

FakeDist = Callable[..., Path]


def concrete(name: str, *bases: type) -> type:
    """A fake adapter class: records its constructor arguments; no abstract methods."""

    def __init__(self: Any, section: Any = None, **kwargs: Any) -> None:
        self.section = section
        self.kwargs = kwargs

    cls = type(name, bases, {"__init__": __init__})
    cls.__abstractmethods__ = frozenset()
    return cls


FakeSql = concrete("FakeSql", DatabaseAdapter, IdentityStore)
FakeSearch = concrete("FakeSearch", DatabaseAdapter)
FakeBus = concrete("FakeBus", MessageBus)
FakeStore = concrete("FakeStore", SubscriptionStore)


def test_register_known_and_load() -> None:
    register_adapter(DATABASE, "fake", FakeSql)
    assert "fake" in known_adapters(DATABASE)
    assert load_adapter(DATABASE, "fake") is FakeSql
    unregister_adapter(DATABASE, "fake")
    assert "fake" not in known_adapters(DATABASE)


def test_entry_points_of_this_package_are_known() -> None:
    assert {"sqlite", "postgres", "elasticsearch"} <= set(known_adapters(DATABASE))
    assert "nats" in known_adapters(BUS)
    assert "redis" in known_adapters(STORE)


def test_registration_shadows_an_entry_point() -> None:
    register_adapter(DATABASE, "sqlite", FakeSql)
    assert load_adapter(DATABASE, "sqlite") is FakeSql


def test_unknown_name_lists_known_names() -> None:
    register_adapter(BUS, "kafka", FakeBus)
    with pytest.raises(UnknownAdapter) as info:
        load_adapter(BUS, "rabbitmq")
    assert "no nexxus.bus adapter named 'rabbitmq'" in str(info.value)
    assert "kafka, nats" in str(info.value)


def test_unknown_group() -> None:
    with pytest.raises(ValueError, match=r"nexxus\.database"):
        known_adapters("nexxus.databse")


def test_entry_point_from_outside_package(fake_dist: FakeDist) -> None:
    fake_dist(
        "nexxus-mongodb",
        entry_points={"nexxus.database": {"mongodb": "nexxus_mongodb_fake:MongoDatabase"}},
        modules={"nexxus_mongodb_fake": "class MongoDatabase:\n    pass\n"},
    )
    assert "mongodb" in known_adapters(DATABASE)
    assert load_adapter(DATABASE, "mongodb").__name__ == "MongoDatabase"


def test_missing_driver_names_the_extra_of_the_distribution(fake_dist: FakeDist) -> None:
    fake_dist(
        "nexxus-mongodb",
        entry_points={"nexxus.database": {"mongodb": "nexxus_mongodb_driverless:MongoDatabase"}},
        modules={"nexxus_mongodb_driverless": "import motor_not_installed_xyz\n"},
        requires=['motor-not-installed-xyz>=3; extra == "mongo"'],
    )
    with pytest.raises(MissingDriver) as info:
        load_adapter(DATABASE, "mongodb")
    assert info.value.module == "motor_not_installed_xyz"
    assert info.value.install == "pip install 'nexxus-mongodb[mongo]'"
    assert "pip install 'nexxus-mongodb[mongo]'" in str(info.value)


def test_missing_driver_without_an_extra(fake_dist: FakeDist) -> None:
    fake_dist(
        "nexxus-kafka",
        entry_points={"nexxus.bus": {"kafka": "nexxus_kafka_fake:KafkaBus"}},
        modules={"nexxus_kafka_fake": "import aiokafka_not_installed_xyz\n"},
    )
    with pytest.raises(MissingDriver, match="pip install aiokafka_not_installed_xyz"):
        load_adapter(BUS, "kafka")


def test_missing_driver_of_this_package_names_our_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fake_pg_adapter_xyz.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'asyncpg'\", name='asyncpg')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint("postgres", "fake_pg_adapter_xyz:PostgresDatabase", DATABASE)
    monkeypatch.setattr(registry, "_entry_points", lambda group: {"postgres": ep})
    with pytest.raises(MissingDriver) as info:
        load_adapter(DATABASE, "postgres")
    assert info.value.install == "pip install 'nexxus[postgres]'"


def test_adapter_module_itself_missing(fake_dist: FakeDist) -> None:
    fake_dist("nexxus-ghost", entry_points={"nexxus.store": {"ghost": "nexxus_ghost_absent.store:Ghost"}})
    with pytest.raises(AdapterError, match=r"module 'nexxus_ghost_absent\.store' cannot be imported") as info:
        load_adapter(STORE, "ghost")
    assert not isinstance(info.value, MissingDriver)


def test_build_database_and_identity_store_share_the_sql_class() -> None:
    register_adapter(DATABASE, "postgres", FakeSql)
    settings = Settings(data_dir="/tmp/d")
    settings.database.adapter = "postgres"
    db = build_database(settings)
    identity = build_identity_store(settings)
    assert type(db) is FakeSql
    assert type(identity) is FakeSql
    assert db is not identity
    assert db.section is settings.database.postgres  # type: ignore[attr-defined]
    assert identity.section is settings.database.postgres  # type: ignore[attr-defined]
    assert db.kwargs == {"data_dir": "/tmp/d"}  # type: ignore[attr-defined]


def test_identity_store_falls_back_to_sqlite_for_search_only_adapters() -> None:
    register_adapter(DATABASE, "elasticsearch", FakeSearch)
    register_adapter(DATABASE, "sqlite", FakeSql)
    settings = Settings()
    settings.database.adapter = "elasticsearch"
    db = build_database(settings)
    identity = build_identity_store(settings)
    assert type(db) is FakeSearch
    assert db.section is settings.database.elasticsearch  # type: ignore[attr-defined]
    assert type(identity) is FakeSql
    assert identity.section is settings.database.sqlite  # type: ignore[attr-defined]


def test_build_bus_and_store_take_their_sections() -> None:
    register_adapter(BUS, "nats", FakeBus)
    register_adapter(STORE, "redis", FakeStore)
    settings = Settings()
    bus = build_bus(settings)
    store = build_store(settings)
    assert bus.section is settings.bus.nats  # type: ignore[attr-defined]
    assert store.section is settings.store.redis  # type: ignore[attr-defined]
    assert bus.kwargs == {}
    assert store.kwargs == {}


def test_builder_rejects_an_object_of_the_wrong_port() -> None:
    register_adapter(BUS, "nats", FakeStore)
    with pytest.raises(AdapterError, match="built a FakeStore, not a MessageBus"):
        build_bus(Settings())


def test_outside_adapter_without_a_section_gets_none() -> None:
    register_adapter(DATABASE, "mongodb", FakeSearch)
    settings = Settings()
    settings.database.adapter = "mongodb"
    assert build_database(settings).section is None  # type: ignore[attr-defined]
