"""The OpenSearch launcher's offline parts: the Maven build it writes, the home it
lays out from resolved jars, the module descriptors, the cache location. (The
node itself runs in every `searchengine` test.)"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nexxus.devserver import searchengine as se

NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEXXUS_CACHE_DIR", str(tmp_path))
    assert se.cache_dir() == tmp_path


def test_build_has_one_project_per_component(tmp_path: Path) -> None:
    se._write_build(tmp_path / "build", "2.19.6")
    root = ET.parse(tmp_path / "build" / "pom.xml").getroot()
    modules = [m.text for m in root.findall("m:modules/m:module", NS)]
    assert modules == ["server", *(m.name for m in se.MODULES)]
    server = ET.parse(tmp_path / "build" / "server" / "pom.xml").getroot()
    deps = {
        (d.findtext("m:artifactId", namespaces=NS), d.findtext("m:version", namespaces=NS))
        for d in server.findall("m:dependencies/m:dependency", NS)
    }
    assert ("opensearch", "2.19.6") in deps
    assert ("opensearch-plugin-classloader", "2.19.6") in deps
    netty = ET.parse(tmp_path / "build" / "transport-netty4" / "pom.xml").getroot()
    assert (
        netty.findtext("m:dependencies/m:dependency/m:artifactId", namespaces=NS) == "transport-netty4-client"
    )


def _jar(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"PK")


def test_home_layout_leaves_shared_jars_to_the_server(tmp_path: Path) -> None:
    build = tmp_path / "build"
    server = build / "server" / "target" / "dependency"
    for name in (
        "opensearch-2.19.6.jar",
        "lucene-core-9.12.3.jar",
        "opensearch-plugin-classloader-2.19.6.jar",
    ):
        _jar(server, name)
    for module in se.MODULES:
        deps = build / module.name / "target" / "dependency"
        _jar(deps, f"{module.artifact}-2.19.6.jar")
        _jar(deps, "lucene-core-9.12.3.jar")  # the server's: never copied into a module
    _jar(build / "lang-painless" / "target" / "dependency", "antlr4-runtime-4.13.1.jar")
    _jar(build / "analysis-common" / "target" / "dependency", "antlr4-runtime-4.13.1.jar")
    home = tmp_path / "home"
    se._assemble(build, home, "2.19.6")
    assert sorted(p.name for p in (home / "lib").iterdir()) == sorted(p.name for p in server.iterdir())
    assert sorted(p.name for p in (home / "modules" / "lang-painless").glob("*.jar")) == [
        "antlr4-runtime-4.13.1.jar",
        "lang-painless-2.19.6.jar",
    ]
    # analysis-common extends lang-painless: painless's jars are its parent's, not its own.
    assert [p.name for p in (home / "modules" / "analysis-common").glob("*.jar")] == [
        "analysis-common-2.19.6.jar"
    ]
    descriptor = (home / "modules" / "analysis-common" / "plugin-descriptor.properties").read_text()
    assert "classname=org.opensearch.analysis.common.CommonAnalysisPlugin" in descriptor
    assert "extended.plugins=lang-painless" in descriptor
    assert "opensearch.version=2.19.6" in descriptor
    assert (home / "modules" / "transport-netty4" / "plugin-security.policy").exists()
    assert (home / "bin").is_dir()
    assert (home / "plugins").is_dir()


def test_missing_server_jar_is_a_clear_error(tmp_path: Path) -> None:
    _jar(tmp_path / "build" / "server" / "target" / "dependency", "lucene-core-9.12.3.jar")
    with pytest.raises(se.SearchEngineUnavailable, match=r"no opensearch\.jar"):
        se._assemble(tmp_path / "build", tmp_path / "home", "2.19.6")
