"""Errors raised by the client: one type, carrying the google.rpc.Code name."""

from __future__ import annotations

from typing import Any

from grpclib.exceptions import GRPCError

__all__ = ["RETRYABLE_CODES", "NexxusClientError", "from_grpc_error"]

# Codes after which reopening the event stream may succeed (RESOURCE_EXHAUSTED:
# the client was too slow; it resumes from its position).
RETRYABLE_CODES = frozenset(
    {"UNAVAILABLE", "INTERNAL", "UNKNOWN", "ABORTED", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED"}
)


class NexxusClientError(Exception):
    """A call or stream failed: ``code`` is a google.rpc.Code name (e.g.
    ``"INVALID_ARGUMENT"``), ``details`` the server's structured details
    (``{"reason": ..., "field": ...}``) when it sent any."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


def from_grpc_error(err: GRPCError) -> NexxusClientError:
    details: dict[str, Any] = {}
    if isinstance(err.details, dict):
        details = dict(err.details)
    return NexxusClientError(err.status.name, err.message or err.status.name, details)
