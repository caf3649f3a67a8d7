"""The OpenSearch database adapter: `opensearch-py` wrapped in the engine port.

All engine logic (objects, operations, search, identities) is shared with the
Elasticsearch adapter in `_engine`; this module only connects the driver and
maps its exceptions (`EngineError` for an HTTP error answer, `EngineUnreachable`
for no answer). Verified against OpenSearch 2.19 (see the README).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nexxus.adapters.database._engine import SearchEngineDatabase
from nexxus.adapters.database._engine_client import (
    REQUEST_TIMEOUT,
    EngineClient,
    EngineError,
    EngineUnreachable,
)
from nexxus.core.config.settings import OpenSearchSettings

if TYPE_CHECKING:
    from opensearchpy import AsyncOpenSearch

__all__ = ["OpenSearchDatabase", "engine_exception"]


class _ExpectedAnswers(logging.Filter):
    """Drops opensearch-py's warning for a 404 or 409 answer: the adapter asks for
    documents that may not exist and creates documents that may exist (replays,
    uniqueness claims) and handles both; every other failed request still logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (record.levelno == logging.WARNING and len(args) >= 3 and args[2] in (404, 409))


_FILTER = _ExpectedAnswers()


def engine_exception(exc: Exception) -> Exception:
    """An opensearch-py exception as an engine exception (others unchanged)."""
    import opensearchpy

    if isinstance(exc, opensearchpy.ConnectionError | opensearchpy.ConnectionTimeout):
        return EngineUnreachable(str(exc))
    if isinstance(exc, opensearchpy.TransportError):
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        if status == 0:
            return EngineUnreachable(str(exc))
        return EngineError(status, str(exc.error), str(exc.info))
    return exc


class _OpenSearchClient(EngineClient):
    def __init__(self, client: AsyncOpenSearch) -> None:
        self._client = client

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        try:
            # An explicit timeout also keeps a `timeout` query parameter for the server.
            resp = await self._client.transport.perform_request(
                method, path, params=params, body=body, timeout=timeout or REQUEST_TIMEOUT
            )
        except Exception as exc:
            raise engine_exception(exc) from exc
        return resp if isinstance(resp, dict) else {}

    async def close(self) -> None:
        await self._client.close()


class OpenSearchDatabase(SearchEngineDatabase):
    """DatabaseAdapter + IdentityStore on OpenSearch."""

    name = "opensearch"
    engine = "opensearch"

    def __init__(self, settings: OpenSearchSettings, **_: object) -> None:
        super().__init__(index_prefix=settings.index_prefix, refresh=settings.refresh)
        self._settings = settings

    async def _connect(self) -> EngineClient:
        try:
            from opensearchpy import AsyncOpenSearch
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "the opensearch database adapter needs `pip install nexxus[opensearch]`"
            ) from exc
        driver_log = logging.getLogger("opensearch")
        if _FILTER not in driver_log.filters:
            driver_log.addFilter(_FILTER)
        s = self._settings
        auth = (s.username, s.password) if s.username else None
        client = AsyncOpenSearch(
            hosts=list(s.hosts), http_auth=auth, verify_certs=s.verify_certs, timeout=REQUEST_TIMEOUT
        )
        return _OpenSearchClient(client)
