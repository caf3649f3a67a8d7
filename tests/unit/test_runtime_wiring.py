"""Each role builds only the adapters it uses (the router opens no database)."""

from __future__ import annotations

import os
import socket
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


def test_each_start_gets_its_own_node_id(tmp_path: Path) -> None:
    # A process restarted after a crash (same hostname, often the same pid in a
    # container) must not reuse the dead incarnation's node id and lease.
    ids = {runtime(tmp_path, "transport").settings.node_id for _ in range(20)}
    assert len(ids) == 20
    assert all(i.startswith(f"{socket.gethostname()}-{os.getpid()}-") for i in ids)
    configured = Settings()
    configured.data_dir, configured.node_id = str(tmp_path), "edge-1"
    assert Runtime(configured, ["transport"]).settings.node_id == "edge-1"
