"""Everything an api servicer needs, built once per process by `ApiService`."""

from __future__ import annotations

from dataclasses import dataclass, field

from nexxus.api.barriers import BarrierCoalescer
from nexxus.api.results import WriteResults
from nexxus.auth.authenticator import Authenticator
from nexxus.auth.oidc import OidcVerifier
from nexxus.auth.passwords import PasswordHasher
from nexxus.auth.throttle import LoginThrottle
from nexxus.auth.tokens import TokenService
from nexxus.core.config.settings import Settings
from nexxus.core.ports import DatabaseAdapter, IdentityStore, MessageBus, SubscriptionStore
from nexxus.core.schema_registry import SchemaRegistry


@dataclass(slots=True)
class ApiContext:
    settings: Settings
    node_id: str
    identity: IdentityStore
    db: DatabaseAdapter
    bus: MessageBus
    store: SubscriptionStore
    schemas: SchemaRegistry
    authenticator: Authenticator
    tokens: TokenService
    hasher: PasswordHasher
    throttle: LoginThrottle
    oidc: OidcVerifier
    results: WriteResults
    # Write barriers before a 404, one in flight per partition (api/barriers.py).
    barriers: BarrierCoalescer = field(default_factory=BarrierCoalescer)
