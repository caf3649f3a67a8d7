"""The domain error tree. Every layer raises these; only `nexxus.rpc` turns them
into gRPC statuses (one table, `nexxus.rpc.errors.STATUS_BY_CODE`).

    NexxusError                      INTERNAL
    ├── InvalidArgument              INVALID_ARGUMENT   bad input; `field` names the offending path
    ├── NotFound                     NOT_FOUND
    ├── AlreadyExists                ALREADY_EXISTS
    ├── Unauthenticated              UNAUTHENTICATED    missing / bad / expired / revoked credentials
    ├── PermissionDenied             PERMISSION_DENIED  a valid caller without the right
    ├── FailedPrecondition           FAILED_PRECONDITION
    │   └── VersionConflict                             optimistic version mismatch
    ├── ResourceExhausted            RESOURCE_EXHAUSTED throttled
    └── Unavailable                  UNAVAILABLE        a backend (bus, store, database) is down

Adapters translate driver exceptions into these (`raise Unavailable(...) from exc`);
driver errors never reach a servicer.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NexxusError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "VersionConflict",
    "error_from_code",
]


class NexxusError(Exception):
    """Base of every Nexxus error.

    `code` is a google.rpc.Code name. `reason` is a stable UPPER_SNAKE machine
    reason (ErrorInfo.reason). `field` is the dot / bracket path of the
    offending input, e.g. ``filter.$and[0].priority.eq``. `message` is what the
    client reads; `internal` is what only the operator's log gets (a driver's
    error text, a subject or host name): never built into `message`.
    """

    code: ClassVar[str] = "INTERNAL"
    default_reason: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        internal: str = "",
    ) -> None:
        super().__init__(f"{message} [{internal}]" if internal else message)
        self.message = message
        self.internal = internal
        self.reason = reason or self.default_reason
        self.field = field
        self.details: dict[str, Any] = dict(details or {})

    def metadata(self) -> dict[str, str]:
        """The ErrorInfo metadata: `field` plus string forms of `details`."""
        out = {k: str(v) for k, v in self.details.items()}
        if self.field is not None:
            out["field"] = self.field
        return out

    def __repr__(self) -> str:
        where = f", field={self.field!r}" if self.field else ""
        return f"{type(self).__name__}({self.message!r}{where})"


class InvalidArgument(NexxusError):
    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"


class NotFound(NexxusError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(NexxusError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class Unauthenticated(NexxusError):
    code = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(NexxusError):
    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class FailedPrecondition(NexxusError):
    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class VersionConflict(FailedPrecondition):
    default_reason = "VERSION_CONFLICT"


class ResourceExhausted(NexxusError):
    code = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(NexxusError):
    code = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


_BY_CODE: dict[str, type[NexxusError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        Unauthenticated,
        PermissionDenied,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
    )
}


def error_from_code(code: str, message: str, *, reason: str | None = None) -> NexxusError:
    """Rebuild an error from its code name (e.g. a WriteResult from the writer)."""
    if reason == VersionConflict.default_reason:
        return VersionConflict(message, reason=reason)
    return _BY_CODE.get(code, NexxusError)(message, reason=reason)
