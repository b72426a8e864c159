"""CSVReader: the rows of a CSV file as dicts, streamed, with real files' quirks handled."""

from __future__ import annotations

import csv
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import time
from typing import Any

from ..actors.actor import Mode
from .base import MAX_REJECTS, FileReader, OnError, ReaderError, Reject
from .convert import Converter, RowTyper, parse_timestamp, to_datetime

__all__ = ["CSVReader", "sniff_delimiter"]

DELIMITERS = ",;\t|"


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


class _Blank(Exception):  # noqa: N818 (control flow, never escapes)
    pass


class _Bad(Exception):  # noqa: N818 (control flow, never escapes)
    pass


class CSVReader(FileReader):
    """Streams the rows of a CSV file as dicts keyed by the header's names, then END.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "uci.csv")
    >>> _ = open(path, "w").write("Date;Time;CO(GT);T;;\\n10/03/2004;18.00.00;2,6;-200;;\\n;;;;;\\n")
    >>> reader = CSVReader(path, typed=True, na_values=["-200"], timestamp=("Date", "Time"))
    >>> list(reader)
    [{'Date': datetime.date(2004, 3, 10), 'Time': datetime.time(18, 0), 'CO(GT)': 2.6, 'T': None, \
'timestamp': datetime.datetime(2004, 3, 10, 18, 0)}]
    >>> reader.blank, reader.rejected
    (1, 0)

    What it copes with, and how:

    - **Unnamed leading column.** When the first data row has one field more than the header
      (pandas' ``to_csv`` layout, as in the UCI occupancy files) or the header's first name is
      empty, that leading column is the row index: it is kept under the key ``index_name``
      (default ``"row"``) or dropped with ``index_name=None``. The decision is taken on the first
      data row; every row must then have that many fields.
    - **Unnamed trailing columns** (the original UCI air-quality file ends each line with
      ``;;``) are dropped; a value under one makes the row a reject. Other empty names become
      ``column_<n>`` (1-based), repeated names get ``_2``, ``_3``.
    - **Separators and decimals.** ``delimiter=None`` sniffs ``, ; TAB |`` on the header line;
      ``decimal=None`` means ``","`` for ``;``-separated files and ``"."`` otherwise.
      Quoted fields (with quoted newlines) follow RFC 4180; malformed quoting is a reject.
    - **Encoding.** UTF-8 by default, with or without a BOM; a row with undecodable bytes is a
      reject (its text shows them as ``\\x..`` escapes). An undecodable header is fatal.
    - **Missing values.** ``na_values`` (e.g. ``["-200"]``) become None; the text is compared
      as written and, when typed, also as a number (so ``-200.0`` matches ``-200``).
    - **Types.** Values are strings unless ``typed=True``: then each column's type (int, float
      with the decimal comma honoured, ``datetime.datetime`` / ``date`` / ``time``, or text) is
      learned from its first non-empty value and a later value of another type is a reject; an
      int column widens to float at its first decimal (see chronopipe.readers.convert). Slashed
      dates are day first unless ``dayfirst=False``; empty fields are None. ``types`` pins
      columns (``{"Light": "float", "date": "datetime"}`` or callables taking the text); a
      pinned value that does not convert is a reject.
    - **Timestamps.** ``timestamp="date"`` or ``timestamp=("Date", "Time")`` adds a
      ``datetime.datetime`` under the key ``"timestamp"`` from that column, or those columns
      joined by a space; a row where it does not parse is a reject.
    - **Blank rows** (empty lines, or only empty fields like ``;;;;``) are skipped and counted
      in ``blank``; they are not rejects. Rows with the wrong number of fields are rejects.

    Everything else (queue, modes, rejects, ``on_error``) is as for :class:`FileReader`.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        queue: Any = None,
        wrapper: Callable[[dict[str, Any]], Any] | None = None,
        start: bool = False,
        *,
        delimiter: str | None = None,
        quotechar: str = '"',
        decimal: str | None = None,
        na_values: Iterable[str | int | float] = (),
        typed: bool = False,
        types: Mapping[str, str | Converter] | None = None,
        timestamp: str | Sequence[str] | None = None,
        dayfirst: bool = True,
        header: bool = True,
        fieldnames: Sequence[str] | None = None,
        index_name: str | None = "row",
        name: str | None = None,
        mode: Mode | None = None,
        encoding: str = "utf-8",
        on_error: OnError = "collect",
        max_rejects: int | None = MAX_REJECTS,
        maxsize: int = 10_000,
    ) -> None:
        super().__init__(filename, queue, wrapper, False, name=name, mode=mode, encoding=encoding,
                         on_error=on_error, max_rejects=max_rejects, maxsize=maxsize)
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, not {delimiter!r}")
        if decimal not in (None, ".", ","):
            raise ValueError(f"decimal must be '.' or ',', not {decimal!r}")
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.decimal = decimal
        self.na_values = frozenset(str(v) for v in na_values)
        self.typed = typed
        self.types = dict(types or {})
        self.timestamp: tuple[str, ...] = (timestamp,) if isinstance(timestamp, str) else tuple(timestamp or ())
        self.dayfirst = dayfirst
        self.header = header
        self.fieldnames = list(fieldnames) if fieldnames is not None else None
        self.index_name = index_name
        self.columns: list[str] | None = None  #: the record keys, known once the first row was read
        if start:
            self.start()

    # -- the file's layout ---------------------------------------------------------------
    def _layout(self, header: list[str] | None, first: list[str]) -> tuple[list[str], int, int, int]:
        """(names, fields per row, first used field, end of used fields) from the header and
        the first data row."""
        if self.fieldnames is not None:
            return _dedupe(self.fieldnames), len(self.fieldnames), 0, len(self.fieldnames)
        if header is None:
            return [f"column_{i + 1}" for i in range(len(first))], len(first), 0, len(first)
        names = list(header)
        width = hi = len(names)
        while hi > 1 and names[hi - 1] == "":
            hi -= 1  # trailing unnamed columns
        names = names[:hi]
        if len(first) == width + 1:  # one field more than names: an unnamed leading index
            names.insert(0, "")
            width, hi = width + 1, hi + 1
        lo = 0
        if len(names) > 1 and names[0] == "":
            if self.index_name is None:
                lo, names = 1, names[1:]
            else:
                names[0] = self.index_name
        names = [n if n else f"column_{lo + i + 1}" for i, n in enumerate(names)]
        return _dedupe(names), width, lo, hi

    def _builder(self, header: list[str] | None, first: list[str], decimal: str) -> Callable[[list[str]], Any]:
        """The function turning one row's fields into its record (raises _Blank or _Bad)."""
        names, width, lo, hi = self._layout(header, first)
        self.columns = names + (["timestamp"] if self.timestamp and "timestamp" not in names else [])
        missing = [c for c in self.timestamp if c not in names]
        if missing:
            raise ValueError(f"{self.filename}: timestamp= names columns the file does not have: {missing} "
                             f"(columns: {names})")
        typer = None
        if self.typed or self.types:
            typer = RowTyper(names, self.types, typed=self.typed, decimal=decimal, dayfirst=self.dayfirst)
        na_text = self.na_values
        na_numbers = {float(v.replace(",", ".")) for v in na_text if _is_number(v)} if typer else set()
        ts_idx = [lo + names.index(c) for c in self.timestamp]
        dayfirst = self.dayfirst
        tail = hi != width
        # Records are dict displays compiled for these names (twice as fast as dict(zip(...))).
        from_fields = _dict_maker(names, lo)  # positions lo.. of the raw fields
        from_values = _dict_maker(names, 0) if (na_text or typer) else from_fields

        def build(fields: list[str]) -> dict[str, Any]:
            if len(fields) != width:
                if not any(fields):
                    raise _Blank
                raise _Bad(f"expected {width} fields, got {len(fields)}")
            if not fields[lo] and not any(fields):
                raise _Blank
            if tail and any(fields[hi:]):
                raise _Bad(f"a value under an unnamed trailing column: {fields[hi:]!r}")
            if from_values is from_fields:
                rec = from_fields(fields)
            else:
                vals: list[Any] = fields[lo:hi]
                if na_text:
                    vals = [None if v in na_text else v for v in vals]
                if typer is not None:
                    try:
                        vals = typer(vals)
                    except ValueError as exc:
                        raise _Bad(str(exc)) from None
                    if na_numbers:
                        vals = [None if v in na_numbers else v for v in vals]
                rec = from_values(vals)
            if ts_idx:
                text = " ".join([fields[i] for i in ts_idx])
                try:
                    ts = parse_timestamp(text, dayfirst=dayfirst)
                except ValueError as exc:
                    raise _Bad(f"timestamp {text!r} does not parse: {exc}") from None
                if ts is None or isinstance(ts, time):
                    raise _Bad(f"timestamp {text!r} does not parse")
                rec["timestamp"] = to_datetime(ts)
            return rec

        return build

    # -- reading -------------------------------------------------------------------------
    def _records(self) -> Iterator[Any]:
        row_lines: list[str] = []  # the physical lines of the row being parsed
        bad: list[tuple[int, str]] = []  # undecodable lines among them
        with self._open() as f:
            lines = self._decoded_lines(f, row_lines, bad)
            first = next(lines, None)
            if first is None:
                return
            delimiter = self.delimiter or sniff_delimiter(first, self.quotechar)
            decimal = self.decimal or ("," if delimiter == ";" else ".")
            reader = csv.reader(itertools.chain((first,), lines), delimiter=delimiter, quotechar=self.quotechar,
                                strict=True)
            header = self._read_header(reader, row_lines, bad) if self.header else None
            if self.header and header is None:
                return
            build: Callable[[list[str]], Any] | None = None
            wrap = self.wrapper
            while True:
                try:
                    for fields in reader:
                        if bad:
                            self._reject(reader.line_num - len(row_lines) + 1, "".join(row_lines), bad[0][1],
                                         reader.line_num)
                            bad.clear()
                            row_lines.clear()
                            continue
                        if build is None:
                            if not any(fields):
                                self.blank += 1
                                row_lines.clear()
                                continue
                            build = self._builder(header, fields, decimal)
                        try:
                            record = build(fields)
                        except _Blank:
                            self.blank += 1
                            row_lines.clear()
                            continue
                        except _Bad as exc:
                            self._reject(reader.line_num - len(row_lines) + 1, "".join(row_lines), str(exc),
                                         reader.line_num)
                            row_lines.clear()
                            continue
                        if wrap is not None:
                            try:
                                record = wrap(record)
                            except Exception as exc:
                                raise self._wrap_failed(reader.line_num - len(row_lines) + 1, "".join(row_lines),
                                                        exc) from exc
                        row_lines.clear()
                        self.records += 1
                        yield record
                    return
                except csv.Error as exc:
                    reason = bad[0][1] if bad else f"malformed CSV: {exc}"
                    self._reject(reader.line_num - len(row_lines) + 1, "".join(row_lines), reason, reader.line_num)
                    bad.clear()
                    row_lines.clear()

    def _read_header(self, reader: Any, row_lines: list[str], bad: list[tuple[int, str]]) -> list[str] | None:
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise ReaderError(Reject(self.filename, 1, "".join(row_lines), f"header: malformed CSV: {exc}")) from None
        if bad:
            raise ReaderError(Reject(self.filename, bad[0][0], "".join(row_lines),
                                     f"header: {bad[0][1]} (wrong encoding=?)"))
        row_lines.clear()
        if header is not None:
            self.columns = list(header)
        return header


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def _dict_maker(names: list[str], first: int) -> Callable[[list[Any]], dict[str, Any]]:
    """``lambda f: {names[0]: f[first], names[1]: f[first + 1], ...}``, compiled once.

    >>> _dict_maker(["a", "b"], 1)(["x", 1, 2])
    {'a': 1, 'b': 2}
    """
    items = ", ".join(f"{name!r}: f[{first + i}]" for i, name in enumerate(names))  # repr: always a literal
    return eval(f"lambda f: {{{items}}}")  # our own text: reprs of strings and ints


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "."))
    except ValueError:
        return False
    return True
