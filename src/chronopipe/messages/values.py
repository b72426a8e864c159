"""JSON values and type names for messages: checked, copied read-only, and read back."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "KEYS",
    "MAX_ID",
    "OUTCOMES",
    "MessageError",
    "check_text",
    "check_type_name",
    "command_name",
    "finite",
    "freeze",
    "load",
    "one_line",
    "short",
    "thaw",
]


OUTCOMES = ("SUCCEEDED", "FAILED", "REJECTED")
REQUESTED = "_REQUESTED"  # the seed's suffix for a command; "STOP_REQUESTED" is the command STOP
KEYS = ("kind", "type", "id", "timestamp", "correlation_id", "data")
TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
COMMAND_NAME_MAX = 64 - len("_SUCCEEDED")  # so that every event answering a command is a type name too
MAX_DEPTH = 100
MAX_INT_BITS = 13_000  # about 3,900 digits: Python reads and writes JSON ints up to 4,300
MAX_ID = 128
MAX_REASON = 500


class MessageError(ValueError):
    """A message that cannot be made or read; the text is one line naming the field at fault."""

    __module__ = "chronopipe.messages"


def short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters (for one-line error messages)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def one_line(text: str) -> str:
    """``text`` on one line (whitespace runs become one space), at most 500 characters."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def check_text(text: str, what: str) -> str:
    """``text`` if it is Unicode text (it encodes as UTF-8: no lone surrogate such as the
    ``"\\ud800"`` a JSON escape can make); MessageError otherwise."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MessageError(f"{what}: {short(text)} holds a lone surrogate ({text[exc.start]!r}), "
                               "not Unicode text") from None
    return text


def check_type_name(name: Any, what: str = "type") -> str:
    """``name`` if it is a type name (``^[A-Z][A-Z0-9_]{0,63}$``); MessageError otherwise."""
    if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
        raise MessageError(
            f"{what}: {short(name)} is not a type name (A-Z, 0-9 and _, starting with a letter, "
            "at most 64 characters)"
        )
    return name


def command_name(name: Any, what: str = "command type") -> str:
    """The command type ``name`` stands for: ``STOP_REQUESTED`` is ``STOP``.

    Raises:
        MessageError: not a type name, named like an event (``..._SUCCEEDED``), or too long for
            its events to be type names (more than 54 characters).
    """
    check_type_name(name, what)
    if name.endswith(REQUESTED) and len(name) > len(REQUESTED):
        name = name[: -len(REQUESTED)]
    for outcome in OUTCOMES:
        if name.endswith("_" + outcome):
            raise MessageError(f"{what}: {name!r} names an outcome, not a command (drop _{outcome})")
    if len(name) > COMMAND_NAME_MAX:
        raise MessageError(f"{what}: {name!r} is too long for its events (at most {COMMAND_NAME_MAX} characters)")
    return name


def freeze(value: Any, path: str, depth: int = 0) -> Any:
    """A read-only deep copy of a JSON value (dicts as MappingProxyType, lists as tuples)."""
    if depth > MAX_DEPTH:
        raise MessageError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_text(str.__str__(value), path)
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise MessageError(f"{path}: an integer over {MAX_INT_BITS} bits")
        return int.__index__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MessageError(f"{path}: {value!r} is not a JSON number")
        return float.__float__(value)
    if isinstance(value, Mapping):
        frozen = {}
        for key in value:
            if not isinstance(key, str):
                raise MessageError(f"{path}: key {short(key)} is not a string")
            check_text(key, f"{path}: key")
            frozen[str.__str__(key)] = freeze(value[key], f"{path}[{key!r}]", depth + 1)
        return MappingProxyType(frozen)
    if isinstance(value, list | tuple):
        return tuple(freeze(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    raise MessageError(
        f"{path}: {type(value).__name__} is not a JSON value (dict, list, str, int, float, bool or None)"
    )


def finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int too large for a float
        return False


def thaw(value: Any) -> Any:
    """A plain, mutable copy of a frozen JSON value."""
    if isinstance(value, MappingProxyType):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise MessageError(f"JSON: duplicate key {short(duplicate)}")
    return obj


def _reject_constant(name: str) -> Any:
    raise MessageError(f"JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MessageError(f"JSON: {short(text)} is too large for a number")
    return value


def load(text: str | bytes | bytearray) -> Any:
    """The JSON value of ``text``: duplicate keys (at any depth), NaN, Infinity and numbers too
    large for a float (``1e999``) are refused.

    Raises:
        MessageError: not JSON, or one of those (one line).
    """
    if not isinstance(text, str | bytes | bytearray):
        raise MessageError(f"JSON: expected str or bytes, got {type(text).__name__}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                          parse_float=_finite_float)
    except MessageError:
        raise
    except RecursionError:
        raise MessageError("JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise MessageError(f"JSON: {one_line(str(exc))}") from None
