"""Regenerate everything in gen/ (and envoy/'s descriptor set) from proto/.

    python scripts/generate.py           # rewrite gen/
    python scripts/generate.py --check   # exit 1 when gen/ differs from a fresh generation

Outputs:
  gen/nexxus/v1/*_pb2.py, *_pb2_grpc.py, *.pyi   grpcio-tools + mypy-protobuf (the `nexxus.v1` package)
  gen/betterproto/nexxus_client_proto/           betterproto2 client flavour (clients/python)
  envoy/nexxus.binpb                             descriptor set (imports included) for Envoy's transcoder
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
GEN = ROOT / "gen"
ENVOY_DESCRIPTOR = ROOT / "envoy" / "nexxus.binpb"
RPC_STATUS_PROTOS = ["google/rpc/status.proto", "google/rpc/error_details.proto", "google/rpc/code.proto"]


def _protos() -> list[str]:
    return sorted(str(p.relative_to(PROTO)) for p in (PROTO / "nexxus" / "v1").glob("*.proto"))


def _protoc(args: list[str]) -> None:
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{THIRD_PARTY}",
        f"-I{well_known}",
        *args,
    ]
    env = dict(os.environ)
    # Plugins (betterproto2 formats with ruff) must find the tools of this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"protoc failed: {' '.join(args[:3])} ...")


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: pip install -e '.[dev]'")
    return found


def generate(out: Path) -> None:
    """Write the whole generated tree into `out` (a stand-in for the repo root)."""
    protos = _protos()
    py_out = out / "gen"
    py_out.mkdir(parents=True, exist_ok=True)
    _protoc(
        [
            f"--python_out={py_out}",
            f"--grpc_python_out={py_out}",
            f"--plugin=protoc-gen-mypy={_bin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_bin('protoc-gen-mypy_grpc')}",
            f"--mypy_out={py_out}",
            f"--mypy_grpc_out={py_out}",
            *protos,
        ]
    )
    (py_out / "nexxus" / "v1" / "__init__.py").write_text(
        '"""Generated from proto/nexxus/v1 by scripts/generate.py. Do not edit."""\n'
    )
    (py_out / "nexxus" / "v1" / "py.typed").write_text("")
    # The `nexxus` top-level package lives in services/; only nexxus.v1 is generated.
    top_init = py_out / "nexxus" / "__init__.py"
    if top_init.exists():
        top_init.unlink()

    bp_out = py_out / "betterproto" / "nexxus_client_proto"
    bp_out.mkdir(parents=True, exist_ok=True)
    _protoc(
        [
            f"--plugin=protoc-gen-python_betterproto2={_bin('protoc-gen-python_betterproto2')}",
            f"--python_betterproto2_out={bp_out}",
            "--python_betterproto2_opt=client_generation=async",
            *protos,
        ]
    )

    envoy_out = out / "envoy"
    envoy_out.mkdir(parents=True, exist_ok=True)
    _protoc(
        [
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={envoy_out / ENVOY_DESCRIPTOR.name}",
            *protos,
            # So Envoy's transcoder can render rich error details (convert_grpc_status).
            *RPC_STATUS_PROTOS,
        ]
    )


def _tree(base: Path, rel: str) -> dict[str, Path]:
    root = base / rel
    if root.is_file():
        return {rel: root}
    return {
        str(p.relative_to(base)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


TARGETS = ["gen/nexxus", "gen/betterproto", "envoy/nexxus.binpb"]


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        stale: list[str] = []
        for rel in TARGETS:
            fresh = _tree(fresh_root, rel) if (fresh_root / rel).exists() else {}
            current = _tree(ROOT, rel) if (ROOT / rel).exists() else {}
            for name in sorted(set(fresh) | set(current)):
                if (
                    name not in fresh
                    or name not in current
                    or not filecmp.cmp(fresh[name], current[name], shallow=False)
                ):
                    stale.append(name)
        if stale:
            print("gen/ is stale; run: python scripts/generate.py", file=sys.stderr)
            for name in stale:
                print(f"  {name}", file=sys.stderr)
            return 1
        print("gen/ is up to date")
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail when gen/ is stale")
    args = parser.parse_args()
    if args.check:
        return check()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for rel in TARGETS:
            target = ROOT / rel
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            src = Path(tmp) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, target)
            else:
                shutil.copy2(src, target)
    print("generated", ", ".join(TARGETS))
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())
