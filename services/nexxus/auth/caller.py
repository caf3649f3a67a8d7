"""Who is calling: the result of authentication, passed to every access check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nexxus.core.filterquery import AuthContext

__all__ = ["Caller", "CallerKind"]

CallerKind = Literal["operator", "server", "user", "anonymous"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller of one application.

    operator   the deployment's operator key (every application, every rule)
    server     the application's server key (``nxs_…``; every rule of its app)
    user       a user's access token; `device_id` is set when the token is device-bound
    anonymous  no credentials, in an application with optional auth
    """

    app_id: str
    kind: CallerKind
    user_id: str = ""
    device_id: str = ""
    # The access token's jti (users only).
    token_id: str = ""
    # When the access token expires (seconds since the epoch; 0: never, e.g. keys).
    expires_at: float = 0.0

    @property
    def is_privileged(self) -> bool:
        """Operator and server callers pass every access rule."""
        return self.kind in ("operator", "server")

    @property
    def is_authenticated(self) -> bool:
        return self.kind != "anonymous"

    @property
    def is_user(self) -> bool:
        return self.kind == "user" and bool(self.user_id)

    def auth_context(self) -> AuthContext:
        """The values of ``$auth.user_id`` / ``$auth.device_id`` in FilterQueries."""
        return AuthContext(user_id=self.user_id, device_id=self.device_id)

    @classmethod
    def anonymous(cls, app_id: str) -> Caller:
        return cls(app_id=app_id, kind="anonymous")

    @classmethod
    def operator(cls, app_id: str = "") -> Caller:
        return cls(app_id=app_id, kind="operator")

    @classmethod
    def server(cls, app_id: str) -> Caller:
        return cls(app_id=app_id, kind="server")

    @classmethod
    def user(
        cls, app_id: str, user_id: str, device_id: str = "", token_id: str = "", expires_at: float = 0.0
    ) -> Caller:
        return cls(
            app_id=app_id,
            kind="user",
            user_id=user_id,
            device_id=device_id,
            token_id=token_id,
            expires_at=expires_at,
        )

    @classmethod
    def subscriber(
        cls, app_id: str, user_id: str, device_id: str = "", *, privileged: bool = False
    ) -> Caller:
        """The caller a stored subscription pushes as (`Subscription.subscriber_user_id`
        and `.privileged`): server when privileged, else the user, else anonymous."""
        if privileged:
            return cls(app_id=app_id, kind="server", device_id=device_id)
        if user_id:
            return cls.user(app_id, user_id, device_id)
        return cls(app_id=app_id, kind="anonymous", device_id=device_id)

    def __repr__(self) -> str:
        # token_id is not a secret, but keep logs short.
        who = f" user={self.user_id!r}" if self.user_id else ""
        dev = f" device={self.device_id!r}" if self.device_id else ""
        return f"Caller({self.kind} app={self.app_id!r}{who}{dev})"
