"""A throwaway PostgreSQL server from the machine's own binaries (Debian's `postgresql` package).

Used by the test suite (and usable by hand) where no server is running::

    with PostgresServer() as pg:
        settings.database.postgres.dsn = pg.dsn

`start()` runs `initdb` in a fresh temporary directory (trust authentication,
superuser `postgres`, no fsync: a test server, not a production one), starts
`postgres` on a free 127.0.0.1 port with its socket in that directory, and
returns once `pg_isready` says it accepts connections. `stop()` asks for a fast
shutdown and removes the directory.

PostgreSQL refuses to run as root: under root both programs run as the
`postgres` system user that Debian's package creates (the directory is handed
to it). The server dies with the process that started it (parent-death signal),
so a crashed test run leaves no server behind.

This is synchronous on purpose: it is started once per test session, before any
event loop needs it, and works the same from sync and async fixtures.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from nexxus.devserver.process import free_port

__all__ = ["PostgresNotFound", "PostgresServer", "postgres_bindir"]

SUPERUSER = "postgres"
# The OS user the server runs as when we are root.
SERVICE_USER = "postgres"
INSTALL_HINT = (
    "apt-get install postgresql (Debian) — or set NEXXUS_PG_BINDIR to a folder holding postgres and initdb"
)

# Settings for a disposable test server: fast, not durable.
_TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
    "shared_buffers": "64MB",
}


class PostgresNotFound(FileNotFoundError):
    """No PostgreSQL server binaries on this machine."""


def _has_server(folder: Path) -> bool:
    return (folder / "postgres").is_file() and (folder / "initdb").is_file()


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (0,)


def postgres_bindir() -> Path:
    """The folder with `postgres`, `initdb` and `pg_isready`.

    NEXXUS_PG_BINDIR if set, else the newest /usr/lib/postgresql/<version>/bin
    (Debian's layout), else wherever `postgres` is on PATH.
    """
    configured = os.environ.get("NEXXUS_PG_BINDIR")
    if configured:
        folder = Path(configured)
        if not _has_server(folder):
            raise PostgresNotFound(f"NEXXUS_PG_BINDIR={configured} has no postgres and initdb")
        return folder
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if _has_server(folder):
            return folder
    raise PostgresNotFound(f"no PostgreSQL server binaries found: {INSTALL_HINT}")


class PostgresServer:
    """One PostgreSQL server in its own temporary directory."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", bindir: Path | None = None) -> None:
        self.host = host
        self.port = port
        self._fixed_port = port != 0
        self.bindir = bindir or postgres_bindir()
        self.run_as = SERVICE_USER if os.geteuid() == 0 else None
        self.base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self._require_base() / "data"

    @property
    def log_path(self) -> Path:
        return self._require_base() / "postgres.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, timeout: float = 60.0) -> None:
        """initdb (first start only), then start the server and wait until it accepts connections."""
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="nexxus-pg-"))
            if self.run_as:
                entry = pwd.getpwnam(self.run_as)
                os.chown(self.base_dir, entry.pw_uid, entry.pw_gid)
            self._initdb()
        for attempt in range(3):
            if self.port == 0:
                self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_ready(timeout)
                return
            except RuntimeError:
                self._terminate(timeout=5)
                if self._fixed_port or attempt == 2:
                    raise
                self.port = 0  # the picked port was taken between pick and bind

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL after `timeout`; the directory is removed."""
        self._terminate(timeout)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def kill(self) -> None:
        """Crash it (SIGKILL of the whole process group); the data stays for a restart."""
        if self._proc is not None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        self._close_log()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _require_base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("postgres was not started")
        return self.base_dir

    def _argv(self, program: str, *args: str) -> list[str]:
        """`program` run through the launcher: as the service user, dying with this process."""
        launcher = [sys.executable, "-m", "nexxus.devserver._pdeathsig"]
        if self.run_as:
            launcher += ["--user", self.run_as]
        return [*launcher, str(os.getpid()), str(self.bindir / program), *args]

    def _initdb(self) -> None:
        argv = self._argv(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        done = subprocess.run(argv, capture_output=True, check=False, cwd=self.base_dir)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"initdb failed (exit {done.returncode}):\n{output[-2000:]}")

    def _spawn(self) -> None:
        settings = {
            **_TEST_SETTINGS,
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.data_dir),
        }
        args = ["-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        self._close_log()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self._argv("postgres", *args),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.base_dir,
            start_new_session=True,
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        isready = [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        isready += ["-U", SUPERUSER, "-d", "postgres"]
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {proc.returncode}:\n{self._log_tail()}")
            if subprocess.run(isready, check=False).returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"postgres not ready after {timeout}s:\n{self._log_tail()}")
            time.sleep(0.1)

    def _terminate(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # the postmaster's "fast" shutdown: no wait for clients
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        self._signal(signal.SIGKILL)  # children that outlived the postmaster
        self._proc = None
        self._close_log()

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
