"""Search-engine documents: index names, the object / operation documents, the
sort of a search and its page tokens. Pure functions shared by the Elasticsearch
and OpenSearch adapters (`_engine`); no driver, no I/O.

Layout (``index_prefix`` from the adapter's settings, default ``nexxus``):

- objects: one index per application and model, ``{prefix}-{app}-{model}``
  (`object_index`; an app id that is not plain ``[a-z0-9]+`` is encoded as
  ``_`` + a hash, so index names stay valid and one app's pattern never
  matches another app). Its mapping comes from the model schema:
  ``data`` holds the *typed view* the FilterQuery translation queries
  (`nexxus.core.filterquery.elasticsearch.typed_view`), ``source`` the object's
  data as stored (not indexed), ``nx_present`` the non-null paths. Typed-view
  fields carry their JSON type as a suffix (``data.age__n``), so changing a
  field's kind in the schema never conflicts with the mapping.
  A delete replaces the object's document with a *tombstone* (``deleted:
  true``, the delete's version and time), skipped by reads and searches.
- operations: ``{prefix}-operations``, one document per applied (or failed)
  command, id ``{app_id}/{command_id}``.

Search sorts like the SQL adapters (`sort_spec`): missing/null < false < true
< numbers < strings (code point), reversed when descending; objects and arrays
sort with missing values (the SQL adapters leave their place unspecified).
``id`` is the final tie-breaker; pages use ``search_after`` in an opaque token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nexxus.core.errors import InvalidArgument
from nexxus.core.filterquery import PRESENT_FIELD, filter_to_dict
from nexxus.core.filterquery.elasticsearch import DYNAMIC_TEMPLATES, typed_view
from nexxus.core.models import OperationRecord, SortKey, StoredObject

if TYPE_CHECKING:
    from nexxus.core.filterquery import FilterNode
    from nexxus.core.schema import ModelSchema
    from nexxus.v1.internal_pb2 import ModelEvent

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "OBJECT_PROPERTIES",
    "OPERATION_PROPERTIES",
    "app_segment",
    "decode_page_token",
    "document_object",
    "document_operation",
    "encode_page_token",
    "from_micros",
    "micros",
    "object_document",
    "object_index",
    "object_mappings",
    "operation_document",
    "query_fingerprint",
    "sort_spec",
    "tombstone_document",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_PLAIN_APP = re.compile(r"[a-z0-9]{1,64}")
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_COLUMN_SORTS = {"id": "id", "version": "version", "create_time": "created_at", "update_time": "updated_at"}

OBJECT_PROPERTIES: dict[str, Any] = {
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
OPERATION_PROPERTIES: dict[str, Any] = {
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


def object_mappings(properties: dict[str, Any]) -> dict[str, Any]:
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


def micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def object_document(
    obj: StoredObject, schema: ModelSchema, last_command: str, event: ModelEvent
) -> dict[str, Any]:
    view, present = typed_view(obj.data, schema)
    return {
        "id": obj.id,
        "owner_id": obj.owner_id,
        "version": obj.version,
        "created_at": micros(obj.created_at),
        "updated_at": micros(obj.updated_at),
        "deleted": False,
        "source": obj.data,
        "data": view,
        PRESENT_FIELD: present,
        "last_command": last_command,
        "last_event": base64.b64encode(event.SerializeToString()).decode(),
    }


def tombstone_document(
    object_id: str, version: int, last_command: str, event: ModelEvent, *, deleted_at: datetime
) -> dict[str, Any]:
    """What a delete leaves: the delete's version (a re-create continues from it)
    and time (``updated_at``: retention trims tombstones by age)."""
    return {
        "id": object_id,
        "owner_id": "",
        "version": version,
        "updated_at": micros(deleted_at),
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
        created_at=from_micros(int(src["created_at"])),
        updated_at=from_micros(int(src["updated_at"])),
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
        "created_at": micros(rec.created_at),
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
        created_at=from_micros(int(src["created_at"])),
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


def query_fingerprint(
    model: str, owner_id: str | None, filter: FilterNode | None, sort: Sequence[SortKey]
) -> str:
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
