"""`ConfigError`: a bad configuration key or value, raised at start-up.

It names the full key of every problem (``bus.nats.servers[1]: ...``) and,
when known, where the value came from (a file, an environment variable, a
``--set`` override or a custom provider).
"""

from __future__ import annotations

from collections.abc import Sequence

from nexxus.core.errors import InvalidArgument

__all__ = ["ConfigError"]


class ConfigError(InvalidArgument):
    """One or more configuration problems; `field` is the first bad key.

    `problems` holds every ``(key, message)`` pair found, in order.
    """

    default_reason = "INVALID_CONFIG"

    def __init__(self, problems: Sequence[tuple[str, str]] | str, *, key: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [(key or "", problems)]
        items = list(problems)
        if not items:
            raise ValueError("ConfigError needs at least one problem")
        lines = [f"{k}: {m}" if k else m for k, m in items]
        message = lines[0] if len(lines) == 1 else "invalid configuration:\n  " + "\n  ".join(lines)
        super().__init__(message, field=items[0][0] or None)
        self.problems: list[tuple[str, str]] = items
