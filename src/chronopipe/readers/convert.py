"""Typed CSV values: ints, floats (decimal point or decimal comma) and timestamps.

A column's type is learned from its first non-empty value (see :class:`RowTyper`): later values
must be of that type, so a corrupt value (the air-quality file's ``09.00.00.-200`` in a time
column) raises ValueError, which a reader turns into a reject. An int column widens to float at
its first non-integer value, so it may hold ints before that (``426`` then ``429.5`` in the
occupancy Light column); pin it with ``types={"Light": "float"}`` when that matters.
Timestamps become ``datetime.datetime`` (naive unless the text carries a UTC offset),
``datetime.date`` or ``datetime.time``: the standard library's own types, sortable within a
column. Text that has the shape of a number or a timestamp but is not a valid one
(``31/02/2004``) raises ValueError too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from typing import Any

__all__ = ["Converter", "RowTyper", "infer_value", "parse_timestamp", "to_datetime"]

Converter = Callable[[str], Any]

_NUMBER = {  # group 1: a decimal separator, group 2: an exponent; neither means an int
    ".": re.compile(r"[+-]?(?=\.?[0-9])[0-9]*(\.[0-9]*)?([eE][+-]?[0-9]+)?\Z"),
    ",": re.compile(r"[+-]?(?=,?[0-9])[0-9]*(,[0-9]*)?([eE][+-]?[0-9]+)?\Z"),
}
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SLASH_DATE = re.compile(
    r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})"
    r"(?:[ T]([0-9]{1,2})(?::([0-9]{2})(?::([0-9]{2}))?|\.([0-9]{2})\.([0-9]{2})))?\Z"
)
_TIME = re.compile(r"([0-9]{1,2})(?::([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?|\.([0-9]{2})\.([0-9]{2}))\Z")


def parse_timestamp(text: str, *, dayfirst: bool = True) -> datetime | date | time | None:
    """The timestamp written in ``text``, or None when it does not look like one.

    Shapes: ISO 8601 (``2015-02-04 17:51:00``, ``2015-02-04T17:51:00+01:00``, ``2015-02-04``),
    slashed dates with an optional time (``13/03/2004``, ``10/3/2004 18.00.00``; day first
    unless ``dayfirst=False``) and times (``18:00``, ``18:00:00.5``, ``4.00.00``).
    Raises ValueError when the shape fits but the value is impossible.

    >>> parse_timestamp("2015-02-04 17:51:00")
    datetime.datetime(2015, 2, 4, 17, 51)
    >>> parse_timestamp("13/03/2004"), parse_timestamp("4.00.00")
    (datetime.date(2004, 3, 13), datetime.time(4, 0))
    >>> parse_timestamp("10/3/2004 18.00.00")
    datetime.datetime(2004, 3, 10, 18, 0)
    >>> parse_timestamp("hello") is None
    True
    """
    if not text or not text[0].isdigit():
        return None
    if _ISO_DATE.match(text):
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    m = _SLASH_DATE.match(text)
    if m:
        a, b, year = int(m[1]), int(m[2]), int(m[3])
        day, month = (a, b) if dayfirst else (b, a)
        if m[4] is None:
            return date(year, month, day)
        minute, second = (m[5], m[6]) if m[7] is None else (m[7], m[8])
        return datetime(year, month, day, int(m[4]), int(minute or 0), int(second or 0))
    m = _TIME.match(text)
    if m:
        if m[5] is not None:
            return time(int(m[1]), int(m[5]), int(m[6]))
        return time(int(m[1]), int(m[2]), int(m[3] or 0), int((m[4] or "0").ljust(6, "0")))
    return None


def to_datetime(value: Any) -> datetime:
    """A datetime from a datetime or a date (at midnight); TypeError for anything else."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise TypeError(f"not a date or date-time: {value!r}")


def infer_value(text: str, *, decimal: str = ".", dayfirst: bool = True) -> Any:
    """``text`` as an int, a float, a timestamp, or unchanged; empty text is None.

    >>> infer_value("426"), infer_value("23.7"), infer_value("2,6", decimal=","), infer_value("x")
    (426, 23.7, 2.6, 'x')
    """
    return _inferrer(decimal, dayfirst)(text)


def _inferrer(decimal: str, dayfirst: bool) -> Converter:
    number = _NUMBER[decimal].match
    comma = decimal == ","

    def infer(text: str) -> Any:
        if not text:
            return None
        m = number(text)
        if m is not None:
            if m.lastindex is None:
                return int(text)
            return float(text.replace(",", ".")) if comma else float(text)
        ts = parse_timestamp(text, dayfirst=dayfirst)
        return text if ts is None else ts

    return infer


_KIND_TEXT = {int: "a number", float: "a number", datetime: "a date-time", date: "a date", time: "a time"}


def _comma_float(text: str) -> float:
    return float(text.replace(",", "."))


def _text(text: str) -> str | None:
    return text or None


def _keep(text: Any) -> Any:
    return text


def _timestamp_of(kind: type, dayfirst: bool) -> Converter:
    """A converter accepting only timestamps of ``kind`` (a datetime column takes dates too)."""

    def convert(text: str) -> Any:
        value = parse_timestamp(text, dayfirst=dayfirst)
        if type(value) is kind:
            return value
        if kind is datetime and type(value) is date:
            return to_datetime(value)
        raise ValueError(f"{text!r} is not {_KIND_TEXT[kind]}")

    return convert


def _any_timestamp(text: str, dayfirst: bool) -> Any:
    value = parse_timestamp(text, dayfirst=dayfirst)
    if value is None:
        raise ValueError(f"{text!r} is not a timestamp")
    return value


def _named(kind: str, decimal: str, dayfirst: bool) -> Converter:
    table: dict[str, Converter] = {
        "auto": _inferrer(decimal, dayfirst),
        "str": _text,
        "int": int,
        "float": _comma_float if decimal == "," else float,
        "timestamp": functools.partial(_any_timestamp, dayfirst=dayfirst),
        "datetime": _timestamp_of(datetime, dayfirst),
        "date": _timestamp_of(date, dayfirst),
        "time": _timestamp_of(time, dayfirst),
    }
    if kind not in table:
        raise ValueError(f"unknown type {kind!r}: use a callable or one of {sorted(table)}")
    return table[kind]


class _UnlearnedError(ValueError):
    pass


def _unlearned(text: str) -> Any:
    raise _UnlearnedError


class RowTyper:
    """Converts the values of a row, column by column.

    A column's type is learned from its first non-empty value (int, float, datetime, date,
    time or text) and later values must be of that type, except that an int column widens to
    float on its first non-integer number. Columns pinned by ``types`` use their converter
    (a name: ``"int"``, ``"float"``, ``"str"``, ``"datetime"``, ``"date"``, ``"time"``,
    ``"timestamp"``, ``"auto"`` (per value, never fails), or any callable taking the text).
    Empty values and None become None, except in columns left untyped (``typed=False``).
    A value that does not convert raises ValueError naming the column.

    >>> typer = RowTyper(["n", "when"])
    >>> typer(["1", "2015-02-04 17:51:00"])
    [1, datetime.datetime(2015, 2, 4, 17, 51)]
    >>> typer(["2.5", ""])
    [2.5, None]
    >>> typer(["x", "2015-02-04 17:52:00"])
    Traceback (most recent call last):
    ValueError: column 'n': 'x' is not a number
    """

    def __init__(
        self,
        names: Iterable[str],
        types: Mapping[str, str | Converter] | None = None,
        *,
        typed: bool = True,
        decimal: str = ".",
        dayfirst: bool = True,
    ) -> None:
        self.names = list(names)
        types = dict(types or {})
        unknown = set(types) - set(self.names)
        if unknown:
            raise ValueError(f"types= names columns the file does not have: {sorted(unknown)} (columns: {self.names})")
        self._decimal, self._dayfirst = decimal, dayfirst
        self._infer = _inferrer(decimal, dayfirst)
        self.kinds: list[type | None] = []
        self._pinned: list[bool] = []
        self._convs: list[Converter] = []
        for name in self.names:
            spec = types.get(name)
            self._pinned.append(spec is not None)
            if spec is not None:
                self.kinds.append(None)
                self._convs.append(spec if callable(spec) else _named(spec, decimal, dayfirst))
            else:
                self.kinds.append(None if typed else str)
                self._convs.append(_unlearned if typed else _keep)
        self._all_typed = _keep not in self._convs

    def __call__(self, values: list[Any]) -> list[Any]:
        try:
            if self._all_typed:  # empty text and None are None in every column
                return [c(v) if v else None for c, v in zip(self._convs, values, strict=True)]
            return [c(v) for c, v in zip(self._convs, values, strict=True)]
        except (ValueError, TypeError, ArithmeticError):
            return self._slow(values)

    def _slow(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i, text in enumerate(values):
            conv = self._convs[i]
            if conv is _keep:
                out.append(text)
                continue
            if text is None or text == "":
                out.append(None)
                continue
            try:
                out.append(conv(text))
                continue
            except (ValueError, TypeError, ArithmeticError) as exc:
                error = exc
            name, kind = self.names[i], self.kinds[i]
            if self._pinned[i]:
                raise ValueError(f"column {name!r}: {text!r} does not convert: {error}") from None
            if kind is None or kind is int:
                value = self._infer(text)
                if kind is None or type(value) is float:
                    self._learn(i, type(value), text)
                    out.append(value)
                    continue
            raise ValueError(f"column {name!r}: {text!r} is not {_KIND_TEXT.get(kind, 'text')}") from None
        return out

    def learn_from(self, rows: Iterable[list[Any]]) -> None:
        """Learn each unpinned column's type from most of ``rows`` (sample rows of the file), not
        from its first value alone: one odd first value is then that row's reject, not the type
        of the whole column. Ints and floats in one column count as numbers (learned as int, which
        widens to float at its first decimal, as without a sample); a tie goes to the kind seen first.

        >>> typer = RowTyper(["n"])
        >>> typer.learn_from([["abc"], ["1"], ["2"], ["3"]])
        >>> typer(["4"])
        [4]
        >>> typer(["abc"])
        Traceback (most recent call last):
        ValueError: column 'n': 'abc' is not a number
        """
        seen: list[dict[type, str]] = [{} for _ in self.names]
        votes: list[dict[type, int]] = [{} for _ in self.names]
        for row in rows:
            for i, text in enumerate(row[:len(self.names)]):
                if self._pinned[i] or self.kinds[i] is not None or not text:
                    continue
                kind = type(self._infer(text))
                votes[i][kind] = votes[i].get(kind, 0) + 1
                seen[i].setdefault(kind, text)
        for i, tally in enumerate(votes):
            if not tally:
                continue
            if int in tally and float in tally:  # a number column: int, widening at its first decimal
                tally[int] += tally.pop(float)
            kind = max(tally, key=tally.__getitem__)  # dicts keep the order seen: ties go to the first
            self._learn(i, kind, seen[i][kind])

    def _learn(self, i: int, kind: type, text: str) -> None:
        self.kinds[i] = kind
        iso = len(text) >= 10 and text[4] == "-"
        if kind is int:
            conv: Converter = int
        elif kind is float:
            conv = _comma_float if self._decimal == "," else float
        elif kind is str:
            conv = _text
        elif iso and kind is datetime:
            conv = datetime.fromisoformat
        elif iso and kind is date:
            conv = date.fromisoformat
        else:
            conv = _timestamp_of(kind, self._dayfirst)
        self._convs[i] = conv
