"""The repository's own checks, run as tests: buf lint and breaking, generated
code freshness, ruff (lint and format) and mypy. Each asserts the tool's exit
code and shows its output on failure."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LINT_PATHS = ["services", "tests", "scripts", "bench", "clients/python"]


def tool(name: str) -> str:
    """A tool installed next to this interpreter (the venv), else on PATH."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    """The tool succeeded; on failure its output is printed (pytest shows it)."""
    command = " ".join(str(arg) for arg in result.args)
    if result.returncode != 0:
        print(f"$ {command}\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, f"`{command}` exited {result.returncode} (output in captured stdout)"


def lint_paths() -> list[str]:
    return [p for p in LINT_PATHS if (ROOT / p).exists()]


def test_buf_lint() -> None:
    assert_ok(run(tool("buf"), "lint"))


def _baseline_commit() -> str | None:
    """main's last commit (or origin/main, or HEAD in a detached CI checkout) with protos."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    for ref in ("main", "origin/main", "HEAD"):
        sha = run("git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if sha.returncode != 0:
            continue
        protos = run("git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", sha.stdout.strip(), "proto/")
        if protos.returncode == 0 and any(line.endswith(".proto") for line in protos.stdout.splitlines()):
            return sha.stdout.strip()
    return None


def test_buf_breaking_against_main() -> None:
    commit = _baseline_commit()
    if commit is None:
        reason = "no commit with protos to compare against (no main, origin/main or HEAD with proto/)"
        print(reason)
        pytest.skip(reason)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert archive.returncode == 0, archive.stderr.decode()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            members = [
                m for m in tar.getmembers() if m.name.split("/")[0] in ("proto", "third_party", "buf.yaml")
            ]
            tar.extractall(tmp, members=members, filter="data")
        assert_ok(run(tool("buf"), "breaking", "--against", tmp))


@pytest.mark.slow
def test_generated_code_is_fresh() -> None:
    assert_ok(run(sys.executable, "scripts/generate.py", "--check"))


def test_ruff_check() -> None:
    assert_ok(run(tool("ruff"), "check", *lint_paths()))


def test_ruff_format() -> None:
    assert_ok(run(tool("ruff"), "format", "--check", *lint_paths()))


@pytest.mark.slow
def test_mypy() -> None:
    assert_ok(run(tool("mypy")))
