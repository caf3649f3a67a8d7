"""Per-process CPU accounting (/proc) and py-spy profiles of the service processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads); 0 when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    ticks = [int(x) for x in parts]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / TICKS


class CpuSnapshot:
    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.at = time.monotonic()
        self.cpu = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        self.machine = machine_busy_seconds()

    def percent_since(self, start: CpuSnapshot) -> dict[str, float]:
        wall = max(self.at - start.at, 1e-9)
        return {name: 100.0 * (self.cpu[name] - start.cpu.get(name, 0.0)) / wall for name in self.cpu}

    def machine_percent_since(self, start: CpuSnapshot) -> float:
        return 100.0 * (self.machine - start.machine) / max(self.at - start.at, 1e-9)


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


async def record(
    pid: int, out: Path, seconds: float, rate: int = 100, gil: bool = False
) -> asyncio.subprocess.Process | None:
    """Start `py-spy record` (speedscope format, non-blocking sampling) on `pid`;
    with `gil`, only the samples of the thread holding the GIL (Python CPU time)."""
    exe = py_spy()
    if exe is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
        "--nonblocking", "--format", "speedscope", "--output", str(out), *(["--gil"] if gil else []),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _short(frame: dict[str, object]) -> str:
    file = str(frame.get("file", ""))
    for marker in ("site-packages/", "services/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{frame.get('name')} ({file}:{frame.get('line', '')})"


def top_frames(path: Path, n: int = 8) -> tuple[float, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, top self frames, top inclusive nexxus frames) of a speedscope file, as % of samples."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    names = [_short(f) for f in frames]
    is_ours = ["nexxus/" in str(f.get("file", "")) for f in frames]
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    total = 0.0
    for prof in doc["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            if not stack:
                continue
            total += weight
            self_c[names[stack[-1]]] += weight
            for name in {names[i] for i in stack if is_ours[i]}:
                incl_c[name] += weight
    pct = 100.0 / max(total, 1)
    return (
        total,
        [(k, v * pct) for k, v in self_c.most_common(n)],
        [(k, v * pct) for k, v in incl_c.most_common(n)],
    )
