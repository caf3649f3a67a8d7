"""Child-process management for the development servers and `nexxus dev`.

`ManagedProcess` runs one command in its own process group (session), sends its
stdout and stderr to a log file, waits until a readiness probe passes, and stops
the whole group: SIGTERM, then SIGKILL after a timeout. Nothing is left behind:

- `stop()` / `kill()` signal the process group, not just the leader;
- on Linux the child gets PR_SET_PDEATHSIG=SIGKILL (set by a tiny launcher after
  exec, see `_pdeathsig`), so it dies with its parent even if the parent itself
  is killed with SIGKILL;
- an `atexit` hook kills the groups of processes still running at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import socket
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["ManagedProcess", "ProcessExited", "free_port"]

log = logging.getLogger("nexxus.devserver")

Probe = Callable[[], Awaitable[bool]]

_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ProcessExited(RuntimeError):
    """The process exited before it became ready."""

    def __init__(self, name: str, returncode: int | None, log_tail: str) -> None:
        super().__init__(f"{name} exited with code {returncode} before it was ready:\n{log_tail}")
        self.returncode = returncode
        self.log_tail = log_tail


class ManagedProcess:
    """One child process with its own process group and a log file.

    Usable as `async with ManagedProcess(...) as proc:` (start + stop).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.die_with_parent = die_with_parent
        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None

    # ------------------------------------------------------------------ state

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log file (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the process (no readiness wait; see `wait_ready`)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {self.argv!r}\n".encode())
        self._log_file.flush()
        argv = self.argv
        if self.die_with_parent and sys.platform == "linux":
            argv = [sys.executable, "-m", "nexxus.devserver._pdeathsig", str(os.getpid()), *argv]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        except OSError:
            self._close_log()
            raise
        _LIVE.add(self)
        log.debug("started %s pid=%s", self.name, self._proc.pid)

    async def wait_ready(self, probe: Probe, *, timeout: float = 30.0, interval: float = 0.05) -> None:
        """Poll `probe` until it returns True.

        Raises ProcessExited if the process dies first, TimeoutError after `timeout`.
        Exceptions raised by the probe count as "not ready yet".
        """
        proc = self._require()
        deadline = time.monotonic() + timeout
        while True:
            if proc.returncode is not None:
                raise ProcessExited(self.name, proc.returncode, self.log_tail())
            try:
                if await probe():
                    return
            except Exception as exc:
                log.debug("%s not ready yet: %r", self.name, exc)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(interval)

    async def wait(self) -> int:
        """Wait for the process to exit; returns its exit code."""
        code = await self._require().wait()
        self._close_log()
        return code

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning("%s did not stop within %ss; killing it", self.name, timeout)
                self._signal_group(signal.SIGKILL)
                await proc.wait()
        # Children that outlived the leader.
        self._signal_group(signal.SIGKILL)
        self._close_log()
        _LIVE.discard(self)
        return proc.returncode

    async def kill(self) -> int | None:
        """SIGKILL the process group at once (crash tests)."""
        proc = self._proc
        if proc is None:
            return None
        self._signal_group(signal.SIGKILL)
        await proc.wait()
        self._close_log()
        _LIVE.discard(self)
        return proc.returncode

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ internals

    def _require(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # The child called setsid(): its pid is its process group id.
            os.killpg(self._proc.pid, sig)

    def _close_log(self) -> None:
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def _kill_now(self) -> None:
        """Synchronous last resort used at interpreter exit."""
        if self._proc is not None and self._proc.returncode is None:
            self._signal_group(signal.SIGKILL)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc._kill_now()
