"""Writing statements back: canonical SCL (``dumps``) and JSON with exact Decimals (``to_json``).

Both walk the statement tree with an explicit stack, not recursion, so a result nested 5,000
deep (which ``parse`` accepts) is written as easily as a flat one; ``json.dumps`` would hit
Python's recursion limit there.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from json.encoder import encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .lexer import NUMBER_PATTERN

__all__ = ["dumps", "from_json", "to_json"]

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(NUMBER_PATTERN)
_FIELDS = frozenset(("key", "value", "children"))
_DONE = object()


def dumps(statements: Iterable[Mapping[str, Any]]) -> str:
    """Canonical SCL for ``statements`` (as ``parse`` returns them), so that ``parse(dumps(x)) == x``.

    Statements are separated by one space, with no space around ``=`` or inside parentheses.
    A ``str`` value is written bare if it is a word (``\\w+``, not a number), else quoted, with
    ``\\``, ``"``, newline and CR escaped; a ``Decimal`` as ``str(d)``; an ``int`` as digits
    (it parses back as a ``Decimal``); ``None`` (only with children) as nothing: ``key=(...)``.
    Raises ``ValueError`` for what SCL cannot write: a key that is not a word, NaN or infinity,
    ``None`` without children, empty ``children``, fields other than key, value, children;
    ``TypeError`` for other value types.

    >>> from decimal import Decimal
    >>> print(dumps([{"key": "a", "value": "x y", "children": [{"key": "n", "value": Decimal("-1E+3")}]},
    ...              {"key": "b", "value": None, "children": [{"key": "w", "value": "123"}]}]))
    a="x y"(n=-1E+3) b=(w="123")
    """
    parts: list[str] = []
    stack: list[Iterator[Any]] = [iter(statements)]
    space = False
    while stack:
        stmt = next(stack[-1], _DONE)
        if stmt is _DONE:
            stack.pop()
            if stack:
                parts.append(")")
                space = True
            continue
        if space:
            parts.append(" ")
        if not isinstance(stmt, Mapping) or not _FIELDS.issuperset(stmt):
            raise ValueError(f"a statement is a mapping with key, value and optional children, not {stmt!r:.200}")
        key, value, children = stmt.get("key"), stmt.get("value"), stmt.get("children")
        if not isinstance(key, str) or not _is_word(key):
            raise ValueError(f"key {key!r:.200} is not a word (\\w+ that is not a number)")
        parts.append(key)
        parts.append("=")
        if value is not None:
            parts.append(_value(value, key))
        if children is None:
            if value is None:
                raise ValueError(f"statement {key!r}: a value of None needs children (key=(...))")
            space = True
        elif not children or isinstance(children, (str, Mapping)):
            raise ValueError(f"statement {key!r}: children must be a non-empty list of statements")
        else:
            parts.append("(")
            stack.append(iter(children))
            space = False
    return "".join(parts)


def _is_word(text: str) -> bool:
    return _WORD.fullmatch(text) is not None and _NUMBER.fullmatch(text) is None


def _value(value: Any, key: str) -> str:
    if isinstance(value, str):
        if _is_word(value):
            return value
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return f'"{escaped}"'
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"statement {key!r}: {value} is not an SCL number")
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"statement {key!r}: a value is a str, Decimal, int or None, not {type(value).__name__}")


def to_json(obj: Any, *, indent: int | str | None = None, ensure_ascii: bool = True) -> str:
    """JSON text for ``obj`` (statements, or any JSON-like data) with ``Decimal`` as exact JSON numbers.

    Formatted as ``json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii)`` would be (the same
    text for data without Decimals), but any depth of nesting works. Dicts need ``str`` keys; NaN
    and infinities (float or Decimal) raise ``ValueError``, since JSON has no such numbers.

    >>> from decimal import Decimal
    >>> to_json([{"key": "n", "value": Decimal("0.1000000000000000000000001")}])
    '[{"key": "n", "value": 0.1000000000000000000000001}]'
    >>> print(to_json({"a": [1, None, True], "b": {}}, indent=1))
    {
     "a": [
      1,
      null,
      true
     ],
     "b": {}
    }
    """
    encode = encode_basestring_ascii if ensure_ascii else encode_basestring
    if isinstance(indent, int):
        indent = " " * indent
    separator = ", " if indent is None else ","
    parts: list[str] = []
    stack: list[tuple[Iterator[Any], bool]] = []  # (items, is_dict) of the open containers
    value = obj
    while True:
        if isinstance(value, dict) and value:
            parts.append("{")
            stack.append((iter(value.items()), True))
        elif isinstance(value, (list, tuple)) and value:
            parts.append("[")
            stack.append((iter(value), False))
        else:
            parts.append(_scalar(value, encode))
        while stack:
            items, is_dict = stack[-1]
            item = next(items, _DONE)
            if item is _DONE:
                stack.pop()
                if indent is not None:
                    parts.append("\n" + indent * len(stack))
                parts.append("}" if is_dict else "]")
                continue
            if parts[-1] not in ("{", "["):  # not the first item: a scalar is never a bare { or [
                parts.append(separator)
            if indent is not None:
                parts.append("\n" + indent * len(stack))
            if is_dict:
                key, value = item
                if not isinstance(key, str):
                    raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
                parts.append(encode(key))
                parts.append(": ")
            else:
                value = item
            break
        else:
            return "".join(parts)


def _scalar(value: Any, encode: Any) -> str:
    if isinstance(value, str):
        return encode(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        return float.__repr__(value)
    if isinstance(value, (dict, list, tuple)):  # empty
        return "{}" if isinstance(value, dict) else "[]"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def from_json(text: str | bytes) -> Any:
    """``json.loads`` with every number read as an exact ``Decimal``: ``from_json(to_json(x)) == x``
    for statements. Nesting is bound by Python's recursion limit (about 1,000 levels).

    >>> from_json('[{"key": "n", "value": 0.1000000000000000000000001, "children": null}]')
    [{'key': 'n', 'value': Decimal('0.1000000000000000000000001'), 'children': None}]
    """
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)
