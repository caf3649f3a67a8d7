"""Compile a filter tree into a boolean SQL expression over a JSON column.

- ``sqlite``: a TEXT column holding JSON, read with ``json_type`` /
  ``json_extract``; placeholders ``?``. Never NULL (``IS`` comparisons), so
  ``NOT`` is exact.
- ``postgres``: a JSONB column, read with ``->`` chains and ``jsonb_typeof``;
  placeholders ``$n`` numbered from `param_start`; strings compare
  ``COLLATE "C"`` (code point order); numbers compare as ``numeric``
  (parameters are `decimal.Decimal`, arrays are lists). Each leaf is a
  ``CASE`` so a cast never sees a value of another JSON type, and it is never
  NULL.

Field names are schema names (``[A-Za-z_][A-Za-z0-9_]*``) and are inlined as
literals (so expression indexes can match); values are always parameters.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from nexxus.core.filterquery.ast import And, Compare, FilterNode, In, Scalar
from nexxus.core.schema import FieldKind

__all__ = ["Dialect", "sql_path_expr", "sql_sort_exprs", "to_sql"]

Dialect = Literal["sqlite", "postgres"]

_SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_NUMERIC = (FieldKind.NUMBER, FieldKind.INTEGER)
# A column, optionally table-qualified: data, o.data, "o"."data".
_COLUMN = re.compile(
    r'(?:(?:[A-Za-z_][A-Za-z0-9_]*|"[A-Za-z_][A-Za-z0-9_]*")\.)?(?:[A-Za-z_][A-Za-z0-9_]*|"[A-Za-z_][A-Za-z0-9_]*")'
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_column(column: str) -> str:
    if not _COLUMN.fullmatch(column):
        raise ValueError(f"unsafe column expression {column!r}")
    return column


def _sqlite_path(path: tuple[str, ...]) -> str:
    return _literal("$" + "".join(f'."{p}"' for p in path))


def sql_path_expr(path: tuple[str, ...], dialect: Dialect, column: str = "data") -> str:
    """The JSON value at `path`: sqlite ``json_extract(col, '$."a"."b"')`` (an SQL
    value; booleans read as 0/1), postgres ``col->'a'->'b'`` (jsonb)."""
    column = _check_column(column)
    if dialect == "sqlite":
        return f"json_extract({column}, {_sqlite_path(path)})"
    return column + "".join(f"->{_literal(p)}" for p in path)


def sql_sort_exprs(path: tuple[str, ...], dialect: Dialect, column: str = "data") -> list[str]:
    """ORDER BY expressions (apply ASC/DESC to each) giving one order on both
    engines: missing/null, then false < true, then numbers, then strings by
    code point, then objects/arrays."""
    column = _check_column(column)
    if dialect == "sqlite":
        p = _sqlite_path(path)
        t = f"json_type({column}, {p})"
        rank = (
            f"(CASE {t} WHEN 'false' THEN 1 WHEN 'true' THEN 2 WHEN 'integer' THEN 3 WHEN 'real' THEN 3"
            f" WHEN 'text' THEN 4 WHEN 'object' THEN 5 WHEN 'array' THEN 5 ELSE 0 END)"
        )
        return [rank, f"json_extract({column}, {p})"]
    e = sql_path_expr(path, dialect, column)
    t = f"jsonb_typeof({e})"
    rank = (
        f"(CASE {t} WHEN 'boolean' THEN (CASE WHEN {e} = 'true'::jsonb THEN 2 ELSE 1 END)"
        f" WHEN 'number' THEN 3 WHEN 'string' THEN 4 WHEN 'object' THEN 5 WHEN 'array' THEN 5 ELSE 0 END)"
    )
    return [
        rank,
        f"(CASE WHEN {t} = 'number' THEN ({e})::numeric END)",
        f"(CASE WHEN {t} = 'string' THEN ({e} #>> '{{}}') COLLATE \"C\" END)",
    ]


def to_sql(
    node: FilterNode, dialect: Dialect, *, column: str = "data", param_start: int = 1
) -> tuple[str, list[Any]]:
    """A boolean SQL expression and its parameters (docs/filterquery.md)."""
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    b = _Builder(dialect, _check_column(column), param_start)
    return b.node(node), b.params


class _Builder:
    def __init__(self, dialect: Dialect, column: str, param_start: int) -> None:
        self.dialect = dialect
        self.column = column
        self.params: list[Any] = []
        self.next = param_start

    def param(self, value: Any) -> str:
        self.params.append(value)
        if self.dialect == "sqlite":
            return "?"
        n = self.next
        self.next += 1
        return f"${n}"

    def node(self, node: FilterNode) -> str:
        if isinstance(node, Compare):
            if node.op == "ne":
                return f"(NOT {self.eq(node.path, node.value, node.kind)})"
            if node.op == "eq":
                return self.eq(node.path, node.value, node.kind)
            return self.typed(node.path, node.kind, node.op, node.value)
        if isinstance(node, In):
            return self.member(node)
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(self.node(c) for c in node.children) + ")"

    # ---------------------------------------------------------------- leaves

    def eq(self, path: tuple[str, ...], value: Scalar, kind: FieldKind) -> str:
        if value is None:
            if self.dialect == "sqlite":
                return f"(COALESCE(json_type({self.column}, {_sqlite_path(path)}), 'null') = 'null')"
            e = sql_path_expr(path, "postgres", self.column)
            return f"(COALESCE(jsonb_typeof({e}), 'null') = 'null')"
        if kind is FieldKind.BOOLEAN:
            word = "true" if value else "false"
            if self.dialect == "sqlite":
                return f"(json_type({self.column}, {_sqlite_path(path)}) IS '{word}')"
            e = sql_path_expr(path, "postgres", self.column)
            return f"(COALESCE({e} = '{word}'::jsonb, FALSE))"
        return self.typed(path, kind, "eq", value)

    def typed(self, path: tuple[str, ...], kind: FieldKind, op: str, value: Scalar) -> str:
        sql_op = _SQL_OPS[op]
        if self.dialect == "sqlite":
            p = _sqlite_path(path)
            t = f"json_type({self.column}, {p})"
            test = f"COALESCE({t}, '') IN ('integer', 'real')" if kind in _NUMERIC else f"{t} IS 'text'"
            return f"({test} AND json_extract({self.column}, {p}) {sql_op} {self.param(value)})"
        e = sql_path_expr(path, "postgres", self.column)
        if kind in _NUMERIC:
            return (
                f"(CASE WHEN jsonb_typeof({e}) = 'number' THEN ({e})::numeric {sql_op} "
                f"{self.param(_decimal(value))}::numeric ELSE FALSE END)"
            )
        collate = "" if op == "eq" else ' COLLATE "C"'
        return (
            f"(CASE WHEN jsonb_typeof({e}) = 'string' THEN ({e} #>> '{{}}'){collate} {sql_op} "
            f"{self.param(value)}::text ELSE FALSE END)"
        )

    def member(self, node: In) -> str:
        path, kind = node.path, node.kind
        if kind is FieldKind.BOOLEAN:
            words = sorted({"true" if v else "false" for v in node.values})
            return "(" + " OR ".join(self.eq(path, w == "true", kind) for w in words) + ")"
        if self.dialect == "sqlite":
            p = _sqlite_path(path)
            t = f"json_type({self.column}, {p})"
            test = f"COALESCE({t}, '') IN ('integer', 'real')" if kind in _NUMERIC else f"{t} IS 'text'"
            marks = ", ".join(self.param(v) for v in node.values)
            return f"({test} AND json_extract({self.column}, {p}) IN ({marks}))"
        e = sql_path_expr(path, "postgres", self.column)
        if kind in _NUMERIC:
            arr = self.param([_decimal(v) for v in node.values])
            return (
                f"(CASE WHEN jsonb_typeof({e}) = 'number' THEN ({e})::numeric = ANY({arr}::numeric[])"
                " ELSE FALSE END)"
            )
        arr = self.param(list(node.values))
        return (
            f"(CASE WHEN jsonb_typeof({e}) = 'string' THEN ({e} #>> '{{}}') = ANY({arr}::text[])"
            " ELSE FALSE END)"
        )


def _decimal(value: Scalar) -> Decimal:
    """A number as the decimal its JSON text denotes (how JSONB stores it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))
