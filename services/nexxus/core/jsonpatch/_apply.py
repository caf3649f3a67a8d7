"""Applying a parsed patch to a document, and the partial model it changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexxus.core.errors import FailedPrecondition
from nexxus.core.jsonpatch._model import Patch, PatchOp
from nexxus.core.schema import ModelSchema

__all__ = ["apply_patch", "partial_model"]


def apply_patch(data: Mapping[str, Any], patch: Patch, schema: ModelSchema) -> dict[str, Any]:
    """Apply `patch` to a copy of `data`; return the new, schema-validated document.

    All-or-nothing: `data` is never modified. Raises FailedPrecondition (the
    document does not fit the operation: a missing path for replace/remove, a
    non-object on the way, a non-number to increment, a non-array to append to)
    or InvalidArgument (the result breaks the schema). `field` names the
    operation path, e.g. ``patch[1].path[0]``.
    """
    doc = _copy(data)
    for i, op in enumerate(patch):
        for j, parts in enumerate(op.parts):
            where = f"patch[{i}].path[{j}]"
            value = op.values[j] if op.values else None
            _apply_one(doc, op.op, parts, value, where)
    return schema.validate_object(doc)


def _apply_one(doc: dict[str, Any], op: PatchOp, parts: tuple[str, ...], value: Any, where: str) -> None:
    dotted = ".".join(parts)
    create = op not in (PatchOp.REPLACE, PatchOp.REMOVE)
    parent = _parent(doc, parts, create=create, where=where)
    key = parts[-1]
    if parent is None or (op in (PatchOp.REPLACE, PatchOp.REMOVE) and key not in parent):
        raise FailedPrecondition(f"{op.value}: field {dotted!r} does not exist", field=where)
    if op is PatchOp.ADD or op is PatchOp.REPLACE:
        parent[key] = _copy(value)
    elif op is PatchOp.REMOVE:
        del parent[key]
    elif op is PatchOp.INCREMENT:
        current = parent.get(key)
        if current is None:
            current = 0
        if not isinstance(current, int | float) or isinstance(current, bool):
            raise FailedPrecondition(f"increment: field {dotted!r} is not a number", field=where)
        parent[key] = current + value
    else:  # APPEND
        current = parent.get(key)
        if current is None:
            current = parent[key] = []
        if not isinstance(current, list):
            raise FailedPrecondition(f"append: field {dotted!r} is not an array", field=where)
        current.append(_copy(value))


def _parent(
    doc: dict[str, Any], parts: tuple[str, ...], *, create: bool, where: str
) -> dict[str, Any] | None:
    """The object holding the last part; intermediate objects are created when
    `create` (missing or null), else None is returned for a missing one."""
    node = doc
    for depth, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            if not create:
                return None
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise FailedPrecondition(f"field {'.'.join(parts[: depth + 1])!r} is not an object", field=where)
        node = nxt
    return node


def partial_model(patch: Patch) -> dict[str, Any]:
    """The seed's getPartialModel: a nested dict of the fields the patch changes
    and their new values. Removed fields map to None; for increment and append
    the value is the operand (the amount added, the element appended), not the
    resulting field value. When several operations touch a field, the last wins.
    """
    out: dict[str, Any] = {}
    for op in patch:
        for j, parts in enumerate(op.parts):
            value = None if op.op is PatchOp.REMOVE else _copy(op.values[j])
            node = out
            for part in parts[:-1]:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = node[part] = {}
                node = nxt
            node[parts[-1]] = value
    return out


def _copy(value: Any) -> Any:
    """A deep copy of a JSON-like value (Mappings become dicts, tuples lists)."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value
