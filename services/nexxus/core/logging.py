"""Named loggers under ``nexxus``, text or JSON records with context fields.

    log = get_logger("writer")                      # the "nexxus.writer" logger
    log.info("applied %d commands", n)              # lazy %-args, as always
    log = bind(log, app_id=app, subject=subject)    # context on every record
    log.warning("parked %s", command_id, extra={"reason": reason})

`configure_logging(settings.logging)` installs one handler on the ``nexxus``
logger (idempotent). ``format = "json"`` writes one JSON object per line with
``ts``, ``level``, ``logger``, ``message`` and every extra context field;
``"text"`` appends them as ``key=value``.

A custom sink (the seed's RollbarLogger) is ``handler = "module:callable"``: a
`logging.Handler` subclass or a zero-argument callable returning a handler; it
replaces the default stderr handler and gets the configured formatter unless
it sets its own::

    class RollbarHandler(logging.Handler):
        def __init__(self) -> None:
            super().__init__(level=logging.ERROR)
            self.rollbar = Rollbar(access_token=os.environ["ROLLBAR_TOKEN"])

        def emit(self, record: logging.LogRecord) -> None:
            self.rollbar.error(record.getMessage(), context_fields(record))

    # NEXXUS_LOGGING__HANDLER=myapp.logs:RollbarHandler
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any

from nexxus.core.config.errors import ConfigError
from nexxus.core.config.settings import LoggingSettings

__all__ = [
    "ROOT_LOGGER",
    "ContextLogger",
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "configure_logging",
    "context_fields",
    "get_logger",
]

ROOT_LOGGER = "nexxus"

# Attributes every LogRecord has; anything else on a record is context.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_INSTALLED = "_nexxus_installed"


def get_logger(name: str = "") -> logging.Logger:
    """The logger ``nexxus.<name>`` (``name`` may already start with ``nexxus``)."""
    if not name or name == ROOT_LOGGER:
        return logging.getLogger(ROOT_LOGGER)
    if name.startswith(ROOT_LOGGER + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The extra context fields of a record (``extra=`` and bound context)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds bound context fields (app_id, subject, service...) to
    every record; per-call ``extra=`` wins over bound fields."""

    def __init__(self, logger: logging.Logger, context: Mapping[str, Any]) -> None:
        super().__init__(logger, dict(context))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs

    def bind(self, **context: Any) -> ContextLogger:
        """A new logger with more context."""
        return ContextLogger(self.logger, {**(self.extra or {}), **context})


def bind(logger: logging.Logger | ContextLogger | str, **context: Any) -> ContextLogger:
    """`logger` (or ``get_logger(name)``) with `context` added to every record."""
    if isinstance(logger, ContextLogger):
        return logger.bind(**context)
    if isinstance(logger, str):
        logger = get_logger(logger)
    return ContextLogger(logger, context)


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in context_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <message> key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = context_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) else text


def _load_handler(spec: str) -> logging.Handler:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{spec!r} is not of the form 'module:callable'", key="logging.handler")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {spec!r}: {exc}", key="logging.handler") from exc
    handler = target()
    if not isinstance(handler, logging.Handler):
        raise ConfigError(
            f"{spec!r} returned a {type(handler).__name__}, not a logging.Handler", key="logging.handler"
        )
    return handler


def configure_logging(settings: LoggingSettings, *, stream: IO[str] | None = None) -> None:
    """Install the handler of `settings` on the ``nexxus`` logger, replacing the
    one a previous call installed. Records do not propagate to the root logger.

    `stream` (default stderr) is for the built-in handler only.
    """
    level = logging.getLevelName(settings.level.upper())
    if not isinstance(level, int):
        raise ConfigError(f"unknown level {settings.level!r}", key="logging.level")
    if settings.format == "json":
        formatter: logging.Formatter = JsonFormatter()
    elif settings.format == "text":
        formatter = TextFormatter()
    else:
        raise ConfigError(f"{settings.format!r} is not 'text' or 'json'", key="logging.format")
    if settings.handler:
        handler = _load_handler(settings.handler)
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if handler.formatter is None:
        handler.setFormatter(formatter)
    setattr(handler, _INSTALLED, True)

    root = logging.getLogger(ROOT_LOGGER)
    for old in [h for h in root.handlers if getattr(h, _INSTALLED, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
