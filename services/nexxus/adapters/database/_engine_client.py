"""The search-engine driver port and the request helpers both engine halves use.

`EngineClient` is one JSON request over REST; the Elasticsearch and OpenSearch
adapters each wrap their driver in one and map its exceptions to `EngineError`
(an HTTP error answer) or `EngineUnreachable`. `EngineBase` holds the started
client and the few document requests (get, create-if-absent, delete by query)
that the object half (`_engine`) and the identity half (`_engine_identity`) share.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from nexxus.core.errors import FailedPrecondition, NexxusError, Unavailable
from nexxus.observability.metrics import observe_database_error

__all__ = [
    "ENGINE_ERRORS",
    "REQUEST_TIMEOUT",
    "EngineBase",
    "EngineClient",
    "EngineError",
    "EngineUnreachable",
    "RetryingClient",
    "doc_path",
    "translate_engine_error",
]


class EngineError(Exception):
    """The engine answered with an HTTP error: status, error type, full message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message


class EngineUnreachable(Exception):
    """No answer from the engine (connection refused, timeout, TLS...)."""


ENGINE_ERRORS = (EngineError, EngineUnreachable)
# Seconds to wait for a new index's shards (the health API answers 408 past it).
INDEX_WAIT = 60
# The drivers' default per-request timeout, in seconds.
REQUEST_TIMEOUT = 30.0


class EngineClient(ABC):
    """The driver port: one JSON request, errors as EngineError / EngineUnreachable."""

    @abstractmethod
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The decoded JSON answer of a 2xx response ({} when it has no body).
        `timeout` (seconds) replaces the client's default for this request."""

    @abstractmethod
    async def close(self) -> None: ...


# 503 answers that only mean "a shard is not ready yet" (a new index's primary still
# recovering): the request was not executed and is retried.
_TRANSIENT = ("no_shard_available_action_exception", "unavailable_shards_exception")


class RetryingClient(EngineClient):
    """Retries the transient shard answers of `_TRANSIENT` a few times with a short
    backoff (at most ~6 s in all); every other answer passes through."""

    def __init__(self, inner: EngineClient, *, attempts: int = 10, delay: float = 0.05) -> None:
        self._inner = inner
        self._attempts = attempts
        self._delay = delay

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        for attempt in range(self._attempts):
            try:
                return await self._inner.request(method, path, params=params, body=body, timeout=timeout)
            except EngineError as exc:
                if exc.status != 503 or exc.kind not in _TRANSIENT or attempt == self._attempts - 1:
                    raise
            await asyncio.sleep(min(self._delay * 2**attempt, 1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._inner.close()


def translate_engine_error(exc: Exception, engine: str = "search engine") -> NexxusError:
    """An engine exception as a Nexxus error (raise it `from exc`)."""
    if isinstance(exc, EngineUnreachable):
        return Unavailable(f"{engine} unreachable: {exc}", reason="DATABASE_UNAVAILABLE")
    if isinstance(exc, EngineError):
        status, kind = exc.status, exc.kind
        if status in (408, 429) or status >= 500:
            return Unavailable(f"{engine} unavailable ({status} {kind})", reason="DATABASE_UNAVAILABLE")
        if status in (401, 403):
            return Unavailable(f"{engine} refused the credentials ({kind})", reason="DATABASE_UNAVAILABLE")
        if status == 400 and "illegal_argument" in kind and "mapper" in exc.message:
            return FailedPrecondition(
                f"the model's index mapping conflicts with its schema; reindex it ({exc})",
                reason="INDEX_MAPPING_CONFLICT",
            )
        return NexxusError(f"{engine} error ({status} {kind}): {exc.message}", reason="DATABASE_ERROR")
    return NexxusError(f"{engine} error: {exc}", reason="DATABASE_ERROR")


def doc_path(index: str, doc_id: str) -> str:
    """The REST path of one document (ids may hold any character)."""
    return f"/{index}/_doc/{quote(doc_id, safe='')}"


class EngineBase:
    """The started client and shared document requests (mixed into the adapter)."""

    engine: ClassVar[str] = "search engine"
    _prefix: str
    _client: EngineClient | None

    @property
    def _engine(self) -> EngineClient:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__} used before start()")
        return self._client

    def _translate(self, exc: Exception) -> NexxusError:
        return observe_database_error(translate_engine_error(exc, self.engine))

    @staticmethod
    async def _create_index(client: EngineClient, index: str, mappings: dict[str, Any]) -> None:
        try:
            await client.request("PUT", f"/{index}", body={"mappings": mappings}, timeout=INDEX_WAIT + 30)
        except EngineError as exc:
            if "resource_already_exists" not in exc.kind:
                raise
        # Created just now (here or by another process): reads fail until its primary
        # shards are active, which on a loaded node can outlast the create request.
        # A new index is "yellow" while its primaries still initialize, hence the
        # second condition (past INDEX_WAIT the health API answers 408: Unavailable).
        params = {
            "wait_for_status": "yellow",
            "wait_for_no_initializing_shards": "true",
            "timeout": f"{INDEX_WAIT}s",
        }
        health = await client.request(
            "GET", f"/_cluster/health/{index}", params=params, timeout=INDEX_WAIT + 30
        )
        if health.get("timed_out"):
            raise EngineError(408, "index_not_ready", f"index {index} has no active primary yet")

    async def _get_doc(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """A document with its metadata, or None (no such document or index)."""
        try:
            return await self._engine.request("GET", doc_path(index, doc_id))
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise

    async def _create_doc(self, index: str, doc_id: str, body: dict[str, Any], refresh: str) -> bool:
        """Create a document; False when one with that id exists."""
        params = {"op_type": "create", **({"refresh": refresh} if refresh else {})}
        try:
            await self._engine.request("PUT", doc_path(index, doc_id), params=params, body=body)
        except EngineError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def _delete_doc(self, index: str, doc_id: str, params: Mapping[str, str] | None = None) -> bool:
        """Delete a document; False when there was none."""
        try:
            await self._engine.request(
                "DELETE", doc_path(index, doc_id), params={"refresh": "true", **(params or {})}
            )
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _delete_by_query(self, indices: Sequence[str], query: dict[str, Any]) -> int:
        """Delete what `query` matches, including documents written just before (a
        delete-by-query works on a search snapshot: without the refresh first, a user
        created a moment ago would survive the deletion of its application)."""
        await self._engine.request(
            "POST", f"/{','.join(indices)}/_refresh", params={"ignore_unavailable": "true"}
        )
        resp = await self._engine.request(
            "POST",
            f"/{','.join(indices)}/_delete_by_query",
            params={"conflicts": "proceed", "refresh": "true", "ignore_unavailable": "true"},
            body={"query": query},
        )
        return int(resp.get("deleted", 0))
