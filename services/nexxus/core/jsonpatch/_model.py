"""The parsed form of a Nexxus JsonPatch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["MAX_OPERATIONS", "MAX_PATHS_PER_OPERATION", "Operation", "Patch", "PatchOp"]

MAX_OPERATIONS = 100
MAX_PATHS_PER_OPERATION = 100


class PatchOp(StrEnum):
    ADD = "add"
    REPLACE = "replace"
    REMOVE = "remove"
    INCREMENT = "increment"
    APPEND = "append"


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation: `paths[i]` (dot-delimited) gets `values[i]`.

    `values` is empty for REMOVE. Values are normalized by the schema (datetimes
    in canonical UTC form, integral floats of integer fields as ints).
    """

    op: PatchOp
    paths: tuple[str, ...]
    values: tuple[Any, ...] = ()

    @property
    def parts(self) -> tuple[tuple[str, ...], ...]:
        """Each path split on ``.``."""
        return tuple(tuple(p.split(".")) for p in self.paths)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op.value, "path": list(self.paths)}
        if self.op is not PatchOp.REMOVE:
            out["value"] = list(self.values)
        return out


@dataclass(frozen=True, slots=True)
class Patch:
    """A validated patch: operations applied in order, all-or-nothing."""

    operations: tuple[Operation, ...]

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)
