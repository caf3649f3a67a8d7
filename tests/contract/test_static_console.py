"""The static server behind Envoy's /admin/ route: the console's files, its pages
(any path that is not a file) answered with index.html, nothing outside it."""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from nexxus.devserver.static import CONSOLE_ROOT, StaticServer


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[str]:
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>console</title>")
    (root / "assets" / "index-abc.js").write_text("export {};")
    (tmp_path / "secret.txt").write_text("no")
    server = StaticServer(None, console=root)
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


async def test_console_files_pages_and_refusals(console: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{console}/admin/") as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("text/html")
            assert resp.headers["cache-control"] == "no-cache"
            assert "<title>console</title>" in await resp.text()
        async with http.get(f"{console}/admin/assets/index-abc.js") as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("text/javascript")
            assert "immutable" in resp.headers["cache-control"]
        async with http.get(f"{console}/admin/objects") as resp:  # a page of the console
            assert resp.status == 200
            assert "<title>console</title>" in await resp.text()
        async with http.get(f"{console}/admin", allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["location"] == "/admin/"
        for missing in (
            "/admin/assets/nope.js",
            "/admin/../secret.txt",
            "/admin/%2e%2e/secret.txt",
            "/demo/",
        ):
            async with http.get(f"{console}{missing}") as resp:
                assert resp.status == 404, missing
        async with http.post(f"{console}/admin/") as resp:
            assert resp.status == 405


def test_the_package_ships_a_built_console() -> None:
    """Every built file is referenced by the page and covered by pyproject's package-data."""
    index = (CONSOLE_ROOT / "index.html").read_text()
    assets = sorted(p.name for p in (CONSOLE_ROOT / "assets").iterdir())
    assert any(a.endswith(".js") for a in assets)
    assert all(f"/admin/assets/{name}" in index for name in assets), (assets, index)
    package = CONSOLE_ROOT.parents[1]
    patterns = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["nexxus"]
    for path in CONSOLE_ROOT.rglob("*"):
        if path.is_file():
            rel = str(path.relative_to(package))
            assert any(fnmatch.fnmatch(rel, pattern) for pattern in patterns), rel
