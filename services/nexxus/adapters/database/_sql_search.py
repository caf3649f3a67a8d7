"""`search_objects` as SQL: filter, owner scope, sort, keyset pagination.

Sort order, identical on both backends:
  - ``id``, ``version``, ``create_time``, ``update_time`` sort by their columns;
  - a field path (``priority``, ``details.age``) sorts by the JSON value with
    `nexxus.core.filterquery.sql_sort_exprs`: a type rank — missing/null <
    false < true < numbers < strings (by code point) < objects/arrays — then
    the value. Missing and null therefore come first ascending and last
    descending. Sort on filterable scalar fields: the order among objects and
    arrays is not specified (and may differ between backends);
  - ``id`` is always the final tie-breaker (ascending unless given explicitly).

Page tokens are keyset cursors: the last row's component values plus a
fingerprint of (model, owner, filter, sort); a token used with another query,
or tampered with, is InvalidArgument(field="page_token").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from nexxus.core.errors import InvalidArgument
from nexxus.core.filterquery import filter_to_dict, sql_sort_exprs, to_sql
from nexxus.core.models import SortKey

from ._sql_common import (
    OBJECT_COLUMNS,
    Dialect,
    Row,
    decode_token,
    dumps,
    encode_token,
    from_micros,
    to_micros,
)

if TYPE_CHECKING:
    from nexxus.core.filterquery import FilterNode

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "SearchQuery", "build_search"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_COLUMN_SORTS = {"id": "id", "version": "version", "create_time": "created_at", "update_time": "updated_at"}
# How a sort component's value travels in a token.
# "any" is SQLite's JSON scalar (None, number or string), "dec" PostgreSQL's numeric.
Kind = Literal["text", "int", "ts", "any", "dec", "text?"]


@dataclass(frozen=True, slots=True)
class _Component:
    expr: str
    descending: bool
    kind: Kind
    nullable: bool = False


@dataclass(slots=True)
class SearchQuery:
    """A compiled search: run `sql` with `params`, then `page()` the rows."""

    sql: str
    params: list[Any]
    page_size: int
    components: list[_Component]
    fingerprint: str

    def next_token(self, rows: Sequence[Row]) -> str:
        """The token for the page after `rows` ("" when `rows` was the last page)."""
        if len(rows) <= self.page_size:
            return ""
        last = rows[self.page_size - 1]
        values: list[Any] = []
        for i, comp in enumerate(self.components):
            value = last[8 + i]
            if comp.kind == "ts":
                value = value if isinstance(value, int) else to_micros(value)
            elif comp.kind == "dec" and value is not None:
                value = str(value)
            values.append(value)
        return encode_token({"f": self.fingerprint, "v": values})


def _json_components(d: Dialect, path: tuple[str, ...], descending: bool) -> list[_Component]:
    exprs = sql_sort_exprs(path, d.name, "data")
    kinds: list[Kind] = ["int", "dec", "text?"] if d.is_pg else ["int", "any"]
    return [
        _Component(expr, descending, kind, nullable=i > 0)
        for i, (expr, kind) in enumerate(zip(exprs, kinds, strict=True))
    ]


def _components(d: Dialect, sort: Sequence[SortKey]) -> list[_Component]:
    comps: list[_Component] = []
    has_id = False
    for i, key in enumerate(sort):
        column = _COLUMN_SORTS.get(key.field)
        if column is not None:
            kind: Kind = "text" if column == "id" else "int" if column == "version" else "ts"
            comps.append(_Component(column, key.descending, kind))
            has_id = has_id or column == "id"
            continue
        path = tuple(key.field.split("."))
        if not all(_SEGMENT.fullmatch(seg) for seg in path):
            raise InvalidArgument(f"cannot sort by {key.field!r}", field=f"sort[{i}]")
        comps.extend(_json_components(d, path, key.descending))
    if not has_id:
        comps.append(_Component("id", False, "text"))
    return comps


class _Params:
    def __init__(self, d: Dialect) -> None:
        self.d = d
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return self.d.ph(len(self.values))


def _check_value(comp: _Component, value: Any) -> bool:
    if comp.kind == "text":
        return isinstance(value, str)
    if comp.kind == "text?":
        return value is None or isinstance(value, str)
    if comp.kind in ("int", "ts"):
        return isinstance(value, int) and not isinstance(value, bool)
    if comp.kind == "dec":
        if value is None:
            return True
        try:
            return isinstance(value, str) and Decimal(value).is_finite()
        except ArithmeticError:
            return False
    return value is None or (isinstance(value, int | float | str) and not isinstance(value, bool))


def _keyset(d: Dialect, comps: list[_Component], values: list[Any], params: _Params) -> str:
    """Rows strictly after `values` in the order of `comps` (ASC NULLS FIRST /
    DESC NULLS LAST): OR over i of (c_0 = v_0 AND … AND c_i after v_i). Every
    occurrence binds its own parameter (SQLite's ``?`` are positional)."""
    bound: list[Any] = []
    for comp, raw in zip(comps, values, strict=True):
        if comp.kind == "ts":
            bound.append(d.ts_in(from_micros(raw)))
        elif comp.kind == "dec" and raw is not None:
            bound.append(Decimal(raw))
        else:
            bound.append(raw)

    def same(comp: _Component, value: Any) -> str:
        return f"{comp.expr} IS NULL" if value is None else f"{comp.expr} = {params.add(value)}"

    def after(comp: _Component, value: Any) -> str:
        if value is None:
            return "FALSE" if comp.descending else f"{comp.expr} IS NOT NULL"
        cond = f"{comp.expr} {'<' if comp.descending else '>'} {params.add(value)}"
        if comp.descending and comp.nullable:
            cond = f"({cond} OR {comp.expr} IS NULL)"
        return cond

    alternatives = []
    for i, comp in enumerate(comps):
        parts = [same(comps[j], bound[j]) for j in range(i)]
        parts.append(after(comp, bound[i]))
        alternatives.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(alternatives) + ")"


def build_search(
    d: Dialect,
    app_id: str,
    model: str,
    filter: FilterNode | None,
    sort: Sequence[SortKey],
    page_size: int,
    page_token: str,
    owner_id: str | None,
) -> SearchQuery:
    """Compile one search page (fetching one extra row to know whether more follow)."""
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    comps = _components(d, sort)
    params = _Params(d)
    where = [f"app_id = {params.add(app_id)}", f"model = {params.add(model)}"]
    if owner_id is not None:
        where.append(f"owner_id = {params.add(owner_id)}")
    filter_repr: Any = None
    if filter is not None:
        clause, filter_params = to_sql(filter, d.name, column="data", param_start=len(params.values) + 1)
        params.values.extend(filter_params)
        where.append(f"({clause})")
        filter_repr = filter_to_dict(filter)
    fingerprint = hashlib.sha256(
        dumps([model, owner_id, filter_repr, [[k.field, k.descending] for k in sort]]).encode()
    ).hexdigest()[:16]
    if page_token:
        payload = decode_token(page_token)
        if (
            not isinstance(payload, dict)
            or payload.get("f") != fingerprint
            or not isinstance(payload.get("v"), list)
            or len(payload["v"]) != len(comps)
            or not all(_check_value(c, v) for c, v in zip(comps, payload["v"], strict=True))
        ):
            raise InvalidArgument("page token does not belong to this query", field="page_token")
        where.append(_keyset(d, comps, payload["v"], params))
    extra = ", ".join(c.expr for c in comps)
    order = ", ".join(f"{c.expr} {'DESC NULLS LAST' if c.descending else 'ASC NULLS FIRST'}" for c in comps)
    sql = (
        f"SELECT {OBJECT_COLUMNS}, {extra} FROM {d.prefix}objects WHERE {' AND '.join(where)}"
        f" ORDER BY {order} LIMIT {size + 1}"
    )
    return SearchQuery(sql, params.values, size, comps, fingerprint)
