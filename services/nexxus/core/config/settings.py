"""Typed settings. Each adapter and service takes only its own section.

Layering (later wins): defaults < file (YAML/JSON/TOML, `--config` or
NEXXUS_CONFIG) < environment (NEXXUS_<SECTION>__<KEY>, e.g.
NEXXUS_DATABASE__ADAPTER=postgres) < CLI (`--set database.adapter=postgres`),
then custom providers registered under the `nexxus.config_providers` entry
point. Validated at start by `nexxus.core.config.loader.load_settings`; a bad
key or value raises ConfigError naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SqliteSettings:
    # Relative paths are under `data_dir`.
    path: str = "nexxus.db"


@dataclass(slots=True)
class PostgresSettings:
    dsn: str = "postgresql://127.0.0.1:5432/nexxus"
    min_pool: int = 1
    max_pool: int = 10
    # Tables are created in this schema (created if missing).
    schema: str = "nexxus"


@dataclass(slots=True)
class ElasticsearchSettings:
    hosts: list[str] = field(default_factory=lambda: ["http://127.0.0.1:9200"])
    index_prefix: str = "nexxus"
    api_key: str = ""
    # "" | "wait_for" | "true": refresh after writes (tests use wait_for).
    refresh: str = ""


@dataclass(slots=True)
class OpenSearchSettings:
    hosts: list[str] = field(default_factory=lambda: ["http://127.0.0.1:9200"])
    index_prefix: str = "nexxus"
    # HTTP basic authentication (the security plugin); both empty = none.
    username: str = ""
    password: str = ""
    verify_certs: bool = True
    # "" | "wait_for" | "true": refresh after writes (tests use true).
    refresh: str = ""


@dataclass(slots=True)
class DatabaseSettings:
    adapter: str = "sqlite"
    sqlite: SqliteSettings = field(default_factory=SqliteSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)
    opensearch: OpenSearchSettings = field(default_factory=OpenSearchSettings)


@dataclass(slots=True)
class NatsSettings:
    servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    # JetStream stream replicas (1 on a single server; 3 on a cluster).
    replicas: int = 1
    # Prefix of every stream name, so several deployments can share a server.
    stream_prefix: str = "NEXXUS"
    # Prefix of every subject.
    subject_prefix: str = "nexxus"
    # The write queue (stream P_WRITES): commands wait there until a writer applies
    # them, with no age limit; when it holds this many bytes the api refuses new
    # writes (RESOURCE_EXHAUSTED / HTTP 429) instead of dropping any.
    writes_max_bytes: int = 1024**3
    # Event history (the EVENTS stream), from which devices resume: changes
    # older than this many seconds, or beyond this many bytes (-1: no byte
    # limit), are dropped; a device resuming from before them gets a gap and
    # a snapshot.
    events_max_age_seconds: float = 24 * 3600.0
    events_max_bytes: int = 1024**3
    # Router → transport deliveries (one stream, a subject per transport node):
    # a buffer of the hop, not a history.
    deliveries_max_age_seconds: float = 3600.0
    deliveries_max_bytes: int = 256 * 1024**2


@dataclass(slots=True)
class BusSettings:
    adapter: str = "nats"
    nats: NatsSettings = field(default_factory=NatsSettings)


@dataclass(slots=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every key (the seed's "nxx").
    key_prefix: str = "nxx"
    # Changes kept per application in the router change log.
    change_log_length: int = 100_000


@dataclass(slots=True)
class StoreSettings:
    adapter: str = "redis"
    redis: RedisSettings = field(default_factory=RedisSettings)


@dataclass(slots=True)
class OidcProviderSettings:
    issuer: str = ""
    # A JWKS URL, or a file path / inline JSON key set (tests, air-gapped setups).
    jwks: str = ""
    audience: str = ""


# HS256 keys shorter than this are refused (RFC 7518 §3.2: at least the hash size).
MIN_SIGNING_KEY_LENGTH = 32


@dataclass(slots=True)
class AuthSettings:
    # HS256 secret for access tokens (>= MIN_SIGNING_KEY_LENGTH characters); generated when empty.
    signing_key: str = ""
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Failed logins per (app, login) per minute before RESOURCE_EXHAUSTED.
    max_failed_logins_per_minute: int = 5
    min_password_length: int = 8
    oidc: dict[str, OidcProviderSettings] = field(default_factory=dict)


@dataclass(slots=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 50051
    # Max time a `wait` write waits for the writer.
    write_wait_seconds: float = 10.0


@dataclass(slots=True)
class WriterSettings:
    batch_size: int = 256
    # Deliveries of one command before it is parked as poison.
    max_deliver: int = 5
    # Write partitions: commands of one object always go to the same partition
    # (hash of app, model, object id), which one writer copy at a time applies in
    # order. More partitions spread the load over more copies. api and writers must
    # agree; change it only with the write queue drained.
    partitions: int = 8
    # A writer copy's hold on its partitions: renewed every third of it; a copy that
    # dies loses them after this long, and a live copy takes them over.
    lease_ttl_seconds: float = 3.0
    # Retention jobs (run by every writer copy every `retention_interval_seconds`):
    # operation records (GetOperation, command idempotency), tombstones of deleted
    # objects (a re-created object continues their version), and refresh tokens
    # past their expiry by this long.
    retention_interval_seconds: float = 3600.0
    operations_retention_seconds: int = 7 * 24 * 3600
    tombstones_retention_seconds: int = 30 * 24 * 3600
    refresh_tokens_retention_seconds: int = 24 * 3600


@dataclass(slots=True)
class RouterSettings:
    batch_size: int = 256
    # Seconds before an event fetched by a router that died is handed to
    # another (or the restarted) router.
    ack_wait_seconds: float = 10.0


@dataclass(slots=True)
class TransportSettings:
    host: str = "127.0.0.1"
    # gRPC event stream (EventService).
    grpc_port: int = 50052
    # WebSocket bridge.
    ws_port: int = 8765
    # Server-sent events (served by the transport; Envoy proxies GET /v1/apps/{app}/events).
    sse_port: int = 8766
    heartbeat_seconds: int = 15
    # Bytes of events buffered per connection (queue + socket send buffer)
    # before a slow client gets an error frame with its position and is closed.
    max_buffer_bytes: int = 2 * 1024 * 1024
    # Seconds a closing stream's last frames (the error frame) may wait for a
    # client that does not read before the connection is cut.
    close_grace_seconds: float = 30.0
    # The node's connection lease in the store: renewed every third of it; when
    # the node dies its connections (and their volatile subscriptions) are
    # removed by another node within about this many seconds.
    lease_seconds: float = 6.0
    # Open streams re-check their access token (expiry is exact; revocation is
    # seen within this many seconds even if the close message was lost).
    token_check_seconds: float = 30.0


@dataclass(slots=True)
class EnvoySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 9901
    cors_allow_origins: list[str] = field(default_factory=lambda: ["*"])


@dataclass(slots=True)
class LimitSettings:
    # The largest object (its data, protobuf-encoded) the api accepts; every
    # other size (pages, gRPC and NATS messages, Envoy buffers) is derived from
    # it (`nexxus.core.limits`). 65536 .. 8388608.
    max_object_bytes: int = 1024 * 1024


@dataclass(slots=True)
class LoggingSettings:
    level: str = "INFO"
    # "text" or "json"
    format: str = "text"
    # Optional custom sink: "module:callable" returning a logging.Handler.
    handler: str = ""


@dataclass(slots=True)
class ObservabilitySettings:
    """Each service process's observability port: /metrics, /healthz, /readyz,
    /debug/traces (docs/observability.md). One port per role (0 = a free port);
    a process running several roles serves one, at its first role's port."""

    enabled: bool = True
    host: str = "127.0.0.1"
    api_port: int = 9461
    writer_port: int = 9462
    router_port: int = 9463
    transport_port: int = 9464
    # OpenTelemetry spans: recorded at all, the fraction of new traces kept (a
    # caller's sampled traceparent is always followed), spans kept in memory.
    # A sampled write costs its four services about 0.3-0.6 ms of CPU in all
    # (bench/observability_bench.py); an unsampled one a string check per hop.
    tracing: bool = True
    trace_sample_ratio: float = 0.1
    trace_buffer_spans: int = 4096
    # An OTLP/gRPC collector, e.g. http://127.0.0.1:4317 (OTEL_EXPORTER_OTLP_ENDPOINT too);
    # needs the `otlp` extra.
    otlp_endpoint: str = ""

    def port_of(self, role: str) -> int | None:
        """The configured port of `role` (api, writer, router, transport), None for others."""
        value = getattr(self, f"{role}_port", None)
        return value if isinstance(value, int) else None


@dataclass(slots=True)
class Settings:
    # Identifies this process's transport node (deliveries are routed per node).
    # Empty: <hostname>-<pid>-<random>, new for every start. A fixed id must not be
    # reused by a process started after a crash within `transport.lease_seconds`
    # (it would renew the dead one's lease, whose connections are then never reaped).
    node_id: str = ""
    data_dir: str = ".nexxus"
    # The operator (admin) credential for application management; generated
    # into data_dir by `nexxus dev` when empty.
    operator_key: str = ""
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    bus: BusSettings = field(default_factory=BusSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    writer: WriterSettings = field(default_factory=WriterSettings)
    router: RouterSettings = field(default_factory=RouterSettings)
    transport: TransportSettings = field(default_factory=TransportSettings)
    envoy: EnvoySettings = field(default_factory=EnvoySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
