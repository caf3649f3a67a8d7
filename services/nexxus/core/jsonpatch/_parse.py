"""Parsing and validating patches against a model schema; proto conversion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nexxus.core.convert import py_to_value, value_to_py
from nexxus.core.errors import InvalidArgument
from nexxus.core.jsonpatch._model import (
    MAX_OPERATIONS,
    MAX_PATHS_PER_OPERATION,
    Operation,
    Patch,
    PatchOp,
)
from nexxus.core.schema import MAX_DOCUMENT_DEPTH, FieldKind, FieldSpec, ModelSchema, validate_field_name
from nexxus.v1 import common_pb2

__all__ = ["parse_patch", "patch_from_proto", "patch_to_dicts", "patch_to_proto"]

_OP_KEYS = frozenset({"op", "path", "value"})
_MISSING = object()


def parse_patch(ops: Sequence[Mapping[str, Any]], schema: ModelSchema, *, path: str = "patch") -> Patch:
    """Parse and validate a list of operations against `schema`.

    Raises InvalidArgument naming e.g. ``patch[1].path[0]`` or ``patch[0].value[1]``.
    """
    if isinstance(ops, str | bytes) or not isinstance(ops, Sequence):
        raise InvalidArgument("a patch must be a list of operations", field=path)
    if len(ops) > MAX_OPERATIONS:
        raise InvalidArgument(f"a patch holds at most {MAX_OPERATIONS} operations", field=path)
    return Patch(tuple(_parse_op(raw, schema, f"{path}[{i}]") for i, raw in enumerate(ops)))


def _parse_op(raw: Any, schema: ModelSchema, p: str) -> Operation:
    if not isinstance(raw, Mapping):
        raise InvalidArgument("an operation must be an object", field=p)
    for key in raw:
        if key not in _OP_KEYS:
            raise InvalidArgument(f"unknown key {key!r} (expected op, path, value)", field=f"{p}.{key}")
    try:
        op = PatchOp(str(raw.get("op")))
    except ValueError:
        raise InvalidArgument(
            f"unknown op {raw.get('op')!r}; expected one of {', '.join(o.value for o in PatchOp)}",
            field=f"{p}.op",
        ) from None
    raw_path, raw_value = raw.get("path"), raw.get("value", _MISSING)
    paths = _paths(raw_path, p)
    values: list[Any]
    if op is PatchOp.REMOVE:
        if raw_value not in (_MISSING, None, []):
            raise InvalidArgument("remove takes no value", field=f"{p}.value")
        values = []
    elif raw_value is _MISSING:
        raise InvalidArgument(f"{op.value} needs a value", field=f"{p}.value")
    elif isinstance(raw_path, str) and not isinstance(raw_value, list | tuple):
        values = [raw_value]  # shorthand: one path, one value
    elif not isinstance(raw_value, list | tuple):
        raise InvalidArgument("value must be a list with one value per path", field=f"{p}.value")
    else:
        values = list(raw_value)
        if len(values) != len(paths):
            raise InvalidArgument(f"{len(paths)} path(s) but {len(values)} value(s)", field=f"{p}.value")
    out_values = []
    for i, dotted in enumerate(paths):
        parts = tuple(dotted.split("."))
        spec = _resolve(schema, parts, f"{p}.path[{i}]")
        if op is PatchOp.REMOVE:
            if spec is not None and spec.required:
                raise InvalidArgument(f"cannot remove required field {dotted!r}", field=f"{p}.path[{i}]")
            continue
        out_values.append(_check_value(op, schema, spec, values[i], parts, f"{p}.value[{i}]"))
    return Operation(op=op, paths=tuple(paths), values=tuple(out_values))


def _paths(raw: Any, p: str) -> list[str]:
    if isinstance(raw, str):
        paths = [raw]
    elif isinstance(raw, list | tuple) and raw:
        paths = list(raw)
    else:
        raise InvalidArgument("path must be a string or a non-empty list of strings", field=f"{p}.path")
    if len(paths) > MAX_PATHS_PER_OPERATION:
        raise InvalidArgument(f"at most {MAX_PATHS_PER_OPERATION} paths per operation", field=f"{p}.path")
    seen: list[tuple[str, ...]] = []
    for i, dotted in enumerate(paths):
        pp = f"{p}.path[{i}]"
        if not isinstance(dotted, str):
            raise InvalidArgument("a path must be a string", field=pp)
        parts = tuple(dotted.split("."))
        if len(parts) >= MAX_DOCUMENT_DEPTH:
            raise InvalidArgument(f"path deeper than {MAX_DOCUMENT_DEPTH - 1} fields", field=pp)
        for part in parts:
            validate_field_name(part, pp)
        for other in seen:
            n = min(len(other), len(parts))
            if other[:n] == parts[:n]:
                raise InvalidArgument(f"path {dotted!r} overlaps another path of this operation", field=pp)
        seen.append(parts)
    return paths


def _resolve(schema: ModelSchema, parts: tuple[str, ...], p: str) -> FieldSpec | None:
    """The spec at `parts` (None: any JSON, inside a free-form object or an
    additional field). Raises when the schema forbids the path."""
    fields = schema.fields
    spec: FieldSpec | None = None
    for depth, part in enumerate(parts):
        spec = fields.get(part)
        if spec is None:
            if not schema.allow_additional_fields:
                raise InvalidArgument(f"unknown field {'.'.join(parts[: depth + 1])!r}", field=p)
            return None
        if depth < len(parts) - 1:
            if spec.kind is not FieldKind.OBJECT:
                raise InvalidArgument(
                    f"{'.'.join(parts[: depth + 1])!r} is a {spec.kind.value}, not an object", field=p
                )
            if spec.open:
                return None
            fields = spec.fields
    return spec


def _check_value(
    op: PatchOp,
    schema: ModelSchema,
    spec: FieldSpec | None,
    value: Any,
    parts: tuple[str, ...],
    p: str,
) -> Any:
    depth = len(parts) + 1
    if op is PatchOp.INCREMENT:
        if spec is not None and spec.kind not in (FieldKind.NUMBER, FieldKind.INTEGER):
            raise InvalidArgument(f"increment needs a number field, not {spec.kind.value}", field=p)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidArgument("increment takes a number", field=p)
        return schema.validate_value(spec or FieldSpec(FieldKind.NUMBER), value, path=p, depth=depth)
    if op is PatchOp.APPEND:
        if spec is not None and spec.kind is not FieldKind.ARRAY:
            raise InvalidArgument(f"append needs an array field, not {spec.kind.value}", field=p)
        return schema.validate_value(spec.items if spec else None, value, path=p, depth=depth + 1)
    if value is None and spec is not None and spec.required:
        raise InvalidArgument("a required field cannot be null", field=p)
    return schema.validate_value(spec, value, path=p, depth=depth)


def patch_from_proto(ops: Sequence[common_pb2.JsonPatchOperation], schema: ModelSchema) -> Patch:
    """Parse protobuf operations (always the list form) against `schema`."""
    dicts: list[dict[str, Any]] = []
    for pb in ops:
        d: dict[str, Any] = {"op": pb.op, "path": list(pb.path)}
        if pb.op != PatchOp.REMOVE.value or len(pb.value):
            d["value"] = [value_to_py(v) for v in pb.value]
        dicts.append(d)
    return parse_patch(dicts, schema)


def patch_to_proto(patch: Patch) -> list[common_pb2.JsonPatchOperation]:
    return [
        common_pb2.JsonPatchOperation(
            op=o.op.value, path=list(o.paths), value=[py_to_value(v) for v in o.values]
        )
        for o in patch
    ]


def patch_to_dicts(patch: Patch) -> list[dict[str, Any]]:
    """The canonical list form (paths and values always lists; no value for remove)."""
    return [o.to_dict() for o in patch]
