"""Size limits: ONE configured maximum object size, and every other size derived from it.

`limits.max_object_bytes` (settings) bounds an object's data, measured as its
protobuf encoding (the `Struct` every hop carries). The api refuses a create or
a patch whose object would be larger (400, reason OBJECT_TOO_LARGE, naming the
limit); the writer re-checks an update against the object it really patches.
Every layer behind the api is configured above the limit, from this module:

    page_bytes      = 4 * object           a search page, a snapshot page, an event batch:
                                           cut by bytes (always at least one object)
    message_bytes   = page_bytes + 1 MiB   every gRPC message (api, transport), every
                                           NATS message (nats-server max_payload) — a
                                           ModelEvent holds before + after + patch ≤ 3 * object
    edge_request_bytes = message_bytes     Envoy's request buffer (413 past it)
    edge_response_bytes = 4 * message_bytes   the REST transcoder's response buffer
                                           (JSON is larger than protobuf)

Strings (`MAX_STRING_BYTES`), document depth (32) and schema depth (8) are
checked by `nexxus.core.schema`; filters by `nexxus.core.filterquery`.

A process applies its settings once at start (`configure`); `current()` is
what the pure write logic (`nexxus.core.writes`) checks against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nexxus.core.errors import InvalidArgument

if TYPE_CHECKING:
    from nexxus.core.config.settings import Settings

MIB = 1024 * 1024
DEFAULT_MAX_OBJECT_BYTES = 1 * MIB
# nats-server refuses a max_payload above 64 MiB: message_bytes must stay below it.
MIN_OBJECT_BYTES = 64 * 1024
MAX_OBJECT_BYTES = 8 * MIB
ENVELOPE_BYTES = 1 * MIB


@dataclass(frozen=True, slots=True)
class Limits:
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES

    @property
    def page_bytes(self) -> int:
        return 4 * self.max_object_bytes

    @property
    def message_bytes(self) -> int:
        return self.page_bytes + ENVELOPE_BYTES

    @property
    def nats_max_payload(self) -> int:
        return self.message_bytes

    @property
    def edge_request_bytes(self) -> int:
        return self.message_bytes

    @property
    def edge_response_bytes(self) -> int:
        return 4 * self.message_bytes

    def grpc_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.message_bytes),
            ("grpc.max_send_message_length", self.message_bytes),
        ]

    def check_object(self, data: Mapping[str, Any], *, field: str = "data") -> int:
        """The encoded size of `data`; InvalidArgument (OBJECT_TOO_LARGE) past the limit."""
        from nexxus.core.convert import dict_to_struct

        size = dict_to_struct(data).ByteSize()
        if size > self.max_object_bytes:
            raise InvalidArgument(
                f"the object would be {size} bytes; the limit (limits.max_object_bytes) is "
                f"{self.max_object_bytes} bytes",
                field=field,
                reason="OBJECT_TOO_LARGE",
                details={"size": size, "limit": self.max_object_bytes},
            )
        return size


def limits_of(settings: Settings) -> Limits:
    return Limits(settings.limits.max_object_bytes)


_current = Limits()


def configure(limits: Limits) -> None:
    """Apply this process's limits (the runtime does, from settings)."""
    global _current
    _current = limits


def current() -> Limits:
    return _current
