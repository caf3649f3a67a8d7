"""Parse and validate the FilterQuery DSL against a model schema.

Grammar (see docs/filterquery.md)::

    filter   := { clause, ... }                 several clauses: implicit AND
    clause   := "$and" | "and" : [filter, ...]  non-empty list
              | "$or"  | "or"  : [filter, ...]
              | "<field.path>" : { op: value, ... }   several ops: implicit AND
    op       := eq | ne | gt | gte | lt | lte | in   (each also with a "$" prefix)

Every error is an InvalidArgument whose `field` names the offending input,
e.g. ``filter.$and[1].status.in`` or ``filter.user.details.age``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nexxus.core.errors import InvalidArgument
from nexxus.core.filterquery.ast import And, AuthContext, Compare, FilterNode, In, Or, Scalar
from nexxus.core.schema import (
    MAX_SAFE_INTEGER,
    FieldKind,
    FieldSpec,
    ModelSchema,
    format_datetime,
    parse_datetime,
)

__all__ = ["MAX_IN_VALUES", "parse_filter"]

# Longest accepted `in` list.
MAX_IN_VALUES = 1000

_LOGIC: dict[str, type[And] | type[Or]] = {"$and": And, "and": And, "$or": Or, "or": Or}
_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in"})
_AUTH_PREFIX = "$auth."
_AUTH_KEYS = ("user_id", "device_id")
_SCALAR_KINDS = frozenset(
    {FieldKind.STRING, FieldKind.NUMBER, FieldKind.INTEGER, FieldKind.BOOLEAN, FieldKind.DATETIME}
)
_KIND_NOUN = {
    FieldKind.STRING: "a string",
    FieldKind.NUMBER: "a number",
    FieldKind.INTEGER: "an integer",
    FieldKind.BOOLEAN: "a boolean",
    FieldKind.DATETIME: "an RFC 3339 timestamp string",
}


def parse_filter(
    raw: Mapping[str, Any],
    schema: ModelSchema,
    *,
    path: str = "filter",
    auth: AuthContext | None = None,
    max_depth: int = 8,
    max_nodes: int = 256,
) -> FilterNode:
    """Validate `raw` against `schema` and return its tree.

    `path` prefixes every error's `field`. `auth` supplies ``"$auth.user_id"`` /
    ``"$auth.device_id"`` values. `max_depth` bounds the nesting of filter
    objects (the top level is depth 1; each $and/$or adds one); `max_nodes`
    bounds the nodes of the resulting tree (Compare, In, And, Or)."""
    return _Parser(schema, auth, max_depth, max_nodes).filter(raw, path, 1)


class _Parser:
    __slots__ = ("auth", "max_depth", "max_nodes", "nodes", "schema")

    def __init__(self, schema: ModelSchema, auth: AuthContext | None, max_depth: int, max_nodes: int) -> None:
        self.schema = schema
        self.auth = auth
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.nodes = 0

    def count(self, node: FilterNode, path: str) -> FilterNode:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise InvalidArgument(
                f"filter has more than {self.max_nodes} nodes", field=path, reason="FILTER_TOO_LARGE"
            )
        return node

    def filter(self, raw: Any, path: str, depth: int) -> FilterNode:
        if not isinstance(raw, Mapping):
            raise InvalidArgument("a filter must be an object", field=path)
        if depth > self.max_depth:
            raise InvalidArgument(
                f"filter nested deeper than {self.max_depth} levels", field=path, reason="FILTER_TOO_DEEP"
            )
        if not raw:
            raise InvalidArgument("a filter must not be empty", field=path)
        parts: list[FilterNode] = []
        for key, value in raw.items():
            if not isinstance(key, str):
                raise InvalidArgument("filter keys must be strings", field=path)
            kp = f"{path}.{key}"
            logic = _LOGIC.get(key)
            if logic is not None:
                parts.append(self.logic(logic, value, kp, depth))
            elif key.startswith("$"):
                raise InvalidArgument(f"unknown operator {key!r}", field=kp, reason="UNKNOWN_OPERATOR")
            else:
                parts.append(self.field(key, value, kp))
        if len(parts) == 1:
            return parts[0]
        return self.count(And(tuple(parts)), path)

    def logic(self, cls: type[And] | type[Or], value: Any, path: str, depth: int) -> FilterNode:
        if not isinstance(value, list | tuple) or not value:
            raise InvalidArgument("must be a non-empty list of filters", field=path)
        children = tuple(self.filter(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        return self.count(cls(children), path)

    def field(self, key: str, ops: Any, path: str) -> FilterNode:
        fpath = tuple(key.split("."))
        if not all(fpath):
            raise InvalidArgument(f"invalid field path {key!r}", field=path, reason="UNKNOWN_FIELD")
        spec = self.schema.field_at(fpath)
        if spec is None:
            raise InvalidArgument(f"unknown field {key!r}", field=path, reason="UNKNOWN_FIELD")
        if spec.kind not in _SCALAR_KINDS:
            raise InvalidArgument(
                f"{spec.kind.value} field {key!r} cannot be compared",
                field=path,
                reason="FIELD_NOT_COMPARABLE",
            )
        if not spec.filterable:
            raise InvalidArgument(
                f"field {key!r} is not filterable", field=path, reason="FIELD_NOT_FILTERABLE"
            )
        if not isinstance(ops, Mapping) or not ops:
            raise InvalidArgument(
                "must be a non-empty object of operators (eq, ne, gt, gte, lt, lte, in)", field=path
            )
        parts: list[FilterNode] = []
        for op_key, value in ops.items():
            op_path = f"{path}.{op_key}"
            op = op_key.removeprefix("$") if isinstance(op_key, str) else ""
            if op not in _OPS:
                raise InvalidArgument(
                    f"unknown operator {op_key!r}", field=op_path, reason="UNKNOWN_OPERATOR"
                )
            if op == "in":
                parts.append(self.count(In(fpath, self.in_values(value, spec, op_path), spec.kind), op_path))
            else:
                parts.append(
                    self.count(Compare(fpath, op, self.value(value, spec, op, op_path), spec.kind), op_path)
                )
        if len(parts) == 1:
            return parts[0]
        return self.count(And(tuple(parts)), path)

    def in_values(self, value: Any, spec: FieldSpec, path: str) -> tuple[Scalar, ...]:
        if not isinstance(value, list | tuple):
            raise InvalidArgument("`in` takes a list of values", field=path)
        if not value:
            raise InvalidArgument("`in` takes a non-empty list", field=path)
        if len(value) > MAX_IN_VALUES:
            raise InvalidArgument(
                f"`in` takes at most {MAX_IN_VALUES} values", field=path, reason="FILTER_TOO_LARGE"
            )
        out: list[Scalar] = []
        for i, item in enumerate(value):
            ip = f"{path}[{i}]"
            if item is None:
                raise InvalidArgument("null is allowed only with eq / ne", field=ip)
            out.append(self.value(item, spec, "in", ip))
        return tuple(out)

    def value(self, value: Any, spec: FieldSpec, op: str, path: str) -> Scalar:
        kind = spec.kind
        if isinstance(value, str) and value.startswith(_AUTH_PREFIX):
            value = self.auth_value(value, path)
        if value is None:
            if op not in ("eq", "ne"):
                raise InvalidArgument("null is allowed only with eq / ne", field=path)
            return None
        if kind is FieldKind.BOOLEAN and op not in ("eq", "ne", "in"):
            raise InvalidArgument("boolean fields support only eq, ne and in", field=path)
        if kind is FieldKind.BOOLEAN:
            if isinstance(value, bool):
                return value
        elif kind is FieldKind.INTEGER:
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return _check_int(value, path)
        elif kind is FieldKind.NUMBER:
            if isinstance(value, int) and not isinstance(value, bool):
                return _check_int(value, path)
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise InvalidArgument("must be a finite number", field=path)
                return value
        elif isinstance(value, str):
            if "\x00" in value:
                raise InvalidArgument("strings must not contain U+0000", field=path)
            if kind is FieldKind.DATETIME:
                try:
                    return format_datetime(parse_datetime(value))
                except ValueError as exc:
                    raise InvalidArgument(f"must be an RFC 3339 timestamp ({exc})", field=path) from None
            if spec.enum_values and op in ("eq", "ne", "in") and value not in spec.enum_values:
                raise InvalidArgument(f"must be one of {', '.join(spec.enum_values)}", field=path)
            return value
        raise InvalidArgument(f"must be {_KIND_NOUN[kind]} (the field is {kind.value})", field=path)

    def auth_value(self, value: str, path: str) -> str:
        name = value.removeprefix(_AUTH_PREFIX)
        if name not in _AUTH_KEYS:
            raise InvalidArgument(
                f"unknown variable {value!r}; expected $auth.user_id or $auth.device_id", field=path
            )
        resolved = getattr(self.auth, name, "") if self.auth is not None else ""
        if not resolved:
            raise InvalidArgument(f"{value} needs an authenticated {name.removesuffix('_id')}", field=path)
        return str(resolved)


def _check_int(value: int, path: str) -> int:
    if abs(value) > MAX_SAFE_INTEGER:
        raise InvalidArgument("integer beyond +-(2**53 - 1) (not exactly representable)", field=path)
    return value
