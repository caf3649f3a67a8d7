"""The Elasticsearch database adapter (the seed's built-in database).

Layout (``index_prefix`` from `ElasticsearchSettings`, default ``nexxus``):

- objects: one index per application and model, ``{prefix}-{app}-{model}``
  (`object_index`; an app id that is not plain ``[a-z0-9]+`` is encoded as
  ``_`` + a hash, so index names stay valid and one app's pattern never
  matches another app). Its mapping comes from the model schema:
  ``data`` holds the *typed view* the FilterQuery translation queries
  (`nexxus.core.filterquery.elasticsearch.typed_view`), ``source`` the object's
  data as stored (not indexed), ``nx_present`` the non-null paths. Typed-view
  fields carry their JSON type as a suffix (``data.age__n``), so changing a
  field's kind in the schema never conflicts with the mapping.
- operations: ``{prefix}-operations``, one document per applied (or failed)
  command, id ``{app_id}/{command_id}``.

Writes (`apply_writes`) run command by command, optimistic on the object's
``_seq_no`` / ``_primary_term``: read the operation (replay) and the object,
`plan_write`, then create / replace the object guarded by the sequence number
(a lost race re-reads and re-plans), then record the operation. The object
document also carries the last command id and its event, so a command whose
operation record was lost (crash between the two writes) is recognized on
redelivery. Deletes leave a tombstone document (``deleted: true``, with the
delete's version and time) for the same reason and so that a re-created
object continues from its version; reads and searches skip tombstones.

Search sorts like the SQL adapters (`sort_spec`): missing/null < false < true
< numbers < strings (code point), reversed when descending; objects and arrays
sort with missing values (the SQL adapters leave their place unspecified).
``id`` is the final tie-breaker; pages use ``search_after`` in an opaque token.

Every driver error is translated (`translate_error`): connection problems,
timeouts, 429 and 5xx → Unavailable; 401/403 (bad credentials: a deployment
problem) → Unavailable; a mapping conflict → FailedPrecondition; anything
else → NexxusError(DATABASE_ERROR).
Needs an Elasticsearch server of the client's major version (the client sends
compatibility headers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nexxus.core.config.settings import ElasticsearchSettings
from nexxus.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NexxusError,
    Unavailable,
    error_from_code,
)
from nexxus.core.filterquery import PRESENT_FIELD, filter_to_dict, to_elasticsearch
from nexxus.core.filterquery.elasticsearch import DYNAMIC_TEMPLATES, mapping_properties, typed_view
from nexxus.core.models import OperationRecord, SortKey, StoredObject, utcnow
from nexxus.core.ports import DatabaseAdapter, SearchPage, WriteOutcome
from nexxus.core.writes import plan_write
from nexxus.v1.internal_pb2 import ModelEvent

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

    from nexxus.core.filterquery import FilterNode
    from nexxus.core.schema import ModelSchema
    from nexxus.v1.internal_pb2 import WriteCommand

__all__ = [
    "ElasticsearchDatabase",
    "decode_page_token",
    "encode_page_token",
    "object_index",
    "sort_spec",
    "translate_error",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Re-plans of one command that keeps losing races before giving up (Unavailable).
MAX_ATTEMPTS = 8

_PLAIN_APP = re.compile(r"[a-z0-9]{1,64}")
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_COLUMN_SORTS = {"id": "id", "version": "version", "create_time": "created_at", "update_time": "updated_at"}

_OBJECT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "keyword"},
    "owner_id": {"type": "keyword"},
    "version": {"type": "long"},
    # Unix microseconds.
    "created_at": {"type": "long"},
    "updated_at": {"type": "long"},
    "deleted": {"type": "boolean"},
    "source": {"type": "object", "enabled": False},
    PRESENT_FIELD: {"type": "keyword"},
    "last_command": {"type": "keyword", "index": False},
    "last_event": {"type": "binary"},
}
_OPERATION_PROPERTIES: dict[str, Any] = {
    "app_id": {"type": "keyword"},
    "command_id": {"type": "keyword"},
    "object_id": {"type": "keyword"},
    "ok": {"type": "boolean"},
    "error_code": {"type": "keyword", "index": False},
    "error_message": {"type": "text", "index": False},
    "error_reason": {"type": "keyword", "index": False},
    "version": {"type": "long"},
    "event": {"type": "binary"},
    "created_at": {"type": "long"},
}


# ------------------------------------------------------------------ pure helpers


def _object_mappings(properties: dict[str, Any]) -> dict[str, Any]:
    """An object index's mappings: only `data` maps new fields, by type suffix."""
    return {
        "dynamic": False,
        "date_detection": False,
        "numeric_detection": False,
        "dynamic_templates": DYNAMIC_TEMPLATES,
        "properties": properties,
    }


def app_segment(app_id: str) -> str:
    """The app id as an index-name segment: itself when plain lowercase
    alphanumerics, else ``_`` + 32 hex digits of its SHA-256."""
    if _PLAIN_APP.fullmatch(app_id):
        return app_id
    return "_" + hashlib.sha256(app_id.encode()).hexdigest()[:32]


def object_index(prefix: str, app_id: str, model: str) -> str:
    return f"{prefix}-{app_segment(app_id)}-{model}"


def _micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def object_document(
    obj: StoredObject, schema: ModelSchema, last_command: str, event: ModelEvent
) -> dict[str, Any]:
    view, present = typed_view(obj.data, schema)
    return {
        "id": obj.id,
        "owner_id": obj.owner_id,
        "version": obj.version,
        "created_at": _micros(obj.created_at),
        "updated_at": _micros(obj.updated_at),
        "deleted": False,
        "source": obj.data,
        "data": view,
        PRESENT_FIELD: present,
        "last_command": last_command,
        "last_event": base64.b64encode(event.SerializeToString()).decode(),
    }


def tombstone_document(object_id: str, version: int, last_command: str, event: ModelEvent) -> dict[str, Any]:
    return {
        "id": object_id,
        "owner_id": "",
        "version": version,
        "updated_at": _micros(utcnow()),
        "deleted": True,
        "source": {},
        "data": {},
        PRESENT_FIELD: [],
        "last_command": last_command,
        "last_event": base64.b64encode(event.SerializeToString()).decode(),
    }


def document_object(app_id: str, model: str, src: dict[str, Any]) -> StoredObject | None:
    """The stored object of a document (None for a tombstone)."""
    if src.get("deleted"):
        return None
    return StoredObject(
        app_id=app_id,
        model=model,
        id=src["id"],
        owner_id=src["owner_id"],
        version=int(src["version"]),
        data=dict(src.get("source") or {}),
        created_at=_from_micros(int(src["created_at"])),
        updated_at=_from_micros(int(src["updated_at"])),
    )


def operation_document(rec: OperationRecord) -> dict[str, Any]:
    return {
        "app_id": rec.app_id,
        "command_id": rec.command_id,
        "object_id": rec.object_id,
        "ok": rec.ok,
        "error_code": rec.error_code,
        "error_message": rec.error_message,
        "error_reason": rec.error_reason,
        "version": rec.version,
        "event": base64.b64encode(rec.event).decode(),
        "created_at": _micros(rec.created_at),
    }


def document_operation(src: dict[str, Any]) -> OperationRecord:
    return OperationRecord(
        app_id=src["app_id"],
        command_id=src["command_id"],
        object_id=src["object_id"],
        ok=bool(src["ok"]),
        error_code=src.get("error_code", ""),
        error_message=src.get("error_message", ""),
        error_reason=src.get("error_reason", ""),
        version=int(src.get("version", 0)),
        event=base64.b64decode(src.get("event") or ""),
        created_at=_from_micros(int(src["created_at"])),
    )


def sort_spec(sort: Sequence[SortKey]) -> list[dict[str, Any]]:
    """The Elasticsearch sort of a search; `id` ascending is the final
    tie-breaker unless sorted on explicitly. InvalidArgument(field="sort[i]")
    for a bad field path."""
    out: list[dict[str, Any]] = []
    has_id = False
    for i, key in enumerate(sort):
        order = "desc" if key.descending else "asc"
        column = _COLUMN_SORTS.get(key.field)
        if column is not None:
            out.append({column: {"order": order}})
            has_id = has_id or column == "id"
            continue
        path = key.field.split(".")
        if not all(_SEGMENT.fullmatch(seg) for seg in path):
            raise InvalidArgument(f"cannot sort by {key.field!r}", field=f"sort[{i}]")
        # The SQL adapters' order: missing/null < false < true < numbers < strings.
        # Each object has at most one of the three typed fields, so sorting on
        # strings, then numbers, then booleans (missing first ascending, last
        # descending) yields exactly that order and its reverse.
        missing = "_last" if key.descending else "_first"
        for suffix, es_type in (("__s", "keyword"), ("__n", "double"), ("__b", "boolean")):
            out.append(
                {f"data.{key.field}{suffix}": {"order": order, "missing": missing, "unmapped_type": es_type}}
            )
    if not has_id:
        out.append({"id": {"order": "asc"}})
    return out


def _fingerprint(model: str, owner_id: str | None, filter: FilterNode | None, sort: Sequence[SortKey]) -> str:
    body = [
        model,
        owner_id,
        None if filter is None else filter_to_dict(filter),
        [[k.field, k.descending] for k in sort],
    ]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def encode_page_token(fingerprint: str, after: list[Any]) -> str:
    raw = json.dumps({"f": fingerprint, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str, width: int) -> list[Any]:
    """The search_after values of a token made for this query (InvalidArgument otherwise)."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        payload = None
    if (
        not isinstance(payload, dict)
        or payload.get("f") != fingerprint
        or not isinstance(payload.get("a"), list)
        or len(payload["a"]) != width
        or not all(v is None or isinstance(v, str | int | float) for v in payload["a"])
    ):
        raise InvalidArgument("page token does not belong to this query", field="page_token")
    return list(payload["a"])


def translate_error(exc: Exception) -> NexxusError:
    """A driver exception as a Nexxus error (raise it `from exc`)."""
    import elastic_transport
    import elasticsearch

    if isinstance(exc, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
        return Unavailable(f"elasticsearch unreachable: {exc}", reason="DATABASE_UNAVAILABLE")
    if isinstance(exc, elasticsearch.ApiError):
        status = exc.meta.status
        kind = str(exc.message)
        if status == 429 or status >= 500:
            return Unavailable(f"elasticsearch unavailable ({status} {kind})", reason="DATABASE_UNAVAILABLE")
        if status in (401, 403):
            return Unavailable(
                f"elasticsearch refused the credentials ({kind})", reason="DATABASE_UNAVAILABLE"
            )
        if status == 400 and "illegal_argument" in kind and "mapper" in str(exc):
            return FailedPrecondition(
                f"the model's index mapping conflicts with its schema; reindex it ({exc})",
                reason="INDEX_MAPPING_CONFLICT",
            )
        return NexxusError(f"elasticsearch error ({status} {kind}): {exc}", reason="DATABASE_ERROR")
    if isinstance(exc, elastic_transport.TransportError):
        return Unavailable(f"elasticsearch transport error: {exc}", reason="DATABASE_UNAVAILABLE")
    return NexxusError(f"elasticsearch error: {exc}", reason="DATABASE_ERROR")


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


# ------------------------------------------------------------------ the adapter


class _Retry(Exception):
    """A concurrent writer changed the object: re-read and re-plan."""


class ElasticsearchDatabase(DatabaseAdapter):
    """DatabaseAdapter on Elasticsearch (objects and the writer's operations)."""

    name = "elasticsearch"

    def __init__(self, settings: ElasticsearchSettings) -> None:
        self._settings = settings
        self._client: AsyncElasticsearch | None = None
        # index name -> the schema mapping last applied to it.
        self._mapped: dict[str, dict[str, Any]] = {}

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._client is not None:
            return
        try:
            from elasticsearch import AsyncElasticsearch
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "the elasticsearch database adapter needs `pip install nexxus[elasticsearch]`"
            ) from exc
        client = AsyncElasticsearch(hosts=list(self._settings.hosts), api_key=self._settings.api_key or None)
        try:
            await client.info()
            if not (await client.indices.exists(index=self._ops_index)):
                await self._create_index(
                    client, self._ops_index, {"dynamic": False, "properties": _OPERATION_PROPERTIES}
                )
        except Exception as exc:
            await client.close()
            raise translate_error(exc) from exc
        self._client = client

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._mapped.clear()
        if client is not None:
            await client.close()

    @property
    def _es(self) -> AsyncElasticsearch:
        if self._client is None:
            raise RuntimeError("ElasticsearchDatabase used before start()")
        return self._client

    @property
    def _ops_index(self) -> str:
        return f"{self._settings.index_prefix}-operations"

    @property
    def _refresh(self) -> Any:
        return self._settings.refresh or None

    def _index(self, app_id: str, model: str) -> str:
        return object_index(self._settings.index_prefix, app_id, model)

    @staticmethod
    async def _create_index(client: AsyncElasticsearch, index: str, mappings: dict[str, Any]) -> None:
        import elasticsearch

        try:
            await client.indices.create(index=index, mappings=mappings)
        except elasticsearch.BadRequestError as exc:
            if "resource_already_exists" not in str(exc.message):
                raise

    async def _ensure_index(self, app_id: str, model: str, schema: ModelSchema) -> str:
        """Create the model's index, or add the schema's declared fields to it."""
        index = self._index(app_id, model)
        data_props = mapping_properties(schema)
        if self._mapped.get(index) == data_props:
            return index
        props = {**_OBJECT_PROPERTIES, "data": {"type": "object", "dynamic": True, "properties": data_props}}
        if not await self._es.indices.exists(index=index):
            await self._create_index(self._es, index, _object_mappings(props))
        await self._es.indices.put_mapping(index=index, properties=props)
        self._mapped[index] = data_props
        return index

    # -------------------------------------------------------------- writes

    async def apply_writes(self, writes: Sequence[tuple[WriteCommand, ModelSchema]]) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        try:
            for cmd, schema in writes:
                outcomes.append(await self._apply_one(cmd, schema))
        except NexxusError:
            raise
        except Exception as exc:
            raise translate_error(exc) from exc
        return outcomes

    async def _apply_one(self, cmd: WriteCommand, schema: ModelSchema) -> WriteOutcome:
        index = await self._ensure_index(cmd.app_id, cmd.model, schema)
        for _ in range(MAX_ATTEMPTS):
            done = await self.get_operation(cmd.app_id, cmd.command_id)
            if done is not None:
                return _outcome(done, replayed=True)
            try:
                return await self._attempt(index, cmd, schema)
            except _Retry:
                continue
        raise Unavailable(f"command {cmd.command_id} kept losing races", reason="WRITE_CONTENTION")

    async def _attempt(self, index: str, cmd: WriteCommand, schema: ModelSchema) -> WriteOutcome:
        import elasticsearch

        doc = await self._get_doc(index, cmd.object_id)
        src: dict[str, Any] | None = doc["_source"] if doc is not None else None
        if src is not None and src.get("last_command") == cmd.command_id:
            # Applied before, but its operation record was lost: record it now.
            event = ModelEvent.FromString(base64.b64decode(src["last_event"]))
            await self._record_operation(_record(cmd, event, None, 0))
            return WriteOutcome(cmd.command_id, event, None, replayed=True)
        current = document_object(cmd.app_id, cmd.model, src) if src is not None else None
        tombstone = int(src.get("version", 0)) if src is not None and current is None else 0
        try:
            plan = plan_write(current, cmd, schema, utcnow(), tombstone_version=tombstone)
        except NexxusError as err:
            rec = _record(cmd, None, err, current.version if current else 0)
            if not await self._record_operation(rec):
                raise _Retry from None
            return WriteOutcome(cmd.command_id, None, err)
        if plan.new is None:
            body = tombstone_document(cmd.object_id, plan.event.version, cmd.command_id, plan.event)
        else:
            body = object_document(plan.new, schema, cmd.command_id, plan.event)
        guard: dict[str, Any] = (
            {"op_type": "create"}
            if doc is None
            else {"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]}
        )
        try:
            await self._es.index(index=index, id=cmd.object_id, document=body, refresh=self._refresh, **guard)
        except elasticsearch.ConflictError:
            raise _Retry from None
        await self._record_operation(_record(cmd, plan.event, None, 0))
        return WriteOutcome(cmd.command_id, plan.event, None)

    async def _get_doc(self, index: str, object_id: str) -> dict[str, Any] | None:
        import elasticsearch

        try:
            resp = await self._es.get(index=index, id=object_id)
        except elasticsearch.NotFoundError:
            return None
        return dict(resp.body)

    async def _record_operation(self, rec: OperationRecord) -> bool:
        """Store an operation record; False when one was already stored."""
        import elasticsearch

        try:
            await self._es.index(
                index=self._ops_index,
                id=f"{rec.app_id}/{rec.command_id}",
                document=operation_document(rec),
                op_type="create",
                refresh=self._refresh,
            )
        except elasticsearch.ConflictError:
            return False
        return True

    # -------------------------------------------------------------- reads

    async def get_object(self, app_id: str, model: str, object_id: str) -> StoredObject | None:
        try:
            doc = await self._get_doc(self._index(app_id, model), object_id)
        except NexxusError:
            raise
        except Exception as exc:
            raise translate_error(exc) from exc
        return None if doc is None else document_object(app_id, model, doc["_source"])

    async def get_operation(self, app_id: str, command_id: str) -> OperationRecord | None:
        import elasticsearch

        try:
            resp = await self._es.get(index=self._ops_index, id=f"{app_id}/{command_id}")
        except elasticsearch.NotFoundError:
            return None
        except Exception as exc:
            raise translate_error(exc) from exc
        return document_operation(resp["_source"])

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
        fingerprint = _fingerprint(model, owner_id, filter, sort)
        clauses: list[dict[str, Any]] = []
        if filter is not None:
            clauses.append(to_elasticsearch(filter))
        if owner_id is not None:
            clauses.append({"term": {"owner_id": owner_id}})
        query = {"bool": {"filter": clauses, "must_not": [{"term": {"deleted": True}}]}}
        extra: dict[str, Any] = {}
        if page_token:
            extra["search_after"] = decode_page_token(page_token, fingerprint, len(spec))
        try:
            resp = await self._es.search(
                index=self._index(app_id, model),
                query=query,
                sort=spec,
                size=size + 1,
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
                **extra,
            )
        except Exception as exc:
            raise translate_error(exc) from exc
        hits = resp["hits"]["hits"]
        objects = [o for h in hits[:size] if (o := document_object(app_id, model, h["_source"])) is not None]
        token = encode_page_token(fingerprint, list(hits[size - 1]["sort"])) if len(hits) > size else ""
        return SearchPage(objects=objects, next_page_token=token)

    # -------------------------------------------------------------- retention

    async def trim(self, *, operations_before: datetime, tombstones_before: datetime) -> int:
        try:
            ops = await self._es.delete_by_query(
                index=self._ops_index,
                query={"range": {"created_at": {"lt": _micros(operations_before)}}},
                conflicts="proceed",
                ignore_unavailable=True,
            )
            tombs = await self._es.delete_by_query(
                index=f"{self._settings.index_prefix}-*",
                query={
                    "bool": {
                        "filter": [
                            {"term": {"deleted": True}},
                            {"range": {"updated_at": {"lt": _micros(tombstones_before)}}},
                        ]
                    }
                },
                conflicts="proceed",
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        except Exception as exc:
            raise translate_error(exc) from exc
        return int(ops.get("deleted", 0)) + int(tombs.get("deleted", 0))

    # -------------------------------------------------------------- tenancy

    async def delete_app_data(self, app_id: str) -> None:
        pattern = f"{self._settings.index_prefix}-{app_segment(app_id)}-*"
        try:
            found = await self._es.indices.get(index=pattern, allow_no_indices=True, ignore_unavailable=True)
            for index in sorted(found.body):
                await self._es.indices.delete(index=index, ignore_unavailable=True)
                self._mapped.pop(index, None)
            await self._es.delete_by_query(
                index=self._ops_index,
                query={"term": {"app_id": app_id}},
                conflicts="proceed",
                refresh=True,
            )
        except Exception as exc:
            raise translate_error(exc) from exc
