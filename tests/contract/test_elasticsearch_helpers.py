"""The Elasticsearch adapter's pure parts, offline: index names, documents,
sort specs, page tokens and error translation (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from elastic_transport import ApiResponseMeta, ConnectionError, HttpHeaders, NodeConfig
from elasticsearch import ApiError, BadRequestError, NotFoundError

from nexxus.adapters.database.elasticsearch import (
    decode_page_token,
    document_object,
    document_operation,
    encode_page_token,
    object_document,
    object_index,
    operation_document,
    sort_spec,
    tombstone_document,
    translate_error,
)
from nexxus.core.errors import FailedPrecondition, InvalidArgument, NexxusError, Unavailable
from nexxus.core.filterquery import PRESENT_FIELD
from nexxus.core.models import OperationRecord, SortKey, StoredObject
from nexxus.core.schema import ModelSchema
from nexxus.v1.internal_pb2 import ModelEvent

SCHEMA = ModelSchema.from_dict(
    {
        "fields": {
            "title": {"type": "string", "filterable": True},
            "n": {"type": "integer", "filterable": True},
        }
    },
    name="task",
)
T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def test_index_names_are_valid_and_app_scoped() -> None:
    assert object_index("nexxus", "myapp1", "task") == "nexxus-myapp1-task"
    odd = object_index("nexxus", "My.App:1", "task")
    assert odd.startswith("nexxus-_")
    assert odd.endswith("-task")
    assert odd == odd.lower()
    assert object_index("nexxus", "My.App:2", "task") != odd
    # One app's wildcard never matches another app's indices.
    assert not object_index("nexxus", "app-b", "task").startswith("nexxus-app-")


def test_object_document_round_trip() -> None:
    obj = StoredObject("a", "task", "o1", "u1", 3, {"title": 5, "n": 2, "x": None}, T0, T0)
    event = ModelEvent(event_id="c1", version=3)
    doc = object_document(obj, SCHEMA, "c1", event)
    assert doc["data"] == {"title__n": 5, "n__n": 2}  # indexed by actual JSON type
    assert doc[PRESENT_FIELD] == ["title", "n"]
    assert doc["source"] == obj.data
    assert document_object("a", "task", doc) == obj
    tomb = tombstone_document("o1", 4, "c2", event, deleted_at=T0)
    assert document_object("a", "task", tomb) is None
    assert (tomb["version"], tomb["updated_at"], tomb["deleted"]) == (4, doc["updated_at"], True)


def test_operation_document_round_trip() -> None:
    rec = OperationRecord("a", "c1", "o1", False, "NOT_FOUND", "gone", "OBJECT_NOT_FOUND", 0, b"\x00\x01", T0)
    assert document_operation(operation_document(rec)) == rec


def test_sort_spec() -> None:
    assert sort_spec([]) == [{"id": {"order": "asc"}}]
    assert sort_spec([SortKey("n", descending=True), SortKey("create_time")]) == [
        {"data.n__s": {"order": "desc", "missing": "_last", "unmapped_type": "keyword"}},
        {"data.n__n": {"order": "desc", "missing": "_last", "unmapped_type": "double"}},
        {"data.n__b": {"order": "desc", "missing": "_last", "unmapped_type": "boolean"}},
        {"created_at": {"order": "asc"}},
        {"id": {"order": "asc"}},
    ]
    assert sort_spec([SortKey("id", descending=True)]) == [{"id": {"order": "desc"}}]
    with pytest.raises(InvalidArgument) as info:
        sort_spec([SortKey("n"), SortKey("a..b")])
    assert info.value.field == "sort[1]"


def test_page_tokens() -> None:
    token = encode_page_token("fp", [1.5, None, "o9"])
    assert decode_page_token(token, "fp", 3) == [1.5, None, "o9"]
    for bad, fp, width in [(token, "other", 3), (token, "fp", 2), ("%%%", "fp", 3), ("", "fp", 3)]:
        with pytest.raises(InvalidArgument) as info:
            decode_page_token(bad, fp, width)
        assert info.value.field == "page_token"


def _meta(status: int) -> ApiResponseMeta:
    node = NodeConfig("http", "localhost", 9200)
    return ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0, node=node)


def test_translate_error() -> None:
    assert isinstance(translate_error(ConnectionError("refused")), Unavailable)
    assert isinstance(
        translate_error(ApiError("es_rejected_execution_exception", _meta(429), {})), Unavailable
    )
    assert isinstance(translate_error(ApiError("unavailable_shards_exception", _meta(503), {})), Unavailable)
    body = {
        "error": {
            "root_cause": [{"reason": "mapper [data.n] cannot be changed from type [keyword] to [double]"}],
            "type": "illegal_argument_exception",
        }
    }
    err = translate_error(BadRequestError("illegal_argument_exception", _meta(400), body))
    assert isinstance(err, FailedPrecondition)
    assert err.reason == "INDEX_MAPPING_CONFLICT"
    other = translate_error(NotFoundError("index_not_found_exception", _meta(404), {}))
    assert type(other) is NexxusError
    assert other.reason == "DATABASE_ERROR"
