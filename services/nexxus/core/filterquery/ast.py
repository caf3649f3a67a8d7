"""The parsed, validated FilterQuery tree and its canonical dict form.

A tree is built only by `parse_filter` (which validates it against a model
schema); every backend (`compile_matcher`, `to_sql`, `to_elasticsearch`)
consumes the same tree, so the semantics live in one place: docs/filterquery.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexxus.core.schema import FieldKind

__all__ = [
    "COMPARE_OPS",
    "And",
    "AuthContext",
    "Compare",
    "FilterNode",
    "In",
    "Or",
    "Scalar",
    "filter_to_dict",
    "iter_leaves",
]

Scalar = str | int | float | bool | None

# The comparison operators of `Compare`.
COMPARE_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte"})


@dataclass(frozen=True, slots=True)
class Compare:
    """`path` `op` `value`. `kind` is the field's schema kind (never OBJECT/ARRAY).

    `value` is None only for eq/ne; it is an int for INTEGER fields, an int or a
    float for NUMBER, a bool for BOOLEAN, a string for STRING and a normalized
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` string for DATETIME."""

    path: tuple[str, ...]
    op: str
    value: Scalar
    kind: FieldKind


@dataclass(frozen=True, slots=True)
class In:
    """`path` equals one of `values` (non-empty, no None)."""

    path: tuple[str, ...]
    values: tuple[Scalar, ...]
    kind: FieldKind


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[FilterNode, ...]


FilterNode = Compare | In | And | Or


@dataclass(frozen=True)
class AuthContext:
    """The caller, for ``"$auth.user_id"`` / ``"$auth.device_id"`` values."""

    user_id: str = ""
    device_id: str = ""


def filter_to_dict(node: FilterNode) -> dict[str, Any]:
    """The canonical JSON form: ``{"a.b": {"eq": v}}``, ``{"a": {"in": [...]}}``,
    ``{"$and": [...]}``, ``{"$or": [...]}``. ``parse_filter(filter_to_dict(n)) == n``."""
    if isinstance(node, Compare):
        return {".".join(node.path): {node.op: node.value}}
    if isinstance(node, In):
        return {".".join(node.path): {"in": list(node.values)}}
    if isinstance(node, And):
        return {"$and": [filter_to_dict(c) for c in node.children]}
    return {"$or": [filter_to_dict(c) for c in node.children]}


def iter_leaves(node: FilterNode) -> list[Compare | In]:
    """Every Compare / In of a tree, depth first."""
    if isinstance(node, And | Or):
        out: list[Compare | In] = []
        for child in node.children:
            out.extend(iter_leaves(child))
        return out
    return [node]
