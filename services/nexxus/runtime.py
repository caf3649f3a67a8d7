"""One process's wiring: adapters from settings, the shared contexts, and the
services it runs (`nexxus serve api|writer|router|transport|all`)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc

from nexxus.adapters.registry import (
    WORKERS,
    build_bus,
    build_database,
    build_identity_store,
    build_store,
    known_adapters,
    load_adapter,
)
from nexxus.api.context import ApiContext
from nexxus.api.results import WriteResults
from nexxus.api.server import SERVICE_NAMES, build_api_server
from nexxus.auth.authenticator import Authenticator
from nexxus.auth.caller import Caller
from nexxus.auth.oidc import OidcVerifier
from nexxus.auth.passwords import PasswordHasher
from nexxus.auth.rules import RouterReadGate
from nexxus.auth.throttle import LoginThrottle
from nexxus.auth.tokens import TokenService, ensure_secret
from nexxus.core import limits
from nexxus.core.config.settings import Settings
from nexxus.core.errors import NexxusError
from nexxus.core.ids import new_id
from nexxus.core.ports import DatabaseAdapter, IdentityStore, Lifecycle, SubscriptionStore
from nexxus.core.schema_registry import SchemaRegistry
from nexxus.observability.server import ObservabilityServer
from nexxus.observability.wiring import build_observability
from nexxus.router.service import RouterService
from nexxus.rpc.health_follower import HealthFollower
from nexxus.rpc.interceptors import TokenInterceptor
from nexxus.rpc.server import set_serving
from nexxus.subscribing import SubscriptionManager
from nexxus.transport.service import TransportService
from nexxus.workers.base import BaseWorker
from nexxus.writer.service import WriterService

log = logging.getLogger("nexxus.runtime")

SERVICES = ("api", "writer", "router", "transport")
_T = TypeVar("_T")


def resolve_secrets(settings: Settings) -> None:
    """Fill the operator key and signing key from data_dir when not configured."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.operator_key:
        settings.operator_key = ensure_secret(data_dir / "operator.key")
    if not settings.auth.signing_key:
        settings.auth.signing_key = ensure_secret(data_dir / "signing.key")
    if not settings.node_id:
        # Unique per process *incarnation*: a container restarted after a crash keeps
        # its hostname and often its pid, and must not take over the dead
        # incarnation's lease (its stale connections would never be reaped).
        settings.node_id = f"{socket.gethostname()}-{os.getpid()}-{new_id()[-6:].lower()}"


def stream_caller(authenticator: Authenticator) -> Callable[[str, str | None], Awaitable[Caller]]:
    """Authentication for event streams and WebSockets. An anonymous caller of an
    optional-auth application gets an ephemeral device for the connection, so it
    can subscribe to what the access rules make public; its subscriptions are
    volatile and go with the connection."""

    async def authenticate(app_id: str, authorization: str | None) -> Caller:
        caller = await authenticator.authenticate(app_id, authorization)
        if caller.kind == "anonymous" and not caller.device_id:
            return dataclasses.replace(caller, device_id=f"anon-{new_id()}")
        return caller

    return authenticate


# The adapters each service needs; a process builds the union of its services'.
NEEDS: dict[str, frozenset[str]] = {
    "api": frozenset({"database", "identity", "bus", "store"}),
    "writer": frozenset({"database", "identity", "bus"}),
    "router": frozenset({"identity", "bus", "store"}),
    # Identities for authentication; the database for subscription snapshots.
    "transport": frozenset({"database", "identity", "bus", "store"}),
}
WORKER_NEEDS = frozenset({"bus"})


def adapters_needed(services: Sequence[str]) -> frozenset[str]:
    """The adapters a process running `services` builds (custom workers need the bus)."""
    needed: frozenset[str] = frozenset()
    for name in services:
        needed |= NEEDS.get(name, WORKER_NEEDS)
    return needed


def _required(value: _T | None, what: str) -> _T:
    if value is None:
        raise RuntimeError(f"{what} was not built for this process's services")
    return value


class Runtime:
    """The adapters and services of one process. `start()` then `stop()`."""

    def __init__(self, settings: Settings, services: Sequence[str]) -> None:
        workers = [name for name in services if name not in SERVICES]
        known_workers = known_adapters(WORKERS)
        unknown = [name for name in workers if name not in known_workers]
        if unknown:
            choices = ", ".join([*SERVICES, *known_workers])
            raise ValueError(f"unknown services {unknown}; choose from {choices}")
        resolve_secrets(settings)
        limits.configure(limits.limits_of(settings))
        self.settings = settings
        self.services = list(services)
        self.worker_names = workers
        self.workers: list[BaseWorker] = []
        self.needs = adapters_needed(self.services)
        self.db: DatabaseAdapter | None = build_database(settings) if "database" in self.needs else None
        self.identity: IdentityStore | None = (
            build_identity_store(settings) if "identity" in self.needs else None
        )
        self.bus = build_bus(settings)
        self.store: SubscriptionStore | None = build_store(settings) if "store" in self.needs else None
        self.schemas = SchemaRegistry(self.identity) if self.identity is not None else None
        self.ctx: ApiContext | None = None
        self.api_port = 0
        self._started: list[Lifecycle] = []
        self._running: list[object] = []
        self.writer: WriterService | None = None
        self.router: RouterService | None = None
        self.transport: TransportService[Caller] | None = None
        self._api_server: grpc.aio.Server | None = None
        self._results: WriteResults | None = None
        # /metrics, /healthz, /readyz, /debug/traces (docs/observability.md); up first,
        # so /healthz answers and /readyz says "not ready" during start-up.
        self.observability: ObservabilityServer | None = build_observability(self)
        # grpc.health.v1 follows the same readiness checks (when observability is on).
        self.health: HealthFollower | None = (
            HealthFollower(self.observability.readiness) if self.observability is not None else None
        )

    async def start(self) -> None:
        s = self.settings
        if self.observability is not None:
            await self.observability.start()
        adapters: list[Lifecycle] = [
            a for a in (self.db, self.identity, self.bus, self.store) if a is not None
        ]
        for adapter in adapters:
            await adapter.start()
            self._started.append(adapter)
        if self.schemas is not None:
            await self.schemas.listen(self.bus)
        if "writer" in self.services:
            schemas, identity = _required(self.schemas, "schemas"), _required(self.identity, "identity")
            self.writer = WriterService(
                s.writer,
                self.bus,
                _required(self.db, "database"),
                schemas,
                identity=identity,
                holder=s.node_id,
            )
            await self.writer.start()
            self._running.append(self.writer)
        if "router" in self.services:
            lookup = _required(self.schemas, "schemas").lookup
            self.router = RouterService(
                s, self.bus, _required(self.store, "store"), lookup, RouterReadGate(lookup)
            )
            await self.router.start()
            self._running.append(self.router)
        if "transport" in self.services:
            await self._start_transport()
        for name in self.worker_names:
            worker = load_adapter(WORKERS, name)(self.bus)
            if not isinstance(worker, BaseWorker):
                raise TypeError(f"worker {name!r} is not a nexxus.workers.BaseWorker")
            await worker.start()
            self.workers.append(worker)
        if "api" in self.services:
            await self._start_api()
        if self.health is not None:
            self.health.start()
        log.info("started %s (node %s)", ", ".join(self.services), s.node_id)

    def _authenticator(self, tokens: TokenService, hasher: PasswordHasher) -> Authenticator:
        return Authenticator(
            _required(self.identity, "identity"),
            tokens,
            operator_key=self.settings.operator_key,
            hasher=hasher,
        )

    async def _start_transport(self) -> None:
        s = self.settings
        schemas, store = _required(self.schemas, "schemas"), _required(self.store, "store")
        tokens = TokenService(s.auth, signing_key=s.auth.signing_key)
        manager = SubscriptionManager(schemas, store, _required(self.db, "database"))
        self.transport = TransportService(
            s,
            self.bus,
            store,
            stream_caller(self._authenticator(tokens, PasswordHasher())),
            manager.create,
            manager.delete,
            interceptors=[TokenInterceptor(tokens)],
            schema_lookup=schemas.lookup,
            read_gate=RouterReadGate(schemas.lookup),
            snapshot=manager.snapshot,
        )
        await self.transport.start()
        self._running.append(self.transport)
        if self.health is not None:
            self.health.follow(*self.transport.health)

    async def _start_api(self) -> None:
        s = self.settings
        store = _required(self.store, "store")
        hasher = PasswordHasher()
        tokens = TokenService(s.auth, signing_key=s.auth.signing_key)
        results = WriteResults(self.bus, s.node_id)
        self._results = results
        self.ctx = ApiContext(
            settings=s,
            node_id=s.node_id,
            identity=_required(self.identity, "identity"),
            db=_required(self.db, "database"),
            bus=self.bus,
            store=store,
            schemas=_required(self.schemas, "schemas"),
            authenticator=self._authenticator(tokens, hasher),
            tokens=tokens,
            hasher=hasher,
            throttle=LoginThrottle(store, s.auth.max_failed_logins_per_minute),
            oidc=OidcVerifier(s.auth.oidc),
            results=results,
        )
        await results.start()
        server, port, health = build_api_server(self.ctx, f"{s.api.host}:{s.api.port}")
        await server.start()
        await set_serving(health, SERVICE_NAMES)
        if self.health is not None:
            self.health.follow(health, SERVICE_NAMES)
        self._api_server = server
        self.api_port = port

    async def stop(self) -> None:
        """Stop whatever was started, in reverse order; safe after a failed start."""
        if self.health is not None:
            await self.health.stop()
        if self._api_server is not None:
            await self._api_server.stop(5)
            self._api_server = None
        if self._results is not None:
            await self._results.stop()
            self._results = None
        for worker in self.workers:
            await worker.stop()
        self.workers.clear()
        for service in (self.transport, self.router, self.writer):
            if service is not None and service in self._running:
                await service.stop()
        self._running.clear()
        for adapter in reversed(self._started):
            try:
                await adapter.stop()
            except NexxusError as exc:
                log.warning("stopping %s: %s", adapter.name, exc)
        self._started.clear()
        if self.observability is not None:
            await self.observability.stop()


async def serve(settings: Settings, services: Sequence[str]) -> int:
    """Run until SIGINT/SIGTERM, then stop gracefully. Returns the exit code:
    1 when start-up fails (after stopping what had started), so supervisors see it."""
    runtime = Runtime(settings, services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(runtime.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is None:
            await stopping
        elif not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        else:
            log.error("start-up failed: %s", starting.exception(), exc_info=starting.exception())
            return 1
        return 0
    finally:
        stopping.cancel()
        await runtime.stop()
