"""Conversions between protobuf well-known types and plain Python values.

protobuf `Struct` / `Value` store every number as a double. `struct_to_dict` and
`value_to_py` turn integral doubles back into ints (recursively) so that
integers survive the round trip. Only integers within +-2**53 are exact in a
double; `ModelSchema.validate_object` rejects larger ones, and integral doubles
beyond that range stay floats here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.struct_pb2 import NULL_VALUE, ListValue, Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from nexxus.core.models import StoredObject
from nexxus.v1 import common_pb2

__all__ = [
    "datetime_to_timestamp",
    "dict_to_struct",
    "integral_floats_to_int",
    "proto_to_stored",
    "py_to_value",
    "stored_to_proto",
    "struct_to_dict",
    "timestamp_to_datetime",
    "value_to_py",
]

_SAFE = 2**53


def integral_floats_to_int(value: Any) -> Any:
    """A copy of a JSON-like value with integral floats (|x| <= 2**53) as ints."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) <= _SAFE:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {k: integral_floats_to_int(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [integral_floats_to_int(v) for v in value]
    return value


def value_to_py(v: Value) -> Any:
    """A google.protobuf.Value as a plain Python value (integral numbers as int)."""
    which = v.WhichOneof("kind")
    if which == "number_value":
        return integral_floats_to_int(v.number_value)
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "struct_value":
        return struct_to_dict(v.struct_value)
    if which == "list_value":
        return [value_to_py(x) for x in v.list_value.values]
    return None  # null_value or unset


def py_to_value(x: Any) -> Value:
    """A plain JSON-like Python value as google.protobuf.Value (TypeError if not JSON)."""
    v = Value()
    _fill_value(v, x)
    return v


def _fill_value(v: Value, x: Any) -> None:
    if x is None:
        v.null_value = NULL_VALUE
    elif isinstance(x, bool):
        v.bool_value = x
    elif isinstance(x, int | float):
        v.number_value = float(x)
    elif isinstance(x, str):
        v.string_value = x
    elif isinstance(x, Mapping):
        v.struct_value.SetInParent()  # an empty {} must still be a struct_value
        _fill_struct(v.struct_value, x)
    elif isinstance(x, list | tuple):
        v.list_value.SetInParent()
        _fill_list(v.list_value, x)
    else:
        raise TypeError(f"not a JSON value: {type(x).__name__}")


def _fill_struct(s: Struct, d: Mapping[str, Any]) -> None:
    for k, x in d.items():
        if not isinstance(k, str):
            raise TypeError(f"Struct keys must be strings, got {type(k).__name__}")
        _fill_value(s.fields[k], x)


def _fill_list(lv: ListValue, xs: list[Any] | tuple[Any, ...]) -> None:
    for x in xs:
        _fill_value(lv.values.add(), x)


def struct_to_dict(s: Struct) -> dict[str, Any]:
    """A Struct as a dict, integral numbers as int, recursively."""
    return {k: value_to_py(v) for k, v in s.fields.items()}


def dict_to_struct(d: Mapping[str, Any]) -> Struct:
    s = Struct()
    _fill_struct(s, d)
    return s


def datetime_to_timestamp(dt: datetime) -> Timestamp:
    """An aware datetime (naive ones are taken as UTC) as a Timestamp."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(dt.astimezone(UTC))
    return ts


def timestamp_to_datetime(ts: Timestamp) -> datetime:
    """A Timestamp as a timezone-aware UTC datetime."""
    return ts.ToDatetime(tzinfo=UTC)


def stored_to_proto(obj: StoredObject) -> common_pb2.Object:
    return common_pb2.Object(
        id=obj.id,
        model=obj.model,
        owner_id=obj.owner_id,
        version=obj.version,
        data=dict_to_struct(obj.data),
        create_time=datetime_to_timestamp(obj.created_at),
        update_time=datetime_to_timestamp(obj.updated_at),
    )


def proto_to_stored(app_id: str, pb: common_pb2.Object) -> StoredObject:
    return StoredObject(
        app_id=app_id,
        model=pb.model,
        id=pb.id,
        owner_id=pb.owner_id,
        version=pb.version,
        data=struct_to_dict(pb.data),
        created_at=timestamp_to_datetime(pb.create_time),
        updated_at=timestamp_to_datetime(pb.update_time),
    )
