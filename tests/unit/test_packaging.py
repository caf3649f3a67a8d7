"""pyproject.toml lists every package, the console script and importable entry points."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = ROOT / "services" / "nexxus"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def source_packages() -> set[str]:
    found = set()
    for init in PACKAGE_ROOT.rglob("__init__.py"):
        if "__pycache__" in init.parts:
            continue
        rel = init.parent.relative_to(PACKAGE_ROOT)
        found.add(".".join(("nexxus", *rel.parts)))
    return found


def test_every_package_is_listed() -> None:
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    packages = source_packages()
    assert "nexxus" in packages
    assert "nexxus.core.config" in packages
    missing = sorted(packages - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_listed_nexxus_packages_exist() -> None:
    listed = {p for p in pyproject()["tool"]["setuptools"]["packages"] if p.startswith("nexxus.")}
    stale = sorted(p for p in listed - {"nexxus.v1"} if p not in source_packages())
    assert not stale, f"listed in pyproject.toml but no __init__.py under services/: {stale}"


def test_console_script() -> None:
    assert pyproject()["project"]["scripts"]["nexxus"] == "nexxus.cli:main"


def test_entry_points_point_into_listed_packages() -> None:
    data = pyproject()
    listed = set(data["tool"]["setuptools"]["packages"])
    for group, entries in data["project"]["entry-points"].items():
        assert group.startswith("nexxus."), group
        for name, value in entries.items():
            module, _, attr = value.partition(":")
            assert attr, f"{group}.{name}: {value!r} is not 'module:attr'"
            package = module.rpartition(".")[0]
            assert package in listed, f"{group}.{name}: package {package} is not listed"
