"""A real OpenSearch node started from its Maven Central artifacts (no Docker, no tarball).

OpenSearch publishes its server (``org.opensearch:opensearch``) and its modules
(``org.opensearch.plugin:transport-netty4-client``, ``reindex-client``,
``analysis-common``, ``lang-painless``) to Maven Central. `resolve_opensearch`
asks Maven to copy them with their dependencies into a cache directory and lays
them out as an OpenSearch home::

    <cache>/opensearch-<version>/
        lib/                      the server's class path
        modules/<name>/           one directory per module: its own jars (minus the
                                  server's), plugin-descriptor.properties, and
                                  plugin-security.policy where it needs permissions
        bin/ plugins/             empty

The cache is ``$NEXXUS_CACHE_DIR`` or, by default, ``~/.cache/nexxus`` (for
root: ``/var/cache/nexxus``, because the node runs as an unprivileged user that
must read the jars). A second call returns at once; the Maven repository
(``~/.m2``) keeps the downloads too.

`OpenSearchServer` starts one single-node cluster bound to 127.0.0.1 on a free
port, with its config, data and logs in `data_dir`, a small heap, and a bounded
start-up time. OpenSearch refuses to run as root: when this process is root the
node runs as ``$NEXXUS_OPENSEARCH_USER`` (default ``nobody``) through
``setpriv``. Security is off: OpenSearch without the security plugin speaks
plain HTTP with no authentication.

    python -m nexxus.devserver.searchengine fetch      # resolve and cache; prints the home
    python -m nexxus.devserver.searchengine run        # start a node, print its URL, wait
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nexxus.devserver.probes import http_get
from nexxus.devserver.process import free_port
from nexxus.devserver.servers import _Server

__all__ = [
    "OPENSEARCH_VERSION",
    "OpenSearchServer",
    "SearchEngineUnavailable",
    "cache_dir",
    "resolve_opensearch",
]

OPENSEARCH_VERSION = "2.19.6"
# Bounded start-up: the JVM, Lucene and the modules load in ~10-20 s on a quiet machine.
START_TIMEOUT = 180.0
_MARKER = ".complete"
_VERSION = re.compile(r"-\d+\.\d+.*\.jar$")


class SearchEngineUnavailable(RuntimeError):
    """A tool the launcher needs (java, mvn, setpriv) is missing or Maven failed."""


@dataclass(frozen=True, slots=True)
class _Module:
    name: str
    artifact: str
    classname: str
    extends: tuple[str, ...] = ()
    policy: str = ""


# Module permissions under the security manager OpenSearch always installs.
_NETTY_POLICY = """\
grant codeBase "${codebase.netty-common}" {
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.net.SocketPermission "*", "accept,connect";
  permission java.lang.RuntimePermission "*", "setContextClassLoader";
};
grant codeBase "${codebase.netty-transport}" {
  permission java.util.PropertyPermission "sun.nio.ch.bugLevel", "write";
};
"""
_PAINLESS_POLICY = """\
grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
"""

MODULES: tuple[_Module, ...] = (
    _Module("transport-netty4", "transport-netty4-client", "org.opensearch.transport.Netty4Plugin",
            policy=_NETTY_POLICY),
    _Module("lang-painless", "lang-painless", "org.opensearch.painless.PainlessPlugin",
            policy=_PAINLESS_POLICY),
    _Module("reindex", "reindex-client", "org.opensearch.index.reindex.ReindexPlugin"),
    _Module("analysis-common", "analysis-common", "org.opensearch.analysis.common.CommonAnalysisPlugin",
            extends=("lang-painless",)),
)  # fmt: skip

_POM = """\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.nexxus.opensearch</groupId>
  <artifactId>{artifact_id}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
{body}
</project>
"""


def cache_dir() -> Path:
    """Where resolved server artifacts are cached (see the module docstring)."""
    configured = os.environ.get("NEXXUS_CACHE_DIR")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/nexxus")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nexxus"


def _dependency(group: str, artifact: str, version: str) -> str:
    return (
        f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency>"
    )


def _pom(artifact_id: str, deps: Sequence[str] = (), modules: Sequence[str] = ()) -> str:
    parts = []
    if deps:
        parts.append("  <dependencies>\n" + "\n".join(deps) + "\n  </dependencies>")
    if modules:
        parts.append("  <modules>" + "".join(f"<module>{m}</module>" for m in modules) + "</modules>")
    return _POM.format(artifact_id=artifact_id, body="\n".join(parts))


def _write_build(build: Path, version: str) -> None:
    """An aggregator pom: one project per component, each copying its dependencies."""
    log4j = "2.25.4" if version.startswith("2.19") else "2.21.0"
    server_deps = [
        _dependency("org.opensearch", "opensearch", version),
        # Loaded by the server for modules that extend others (lib/ of the distribution).
        _dependency("org.opensearch", "opensearch-plugin-classloader", version),
        # The distribution ships log4j-core; the server's pom leaves it out.
        _dependency("org.apache.logging.log4j", "log4j-core", log4j),
    ]
    (build / "server").mkdir(parents=True)
    (build / "server" / "pom.xml").write_text(_pom("server", server_deps))
    for module in MODULES:
        (build / module.name).mkdir()
        dep = _dependency("org.opensearch.plugin", module.artifact, version)
        (build / module.name / "pom.xml").write_text(_pom(module.name, [dep]))
    (build / "pom.xml").write_text(_pom("build", modules=["server", *(m.name for m in MODULES)]))


def _run_maven(build: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SearchEngineUnavailable("Maven (mvn) is needed to resolve OpenSearch from Maven Central")
    argv = [
        mvn, "-B", "-q", "-f", str(build / "pom.xml"),
        "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
        "-Dmdep.includeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-4000:]
        raise SearchEngineUnavailable(f"Maven could not resolve OpenSearch (exit {done.returncode}):\n{tail}")


def _jars(folder: Path) -> dict[str, Path]:
    """Jar files by artifact name (`lucene-core-9.12.3.jar` → `lucene-core`). The files keep
    their versions: the security policies name code bases by the versionless alias that
    OpenSearch derives from such names."""
    return {_VERSION.sub("", p.name): p for p in sorted(folder.glob("*.jar"))}


def _descriptor(module: _Module, version: str) -> str:
    lines = [
        f"description=Nexxus test layout of the {module.name} module",
        f"version={version}",
        f"name={module.name}",
        f"classname={module.classname}",
        "java.version=11",
        f"opensearch.version={version}",
        f"extended.plugins={','.join(module.extends)}",
        "has.native.controller=false",
    ]
    return "\n".join(lines) + "\n"


def _assemble(build: Path, home: Path, version: str) -> None:
    lib = home / "lib"
    lib.mkdir(parents=True)
    server = _jars(build / "server" / "target" / "dependency")
    if "opensearch" not in server:
        raise SearchEngineUnavailable(f"Maven resolved no opensearch.jar in {build}")
    for path in server.values():
        shutil.copy2(path, lib / path.name)
    for empty in ("bin", "plugins"):
        (home / empty).mkdir()
    loaded: dict[str, set[str]] = {}
    for module in MODULES:
        jars = _jars(build / module.name / "target" / "dependency")
        # A module's class loader sees the server's and its extended modules' classes:
        # a second copy of any of them is "jar hell" at start-up.
        skip = set(server)
        for parent in module.extends:
            skip |= loaded[parent]
        own = {name: path for name, path in jars.items() if name not in skip}
        loaded[module.name] = set(own)
        target = home / "modules" / module.name
        target.mkdir(parents=True)
        for path in own.values():
            shutil.copy2(path, target / path.name)
        (target / "plugin-descriptor.properties").write_text(_descriptor(module, version))
        if module.policy:
            (target / "plugin-security.policy").write_text(module.policy)
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve_opensearch(version: str = OPENSEARCH_VERSION, *, cache: Path | None = None) -> Path:
    """The OpenSearch home of `version`, resolved from Maven Central and cached."""
    root = cache or cache_dir()
    home = root / f"opensearch-{version}"
    if (home / _MARKER).exists():
        return home
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    with _locked(root / f".opensearch-{version}.lock"):
        if (home / _MARKER).exists():
            return home
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            build = Path(tmp) / "build"
            _write_build(build, version)
            _run_maven(build)
            staged = Path(tmp) / "home"
            _assemble(build, staged, version)
            (staged / _MARKER).write_text(version + "\n")
            if home.exists():
                shutil.rmtree(home)
            staged.rename(home)
    return home


# --------------------------------------------------------------------------- the node


_LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
logger.node.name = org.opensearch.node.Node
logger.node.level = info
"""


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise SearchEngineUnavailable("java (17 or newer) is needed to run OpenSearch")
    return found


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the node as when this process is root, else None."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("NEXXUS_OPENSEARCH_USER", "nobody")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SearchEngineUnavailable(f"user {name!r} (NEXXUS_OPENSEARCH_USER) does not exist") from None
    if shutil.which("setpriv") is None:
        raise SearchEngineUnavailable("setpriv (util-linux) is needed to run OpenSearch as non-root")
    return entry.pw_uid, entry.pw_gid


class OpenSearchServer(_Server):
    """One OpenSearch node: HTTP on 127.0.0.1:<port>, single-node discovery."""

    name = "opensearch"

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        version: str = OPENSEARCH_VERSION,
        heap: str = "512m",
    ) -> None:
        super().__init__(data_dir, port, host)
        self.version = version
        self.heap = heap
        self._home: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def home(self) -> Path:
        if self._home is None:
            self._home = resolve_opensearch(self.version)
        return self._home

    async def start(self, *, timeout: float = START_TIMEOUT) -> None:
        # Resolve first (Maven may take a minute on a cold cache): not part of the start-up bound.
        await asyncio.to_thread(lambda: self.home)
        await super().start(timeout=timeout)

    def _write_config(self) -> Path:
        conf = self.data_dir / "config"
        for sub in ("config", "data", "logs", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        settings = {
            "cluster.name": "nexxus-dev",
            "node.name": "nexxus-dev",
            "network.host": self.host,
            "http.port": self.port,
            "transport.port": free_port(self.host),
            "discovery.type": "single-node",
            "path.data": str(self.data_dir / "data"),
            "path.logs": str(self.data_dir / "logs"),
            "bootstrap.memory_lock": False,
            # A nearly full disk must not turn test indices read-only.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.destructive_requires_name": False,
        }
        (conf / "opensearch.yml").write_text(
            "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
        )
        (conf / "log4j2.properties").write_text(_LOG4J2)
        owner = _run_as()
        if owner is not None:
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                if path.name != self.log_path.name:
                    os.chown(path, *owner)
        return conf

    def _argv(self) -> Sequence[str]:
        conf = self._write_config()
        home = self.home
        tmp = self.data_dir / "tmp"
        argv = [
            _java(),
            f"-Xms{self.heap}", f"-Xmx{self.heap}",
            "-XX:+UseSerialGC", "-Xss1m",
            "-Djava.security.manager=allow",
            "-Djava.locale.providers=SPI,COMPAT",
            "-Dfile.encoding=UTF-8",
            "-Djna.nosys=true",
            "-Dio.netty.noUnsafe=true", "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0",
            "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true",
            f"-Djava.io.tmpdir={tmp}", f"-Duser.home={tmp}",
            f"-Dopensearch.path.home={home}", f"-Dopensearch.path.conf={conf}",
            "-Dopensearch.distribution.type=tar", "-Dopensearch.bundled_jdk=false",
            "-cp", f"{home / 'lib'}/*",
            "org.opensearch.bootstrap.OpenSearch",
        ]  # fmt: skip
        owner = _run_as()
        if owner is not None:
            uid, gid = owner
            argv = [
                "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                "--pdeathsig=SIGKILL", "--", *argv,
            ]  # fmt: skip
        return argv

    async def _probe(self) -> bool:
        status, body = await http_get(
            self.host, self.port, "/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=3.0
        )
        return status == 200 and json.loads(body).get("status") in ("green", "yellow")


# --------------------------------------------------------------------------- command line


async def _run(data_dir: Path, port: int) -> None:
    async with OpenSearchServer(data_dir, port) as server:
        print(server.url, flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nexxus.devserver.searchengine")
    parser.add_argument("command", choices=["fetch", "run"])
    parser.add_argument("--version", default=OPENSEARCH_VERSION)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(resolve_opensearch(args.version))
            return
        with tempfile.TemporaryDirectory(prefix="nexxus-opensearch-") as tmp:
            data_dir = args.data_dir or Path(tmp)
            data_dir.chmod(0o755)
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_run(data_dir, args.port))
    except SearchEngineUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
