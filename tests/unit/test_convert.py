"""nexxus.core.convert: Struct / Value / Timestamp / Object conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.struct_pb2 import Value

from nexxus.core.convert import (
    datetime_to_timestamp,
    dict_to_struct,
    integral_floats_to_int,
    proto_to_stored,
    py_to_value,
    stored_to_proto,
    struct_to_dict,
    timestamp_to_datetime,
    value_to_py,
)
from nexxus.core.models import StoredObject


def test_struct_round_trip_keeps_ints() -> None:
    d = {"a": 1, "b": 1.5, "c": [1, 2.0, {"d": -3}], "e": None, "f": True, "g": "s", "h": {}}
    out = struct_to_dict(dict_to_struct(d))
    assert out == d
    assert type(out["a"]) is int
    assert type(out["c"][1]) is int
    assert type(out["f"]) is bool


def test_large_integral_floats_stay_float() -> None:
    assert integral_floats_to_int(2.0**53) == 2**53
    big = integral_floats_to_int(2.0**60)
    assert isinstance(big, float)
    assert integral_floats_to_int(float("inf")) == float("inf")


def test_value_helpers() -> None:
    assert value_to_py(py_to_value([1, "x", None])) == [1, "x", None]
    assert value_to_py(Value()) is None
    assert py_to_value(None).WhichOneof("kind") == "null_value"
    with pytest.raises(TypeError):
        py_to_value({1, 2})
    with pytest.raises(TypeError):
        dict_to_struct({1: "x"})  # type: ignore[dict-item]


def test_timestamps_are_utc() -> None:
    dt = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    back = timestamp_to_datetime(datetime_to_timestamp(dt))
    assert back == dt
    assert back.tzinfo is UTC
    naive = datetime(2024, 1, 1)
    assert timestamp_to_datetime(datetime_to_timestamp(naive)) == naive.replace(tzinfo=UTC)


def test_stored_object_round_trip() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    obj = StoredObject("app", "task", "o1", "u1", 4, {"n": 2, "x": [1.5]}, t0, t0 + timedelta(seconds=1))
    pb = stored_to_proto(obj)
    assert (pb.id, pb.model, pb.owner_id, pb.version) == ("o1", "task", "u1", 4)
    assert pb.update_time.seconds == pb.create_time.seconds + 1
    assert proto_to_stored("app", pb) == obj
