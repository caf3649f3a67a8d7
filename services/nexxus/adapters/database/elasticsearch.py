"""The Elasticsearch database adapter (the seed's built-in database):
`elasticsearch-py` wrapped in the engine port.

All engine logic (objects, operations, search, identities) is shared with the
OpenSearch adapter in `_engine`; this module only connects the driver and maps
its exceptions. The `elasticsearch` client sends compatibility headers of its
own major version and refuses servers that are not Elasticsearch: use it with
an Elasticsearch server of that major version (OpenSearch: the `opensearch`
adapter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nexxus.adapters.database._engine import SearchEngineDatabase
from nexxus.adapters.database._engine_client import (
    REQUEST_TIMEOUT,
    EngineClient,
    EngineError,
    EngineUnreachable,
    translate_engine_error,
)
from nexxus.adapters.database._engine_docs import (
    decode_page_token,
    document_object,
    document_operation,
    encode_page_token,
    object_document,
    object_index,
    operation_document,
    sort_spec,
    tombstone_document,
)
from nexxus.core.config.settings import ElasticsearchSettings
from nexxus.core.errors import NexxusError

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

__all__ = [
    "ElasticsearchDatabase",
    "decode_page_token",
    "document_object",
    "document_operation",
    "encode_page_token",
    "engine_exception",
    "object_document",
    "object_index",
    "operation_document",
    "sort_spec",
    "tombstone_document",
    "translate_error",
]

_JSON = {"accept": "application/json", "content-type": "application/json"}


def engine_exception(exc: Exception) -> Exception:
    """An elasticsearch-py exception as an engine exception (others unchanged)."""
    import elastic_transport
    import elasticsearch

    if isinstance(exc, elasticsearch.ApiError):
        return EngineError(exc.meta.status, str(exc.message), str(exc))
    if isinstance(exc, elastic_transport.TransportError):
        return EngineUnreachable(str(exc))
    return exc


def translate_error(exc: Exception) -> NexxusError:
    """A driver exception as a Nexxus error (raise it `from exc`)."""
    return translate_engine_error(engine_exception(exc), "elasticsearch")


class _ElasticsearchClient(EngineClient):
    def __init__(self, client: AsyncElasticsearch) -> None:
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
        headers = _JSON if body is not None else {"accept": "application/json"}
        client = self._client.options(request_timeout=timeout) if timeout else self._client
        try:
            resp = await client.perform_request(method, path, params=params, headers=headers, body=body)
        except Exception as exc:
            raise engine_exception(exc) from exc
        return resp.body if isinstance(resp.body, dict) else {}

    async def close(self) -> None:
        await self._client.close()


class ElasticsearchDatabase(SearchEngineDatabase):
    """DatabaseAdapter + IdentityStore on Elasticsearch."""

    name = "elasticsearch"
    engine = "elasticsearch"

    def __init__(self, settings: ElasticsearchSettings, **_: object) -> None:
        super().__init__(index_prefix=settings.index_prefix, refresh=settings.refresh)
        self._settings = settings

    async def _connect(self) -> EngineClient:
        try:
            from elasticsearch import AsyncElasticsearch
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "the elasticsearch database adapter needs `pip install nexxus[elasticsearch]`"
            ) from exc
        s = self._settings
        client = AsyncElasticsearch(
            hosts=list(s.hosts), api_key=s.api_key or None, request_timeout=REQUEST_TIMEOUT
        )
        return _ElasticsearchClient(client)
