"""Model schemas: parsing (proto JSON / dicts / protobuf), and object validation.

A `ModelSchema` is the parsed, immutable form of `nexxus.v1.ModelSchema`.
`ModelSchema.from_dict` accepts the proto JSON mapping (enum names such as
``FIELD_TYPE_STRING`` or short names such as ``string``; camelCase or
snake_case keys); `to_dict` returns the canonical form (short names, snake_case
keys) which `from_dict` reads back unchanged. See docs/schema.md.

`ModelSchema.validate_object` checks application data against the schema and
returns a normalized deep copy (integral floats in integer fields become ints,
datetimes become UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` strings). Every error is an
`InvalidArgument` whose `field` names the offending path (``data.details.age``,
``data.tags[2]``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from nexxus.core.errors import InvalidArgument

if TYPE_CHECKING:
    from nexxus.v1 import schema_pb2

__all__ = [
    "ACCESS_ACTIONS",
    "ACCESS_KINDS",
    "MAX_DOCUMENT_DEPTH",
    "MAX_SAFE_INTEGER",
    "MAX_SCHEMA_DEPTH",
    "MAX_STRING_BYTES",
    "FieldKind",
    "FieldSpec",
    "ModelSchema",
    "format_datetime",
    "parse_datetime",
    "validate_field_name",
]

# A field may nest objects / arrays at most this deep (top-level fields: depth 1).
MAX_SCHEMA_DEPTH = 8
# Application documents may nest containers at most this deep (the object: depth 1).
MAX_DOCUMENT_DEPTH = 32
# Longest accepted string value, in UTF-8 bytes.
MAX_STRING_BYTES = 1024 * 1024
# Integers must be safe integers (JavaScript's Number.MAX_SAFE_INTEGER): every one of them
# survives protobuf Struct (doubles) exactly, and no larger one can arrive unrounded — a JSON
# 9007199254740993 reaches us as 2**53 after the edge's JSON → Struct step, and is refused.
MAX_SAFE_INTEGER = 2**53 - 1

ACCESS_ACTIONS = ("read", "create", "update", "delete")
ACCESS_KINDS = ("public", "authenticated", "owner", "filter", "server")

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


class FieldKind(StrEnum):
    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"
    DATETIME = "datetime"


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field. An OBJECT without `fields` accepts any JSON object; an ARRAY
    without `items` accepts any JSON elements."""

    kind: FieldKind
    required: bool = False
    filterable: bool = False
    fields: Mapping[str, FieldSpec] = field(default_factory=_empty)
    items: FieldSpec | None = None
    enum_values: tuple[str, ...] = ()

    @property
    def open(self) -> bool:
        """True for a free-form object (an OBJECT that declares no fields)."""
        return self.kind is FieldKind.OBJECT and not self.fields

    def to_dict(self) -> dict[str, Any]:
        """Canonical form: `type` always, the other keys only when not default."""
        out: dict[str, Any] = {"type": self.kind.value}
        if self.required:
            out["required"] = True
        if self.filterable:
            out["filterable"] = True
        if self.fields:
            out["fields"] = {k: v.to_dict() for k, v in self.fields.items()}
        if self.items is not None:
            out["items"] = self.items.to_dict()
        if self.enum_values:
            out["enum_values"] = list(self.enum_values)
        return out


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """The schema of one model. `access` maps an action (read/create/update/delete)
    to ``{"kind": <ACCESS_KINDS>, "filter": {...}}`` (filter only for kind
    "filter", unparsed); absent actions mean "authenticated"."""

    name: str
    fields: Mapping[str, FieldSpec]
    access: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)
    allow_additional_fields: bool = False

    # ------------------------------------------------------------------ parsing

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, name: str | None = None) -> ModelSchema:
        """Parse the proto JSON mapping of nexxus.v1.ModelSchema (or `to_dict`'s
        output). `name` supplies the model name when the mapping has none; when
        both are given they must agree. Errors name ``schema.<path>``."""
        p = "schema"
        if not isinstance(d, Mapping):
            raise InvalidArgument("model schema must be an object", field=p)
        _check_keys(d, {"name", "fields", "access", "allow_additional_fields"}, p)
        raw_name = _get(d, "name")
        if raw_name in (None, ""):
            raw_name = name
        elif name is not None and raw_name != name:
            raise InvalidArgument(f"schema name {raw_name!r} does not match {name!r}", field=f"{p}.name")
        if not isinstance(raw_name, str) or not _MODEL_NAME.fullmatch(raw_name):
            raise InvalidArgument(
                "model name must match [a-z][a-z0-9_]{0,62}", field=f"{p}.name", details={"name": raw_name}
            )
        fields = _parse_fields(_or_empty(_get(d, "fields")), f"{p}.fields", 1)
        access = _parse_access(_or_empty(_get(d, "access")), f"{p}.access")
        extra = _get(d, "allow_additional_fields", False)
        if not isinstance(extra, bool):
            raise InvalidArgument("must be a boolean", field=f"{p}.allow_additional_fields")
        return cls(name=raw_name, fields=fields, access=access, allow_additional_fields=extra)

    def to_dict(self) -> dict[str, Any]:
        """Canonical mapping (short lowercase names, snake_case keys)."""
        return {
            "name": self.name,
            "fields": {k: v.to_dict() for k, v in self.fields.items()},
            "access": {a: _plain(r) for a, r in self.access.items()},
            "allow_additional_fields": self.allow_additional_fields,
        }

    @classmethod
    def from_proto(cls, pb: schema_pb2.ModelSchema) -> ModelSchema:
        from google.protobuf import json_format

        from nexxus.core.convert import integral_floats_to_int

        d = json_format.MessageToDict(pb, preserving_proto_field_name=True)
        return cls.from_dict(integral_floats_to_int(d))

    def to_proto(self) -> schema_pb2.ModelSchema:
        from google.protobuf import json_format

        from nexxus.v1 import schema_pb2

        return json_format.ParseDict(self._proto_json(), schema_pb2.ModelSchema())

    def _proto_json(self) -> dict[str, Any]:
        def fld(spec: FieldSpec) -> dict[str, Any]:
            out: dict[str, Any] = {
                "type": f"FIELD_TYPE_{spec.kind.name}",
                "required": spec.required,
                "filterable": spec.filterable,
                "fields": {k: fld(v) for k, v in spec.fields.items()},
                "enum_values": list(spec.enum_values),
            }
            if spec.items is not None:
                out["items"] = fld(spec.items)
            return out

        access: dict[str, Any] = {}
        for action, rule in self.access.items():
            access[action] = {"kind": f"KIND_{str(rule['kind']).upper()}"}
            if "filter" in rule:
                access[action]["filter"] = _plain(rule["filter"])
        return {
            "name": self.name,
            "fields": {k: fld(v) for k, v in self.fields.items()},
            "access": access,
            "allow_additional_fields": self.allow_additional_fields,
        }

    # ------------------------------------------------------------------ queries

    def field_at(self, path: tuple[str, ...]) -> FieldSpec | None:
        """The spec of a dotted path split into parts (descending through OBJECT
        fields only), or None when the schema does not declare it."""
        fields = self.fields
        spec: FieldSpec | None = None
        for i, part in enumerate(path):
            spec = fields.get(part)
            if spec is None:
                return None
            if i < len(path) - 1:
                if spec.kind is not FieldKind.OBJECT:
                    return None
                fields = spec.fields
        return spec

    def rule(self, action: str) -> Mapping[str, Any]:
        """The access rule of an action, defaulting to ``{"kind": "authenticated"}``."""
        if action not in ACCESS_ACTIONS:
            raise ValueError(f"unknown access action {action!r}")
        return self.access.get(action) or MappingProxyType({"kind": "authenticated"})

    # --------------------------------------------------------------- validation

    def validate_object(self, data: Mapping[str, Any], *, path: str = "data") -> dict[str, Any]:
        """Validate `data` against the schema; return a normalized deep copy."""
        if not isinstance(data, Mapping):
            raise InvalidArgument("must be an object", field=path)
        return _validate_fields(data, self.fields, self.allow_additional_fields, path, 1)

    def validate_value(self, spec: FieldSpec | None, value: Any, *, path: str, depth: int = 1) -> Any:
        """Validate one value against `spec` (None: any JSON value) at container
        depth `depth`; return its normalized copy. Null is accepted (callers
        check required fields)."""
        return _validate_value(spec, value, self.allow_additional_fields, path, depth)


# ---------------------------------------------------------------------- helpers


def validate_field_name(name: object, path: str) -> str:
    """Check one field name ([A-Za-z_][A-Za-z0-9_]{0,63}, no dots)."""
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid field name {name!r}: must match [A-Za-z_][A-Za-z0-9_]{{0,63}}", field=path
        )
    return name


def parse_datetime(value: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (ValueError if bad).
    Fractions beyond microseconds are truncated; leap seconds are rejected."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    off = m.group(8)
    if off in ("Z", "z"):
        tz = UTC
    else:
        hours, minutes = int(off[1:3]), int(off[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError("bad UTC offset")
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if off[0] == "-" else delta)
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp out of range") from exc


def format_datetime(dt: datetime) -> str:
    """The canonical stored form: UTC, microseconds, ``Z``; sorts in time order."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _get(d: Mapping[str, Any], snake: str, default: Any = None) -> Any:
    if snake in d:
        return d[snake]
    return d.get(_camel(snake), default)


def _or_empty(value: Any) -> Any:
    return {} if value is None else value


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w.capitalize() for w in rest)


def _check_keys(d: Mapping[str, Any], allowed: set[str], path: str) -> None:
    known = allowed | {_camel(k) for k in allowed}
    for key in d:
        if key not in known:
            raise InvalidArgument(f"unknown key {key!r}", field=f"{path}.{key}")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _parse_kind(raw: Any, path: str) -> FieldKind:
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= len(FieldKind):
        return list(FieldKind)[raw - 1]
    if isinstance(raw, str):
        name = raw.lower().removeprefix("field_type_")
        try:
            return FieldKind(name)
        except ValueError:
            pass
    raise InvalidArgument(
        f"unknown field type {raw!r}; expected one of {', '.join(k.value for k in FieldKind)}",
        field=path,
    )


def _parse_fields(raw: Any, path: str, depth: int) -> Mapping[str, FieldSpec]:
    if not isinstance(raw, Mapping):
        raise InvalidArgument("must be an object mapping field names to field schemas", field=path)
    out: dict[str, FieldSpec] = {}
    for name, spec in raw.items():
        validate_field_name(name, f"{path}.{name}")
        out[name] = _parse_field(spec, f"{path}.{name}", depth)
    return MappingProxyType(out)


def _parse_field(raw: Any, path: str, depth: int) -> FieldSpec:
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidArgument(f"schema nested deeper than {MAX_SCHEMA_DEPTH} levels", field=path)
    if not isinstance(raw, Mapping):
        raise InvalidArgument("field schema must be an object", field=path)
    _check_keys(raw, {"type", "required", "filterable", "fields", "items", "enum_values"}, path)
    if _get(raw, "type") is None:
        raise InvalidArgument("field type is required", field=f"{path}.type")
    kind = _parse_kind(_get(raw, "type"), f"{path}.type")
    flags = {}
    for flag in ("required", "filterable"):
        flags[flag] = _get(raw, flag, False)
        if not isinstance(flags[flag], bool):
            raise InvalidArgument("must be a boolean", field=f"{path}.{flag}")
    raw_fields = _or_empty(_get(raw, "fields"))
    if raw_fields and kind is not FieldKind.OBJECT:
        raise InvalidArgument("only object fields may declare fields", field=f"{path}.fields")
    raw_items = _get(raw, "items")
    if raw_items is not None and kind is not FieldKind.ARRAY:
        raise InvalidArgument("only array fields may declare items", field=f"{path}.items")
    raw_enum = _get(raw, "enum_values")
    raw_enum = [] if raw_enum is None else raw_enum
    if raw_enum and kind is not FieldKind.STRING:
        raise InvalidArgument("only string fields may declare enum_values", field=f"{path}.enum_values")
    if not isinstance(raw_enum, list | tuple) or not all(isinstance(v, str) for v in raw_enum):
        raise InvalidArgument("must be a list of strings", field=f"{path}.enum_values")
    return FieldSpec(
        kind=kind,
        required=flags["required"],
        filterable=flags["filterable"],
        fields=_parse_fields(raw_fields, f"{path}.fields", depth + 1),
        items=None if raw_items is None else _parse_field(raw_items, f"{path}.items", depth + 1),
        enum_values=tuple(raw_enum),
    )


def _parse_access(raw: Any, path: str) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(raw, Mapping):
        raise InvalidArgument("must be an object", field=path)
    out: dict[str, Mapping[str, Any]] = {}
    for action, rule in raw.items():
        rp = f"{path}.{action}"
        if action not in ACCESS_ACTIONS:
            raise InvalidArgument(f"unknown access action {action!r}", field=rp)
        if rule is None:
            continue
        if not isinstance(rule, Mapping):
            raise InvalidArgument("access rule must be an object", field=rp)
        _check_keys(rule, {"kind", "filter"}, rp)
        kind_raw = rule.get("kind")
        if kind_raw in (None, "KIND_UNSPECIFIED", 0) and rule.get("filter") is None:
            continue  # unset rule: the default (authenticated)
        kind = _parse_access_kind(kind_raw, f"{rp}.kind")
        flt = rule.get("filter")
        if kind == "filter":
            if not isinstance(flt, Mapping):
                raise InvalidArgument("a filter rule needs a filter object", field=f"{rp}.filter")
            out[action] = MappingProxyType({"kind": kind, "filter": _plain(flt)})
        else:
            if flt is not None:
                raise InvalidArgument(f"a {kind!r} rule takes no filter", field=f"{rp}.filter")
            out[action] = MappingProxyType({"kind": kind})
    return MappingProxyType(out)


def _parse_access_kind(raw: Any, path: str) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= len(ACCESS_KINDS):
        return ACCESS_KINDS[raw - 1]
    if isinstance(raw, str):
        name = raw.lower().removeprefix("kind_")
        if name in ACCESS_KINDS:
            return name
    raise InvalidArgument(
        f"unknown access kind {raw!r}; expected one of {', '.join(ACCESS_KINDS)}", field=path
    )


# ------------------------------------------------------------------- validation


def _validate_fields(
    data: Mapping[str, Any], fields: Mapping[str, FieldSpec], extra: bool, path: str, depth: int
) -> dict[str, Any]:
    if depth > MAX_DOCUMENT_DEPTH:
        raise InvalidArgument(f"document nested deeper than {MAX_DOCUMENT_DEPTH} levels", field=path)
    out: dict[str, Any] = {}
    for name, fspec in fields.items():
        if fspec.required and data.get(name) is None:
            raise InvalidArgument(f"required field {name!r} is missing", field=f"{path}.{name}")
    for key, value in data.items():
        fp = f"{path}.{key}"
        if not isinstance(key, str):
            raise InvalidArgument("object keys must be strings", field=path)
        spec = fields.get(key)
        if spec is None and not extra:
            raise InvalidArgument(f"unknown field {key!r}", field=fp)
        out[key] = _validate_value(spec, value, extra, fp, depth + 1)
    return out


def _validate_value(spec: FieldSpec | None, value: Any, extra: bool, path: str, depth: int) -> Any:
    if value is None:
        return None
    if spec is None:
        return _validate_json(value, path, depth)
    kind = spec.kind
    if kind is FieldKind.STRING:
        s = _check_string(value, path)
        if spec.enum_values and s not in spec.enum_values:
            raise InvalidArgument(f"must be one of {', '.join(spec.enum_values)}", field=path)
        return s
    if kind is FieldKind.INTEGER:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument("must be an integer", field=path)
        return _check_int(value, path)
    if kind is FieldKind.NUMBER:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidArgument("must be a number", field=path)
        return _check_number(value, path)
    if kind is FieldKind.BOOLEAN:
        if not isinstance(value, bool):
            raise InvalidArgument("must be a boolean", field=path)
        return value
    if kind is FieldKind.DATETIME:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return format_datetime(value)
        try:
            return format_datetime(parse_datetime(_check_string(value, path)))
        except ValueError as exc:
            raise InvalidArgument(f"must be an RFC 3339 timestamp ({exc})", field=path) from None
    if kind is FieldKind.OBJECT:
        if not isinstance(value, Mapping):
            raise InvalidArgument("must be an object", field=path)
        if spec.open:
            return _validate_json(value, path, depth)
        return _validate_fields(value, spec.fields, extra, path, depth)
    # ARRAY
    if not isinstance(value, list | tuple):
        raise InvalidArgument("must be an array", field=path)
    if depth > MAX_DOCUMENT_DEPTH:
        raise InvalidArgument(f"document nested deeper than {MAX_DOCUMENT_DEPTH} levels", field=path)
    return [_validate_value(spec.items, v, extra, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]


def _validate_json(value: Any, path: str, depth: int) -> Any:
    """Any JSON value (no schema): check limits and types, return a copy."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _check_int(value, path)
    if isinstance(value, float):
        return _check_number(value, path)
    if isinstance(value, str):
        return _check_string(value, path)
    if isinstance(value, Mapping | list | tuple) and depth > MAX_DOCUMENT_DEPTH:
        raise InvalidArgument(f"document nested deeper than {MAX_DOCUMENT_DEPTH} levels", field=path)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidArgument("object keys must be strings", field=path)
            out[k] = _validate_json(v, f"{path}.{k}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_validate_json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise InvalidArgument(f"not a JSON value ({type(value).__name__})", field=path)


def _check_string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument("must be a string", field=path)
    if len(value) > MAX_STRING_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
        raise InvalidArgument(f"string longer than {MAX_STRING_BYTES} bytes", field=path)
    return value


def _check_int(value: int, path: str) -> int:
    if abs(value) > MAX_SAFE_INTEGER:
        raise InvalidArgument("integer beyond +-(2**53 - 1) (not exactly representable)", field=path)
    return value


def _check_number(value: float, path: str) -> float:
    if isinstance(value, int):
        return _check_int(value, path)
    if not math.isfinite(value):
        raise InvalidArgument("must be a finite number", field=path)
    return value
