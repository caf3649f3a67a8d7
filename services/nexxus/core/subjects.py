"""Every NATS subject Nexxus uses, built in one place.

Two namespaces under the configured prefix `p` that no identifier can cross:

    p.app.<app>.write.<partition>   api → writer (stream WRITES)
    p.app.<app>.events.<model>      writer → router, custom workers (stream EVENTS)
    p.app.<app>.parked[.<...>]      poison commands with their reason (stream PARKED)

    p.sys.transport.<node>          router → transport (stream DELIVERIES)
    p.sys.control.<app>             api → transport: close devices (core NATS)
    p.sys.results.<node>.<command>  writer → api: outcome of a waited write (core NATS)
    p.sys.schemas.changed           api → every service: drop cached schemas (core NATS)

Tenant data lives under the literal token `app`, internal traffic under the
literal token `sys`; an application id is always the token after `app`, so an
application named `write`, `control`, `transport` or `sys` can never produce
(or be matched by) an internal subject, and no stream's subjects overlap
another's. Application ids and model names are single tokens (no `.`, `*`,
`>` or spaces: `APP_ID_RE`, the schema's model name rule); node ids are made
into one token by `token`.
"""

from __future__ import annotations

from dataclasses import dataclass

APP = "app"
SYS = "sys"


def token(value: str) -> str:
    """`value` as ONE subject token: characters other than letters, digits,
    `-` and `_` become `_` (never empty)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in value) or "_"


@dataclass(frozen=True)
class Subjects:
    """The subjects of one deployment (`prefix` = `nats.subject_prefix`)."""

    prefix: str = "nexxus"

    def _app(self, app_id: str, *parts: str) -> str:
        return ".".join((self.prefix, APP, app_id, *parts))

    def sys(self, *parts: str) -> str:
        """An internal subject: `sys("rpc")` → "nexxus.sys.rpc"."""
        return ".".join((self.prefix, SYS, *parts))

    # ---- the write queue (stream WRITES)

    def write(self, app_id: str, partition: int) -> str:
        return self._app(app_id, "write", str(partition))

    def write_partition(self, partition: int) -> str:
        """Every application's commands of one partition."""
        return self._app("*", "write", str(partition))

    @property
    def writes(self) -> str:
        return self._app("*", "write", "*")

    @staticmethod
    def app_of(subject: str) -> str | None:
        """The application an `app` subject names, None for any other subject."""
        parts = subject.split(".")
        return parts[2] if len(parts) >= 4 and parts[1] == APP else None

    # ---- events (stream EVENTS)

    def events(self, app_id: str, model: str) -> str:
        return self._app(app_id, "events", model)

    def app_events(self, app_id: str) -> str:
        """Every event of one application."""
        return self._app(app_id, "events", ">")

    @property
    def all_events(self) -> str:
        return self._app("*", "events", ">")

    def model_events(self, model: str) -> str:
        """Events of one model in every application."""
        return self._app("*", "events", model)

    # ---- parked commands (stream PARKED)

    def parked(self, app_id: str) -> str:
        return self._app(app_id, "parked")

    @property
    def all_parked(self) -> list[str]:
        return [self._app("*", "parked"), self._app("*", "parked", ">")]

    # ---- internal traffic

    def delivery(self, node: str) -> str:
        """Where the router publishes a transport node's deliveries."""
        return self.sys("transport", token(node))

    @property
    def deliveries(self) -> str:
        return self.sys("transport", "*")

    def control(self, app_id: str) -> str:
        """Transport control messages of one application (close devices)."""
        return self.sys("control", app_id)

    @property
    def all_control(self) -> str:
        return self.sys("control", "*")

    def result(self, node: str, command_id: str) -> str:
        """Where the writer answers a waited write of api node `node`."""
        return self.sys("results", token(node), token(command_id))

    def results(self, node: str) -> str:
        return self.sys("results", token(node), "*")

    @property
    def schemas_changed(self) -> str:
        return self.sys("schemas", "changed")
