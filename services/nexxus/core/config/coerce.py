"""Typed conversion of a raw nested mapping into the `Settings` dataclass tree.

Checks unknown keys and types; strings (from the environment or ``--set``)
are coerced: ``int``, ``float``, ``bool`` (true/false/1/0/yes/no/on/off) and
lists (comma-separated). Problems are collected, each with its full key
(``bus.nats.servers[1]``), so one run reports all of them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["Problems", "build_dataclass"]

T = TypeVar("T")

Problems = list[tuple[str, str]]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class _Invalid(Exception):
    """A value could not be converted (already recorded in the problems)."""


def build_dataclass(cls: type[T], raw: Mapping[str, Any], problems: Problems, *, path: str = "") -> T:
    """`cls` built from `raw`, defaults for missing keys. Problems are appended
    to `problems`; when there are any the returned object must be discarded."""
    try:
        result = _convert(cls, raw, path, problems)
    except _Invalid:
        return cls()
    assert isinstance(result, cls)
    return result


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fail(problems: Problems, path: str, message: str) -> _Invalid:
    problems.append((path, message))
    return _Invalid()


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(tp: Any, value: Any, path: str, problems: Problems) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, path, problems)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(tp), value, path, problems)
    if origin is list:
        return _convert_list(typing.get_args(tp)[0], value, path, problems)
    if origin is dict:
        return _convert_dict(typing.get_args(tp)[1], value, path, problems)
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise TypeError(f"{path}: unsupported settings type {tp!r}")
    return scalar(value, path, problems)


def _convert_dataclass(cls: type, value: Any, path: str, problems: Problems) -> Any:
    if not isinstance(value, Mapping):
        raise _fail(problems, path or "(root)", f"expected a section (mapping), got {_describe(value)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    failed = False
    for key, item in value.items():
        sub = _join(path, str(key))
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(names))})"
            problems.append((sub, f"unknown key{hint}"))
            failed = True
            continue
        try:
            kwargs[key] = _convert(hints[key], item, sub, problems)
        except _Invalid:
            failed = True
    if failed:
        raise _Invalid()
    return cls(**kwargs)


def _convert_union(args: tuple[Any, ...], value: Any, path: str, problems: Problems) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    for option in options:
        scratch: Problems = []
        try:
            return _convert(option, value, path, scratch)
        except _Invalid:
            continue
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise _fail(problems, path, f"expected {names}, got {_describe(value)}")


def _convert_list(item_tp: Any, value: Any, path: str, problems: Problems) -> list[Any]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise _fail(problems, path, f"expected a list, got {_describe(value)}")
    out: list[Any] = []
    failed = False
    for i, item in enumerate(value):
        try:
            out.append(_convert(item_tp, item, f"{path}[{i}]", problems))
        except _Invalid:
            failed = True
    if failed:
        raise _Invalid()
    return out


def _convert_dict(value_tp: Any, value: Any, path: str, problems: Problems) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(problems, path, f"expected a mapping, got {_describe(value)}")
    out: dict[str, Any] = {}
    failed = False
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append((path, f"keys must be strings, got {_describe(key)}"))
            failed = True
            continue
        try:
            out[key] = _convert(value_tp, item, _join(path, key), problems)
        except _Invalid:
            failed = True
    if failed:
        raise _Invalid()
    return out


def _to_str(value: Any, path: str, problems: Problems) -> str:
    if isinstance(value, str):
        return value
    raise _fail(problems, path, f"expected a string, got {_describe(value)}")


def _to_int(value: Any, path: str, problems: Problems) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _fail(problems, path, f"expected an integer, got {_describe(value)}")


def _to_float(value: Any, path: str, problems: Problems) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _fail(problems, path, f"expected a number, got {_describe(value)}")


def _to_bool(value: Any, path: str, problems: Problems) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _fail(problems, path, f"expected a boolean (true/false/1/0), got {_describe(value)}")


_SCALARS: dict[Any, Callable[[Any, str, Problems], Any]] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
}
