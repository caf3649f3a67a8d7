"""Key names of the Redis subscription store (see `nexxus.adapters.store.redis` and docs/store.md)."""

from __future__ import annotations

import re

from nexxus.core.errors import InvalidArgument

__all__ = ["Keys", "glob_escape"]

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """Escape SCAN MATCH glob characters."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


class Keys:
    """Every key of an application carries the hash tag `{app}`: one Redis Cluster slot per app."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def app(self, app_id: str) -> str:
        """`<prefix>:{<app>}`: the common part of an application's keys."""
        if not app_id or "{" in app_id or "}" in app_id:
            raise InvalidArgument(f"invalid application id {app_id!r}", field="app_id")
        return f"{self.prefix}:{{{app_id}}}"

    def sub(self, app_id: str, subscription_id: str) -> str:
        return f"{self.app(app_id)}:sub:{subscription_id}"

    def app_subs(self, app_id: str) -> str:
        return f"{self.app(app_id)}:subs"

    def device_subs(self, app_id: str, device_id: str) -> str:
        return f"{self.app(app_id)}:device:{device_id}:subs"

    def model_subs(self, app_id: str, model: str) -> str:
        return f"{self.app(app_id)}:model:{model}:subs"

    def conns(self, app_id: str, device_id: str) -> str:
        return f"{self.app(app_id)}:conns:{device_id}"

    def nodes(self, app_id: str) -> str:
        return f"{self.app(app_id)}:nodes"

    def acks(self, app_id: str) -> str:
        """Hash device id → the device's acknowledged position."""
        return f"{self.app(app_id)}:acks"

    def node_conns(self, app_id: str, node: str) -> str:
        """Hash connection id → device of the connections `node` holds in the app."""
        return f"{self.app(app_id)}:node:{node}:conns"

    def conn_subs(self, app_id: str, connection_id: str) -> str:
        """Set of the volatile subscription ids a connection created (they go with it)."""
        return f"{self.app(app_id)}:conn:{connection_id}:subs"

    def changes(self, app_id: str) -> str:
        return f"{self.app(app_id)}:changes"

    def app_pattern(self, app_id: str) -> str:
        """SCAN MATCH pattern of every key of an application."""
        return f"{glob_escape(self.app(app_id))}:*"

    @property
    def apps(self) -> str:
        """Set of the applications that have (or had) subscriptions."""
        return f"{self.prefix}:apps"

    @property
    def transport_nodes(self) -> str:
        """Set of the transport nodes that hold (or held) connections."""
        return f"{self.prefix}:transport-nodes"

    def node_lease(self, node: str) -> str:
        """A transport node's lease: exists while the node renews it."""
        return f"{self.prefix}:node:{node}:lease"

    def node_reaped(self, node: str) -> str:
        """Set by a node's reaper when it claims the node; the node learns from it,
        on its next renewal, that its connections are gone."""
        return f"{self.prefix}:node:{node}:reaped"

    def node_apps(self, node: str) -> str:
        """Set of the applications in which a node holds (or held) connections."""
        return f"{self.prefix}:node:{node}:apps"

    def hit(self, key: str) -> str:
        return f"{self.prefix}:hit:{key}"

    @property
    def all_pattern(self) -> str:
        return f"{glob_escape(self.prefix)}:*"
