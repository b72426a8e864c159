"""The layout of a CSV file, as CSVReader decides it: delimiter, columns, an unnamed index column.

Helpers of :class:`chronopipe.readers.CSVReader`, kept apart so that the reader is about reading.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "DELIMITERS",
    "LAYOUT_ROWS",
    "Layout",
    "count_fields",
    "dedupe",
    "dict_maker",
    "is_number",
    "layout_of",
    "sniff_delimiter",
    "stands_alone",
]

DELIMITERS = ",;\t|"
#: Non-blank data rows read ahead to decide whether the file has an unnamed leading index column.
LAYOUT_ROWS = 20


def sniff_delimiter(line: str, quotechar: str = '"') -> str:
    """The most frequent of ``, ; TAB |`` outside quotes in ``line`` (a header); ``,`` if none.

    >>> sniff_delimiter('"date","Temperature","Humidity"'), sniff_delimiter("Date;Time;CO(GT);;")
    (',', ';')
    """
    q = re.escape(quotechar)
    unquoted = re.sub(f"{q}[^{q}]*{q}", "", line)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.__getitem__)  # ties go to the earlier one: "," first
    return best if counts[best] else ","


def count_fields(lines: Iterator[str], options: dict[str, Any], rows: int = LAYOUT_ROWS) -> list[int]:
    """The field counts of the first ``rows`` non-blank rows parsed from ``lines`` (malformed rows
    are skipped; at most ``2 * rows`` rows, good or bad, are read). The parser reads ``lines``
    only as far as the last row it returns.

    >>> count_fields(iter(["1,a\\n", "\\n", "2,b,c\\n", '3,"x\\n', "y\\n"]), {"strict": True})
    [2, 3]
    """
    reader = csv.reader(lines, **options)
    counts: list[int] = []
    for _ in range(2 * rows):
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:
            continue
        if any(fields):
            counts.append(len(fields))
            if len(counts) == rows:
                break
    return counts


class Layout:
    """Where a row's values are and what they are called (see :func:`layout_of`)."""

    __slots__ = ("hi", "lo", "names", "width")

    def __init__(self, names: list[str], width: int, lo: int, hi: int) -> None:
        self.names = names  #: the record keys (deduplicated)
        self.width = width  #: fields per row
        self.lo = lo  #: first used field
        self.hi = hi  #: end of the used fields (unnamed trailing columns after it)

    def __repr__(self) -> str:
        return f"Layout({self.names}, width={self.width}, lo={self.lo}, hi={self.hi})"


def layout_of(header: list[str] | None, counts: Sequence[int], fieldnames: Sequence[str] | None = None,
              index_name: str | None = "row") -> Layout:
    """The layout from the header and the field counts of the first data rows.

    The file has an unnamed leading index column (pandas' ``to_csv``) when most of ``counts``
    are one more than the header's names, or when the header's first name is empty: it is kept
    as ``index_name`` or dropped (``None``). One odd first row does not decide it.

    >>> layout_of(["date", "v"], [3, 3, 3])
    Layout(['row', 'date', 'v'], width=3, lo=0, hi=3)
    >>> layout_of(["date", "v"], [3, 2, 2]), layout_of(["a", "", ""], [3], index_name=None)
    (Layout(['date', 'v'], width=2, lo=0, hi=2), Layout(['a'], width=3, lo=0, hi=1))
    """
    if fieldnames is not None:
        return Layout(dedupe(list(fieldnames)), len(fieldnames), 0, len(fieldnames))
    if header is None:
        width = counts[0] if counts else 0
        return Layout([f"column_{i + 1}" for i in range(width)], width, 0, width)
    names = list(header)
    width = hi = len(names)
    while hi > 1 and names[hi - 1] == "":
        hi -= 1  # trailing unnamed columns
    names = names[:hi]
    if 2 * sum(1 for c in counts if c == width + 1) > len(counts):  # most rows: an unnamed leading index
        names.insert(0, "")
        width, hi = width + 1, hi + 1
    lo = 0
    if len(names) > 1 and names[0] == "":
        if index_name is None:
            lo, names = 1, names[1:]
        else:
            names[0] = index_name
    names = [n if n else f"column_{lo + i + 1}" for i, n in enumerate(names)]
    return Layout(dedupe(names), width, lo, hi)


def stands_alone(text: str, widths: tuple[int, ...], options: dict[str, Any]) -> bool:
    """Whether the physical line ``text``, swallowed by a quote opened on an earlier line, is a
    row on its own: balanced quotes and one of ``widths`` fields, or a row of its own opening a
    stray quote (closed at the end of the line, it parses into ``widths`` fields, none with a quote
    in it, so the quote opens a field: ``3,"abc`` but not the ``b",c`` ending a quoted field).

    >>> opts = {"strict": True}
    >>> [stands_alone(t, (2,), opts) for t in ["3,c\\n", '3,"c\\n', 'b",c\\n', "b\\n", '"x"y,1\\n']]
    [True, True, False, False, False]
    """
    q = options.get("quotechar", '"')
    line = text.rstrip("\r\n")
    odd = line.count(q) % 2
    try:
        alone = next(csv.reader([line + q if odd else line], **options), [])
    except csv.Error:
        return False
    if len(alone) not in widths:
        return False
    return not odd or not any(q in field for field in alone)


def dedupe(names: list[str], again: str = "{name}_{n}") -> list[str]:
    """Repeated names get ``_2``, ``_3``... (``again`` spells the n-th one).

    >>> dedupe(["a", "b", "a", "a"]), dedupe(["x", "x"], again="{name} ({n})")
    (['a', 'b', 'a_2', 'a_3'], ['x', 'x (2)'])
    """
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else again.format(name=name, n=seen[name]))
    return out


def dict_maker(names: list[str], first: int) -> Callable[[list[Any]], dict[str, Any]]:
    """``lambda f: {names[0]: f[first], names[1]: f[first + 1], ...}``, compiled once.

    >>> dict_maker(["a", "b"], 1)(["x", 1, 2])
    {'a': 1, 'b': 2}
    """
    items = ", ".join(f"{name!r}: f[{first + i}]" for i, name in enumerate(names))  # repr: always a literal
    return eval(f"lambda f: {{{items}}}")  # our own text: reprs of strings and ints


def is_number(text: str) -> bool:
    """``text`` is a number (with a decimal point or comma)."""
    try:
        float(text.replace(",", "."))
    except ValueError:
        return False
    return True
