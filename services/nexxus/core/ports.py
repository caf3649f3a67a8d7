"""The pluggable parts of Nexxus: small abstract ports with explicit start/stop.

An adapter implements one port, takes only its own typed config section, and is
registered under an entry-point group (see `nexxus.adapters.registry`):

    nexxus.database   DatabaseAdapter (objects, operations) + IdentityStore
    nexxus.bus        MessageBus
    nexxus.store      SubscriptionStore
    nexxus.transports Transport

Using an adapter before `start()` raises `RuntimeError` with a clear message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from nexxus.core.errors import NexxusError
from nexxus.core.models import (
    AppRecord,
    DeviceRecord,
    OperationRecord,
    RefreshTokenRecord,
    SortKey,
    StoredObject,
    UserRecord,
)
from nexxus.core.subjects import Subjects

if TYPE_CHECKING:
    from nexxus.core.filterquery import FilterNode
    from nexxus.core.positions import HistoryBounds
    from nexxus.core.schema import ModelSchema
    from nexxus.v1.events_pb2 import Event
    from nexxus.v1.internal_pb2 import ModelEvent, SubscriptionChange, WriteCommand
    from nexxus.v1.subscriptions_pb2 import Subscription

__all__ = [
    "BusMessage",
    "BusSubscription",
    "Connection",
    "DatabaseAdapter",
    "IdentityStore",
    "Lease",
    "LeaseTable",
    "Lifecycle",
    "MessageBus",
    "SearchPage",
    "SequencedHandler",
    "SubscriptionStore",
    "Transport",
    "WriteOutcome",
]


class Lifecycle(ABC):
    """Explicit start and stop; usable as `async with adapter:`."""

    name: ClassVar[str] = "unnamed"

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# --------------------------------------------------------------------------- database


@dataclass(slots=True)
class WriteOutcome:
    """The result of applying one WriteCommand."""

    command_id: str
    # Set when the write applied (or had applied before: `replayed`).
    event: ModelEvent | None
    # Set when the write can never apply (version conflict, missing object, schema...).
    error: NexxusError | None
    # True when the command id had already been applied: nothing changed now and
    # `event` is the event recorded the first time.
    replayed: bool = False


@dataclass(slots=True)
class SearchPage:
    objects: list[StoredObject]
    next_page_token: str


class DatabaseAdapter(Lifecycle):
    """Objects of application models, and the writer's operation log.

    `apply_writes` is the writer's only entry: for each command, in order, it
    applies it idempotently (a command id applies once; later calls return the
    recorded outcome with `replayed=True`), checks `expected_version`, validates
    the result against the schema, and records the outcome, atomically per
    command. The pure logic is `nexxus.core.writes.plan_write`; adapters only
    store.
    """

    @abstractmethod
    async def apply_writes(
        self, writes: Sequence[tuple[WriteCommand, ModelSchema]]
    ) -> list[WriteOutcome]: ...

    @abstractmethod
    async def get_object(self, app_id: str, model: str, object_id: str) -> StoredObject | None: ...

    @abstractmethod
    async def search_objects(
        self,
        app_id: str,
        model: str,
        filter: FilterNode | None,
        sort: Sequence[SortKey],
        page_size: int,
        page_token: str,
        *,
        owner_id: str | None = None,
    ) -> SearchPage:
        """Objects matching `filter` (same semantics as the Python matcher) and,
        when `owner_id` is not None, owned by that user; sorted, paged with an
        opaque token. Raises InvalidArgument for a bad page token."""

    @abstractmethod
    async def get_operation(self, app_id: str, command_id: str) -> OperationRecord | None: ...

    @abstractmethod
    async def delete_app_data(self, app_id: str) -> None:
        """Remove every object, tombstone and operation of an application."""

    @abstractmethod
    async def trim(self, *, operations_before: datetime, tombstones_before: datetime) -> int:
        """Retention: delete operation records created before `operations_before`
        and tombstones of objects deleted before `tombstones_before`; returns how
        many rows went."""

    async def ping(self) -> None:
        """Raise when the database cannot answer (readiness); a cheap read by default."""
        await self.get_operation("_ping", "_ping")


class IdentityStore(Lifecycle):
    """Applications, model schemas, users, devices and refresh tokens.

    Identity writes go straight here from the api (not through the writer).
    Unique violations raise AlreadyExists; lookups return None when absent.
    """

    @abstractmethod
    async def create_app(self, app: AppRecord) -> None: ...

    @abstractmethod
    async def get_app(self, app_id: str) -> AppRecord | None: ...

    @abstractmethod
    async def delete_app(self, app_id: str) -> bool:
        """Delete the application with its schemas, users, devices and tokens."""

    @abstractmethod
    async def set_server_key_hash(self, app_id: str, key_hash: str) -> bool:
        """Replace an application's server key (its hash); False when the application does not exist."""

    @abstractmethod
    async def list_apps(self) -> list[AppRecord]:
        """Every application, by id (the operator's console lists them)."""

    @abstractmethod
    async def put_schema(self, app_id: str, schema: Mapping[str, Any]) -> None:
        """Store a model schema (its dict form, `ModelSchema.to_dict()`), keyed by its name."""

    @abstractmethod
    async def list_schemas(self, app_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def create_user(self, user: UserRecord) -> None:
        """AlreadyExists when the username or e-mail (case-insensitive) is taken in the app."""

    @abstractmethod
    async def get_user(self, app_id: str, user_id: str) -> UserRecord | None: ...

    @abstractmethod
    async def find_user_by_login(self, app_id: str, login: str) -> UserRecord | None:
        """By username or e-mail, case-insensitive."""

    @abstractmethod
    async def find_user_by_external_id(self, app_id: str, external_id: str) -> UserRecord | None: ...

    @abstractmethod
    async def list_users(self, app_id: str, page_size: int, page_token: str) -> tuple[list[UserRecord], str]:
        """The users of an application, by id, a page at a time (next page token, "" at the end)."""

    @abstractmethod
    async def update_user(self, user: UserRecord, fields: Collection[str]) -> None:
        """Write only `fields` of `user` (names of UserRecord fields other than
        app_id, id, created_at), so concurrent updates of other fields are kept.
        `tokens_valid_after` only ever moves forward (a revocation is never undone).
        NotFound when the user does not exist; InvalidArgument for an unknown field."""

    @abstractmethod
    async def create_device(self, device: DeviceRecord) -> None: ...

    @abstractmethod
    async def get_device(self, app_id: str, device_id: str) -> DeviceRecord | None: ...

    @abstractmethod
    async def list_devices(
        self, app_id: str, user_id: str, page_size: int, page_token: str
    ) -> tuple[list[DeviceRecord], str]: ...

    @abstractmethod
    async def update_device(self, device: DeviceRecord) -> None: ...

    @abstractmethod
    async def delete_device(self, app_id: str, device_id: str) -> bool: ...

    @abstractmethod
    async def store_refresh_token(self, token: RefreshTokenRecord) -> None: ...

    @abstractmethod
    async def get_refresh_token(self, app_id: str, token_hash: str) -> RefreshTokenRecord | None: ...

    @abstractmethod
    async def revoke_refresh_tokens(
        self,
        app_id: str,
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        token_hash: str | None = None,
    ) -> int:
        """Revoke the matching tokens; returns how many."""

    @abstractmethod
    async def trim_refresh_tokens(self, expired_before: datetime) -> int:
        """Retention: delete refresh tokens that expired before `expired_before`."""


# --------------------------------------------------------------------------- message bus


class BusMessage(ABC):
    """A message received from the bus. Durable messages must be acked."""

    subject: str
    data: bytes
    headers: Mapping[str, str]

    @property
    @abstractmethod
    def num_delivered(self) -> int:
        """1 on first delivery; more on redeliveries."""

    @abstractmethod
    async def ack(self) -> None: ...

    @abstractmethod
    async def nak(self, delay: float | None = None) -> None:
        """Ask for redelivery (after `delay` seconds)."""

    @abstractmethod
    async def term(self) -> None:
        """Never redeliver."""

    @property
    def stream_sequence(self) -> int:
        """The message's sequence in its durable stream (0 for volatile messages)."""
        return 0


class BusSubscription(ABC):
    @abstractmethod
    async def unsubscribe(self) -> None: ...


class Lease(ABC):
    """A time-limited, exclusive hold on a key (see `MessageBus.leases`)."""

    key: str

    @abstractmethod
    async def renew(self) -> bool:
        """Extend the hold; False when it was lost (expired, maybe taken by another)."""

    @abstractmethod
    async def release(self) -> None:
        """Give the key up at once (no-op when already lost)."""


class LeaseTable(ABC):
    """Exclusive holds on keys that expire `ttl` seconds after their last renewal."""

    ttl: float

    @abstractmethod
    async def acquire(self, key: str, holder: str) -> Lease | None:
        """Hold `key`, or None when another holder has it."""

    @abstractmethod
    async def count(self, prefix: str) -> int:
        """How many keys starting with `prefix` are held right now."""


BatchHandler = Callable[[Sequence[BusMessage]], Awaitable[None]]
MessageHandler = Callable[[BusMessage], Awaitable[None]]
# (stream sequence, data) of each message of an ordered read.
SequencedHandler = Callable[[int, bytes], Awaitable[None]]


@dataclass(slots=True)
class StreamStats:
    """A durable stream's depth and its consumers' lag (metrics)."""

    stream: str
    messages: int
    bytes: int
    # consumer name (per-incarnation suffix removed) → (not yet delivered, not yet acked)
    consumers: dict[str, tuple[int, int]]


class MessageBus(Lifecycle):
    """Durable streams (JetStream) and volatile pub/sub (core NATS).

    Streams (created by `start`, idempotently; subjects from `nexxus.core.subjects`):
      NEXXUS_WRITES      nexxus.app.*.write.*     (api → writer, one subject per partition)
      NEXXUS_EVENTS      nexxus.app.*.events.>    (writer → router, custom workers)
      NEXXUS_PARKED      nexxus.app.*.parked[.>]  (poison commands with their reason)
      NEXXUS_DELIVERIES  nexxus.sys.transport.*   (router → transport)
    """

    @property
    def subjects(self) -> Subjects:
        """Every subject this bus carries (tenant and internal namespaces apart)."""
        return Subjects()

    @abstractmethod
    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Durable publish; returns once the stream has stored it. `msg_id`
        deduplicates (JetStream Nats-Msg-Id)."""

    async def publish_many(self, items: Sequence[tuple[str, bytes, str | None]]) -> None:
        """Durable publish of several (subject, data, msg_id) in order; adapters
        pipeline it. Returns once all are stored."""
        for subject, data, msg_id in items:
            await self.publish(subject, data, msg_id=msg_id)

    def parked_subject(self, app_id: str) -> str:
        """Where poison messages of an application are parked, with their reason."""
        return self.subjects.parked(app_id)

    # ---- the write queue: partitions consumed in order (writer)

    def write_subject(self, app_id: str, partition: int) -> str:
        """Where the api queues a write command of `partition` (see `nexxus.core.partitions`)."""
        return self.subjects.write(app_id, partition)

    def write_partition_filter(self, partition: int) -> str:
        """Every application's commands of one partition."""
        return self.subjects.write_partition(partition)

    async def consume_ordered(
        self, subject_filter: str, name: str, handler: BatchHandler, *, batch: int = 256
    ) -> BusSubscription:
        """Strictly in-order consumption of `subject_filter` by ONE process at a
        time (the caller holds a lease for it). On start, whatever an earlier
        holder left unacknowledged is delivered first, at once. When the handler
        raises or leaves messages of a batch unsettled, consumption restarts from
        the first unsettled one (after a short delay): a message is never
        overtaken by a later one. Nak is not used."""
        raise NotImplementedError(f"the {self.name} bus has no ordered consumption")

    async def leases(self, name: str, ttl: float) -> LeaseTable:
        """The lease table `name` (created if missing), holds expiring after `ttl` seconds."""
        raise NotImplementedError(f"the {self.name} bus has no leases")

    @abstractmethod
    async def publish_volatile(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Fire-and-forget core publish."""

    @abstractmethod
    async def consume(
        self,
        subject_filter: str,
        durable: str,
        handler: BatchHandler,
        *,
        batch: int = 256,
        max_deliver: int = 10,
        ack_wait: float = 30.0,
        in_order: bool = False,
    ) -> BusSubscription:
        """Durable pull consumer, shared by every process using the same
        `durable` name (work queue). The handler gets batches and must ack,
        nak or term each message; messages left unacked are redelivered.
        `in_order`: a message left unacknowledged (by a crashed process or a
        failed batch) is handled before anything newer (use `max_deliver=-1`)."""

    @abstractmethod
    async def subscribe(
        self, subject: str, handler: MessageHandler, *, queue: str | None = None
    ) -> BusSubscription:
        """Volatile subscription (core NATS); ack/nak/term are no-ops."""

    @abstractmethod
    async def request(self, subject: str, data: bytes, *, timeout: float) -> bytes: ...

    @property
    def connected(self) -> bool:
        """Whether the bus is connected now (readiness)."""
        return True

    async def stream_stats(self, hop: str) -> StreamStats | None:
        """Depth and consumer lag of the stream of `hop` ("writes", "events",
        "deliveries", "parked"); None when the bus keeps no such stream."""
        return None

    # ------------------------------------------------------------- event history

    async def history_bounds(self) -> HistoryBounds:
        """The epoch and retained sequences of the event history (the EVENTS stream)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no event history")

    def read_history(self, app_id: str, after_seq: int, up_to_seq: int) -> AsyncIterator[tuple[int, bytes]]:
        """The ModelEvents of an application with sequences in
        `(after_seq, up_to_seq]`, in order, as (sequence, data)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no event history")

    # ------------------------------------------------------------- router → transport

    async def publish_deliveries(self, items: Sequence[tuple[str, bytes, str]]) -> None:
        """Durable publish of (node, Delivery bytes, msg_id) items, in order;
        returns once all are stored (deduplicated by msg_id)."""
        raise NotImplementedError(f"{type(self).__name__} has no delivery streams")

    async def consume_deliveries(
        self,
        node: str,
        handler: SequencedHandler,
        *,
        on_loss: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> BusSubscription:
        """Every Delivery published for `node` from now on, in order, exactly
        once per process (the reader resumes after its last message across
        server restarts and reconnections). `on_loss(first, last)`: deliveries
        were discarded before the reader got to them (it fell behind the
        stream's limits)."""
        raise NotImplementedError(f"{type(self).__name__} has no delivery streams")


# --------------------------------------------------------------------------- subscription store


@dataclass(frozen=True, slots=True)
class HeldConnection:
    """One device connection recorded for a transport node."""

    app_id: str
    connection_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class NodeConnections:
    """A transport node, whether its lease is current, and the connections it holds."""

    node: str
    alive: bool
    connections: tuple[HeldConnection, ...]


class SubscriptionStore(Lifecycle):
    """Subscriptions, device connections and the per-application change log that
    routers replay (Redis / Valkey). Every key is scoped by application id."""

    async def ping(self) -> None:
        """Raise when the store cannot answer (readiness); a cheap read by default."""
        await self.acked_position("_ping", "_ping")

    @abstractmethod
    async def add_subscription(self, app_id: str, subscription: Subscription) -> None: ...

    @abstractmethod
    async def get_subscription(self, app_id: str, subscription_id: str) -> Subscription | None: ...

    @abstractmethod
    async def remove_subscription(self, app_id: str, subscription_id: str) -> bool: ...

    @abstractmethod
    async def list_device_subscriptions(self, app_id: str, device_id: str) -> list[Subscription]: ...

    @abstractmethod
    async def remove_device_subscriptions(
        self, app_id: str, device_id: str, *, volatile_only: bool
    ) -> int: ...

    @abstractmethod
    def iter_subscriptions(self, app_id: str | None = None) -> AsyncIterator[tuple[str, Subscription]]:
        """Every stored (app_id, subscription), for a router's initial load."""

    @abstractmethod
    async def changes_since(
        self, cursors: Mapping[str, str]
    ) -> dict[str, tuple[list[SubscriptionChange], str]]:
        """For each app id → cursor ("" = from now), the changes after it and the
        new cursor, in one round trip. A cursor older than the retained log
        raises `LookupError` (the router then reloads that application)."""

    @abstractmethod
    async def log_cursor(self, app_id: str) -> str:
        """The cursor of the newest change of an application."""

    @abstractmethod
    async def device_connected(self, app_id: str, device_id: str, node: str, connection_id: str) -> None:
        """Record a connection of a device held by a transport node."""

    @abstractmethod
    async def bind_subscription(
        self, app_id: str, device_id: str, connection_id: str, subscription_id: str
    ) -> bool:
        """Tie a volatile subscription to the connection that created it (it is
        removed with the connection). False, and the subscription removed, when
        the connection is already gone."""

    @abstractmethod
    async def device_disconnected(self, app_id: str, device_id: str, node: str, connection_id: str) -> int:
        """Forget a connection with the volatile subscriptions it created (all the
        device's volatile subscriptions when it was its last connection), in one
        step. Returns how many connections the device still has (on any node)."""

    @abstractmethod
    async def device_nodes(self, app_id: str) -> dict[str, tuple[str, ...]]:
        """device id → the nodes holding its connections, for every connected device."""

    @abstractmethod
    async def transport_nodes(self, app_id: str = "") -> list[NodeConnections]:
        """The known transport nodes (alive or not yet reaped), by id, with the
        connections each holds (of `app_id` only, when set)."""

    @abstractmethod
    async def renew_node_lease(self, node: str, ttl_seconds: float) -> bool:
        """Create or extend a transport node's lease; False when it had lapsed and
        the node was claimed by a reaper meanwhile (its connections are gone)."""

    @abstractmethod
    async def release_node_lease(self, node: str) -> None:
        """Drop a stopping node's lease and whatever connections it still has recorded."""

    @abstractmethod
    async def dead_nodes(self) -> list[str]:
        """Transport nodes whose lease has expired (their connections are stale)."""

    @abstractmethod
    async def reap_node(self, node: str) -> int:
        """Disconnect every connection recorded for a dead node; returns how many."""

    async def ack_position(self, app_id: str, device_id: str, epoch: str, seq: int) -> str:
        """Record a device's acknowledged position (`<epoch>.<seq>`); positions
        only move forward within an epoch. Returns the stored position."""
        raise NotImplementedError(f"{type(self).__name__} stores no positions")

    async def acked_position(self, app_id: str, device_id: str) -> str:
        """The device's acknowledged position, or ""."""
        raise NotImplementedError(f"{type(self).__name__} stores no positions")

    @abstractmethod
    async def hit(self, key: str, window_seconds: int) -> int:
        """Count one event in a fixed window (throttling); returns the count so far."""

    @abstractmethod
    async def delete_app(self, app_id: str) -> None: ...


# --------------------------------------------------------------------------- transports


class Connection(ABC):
    """One live client connection held by a transport node."""

    app_id: str
    user_id: str
    device_id: str
    connection_id: str
    # The edge it came through ("grpc", "sse", "websocket"; metrics label).
    transport: str = "other"

    @abstractmethod
    async def push(self, event: Event) -> None:
        """Queue an event for the client (never blocks on a slow client: a full
        queue closes the connection with an error frame)."""

    @abstractmethod
    async def close(self, code: str, reason: str, error_reason: str = "") -> None:
        """Close with an error frame: `code` a google.rpc.Code name, `reason` the
        message, `error_reason` a machine-readable reason (e.g. TOKEN_EXPIRED)."""


class Transport(Lifecycle):
    """A way of reaching devices (gRPC stream, WebSocket, SSE; push notifications later).

    Volatile transports' subscriptions are removed when the device's last
    connection closes; persistent ones keep them."""

    volatile: ClassVar[bool] = True
