"""Compile a filter tree into a Python predicate over an object's data dict.

The router calls the predicate per event per candidate subscription, so the
tree is turned into nested closures once; a call does no dispatch on the tree.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from nexxus.core.filterquery.ast import And, Compare, FilterNode, In
from nexxus.core.schema import FieldKind

__all__ = ["Matcher", "compile_matcher"]

Matcher = Callable[[Mapping[str, Any]], bool]
_Getter = Callable[[Mapping[str, Any]], Any]

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def compile_matcher(node: FilterNode) -> Matcher:
    """A predicate: True when the data dict matches `node` (docs/filterquery.md)."""
    if isinstance(node, Compare):
        return _compare(node)
    if isinstance(node, In):
        return _in(node)
    children = tuple(compile_matcher(c) for c in node.children)
    if isinstance(node, And):
        if len(children) == 2:
            a, b = children
            return lambda d: a(d) and b(d)
        return lambda d: all(c(d) for c in children)
    if len(children) == 2:
        a, b = children
        return lambda d: a(d) or b(d)
    return lambda d: any(c(d) for c in children)


def _getter(path: tuple[str, ...]) -> _Getter:
    """Value at `path`, or None when missing (or a parent is not an object)."""
    if len(path) == 1:
        (key,) = path

        def get1(d: Mapping[str, Any]) -> Any:
            return d.get(key)

        return get1

    def get(d: Mapping[str, Any]) -> Any:
        cur: Any = d
        for key in path:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(key)
        return cur

    return get


def _type_test(kind: FieldKind) -> Callable[[Any], bool]:
    """Whether a stored value has the JSON type that `kind` compares with."""
    if kind is FieldKind.BOOLEAN:
        return lambda v: v is True or v is False
    if kind is FieldKind.NUMBER or kind is FieldKind.INTEGER:
        return lambda v: (
            (type(v) is int or type(v) is float) or (isinstance(v, int | float) and not isinstance(v, bool))
        )
    return lambda v: isinstance(v, str)


def _eq(get: _Getter, value: Any, kind: FieldKind) -> Matcher:
    if value is None:
        return lambda d: get(d) is None
    if kind is FieldKind.BOOLEAN:
        if value:
            return lambda d: get(d) is True
        return lambda d: get(d) is False
    fits = _type_test(kind)

    def eq(d: Mapping[str, Any]) -> bool:
        v = get(d)
        return fits(v) and bool(v == value)

    return eq


def _compare(node: Compare) -> Matcher:
    get = _getter(node.path)
    if node.op == "eq":
        return _eq(get, node.value, node.kind)
    if node.op == "ne":
        eq = _eq(get, node.value, node.kind)
        return lambda d: not eq(d)
    cmp = _ORDER[node.op]
    fits = _type_test(node.kind)
    value = node.value

    def ordered(d: Mapping[str, Any]) -> bool:
        v = get(d)
        return fits(v) and cmp(v, value)

    return ordered


def _in(node: In) -> Matcher:
    get = _getter(node.path)
    if node.kind is FieldKind.BOOLEAN:
        accepted = tuple({bool(v) for v in node.values})
        if len(accepted) == 2:
            return lambda d: get(d) is True or get(d) is False
        return _eq(get, accepted[0], node.kind)
    fits = _type_test(node.kind)
    # Hashable set: strings with strings, numbers with numbers (2 == 2.0 hash alike).
    values = frozenset(node.values)

    def member(d: Mapping[str, Any]) -> bool:
        v = get(d)
        return fits(v) and v in values

    return member
