"""The admin console's built assets (services/nexxus/console/static, committed and
shipped in the package) are what console/ builds now: `npm run build` (type check +
Vite) into a temporary directory gives the same files, byte for byte — like gen/'s
staleness check. After changing console/src: `npm run build --prefix console`."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from nexxus.devserver.static import CONSOLE_ROOT
from tests.clients.conftest import ROOT, node_bin, node_modules, require_tool

pytestmark = pytest.mark.timeout(240)

CONSOLE = ROOT / "console"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_committed_console_assets_are_fresh(tmp_path: Path) -> None:
    node_bin()
    npm = shutil.which("npm")
    require_tool(npm is not None, "npm")
    assert npm is not None
    node_modules(CONSOLE, "vite", "preact", "typescript")
    out = tmp_path / "static"
    proc = await asyncio.create_subprocess_exec(
        npm,
        "run",
        "build",
        cwd=CONSOLE,
        env={**os.environ, "NEXXUS_CONSOLE_OUT_DIR": str(out)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, output.decode(errors="replace")
    fresh, committed = tree(out), tree(CONSOLE_ROOT)
    assert "index.html" in fresh
    assert sorted(committed) == sorted(fresh), "stale console build: run `npm run build --prefix console`"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"stale console build ({stale}): run `npm run build --prefix console`"
