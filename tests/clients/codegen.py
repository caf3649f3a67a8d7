"""Build the generated Go and Java clients from proto/ with buf (buf.gen.yaml).

    python -m tests.clients.codegen        # build both (CI does this before pytest)

Tools come from the registries, pinned, and are cached under the launcher's cache
directory (`nexxus.devserver.searchengine.cache_dir()`, e.g. ``~/.cache/nexxus``):

- Go: protoc-gen-go and protoc-gen-go-grpc, ``go install``-ed from the Go module proxy;
- Java: the protoc and protoc-gen-grpc-java executables and the grpc-java runtime jars,
  resolved from Maven Central with ``mvn``.

``buf generate --template buf.gen.yaml`` then writes clients/go/gen and clients/java/gen,
and the two example programs are built: ``go build`` (clients/go) and ``javac``
(clients/java). A build is cached under a hash of everything it is made from (proto/,
buf.gen.yaml, the program's sources), so a second run only checks that hash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nexxus.devserver.searchengine import cache_dir

ROOT = Path(__file__).resolve().parents[2]
GO_DIR = ROOT / "clients" / "go"
JAVA_DIR = ROOT / "clients" / "java"

PROTOC_GEN_GO = "google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
PROTOC_GEN_GO_GRPC = "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1"
PROTOC = "4.33.2"
# The newest grpc-java whose linux plugin executable Maven Central serves.
GRPC_JAVA = "1.83.1"
JAVA_MAIN = "com.nexxus.example.StreamDemo"

_JAVA_DEPS = [
    ("io.grpc", "grpc-netty-shaded", GRPC_JAVA),
    ("io.grpc", "grpc-protobuf", GRPC_JAVA),
    ("io.grpc", "grpc-stub", GRPC_JAVA),
    ("com.google.protobuf", "protobuf-java", PROTOC),
    ("com.google.protobuf", "protobuf-java-util", PROTOC),
    # javax.annotation.Generated, which protoc-gen-grpc-java's output names.
    ("org.apache.tomcat", "annotations-api", "6.0.53"),
]


class ToolMissing(RuntimeError):
    """go, java, javac or mvn is not installed."""


@dataclass(frozen=True)
class JavaProgram:
    classes: Path
    lib: Path

    def argv(self, *args: str) -> list[str]:
        return [_tool("java"), "-cp", f"{self.classes}:{self.lib}/*", JAVA_MAIN, *args]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not installed")
    return found


def _run(argv: Sequence[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(*roots: Path) -> str:
    h = hashlib.sha256()
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "gen" in path.relative_to(ROOT).parts[2:3]:
                continue  # the generated code is an output, not an input
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch_64", "arm64": "aarch_64"}.get(machine)
    if arch is None or sys.platform != "linux":
        raise ToolMissing(f"no protoc executables on Maven Central for {sys.platform}/{machine}")
    return f"linux-{arch}"


# --------------------------------------------------------------------------- tools


def go_tools() -> Path:
    """The directory holding protoc-gen-go and protoc-gen-go-grpc."""
    go = _tool("go")
    key = hashlib.sha256(f"{PROTOC_GEN_GO} {PROTOC_GEN_GO_GRPC}".encode()).hexdigest()[:12]
    bin_dir = cache_dir() / f"go-tools-{key}"
    with _locked(cache_dir() / ".go-tools.lock"):
        if not (bin_dir / "protoc-gen-go-grpc").exists():
            env = {**os.environ, "GOBIN": str(bin_dir)}
            for module in (PROTOC_GEN_GO, PROTOC_GEN_GO_GRPC):
                _run([go, "install", module], env=env)
    return bin_dir


def java_tools() -> Path:
    """A directory with bin/protoc, bin/protoc-gen-grpc-java and lib/ (the runtime jars)."""
    mvn = _tool("mvn")
    plat = _platform()
    home = cache_dir() / f"java-tools-{PROTOC}-{GRPC_JAVA}-{plat}"
    with _locked(cache_dir() / ".java-tools.lock"):
        if (home / ".complete").exists():
            return home
        deps = [
            *(
                f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
                f"<classifier>{plat}</classifier><type>exe</type></dependency>"
                for g, a, v in (
                    ("com.google.protobuf", "protoc", PROTOC),
                    ("io.grpc", "protoc-gen-grpc-java", GRPC_JAVA),
                )
            ),
            *(
                f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
                for g, a, v in _JAVA_DEPS
            ),
        ]
        pom = (
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>local.nexxus</groupId><artifactId>java-tools</artifactId><version>1</version>"
            f"<packaging>pom</packaging><dependencies>{''.join(deps)}</dependencies></project>"
        )
        with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".java-tools-") as tmp:
            staged = Path(tmp) / "home"
            (Path(tmp) / "pom.xml").write_text(pom)
            _run(
                [
                    mvn, "-B", "-q", "-f", str(Path(tmp) / "pom.xml"),
                    "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
                    f"-DoutputDirectory={staged / 'lib'}",
                ]
            )  # fmt: skip
            (staged / "bin").mkdir()
            for exe in (staged / "lib").glob("*.exe"):
                # protoc-<v>-<platform>.exe → protoc; protoc-gen-grpc-java-<v>-... → protoc-gen-grpc-java
                name = "protoc-gen-grpc-java" if exe.name.startswith("protoc-gen-grpc-java") else "protoc"
                target = staged / "bin" / name
                exe.rename(target)
                target.chmod(0o755)
            if (
                not (staged / "bin" / "protoc").exists()
                or not (staged / "bin" / "protoc-gen-grpc-java").exists()
            ):
                raise RuntimeError(f"Maven did not resolve protoc and protoc-gen-grpc-java into {staged}")
            (staged / ".complete").write_text("ok\n")
            if home.exists():
                shutil.rmtree(home)
            staged.rename(home)
    return home


# --------------------------------------------------------------------------- generate and build


def generate(go_bin: Path, java_home: Path) -> None:
    """buf generate --template buf.gen.yaml (writes clients/go/gen and clients/java/gen)."""
    buf = Path(sys.executable).parent / "buf"
    if not buf.exists():
        buf = Path(_tool("buf"))
    for out in (GO_DIR / "gen", JAVA_DIR / "gen"):
        shutil.rmtree(out, ignore_errors=True)
    path = os.pathsep.join([str(go_bin), str(java_home / "bin"), os.environ.get("PATH", "")])
    _run([str(buf), "generate", "--template", "buf.gen.yaml"], env={**os.environ, "PATH": path})


def build() -> tuple[Path, JavaProgram]:
    """(the Go program's binary, the Java program), built if their inputs changed."""
    go, javac = _tool("go"), _tool("javac")
    go_bin, java_home = go_tools(), java_tools()
    proto = ROOT / "proto"
    template = ROOT / "buf.gen.yaml"
    go_out = cache_dir() / "clients" / f"go-{_digest(proto, template, GO_DIR)}" / "nexxus-stream"
    java_out = cache_dir() / "clients" / f"java-{_digest(proto, template, JAVA_DIR)}" / "classes"
    java = JavaProgram(java_out, java_home / "lib")
    with _locked(cache_dir() / ".clients.lock"):
        if go_out.exists() and java_out.exists():
            return go_out, java
        generate(go_bin, java_home)
        if not go_out.exists():
            go_out.parent.mkdir(parents=True, exist_ok=True)
            _run([go, "build", "-buildvcs=false", "-o", str(go_out), "."], cwd=GO_DIR)
        if not java_out.exists():
            staged = java_out.with_name("classes.tmp")
            shutil.rmtree(staged, ignore_errors=True)
            sources = sorted(
                str(p) for p in [*(JAVA_DIR / "gen").rglob("*.java"), *(JAVA_DIR / "src").rglob("*.java")]
            )
            _run([javac, "-nowarn", "-d", str(staged), "-cp", f"{java_home / 'lib'}/*", *sources])
            staged.rename(java_out)
    return go_out, java


def main() -> None:
    started = time.monotonic()
    go_program, java_program = build()
    print(f"go client:   {go_program}")
    print(f"java client: {' '.join(java_program.argv())}")
    print(f"built in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
