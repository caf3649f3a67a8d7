"""The search-engine database: one module of engine logic for Elasticsearch and
OpenSearch, over a tiny client port (`EngineClient`: one REST request).

The two adapters (`elasticsearch.py`, `opensearch.py`) only wrap their driver in
an `EngineClient` and map its exceptions to `EngineError` / `EngineUnreachable`;
every request body, every index layout (`_engine_docs`) and every decision is
here, so both engines run the same code and the same contract suite.

Writes (`apply_writes`) run command by command, optimistic on the object's
``_seq_no`` / ``_primary_term``: read the operation (replay) and the object,
`plan_write`, then create / replace the object guarded by the sequence number
(a lost race re-reads and re-plans), then record the operation. The object
document also carries the last command id and its event, so a command whose
operation record was lost (crash between the two writes) is recognized on
redelivery. Deletes leave a tombstone document (``deleted: true``, with the
delete's version and time) for the same reason and so that a re-created object
continues from its version (versions only grow); reads and searches skip
tombstones. Retention (`trim`) deletes old operation records and tombstones
by age (delete by query).

Identities (applications, schemas, users, devices, refresh tokens) live in the
engine too (`_engine_identity`), so every process of a deployment sees them.

Errors (`translate_engine_error`): unreachable, 429 and 5xx → Unavailable;
401/403 (bad credentials: a deployment problem) → Unavailable; a mapping
conflict → FailedPrecondition; anything else → NexxusError(DATABASE_ERROR).
"""

from __future__ import annotations

import base64
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nexxus.adapters.database._engine_client import (
    ENGINE_ERRORS,
    EngineClient,
    EngineError,
    EngineUnreachable,
    RetryingClient,
    doc_path,
    translate_engine_error,
)
from nexxus.adapters.database._engine_docs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    OBJECT_PROPERTIES,
    OPERATION_PROPERTIES,
    app_segment,
    decode_page_token,
    document_object,
    document_operation,
    encode_page_token,
    micros,
    object_document,
    object_index,
    object_mappings,
    operation_document,
    query_fingerprint,
    sort_spec,
    tombstone_document,
)
from nexxus.adapters.database._engine_identity import EngineIdentity
from nexxus.core.errors import InvalidArgument, NexxusError, Unavailable, error_from_code
from nexxus.core.filterquery import to_elasticsearch
from nexxus.core.filterquery.elasticsearch import mapping_properties
from nexxus.core.models import OperationRecord, SortKey, StoredObject, utcnow
from nexxus.core.ports import DatabaseAdapter, SearchPage, WriteOutcome
from nexxus.core.writes import plan_write
from nexxus.v1.internal_pb2 import ModelEvent

if TYPE_CHECKING:
    from datetime import datetime

    from nexxus.core.filterquery import FilterNode
    from nexxus.core.schema import ModelSchema
    from nexxus.v1.internal_pb2 import WriteCommand

__all__ = [
    "EngineClient",
    "EngineError",
    "EngineUnreachable",
    "SearchEngineDatabase",
    "doc_path",
    "translate_engine_error",
]

# Re-plans of one command that keeps losing races before giving up (Unavailable).
MAX_ATTEMPTS = 8
# Object indices named in one delete-by-query of `trim`.
_INDICES_PER_REQUEST = 32


def _outcome(rec: OperationRecord, *, replayed: bool) -> WriteOutcome:
    if rec.ok:
        return WriteOutcome(rec.command_id, ModelEvent.FromString(rec.event), None, replayed)
    return WriteOutcome(
        rec.command_id,
        None,
        error_from_code(rec.error_code, rec.error_message, reason=rec.error_reason),
        replayed,
    )


def _record(
    cmd: WriteCommand, event: ModelEvent | None, err: NexxusError | None, version: int
) -> OperationRecord:
    return OperationRecord(
        app_id=cmd.app_id,
        command_id=cmd.command_id,
        object_id=cmd.object_id,
        ok=err is None,
        error_code=err.code if err else "",
        error_message=err.message if err else "",
        error_reason=err.reason if err else "",
        version=event.version if event is not None else version,
        event=event.SerializeToString() if event is not None else b"",
        created_at=utcnow(),
    )


def _is_object_index(info: dict[str, Any]) -> bool:
    """Whether an index (its description, with mappings) holds objects."""
    return "last_event" in info.get("mappings", {}).get("properties", {})


class _Retry(Exception):
    """A concurrent writer changed the object: re-read and re-plan."""


class SearchEngineDatabase(EngineIdentity, DatabaseAdapter):
    """DatabaseAdapter + IdentityStore on a search engine; subclasses connect the driver."""

    def __init__(self, *, index_prefix: str, refresh: str) -> None:
        self._prefix = index_prefix
        self._refresh_mode = refresh
        self._client: EngineClient | None = None
        # index name -> the schema mapping last applied to it.
        self._mapped: dict[str, dict[str, Any]] = {}

    @abstractmethod
    async def _connect(self) -> EngineClient:
        """A client of the configured servers (not yet checked)."""

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._client is not None:
            return
        client = RetryingClient(await self._connect())
        try:
            await client.request("GET", "/")
            await self._create_index(
                client, self._ops_index, {"dynamic": False, "properties": OPERATION_PROPERTIES}
            )
            await self._create_identity_indices(client)
        except ENGINE_ERRORS as exc:
            await client.close()
            raise self._translate(exc) from exc
        except BaseException:
            await client.close()
            raise
        self._client = client

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._mapped.clear()
        if client is not None:
            await client.close()

    @property
    def _ops_index(self) -> str:
        return f"{self._prefix}-operations"

    @property
    def _refresh(self) -> dict[str, str]:
        return {"refresh": self._refresh_mode} if self._refresh_mode else {}

    def _index(self, app_id: str, model: str) -> str:
        return object_index(self._prefix, app_id, model)

    async def _ensure_index(self, app_id: str, model: str, schema: ModelSchema) -> str:
        """Create the model's index, or add the schema's declared fields to it."""
        index = self._index(app_id, model)
        data_props = mapping_properties(schema)
        if self._mapped.get(index) == data_props:
            return index
        props = {**OBJECT_PROPERTIES, "data": {"type": "object", "dynamic": True, "properties": data_props}}
        await self._create_index(self._engine, index, object_mappings(props))
        await self._engine.request("PUT", f"/{index}/_mapping", body={"properties": props})
        self._mapped[index] = data_props
        return index

    # -------------------------------------------------------------- writes

    async def apply_writes(self, writes: Sequence[tuple[WriteCommand, ModelSchema]]) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        # One time for the batch, as in the SQL adapters' transaction.
        now = utcnow()
        try:
            for cmd, schema in writes:
                outcomes.append(await self._apply_one(cmd, schema, now))
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        return outcomes

    async def _apply_one(self, cmd: WriteCommand, schema: ModelSchema, now: datetime) -> WriteOutcome:
        index = await self._ensure_index(cmd.app_id, cmd.model, schema)
        for _ in range(MAX_ATTEMPTS):
            done = await self.get_operation(cmd.app_id, cmd.command_id)
            if done is not None:
                return _outcome(done, replayed=True)
            try:
                return await self._attempt(index, cmd, schema, now)
            except _Retry:
                continue
        raise Unavailable(f"command {cmd.command_id} kept losing races", reason="WRITE_CONTENTION")

    async def _attempt(
        self, index: str, cmd: WriteCommand, schema: ModelSchema, now: datetime
    ) -> WriteOutcome:
        doc = await self._get_doc(index, cmd.object_id)
        src: dict[str, Any] | None = doc["_source"] if doc is not None else None
        if src is not None and src.get("last_command") == cmd.command_id:
            # Applied before, but its operation record was lost: record it now.
            event = ModelEvent.FromString(base64.b64decode(src["last_event"]))
            await self._record_operation(_record(cmd, event, None, 0))
            return WriteOutcome(cmd.command_id, event, None, replayed=True)
        current = document_object(cmd.app_id, cmd.model, src) if src is not None else None
        # A tombstone: a re-create continues from the deleted object's version.
        tombstone = int(src.get("version", 0)) if src is not None and current is None else 0
        try:
            plan = plan_write(current, cmd, schema, now, tombstone_version=tombstone)
        except NexxusError as err:
            rec = _record(cmd, None, err, current.version if current else 0)
            if not await self._record_operation(rec):
                raise _Retry from None
            return WriteOutcome(cmd.command_id, None, err)
        if plan.new is None:
            body = tombstone_document(
                cmd.object_id, plan.event.version, cmd.command_id, plan.event, deleted_at=now
            )
        else:
            body = object_document(plan.new, schema, cmd.command_id, plan.event)
        guard = (
            {"op_type": "create"}
            if doc is None
            else {"if_seq_no": str(doc["_seq_no"]), "if_primary_term": str(doc["_primary_term"])}
        )
        try:
            await self._engine.request(
                "PUT", doc_path(index, cmd.object_id), params={**guard, **self._refresh}, body=body
            )
        except EngineError as exc:
            if exc.status == 409:
                raise _Retry from None
            raise
        await self._record_operation(_record(cmd, plan.event, None, 0))
        return WriteOutcome(cmd.command_id, plan.event, None)

    async def _record_operation(self, rec: OperationRecord) -> bool:
        """Store an operation record; False when one was already stored."""
        return await self._create_doc(
            self._ops_index, f"{rec.app_id}/{rec.command_id}", operation_document(rec), self._refresh_mode
        )

    # -------------------------------------------------------------- reads

    async def get_object(self, app_id: str, model: str, object_id: str) -> StoredObject | None:
        try:
            doc = await self._get_doc(self._index(app_id, model), object_id)
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        return None if doc is None else document_object(app_id, model, doc["_source"])

    async def get_operation(self, app_id: str, command_id: str) -> OperationRecord | None:
        try:
            doc = await self._get_doc(self._ops_index, f"{app_id}/{command_id}")
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        return None if doc is None else document_operation(doc["_source"])

    async def search_objects(
        self,
        app_id: str,
        model: str,
        filter: FilterNode | None,
        sort: Sequence[SortKey],
        page_size: int,
        page_token: str,
        *,
        owner_id: str | None = None,
    ) -> SearchPage:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        spec = sort_spec(sort)
        fp = query_fingerprint(model, owner_id, filter, sort)
        clauses: list[dict[str, Any]] = []
        if filter is not None:
            clauses.append(to_elasticsearch(filter))
        if owner_id is not None:
            clauses.append({"term": {"owner_id": owner_id}})
        body: dict[str, Any] = {
            "query": {"bool": {"filter": clauses, "must_not": [{"term": {"deleted": True}}]}},
            "sort": spec,
            "size": size + 1,
            "track_total_hits": False,
        }
        if page_token:
            body["search_after"] = decode_page_token(page_token, fp, len(spec))
        params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
        try:
            resp = await self._engine.request(
                "POST", f"/{self._index(app_id, model)}/_search", params=params, body=body
            )
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        hits = resp["hits"]["hits"]
        objects = [o for h in hits[:size] if (o := document_object(app_id, model, h["_source"])) is not None]
        token = encode_page_token(fp, list(hits[size - 1]["sort"])) if len(hits) > size else ""
        return SearchPage(objects=objects, next_page_token=token)

    # -------------------------------------------------------------- retention

    async def trim(self, *, operations_before: datetime, tombstones_before: datetime) -> int:
        old_tombstones = {
            "bool": {
                "filter": [
                    {"term": {"deleted": True}},
                    {"range": {"updated_at": {"lt": micros(tombstones_before)}}},
                ]
            }
        }
        try:
            removed = await self._delete_by_query(
                [self._ops_index], {"range": {"created_at": {"lt": micros(operations_before)}}}
            )
            indices = await self._object_indices()
            # A few indices per request: the request line has a length limit.
            for i in range(0, len(indices), _INDICES_PER_REQUEST):
                removed += await self._delete_by_query(indices[i : i + _INDICES_PER_REQUEST], old_tombstones)
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
        return removed

    async def _object_indices(self) -> list[str]:
        """The object indices under this prefix: ``{prefix}-{app}-{model}`` (neither
        part holds a ``-``, so a longer prefix's indices never match) whose
        mapping is an object mapping (not an identity index)."""
        params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
        found = await self._engine.request("GET", f"/{self._prefix}-*/_mapping", params=params)
        head = f"{self._prefix}-"
        return sorted(
            name
            for name, info in found.items()
            if name.startswith(head) and name[len(head) :].count("-") == 1 and _is_object_index(info)
        )

    # -------------------------------------------------------------- tenancy

    async def delete_app_data(self, app_id: str) -> None:
        pattern = f"{self._prefix}-{app_segment(app_id)}-*"
        params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
        try:
            found = await self._engine.request("GET", f"/{pattern}", params=params)
            for index in sorted(name for name, info in found.items() if _is_object_index(info)):
                await self._engine.request("DELETE", f"/{index}", params={"ignore_unavailable": "true"})
                self._mapped.pop(index, None)
            await self._delete_by_query([self._ops_index], {"term": {"app_id": app_id}})
        except ENGINE_ERRORS as exc:
            raise self._translate(exc) from exc
