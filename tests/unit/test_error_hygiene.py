"""What a client reads of a failure is a sentence and a reason; driver text, hosts
and subjects go to the operator's log only (`NexxusError.internal`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nexxus.adapters.database.sqlite import SqliteDatabase
from nexxus.adapters.store.redis import RedisSubscriptionStore
from nexxus.core.config.settings import RedisSettings, SqliteSettings
from nexxus.core.errors import NexxusError, Unavailable
from nexxus.devserver.process import free_port
from nexxus.rpc.errors import error_to_status, error_to_stream_error


def _client_view(err: NexxusError) -> str:
    status = error_to_status(err)
    return f"{status.details} {error_to_stream_error(err).message}"


async def test_unreachable_store_hides_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    store = RedisSubscriptionStore(RedisSettings(url=f"redis://127.0.0.1:{port}/0", key_prefix="hyg"))
    with pytest.raises(Unavailable) as raised:
        await store.start()
    err = raised.value
    assert err.reason == "STORE_UNAVAILABLE"
    assert str(port) in err.internal
    with caplog.at_level(logging.WARNING, logger="nexxus.rpc"):
        seen = _client_view(err)
    for secret in (str(port), "Error", "redis"):
        assert secret not in seen
    assert str(port) in caplog.text  # the operator still learns what happened


async def test_database_failure_hides_the_driver_text(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "nexxus.db").write_bytes(b"this is not a database file" * 100)
    db = SqliteDatabase(SqliteSettings(path="db/nexxus.db"), data_dir=str(tmp_path))
    with pytest.raises(NexxusError) as raised:
        await db.start()
    err = raised.value
    assert "not a database" in err.internal
    seen = _client_view(err)
    for secret in ("sqlite", "not a database"):
        assert secret not in seen.lower()
