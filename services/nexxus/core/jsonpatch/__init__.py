"""The Nexxus JsonPatch dialect (not RFC 6902); see docs/jsonpatch.md.

    {"op": "replace", "path": ["status", "priority"], "value": ["completed", "low"]}

`parse_patch` validates operations against a model schema into a `Patch`;
`apply_patch` applies one all-or-nothing; `partial_model` gives the changed
fields (the seed's getPartialModel).
"""

from nexxus.core.jsonpatch._apply import apply_patch, partial_model
from nexxus.core.jsonpatch._model import (
    MAX_OPERATIONS,
    MAX_PATHS_PER_OPERATION,
    Operation,
    Patch,
    PatchOp,
)
from nexxus.core.jsonpatch._parse import parse_patch, patch_from_proto, patch_to_dicts, patch_to_proto

__all__ = [
    "MAX_OPERATIONS",
    "MAX_PATHS_PER_OPERATION",
    "Operation",
    "Patch",
    "PatchOp",
    "apply_patch",
    "parse_patch",
    "partial_model",
    "patch_from_proto",
    "patch_to_dicts",
    "patch_to_proto",
]
