"""Value checks on a typed `Settings`: adapter names, ports, URLs, ranges, log level.

Each check appends ``(key, message)`` problems; the loader raises them together.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from nexxus.core.config.coerce import Problems
from nexxus.core.config.settings import MIN_SIGNING_KEY_LENGTH, Settings
from nexxus.core.limits import MAX_OBJECT_BYTES, MIN_OBJECT_BYTES

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "check_settings"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
ES_REFRESH = ("", "wait_for", "true", "false")

# key -> (minimum, maximum or None)
_RANGES: dict[str, tuple[float, float | None]] = {
    "database.postgres.min_pool": (0, None),
    "database.postgres.max_pool": (1, None),
    "bus.nats.replicas": (1, 5),
    "limits.max_object_bytes": (MIN_OBJECT_BYTES, MAX_OBJECT_BYTES),
    "store.redis.change_log_length": (1, None),
    "auth.access_token_ttl_seconds": (1, None),
    "auth.refresh_token_ttl_seconds": (1, None),
    "auth.max_failed_logins_per_minute": (1, None),
    "auth.min_password_length": (1, None),
    "api.write_wait_seconds": (0, None),
    "writer.batch_size": (1, None),
    "writer.max_deliver": (1, None),
    "writer.partitions": (1, 1024),
    "writer.lease_ttl_seconds": (0.3, None),
    "writer.retention_interval_seconds": (1, None),
    "writer.operations_retention_seconds": (3600, None),
    "writer.tombstones_retention_seconds": (3600, None),
    "writer.refresh_tokens_retention_seconds": (0, None),
    "bus.nats.writes_max_bytes": (1024, None),
    "router.batch_size": (1, None),
    "router.ack_wait_seconds": (1, None),
    "bus.nats.events_max_age_seconds": (1, None),
    "bus.nats.events_max_bytes": (-1, None),
    "bus.nats.deliveries_max_age_seconds": (1, None),
    "bus.nats.deliveries_max_bytes": (-1, None),
    "transport.heartbeat_seconds": (1, None),
    "transport.max_buffer_bytes": (1024, None),
    "transport.lease_seconds": (1, None),
    "transport.close_grace_seconds": (0, None),
    "transport.token_check_seconds": (1, None),
    "observability.trace_sample_ratio": (0, 1),
    "observability.trace_buffer_spans": (1, None),
}


def _walk(obj: object, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(full key, field name, value) of every leaf and section of a dataclass tree."""
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        key = f"{path}.{f.name}" if path else f.name
        yield key, f.name, value
        if dataclasses.is_dataclass(value):
            yield from _walk(value, key)
        elif isinstance(value, dict):
            for name, item in value.items():
                if dataclasses.is_dataclass(item):
                    yield from _walk(item, f"{key}.{name}")


def _check_adapters(settings: Settings, problems: Problems) -> None:
    from nexxus.core.plugins import BUS, DATABASE, STORE, known_adapters

    for key, group, name in (
        ("database.adapter", DATABASE, settings.database.adapter),
        ("bus.adapter", BUS, settings.bus.adapter),
        ("store.adapter", STORE, settings.store.adapter),
    ):
        known = known_adapters(group)
        if name not in known:
            problems.append((key, f"unknown adapter {name!r} (known: {', '.join(known) or 'none'})"))


def _check_urls(key: str, urls: str | Sequence[str], schemes: Sequence[str], problems: Problems) -> None:
    """Each URL must parse and use one of `schemes`; a list names its items ``key[i]``."""
    items = [(key, urls)] if isinstance(urls, str) else [(f"{key}[{i}]", u) for i, u in enumerate(urls)]
    for item, url in items:
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a bad port
        except ValueError as exc:
            problems.append((item, f"{url!r} is not a valid URL: {exc}"))
            continue
        if parts.scheme not in schemes or not (parts.hostname or parts.path):
            example = f"{schemes[0]}://host:port"
            problems.append((item, f"{url!r} is not a {'/'.join(schemes)} URL (e.g. {example})"))


def check_settings(settings: Settings, problems: Problems) -> None:
    """Append every bad value of `settings` to `problems`; normalizes the log level."""
    _check_adapters(settings, problems)
    for key, name, value in _walk(settings):
        is_port = name == "port" or name.endswith("_port")
        if is_port and isinstance(value, int) and not 0 <= value <= 65535:
            problems.append((key, f"port {value} is out of range 0..65535"))
        if key in _RANGES and isinstance(value, int | float):
            low, high = _RANGES[key]
            if value < low or (high is not None and value > high):
                bound = f">= {low:g}" if high is None else f"in {low:g}..{high:g}"
                problems.append((key, f"{value} must be {bound}"))

    pg = settings.database.postgres
    if pg.max_pool < pg.min_pool:
        problems.append(("database.postgres.max_pool", f"{pg.max_pool} is below min_pool ({pg.min_pool})"))
    _check_urls("database.postgres.dsn", pg.dsn, ("postgresql", "postgres"), problems)
    _check_urls(
        "database.elasticsearch.hosts", settings.database.elasticsearch.hosts, ("http", "https"), problems
    )
    _check_urls("database.opensearch.hosts", settings.database.opensearch.hosts, ("http", "https"), problems)
    for engine in ("elasticsearch", "opensearch"):
        if getattr(settings.database, engine).refresh not in ES_REFRESH:
            problems.append((f"database.{engine}.refresh", f"must be one of {ES_REFRESH}"))
    if not settings.bus.nats.servers:
        problems.append(("bus.nats.servers", "at least one server is needed"))
    _check_urls("bus.nats.servers", settings.bus.nats.servers, ("nats", "tls", "ws", "wss"), problems)
    _check_urls("store.redis.url", settings.store.redis.url, ("redis", "rediss", "unix"), problems)

    key = settings.auth.signing_key
    if key and len(key) < MIN_SIGNING_KEY_LENGTH:
        problems.append(
            (
                "auth.signing_key",
                f"has {len(key)} characters; HS256 needs at least {MIN_SIGNING_KEY_LENGTH} "
                "(e.g. the output of `openssl rand -base64 48`), or leave it empty to have one generated",
            )
        )

    log = settings.logging
    level = log.level.upper()
    if level not in LOG_LEVELS or not isinstance(logging.getLevelName(level), int):
        problems.append(("logging.level", f"{log.level!r} is not one of {', '.join(LOG_LEVELS)}"))
    else:
        log.level = level
    if log.format not in LOG_FORMATS:
        problems.append(("logging.format", f"{log.format!r} is not one of {', '.join(LOG_FORMATS)}"))
    if log.handler and (":" not in log.handler or log.handler.startswith(":") or log.handler.endswith(":")):
        problems.append(("logging.handler", f"{log.handler!r} is not of the form 'module:callable'"))
