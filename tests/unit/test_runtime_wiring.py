"""Each role builds only the adapters it uses (the router opens no database)."""

from __future__ import annotations

from pathlib import Path

from nexxus.core.config import Settings
from nexxus.runtime import Runtime, adapters_needed


def runtime(tmp_path: Path, *services: str) -> Runtime:
    settings = Settings()
    settings.data_dir = str(tmp_path)
    return Runtime(settings, services)


def test_router_builds_no_database(tmp_path: Path) -> None:
    rt = runtime(tmp_path, "router")
    assert rt.db is None
    assert rt.identity is not None
    assert rt.store is not None


def test_writer_builds_no_subscription_store(tmp_path: Path) -> None:
    rt = runtime(tmp_path, "writer")
    assert rt.store is None
    assert rt.db is not None
    assert rt.identity is not None


def test_a_process_builds_the_union_of_its_services(tmp_path: Path) -> None:
    rt = runtime(tmp_path, "router", "writer")
    assert rt.db is not None
    assert rt.store is not None
    everything = adapters_needed(["api", "writer", "router", "transport"])
    assert everything == {"database", "identity", "bus", "store"}
    assert adapters_needed(["router"]) == {"identity", "bus", "store"}
