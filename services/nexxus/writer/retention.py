"""Retention jobs of the writer: trim operation records, tombstones and expired
refresh tokens, every `retention_interval_seconds` (each writer copy runs them;
they are idempotent deletes by age)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from nexxus.core.config.settings import WriterSettings
from nexxus.core.errors import NexxusError
from nexxus.core.models import utcnow
from nexxus.core.ports import DatabaseAdapter, IdentityStore

log = logging.getLogger("nexxus.writer.retention")

__all__ = ["RetentionJob"]


class RetentionJob:
    def __init__(self, settings: WriterSettings, db: DatabaseAdapter, identity: IdentityStore | None) -> None:
        self._settings = settings
        self._db = db
        self._identity = identity
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass; returns how many rows it deleted."""
        s = self._settings
        now = utcnow()
        removed = await self._db.trim(
            operations_before=now - timedelta(seconds=s.operations_retention_seconds),
            tombstones_before=now - timedelta(seconds=s.tombstones_retention_seconds),
        )
        if self._identity is not None:
            removed += await self._identity.trim_refresh_tokens(
                now - timedelta(seconds=s.refresh_tokens_retention_seconds)
            )
        if removed:
            log.info("retention removed %d row(s)", removed)
        return removed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="writer-retention")

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except NexxusError as exc:
                log.warning("retention pass failed: %s", exc)
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(self._settings.retention_interval_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
