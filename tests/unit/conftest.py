"""Fixtures of the unit tests: an isolated adapter registry, a restored
``nexxus`` logger, and fake distributions whose entry points the registry finds."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Programmatic registrations made by a test are undone after it."""
    from nexxus.core import plugins as registry

    saved = {group: dict(names) for group, names in registry._registered.items()}
    yield
    registry._registered.clear()
    registry._registered.update(saved)


@pytest.fixture
def restore_nexxus_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("nexxus")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


FakeDist = Callable[..., Path]


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDist]:
    """Make a distribution on sys.path: ``fake_dist(name, entry_points={group: {name: value}},
    modules={"mod": "source"}, requires=["pkg; extra == 'x'"])``."""
    created: list[str] = []

    def make(
        name: str,
        *,
        entry_points: dict[str, dict[str, str]],
        modules: dict[str, str] | None = None,
        requires: list[str] | None = None,
    ) -> Path:
        root = tmp_path / f"site-{name}"
        info = root / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        meta = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
        meta += [f"Requires-Dist: {req}" for req in requires or []]
        (info / "METADATA").write_text("\n".join(meta) + "\n")
        lines: list[str] = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{ep} = {value}" for ep, value in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in (modules or {}).items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            created.append(module)
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        return root

    yield make
    for module in created:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()
