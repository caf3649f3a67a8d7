"""Run a Node script (or another program) as a subprocess speaking a line protocol on stdout/stdin."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

STEP = 30.0  # bound on every single wait (a hang fails the test instead of blocking it)


class NodeProc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._unclaimed: list[str] = []

    async def expect(self, prefix: str, timeout: float = STEP) -> str:
        """The rest of the first line starting with `prefix`, read now or earlier and not claimed yet.

        Lines come in the order the script printed them, which may not be the order the
        test asks for (an event can arrive before the answer to the write that caused it).
        """
        assert self.proc.stdout is not None
        for line in self._unclaimed:
            if line.startswith(prefix):
                self._unclaimed.remove(line)
                return line[len(prefix) :].strip()
        while True:
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"no {prefix!r} line; saw {self.seen}; stderr: {await self.stderr()}"
                ) from None
            if not raw:
                raise AssertionError(
                    f"script ended before {prefix!r}; saw {self.seen}; stderr: {await self.stderr()}"
                )
            line = raw.decode().rstrip("\n")
            self.seen.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            self._unclaimed.append(line)

    async def result(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(await self.expect("RESULT"))
        return out

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()

    async def stderr(self) -> str:
        if self.proc.stderr is None or self.proc.returncode is None:
            return "(still running)"
        return (await self.proc.stderr.read()).decode(errors="replace")[-4000:]

    async def wait(self, timeout: float = STEP) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)


@contextlib.asynccontextmanager
async def node_script(node: str, script: Path, args: Sequence[str], cwd: Path) -> AsyncIterator[NodeProc]:
    async with program([node, str(script), *args], cwd) as proc:
        yield proc


@contextlib.asynccontextmanager
async def program(argv: Sequence[str], cwd: Path) -> AsyncIterator[NodeProc]:
    """Any program speaking the same line protocol (the generated Go and Java clients)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeProc(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
