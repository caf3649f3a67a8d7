"""The import layering of the `nexxus` package: the core imports nothing above
it, adapters only the core, and no service imports another service's code (the
transport runs no api code, the api no transport code). Every import counts,
including those inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "services" / "nexxus"

# layer → the layers it may import (itself and the generated `v1` always).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "adapters": {"core"},
    "auth": {"core"},
    "rpc": {"core", "auth"},
    "subscribing": {"core", "auth"},
    "workers": {"core"},
    "writer": {"core"},
    "router": {"core", "auth"},
    "transport": {"core", "auth", "rpc", "router"},
    "api": {"core", "auth", "rpc", "subscribing"},
}
# Composition roots: they wire the layers together and may import any of them.
ROOTS = {"runtime", "cli", "devserver", "__init__"}


def layer_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def nexxus_imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, first component under `nexxus.`) of every import of the package in
    `source`, a module of `package` (for relative imports)."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            elif node.module:
                names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "nexxus" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if layer_of(p) not in ROOTS)


def test_every_layer_is_known() -> None:
    layers = {layer_of(p) for p in ROOT.rglob("*.py")}
    assert layers <= set(ALLOWED) | ROOTS, layers - set(ALLOWED) - ROOTS


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    layer = layer_of(path)
    allowed = ALLOWED[layer] | {layer, "v1"}
    package = ".".join(("nexxus", *path.relative_to(ROOT).parts[:-1]))
    found = nexxus_imports(path.read_text(), package)
    wrong = [f"line {line}: nexxus.{target}" for line, target in found if target not in allowed]
    assert not wrong, f"{layer} may import only {sorted(allowed)}; {path.name} imports {wrong}"


def test_the_checker_sees_nested_relative_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from nexxus.adapters.registry import x\n"
        "def f():\n    import nexxus.api.server\n"
        "from ...transport import hub\n"
        "from . import errors\n"
    )
    found = sorted(t for _, t in nexxus_imports(source, "nexxus.core.config"))
    assert found == ["adapters", "api", "core", "transport"]
