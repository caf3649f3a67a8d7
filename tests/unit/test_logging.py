from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from nexxus.core.config import ConfigError
from nexxus.core.config.settings import LoggingSettings
from nexxus.core.logging import bind, configure_logging, context_fields, get_logger

pytestmark = pytest.mark.usefixtures("restore_nexxus_logger")


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_get_logger_names_are_under_nexxus() -> None:
    assert get_logger("writer").name == "nexxus.writer"
    assert get_logger("nexxus.router").name == "nexxus.router"
    assert get_logger().name == "nexxus"


def test_json_records_with_context_and_lazy_args() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="INFO", format="json"), stream=stream)
    log = bind(get_logger("writer"), app_id="app1", service="writer")
    log.info("applied %d commands", 3, extra={"subject": "nexxus.app1.write"})
    log.debug("hidden %s", "x")
    [record] = json_lines(stream)
    assert record["message"] == "applied 3 commands"
    assert record["level"] == "INFO"
    assert record["logger"] == "nexxus.writer"
    assert record["app_id"] == "app1"
    assert record["service"] == "writer"
    assert record["subject"] == "nexxus.app1.write"
    assert str(record["ts"]).endswith("+00:00")


def test_lazy_args_are_not_formatted_when_filtered() -> None:
    configure_logging(LoggingSettings(level="WARNING"), stream=io.StringIO())

    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("formatted a filtered record")

    get_logger("x").info("value %s", Exploding())


def test_bound_context_is_overridden_per_call_and_extended() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=stream)
    log = bind("router", app_id="a", subject="s1")
    log.bind(model="task").warning("w", extra={"subject": "s2"})
    [record] = json_lines(stream)
    assert (record["app_id"], record["subject"], record["model"]) == ("a", "s2", "task")


def test_text_format_and_exceptions() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="text"), stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        bind("api", app_id="a b").exception("failed %s", "call")
    text = stream.getvalue()
    assert 'ERROR   nexxus.api: failed call app_id="a b"' in text
    assert "RuntimeError: boom" in text


def test_configure_twice_keeps_one_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LoggingSettings(), stream=first)
    configure_logging(LoggingSettings(level="DEBUG"), stream=second)
    get_logger("x").debug("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
    assert logging.getLogger("nexxus").propagate is False


def test_custom_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's RollbarLogger: a custom sink named by 'module:callable'."""
    (tmp_path / "nexxus_sink_fake.py").write_text(
        "import logging\n"
        "from nexxus.core.logging import context_fields\n"
        "SEEN = []\n"
        "class ListHandler(logging.Handler):\n"
        "    def emit(self, record):\n"
        "        SEEN.append((self.format(record), context_fields(record)))\n"
        "def make():\n"
        "    return ListHandler(level=logging.ERROR)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    configure_logging(LoggingSettings(format="json", handler="nexxus_sink_fake:make"))
    import nexxus_sink_fake  # type: ignore[import-not-found]

    log = bind("writer", app_id="a")
    log.warning("below the handler's level")
    log.error("parked %s", "cmd1")
    [(formatted, fields)] = nexxus_sink_fake.SEEN
    assert json.loads(formatted)["message"] == "parked cmd1"
    assert fields == {"app_id": "a"}


@pytest.mark.parametrize(
    ("handler", "fragment"),
    [("nexxus_no_such_module_xyz:make", "cannot load"), ("logging:getLogger", "not a logging.Handler")],
)
def test_bad_custom_handler(handler: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        configure_logging(LoggingSettings(handler=handler))
    assert info.value.field == "logging.handler"


def test_context_fields_exclude_standard_attributes() -> None:
    record = logging.LogRecord("nexxus.x", logging.INFO, "f.py", 1, "m %s", ("a",), None)
    record.app_id = "a"
    assert context_fields(record) == {"app_id": "a"}
