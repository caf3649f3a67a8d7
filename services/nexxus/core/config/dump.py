"""`settings_to_dict`: the effective settings as plain data, secrets redacted."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nexxus.core.config.settings import Settings

__all__ = ["REDACTED", "SECRET_KEYS", "settings_to_dict"]

REDACTED = "***"
# Field names whose non-empty values are secrets.
SECRET_KEYS = frozenset({"operator_key", "signing_key", "api_key", "password", "secret", "token"})


def settings_to_dict(settings: Settings, *, redact: bool = True) -> dict[str, Any]:
    """A JSON-ready dict of `settings`. With `redact`, secret fields become
    ``"***"`` and passwords inside URLs / DSNs (``postgresql://u:***@h/db``) too."""
    data = dataclasses.asdict(settings)
    return _redact(data) if redact else data


def _redact(value: Any, name: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, name) for v in value]
    if isinstance(value, str) and value:
        if name in SECRET_KEYS:
            return REDACTED
        return _redact_url(value)
    return value


def _redact_url(value: str) -> str:
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not password:
        return value
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostinfo}"))
