"""Plain records shared by the services and the adapters (no driver types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JsonObject = dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class StoredObject:
    """One application object as the database holds it."""

    app_id: str
    model: str
    id: str
    owner_id: str
    version: int
    data: JsonObject
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class AppRecord:
    id: str
    display_name: str
    optional_auth: bool
    # argon2 hash of the application's server key.
    server_key_hash: str
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class UserRecord:
    app_id: str
    id: str
    username: str
    email: str
    display_name: str
    # argon2 hash; "" for users who only sign in through OIDC.
    password_hash: str
    profile: JsonObject = field(default_factory=dict)
    # "provider:subject" identities from OIDC sign-ins.
    external_ids: list[str] = field(default_factory=list)
    # Tokens issued before this instant are revoked (logout everywhere, password change).
    tokens_valid_after: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class DeviceRecord:
    app_id: str
    id: str
    user_id: str
    name: str
    platform: str
    transport: str
    # Tokens of this device issued before this instant are revoked.
    tokens_valid_after: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class RefreshTokenRecord:
    app_id: str
    # sha256 hex of the opaque refresh token.
    token_hash: str
    user_id: str
    device_id: str
    expires_at: datetime
    revoked: bool = False
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class OperationRecord:
    """The writer's record of one applied (or failed) WriteCommand."""

    app_id: str
    command_id: str
    object_id: str
    ok: bool
    error_code: str
    error_message: str
    error_reason: str
    version: int
    # The serialized ModelEvent (nexxus.v1.ModelEvent) when ok, so a redelivered
    # command republishes the identical event.
    event: bytes
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class SortKey:
    """A search sort key: a schema field path or one of id/version/create_time/update_time."""

    field: str
    descending: bool = False
