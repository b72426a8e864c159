"""CSVReader: the rows of a CSV file as dicts, streamed, with real files' quirks handled."""

from __future__ import annotations

import csv
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import time
from typing import Any

from ..actors.actor import Mode
from .base import MAX_REJECTS, FileReader, OnError, ReaderError, Reject
from .convert import Converter, RowTyper, parse_timestamp, to_datetime
from .csvlayout import LAYOUT_ROWS, count_fields, dict_maker, is_number, layout_of, sniff_delimiter, stands_alone

__all__ = ["CSVReader", "sniff_delimiter"]

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

    - **Unnamed leading column.** When most of the first data rows (up to 20 non-blank ones,
      read ahead and then read again) have one field more than the header (pandas' ``to_csv``
      layout, as in the UCI occupancy files) or the header's first name is empty, that leading
      column is the row index: it is kept under the key ``index_name`` (default ``"row"``) or
      dropped with ``index_name=None``. Every row must then have that many fields: one odd
      first row (an unquoted comma in a value) is a reject, not the file's layout.
    - **Unnamed trailing columns** (the original UCI air-quality file ends each line with
      ``;;``) are dropped; a value under one makes the row a reject. Other empty names become
      ``column_<n>`` (1-based), repeated names get ``_2``, ``_3``.
    - **Separators and decimals.** ``delimiter=None`` sniffs ``, ; TAB |`` on the header line;
      ``decimal=None`` means ``","`` for ``;``-separated files and ``"."`` otherwise.
      Quoted fields (with quoted newlines) follow RFC 4180; malformed quoting is a reject.
    - **Unmatched quotes.** A quote left open at the end of its line swallows the lines after it
      into one field. When such a row spanning several lines does not fit (not the expected
      number of fields, malformed, the csv module's field size limit reached, or the end of the file
      inside the quotes) and one of the lines it swallowed is a row on its own (balanced quotes,
      the expected number of fields), only its first line is rejected and reading resumes on the
      next line: one stray quote costs one row, not the thousands after it. A swallowed line
      that opens a stray quote of its own counts as such a row (it is then rejected alone in
      turn). A bad row spanning lines that swallowed no such line is one reject (from its first
      to its last line). Every physical line ends up in exactly one record, reject or blank row.
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
    - **Line numbers.** ``line_key="source_line"`` adds to each record, under that key, the
      physical line number (header = line 1) of the row's first line; off by default, and then
      it costs nothing. A column of that name is a ValueError.
    - **Keys.** ``key="date"``: a row whose value there is empty (or None after ``na_values``
      and typing) is a reject (``empty key 'date'``), as a merge by that column needs.

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
        line_key: str | None = None,
        key: str | None = None,
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
        self.line_key = line_key
        self.key = key
        self.columns: list[str] | None = None  #: the record keys, known once the first row was read
        self._width = 0  # fields per row, known with the first data row
        self._replay_at = 0  # number of the last line handed again to the parser (0: reading the file)
        if start:
            self.start()

    # -- the file's layout ---------------------------------------------------------------
    def _builder(self, header: list[str] | None, counts: list[int], decimal: str,
                 sample: Sequence[list[str]] = ()) -> Callable[[list[str]], Any]:
        """The function turning one row's fields into its record (raises _Blank or _Bad), for the
        layout that the header and the field counts of the first data rows give."""
        layout = layout_of(header, counts, self.fieldnames, self.index_name)
        names, width, lo, hi = layout.names, layout.width, layout.lo, layout.hi
        self._width = width
        self.columns = names + (["timestamp"] if self.timestamp and "timestamp" not in names else [])
        if self.line_key is not None and self.line_key in self.columns:
            raise ValueError(f"{self.filename}: line_key={self.line_key!r} is also a column of the file "
                             f"(columns: {self.columns})")
        missing = [c for c in self.timestamp if c not in names]
        if missing:
            raise ValueError(f"{self.filename}: timestamp= names columns the file does not have: {missing} "
                             f"(columns: {names})")
        key = self.key
        if key is not None and key not in self.columns:
            raise ValueError(f"{self.filename}: key={key!r} is not a column of the file (columns: {names})")
        key_at = lo + names.index(key) if key in names else None  # (the added "timestamp" is never empty)
        first_at = lo if key_at is None else key_at  # an empty field there: a blank row or an empty key
        typer = None
        if self.typed or self.types:
            typer = RowTyper(names, self.types, typed=self.typed, decimal=decimal, dayfirst=self.dayfirst)
            na_sample = self.na_values
            typer.learn_from([["" if v in na_sample else v for v in row[lo:hi]] for row in sample if len(row) == width])
        na_text = self.na_values
        na_numbers = {float(v.replace(",", ".")) for v in na_text if is_number(v)} if typer else set()
        ts_idx = [lo + names.index(c) for c in self.timestamp]
        dayfirst = self.dayfirst
        tail = hi != width
        # Records are dict displays compiled for these names (twice as fast as dict(zip(...))).
        from_fields = dict_maker(names, lo)  # positions lo.. of the raw fields
        from_values = dict_maker(names, 0) if (na_text or typer) else from_fields

        def build(fields: list[str]) -> dict[str, Any]:
            if len(fields) != width:
                if not any(fields):
                    raise _Blank
                raise _Bad(f"expected {width} fields, got {len(fields)}")
            if not fields[first_at]:
                if not any(fields):
                    raise _Blank
                if key_at is not None:
                    raise _Bad(f"empty key {key!r}")
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
                if key_at is not None and vals[key_at - lo] is None:
                    raise _Bad(f"empty key {key!r}")
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
        pending: deque[tuple[int, str, str | None]] = deque()  # lines to parse again, after a stray quote
        with self._open() as f:
            decoded = self._decoded_lines(f, row_lines, bad)
            first = next(decoded, None)
            if first is None:
                return
            delimiter = self.delimiter or sniff_delimiter(first, self.quotechar)
            decimal = self.decimal or ("," if delimiter == ";" else ".")
            options = {"delimiter": delimiter, "quotechar": self.quotechar, "strict": True}
            reader = csv.reader(itertools.chain((first,), decoded), **options)
            header = self._read_header(reader, row_lines, bad) if self.header else None
            if self.header and header is None:
                return
            build: Callable[[list[str]], Any] | None = None
            if header is not None and self.fieldnames is None:  # the first rows decide the layout
                counts = self._read_ahead(decoded, row_lines, bad, pending, options)
                if counts:
                    sample = _sample_rows(pending, options) if (self.typed or self.types) else []
                    build = self._builder(header, counts, decimal, sample)
                reader = csv.reader(itertools.chain(self._replay(pending, row_lines, bad), decoded), **options)
            wrap, line_key = self.wrapper, self.line_key
            while True:
                try:
                    for fields in reader:
                        if bad:
                            self._reject_row(row_lines, bad[0][1])
                            bad.clear()
                            continue
                        if build is None:
                            if not any(fields):
                                self.blank += 1
                                row_lines.clear()
                                continue
                            if len(row_lines) > 1 and not self._fits_layout(header, fields):
                                if self._split(row_lines, bad, pending, self._widths(header), options):
                                    break  # read again from the line after the stray quote
                                self._reject_row(row_lines, f"expected {self._widths(header)[0]} fields, "
                                                            f"got {len(fields)}")
                                continue
                            build = self._builder(header, [len(fields)], decimal)
                        try:
                            record = build(fields)
                        except _Blank:
                            self.blank += 1
                            row_lines.clear()
                            continue
                        except _Bad as exc:
                            if (len(row_lines) > 1 and len(fields) != self._width
                                    and self._split(row_lines, bad, pending, (self._width,), options)):
                                break
                            self._reject_row(row_lines, str(exc))
                            continue
                        if line_key is not None:
                            record[line_key] = (self._replay_at or self.lines) - len(row_lines) + 1
                        if wrap is not None:
                            try:
                                record = wrap(record)
                            except Exception as exc:
                                raise self._wrap_failed(self._row_span(row_lines)[0], "".join(row_lines),
                                                        exc) from exc
                        row_lines.clear()
                        self.records += 1
                        yield record
                    else:
                        return
                except csv.Error as exc:
                    widths = (self._width,) if build is not None else self._widths(header)
                    if not (len(row_lines) > 1 and self._split(row_lines, bad, pending, widths, options)):
                        self._reject_row(row_lines, bad[0][1] if bad else f"malformed CSV: {exc}")
                        bad.clear()
                        continue
                # a stray quote: parse the lines it swallowed again, then the rest of the file
                reader = csv.reader(itertools.chain(self._replay(pending, row_lines, bad), decoded), **options)

    def _read_ahead(self, decoded: Iterator[str], row_lines: list[str], bad: list[tuple[int, str]],
                    pending: deque[tuple[int, str, str | None]], options: dict[str, Any]) -> list[int]:
        """The field counts of the first non-blank data rows (see csvlayout.count_fields); their
        lines are queued in ``pending``, to be read again once the layout is known."""
        read: list[tuple[int, str, str | None]] = []

        def lines() -> Iterator[str]:
            for text in decoded:
                read.append((self.lines, text, bad.pop()[1] if bad else None))
                yield text

        counts = count_fields(lines(), options, LAYOUT_ROWS)
        row_lines.clear()
        pending.extend(read)
        return counts

    def _row_span(self, row_lines: list[str]) -> tuple[int, int]:
        """(first, last) physical line of the row just parsed."""
        last = self._replay_at or self.lines
        return last - len(row_lines) + 1, last

    def _reject_row(self, row_lines: list[str], reason: str) -> None:
        first, last = self._row_span(row_lines)
        self._reject(first, "".join(row_lines), reason, last)
        row_lines.clear()

    def _widths(self, header: list[str] | None) -> tuple[int, ...]:
        """The field counts a first data row may have: the header's, or one more (an index column)."""
        if self.fieldnames is not None:
            return (len(self.fieldnames),)
        if header is None:
            return ()
        return (len(header), len(header) + 1)

    def _fits_layout(self, header: list[str] | None, fields: list[str]) -> bool:
        widths = self._widths(header)
        return not widths or len(fields) in widths

    def _split(self, row_lines: list[str], bad: list[tuple[int, str]],
               pending: deque[tuple[int, str, str | None]], widths: tuple[int, ...], options: dict[str, Any]) -> bool:
        """A bad row spanning lines: if it swallowed a line that is a row on its own, reject only
        its first line (a stray quote), queue the others in ``pending`` to be parsed again and
        return True; else return False (the whole row is the reject)."""
        if not any(stands_alone(text, widths, options) for text in row_lines[1:]):
            return False
        first, _ = self._row_span(row_lines)
        reasons = dict(bad)
        bad.clear()
        self._reject(first, row_lines[0], reasons.get(first, "malformed CSV: unmatched quote (the quoted field "
                                                             "it opens swallows the next lines; read them again)"))
        pending.extendleft(reversed([(first + i, text, reasons.get(first + i))
                                     for i, text in enumerate(row_lines[1:], 1)]))
        row_lines.clear()
        return True

    def _replay(self, pending: deque[tuple[int, str, str | None]], row_lines: list[str],
                bad: list[tuple[int, str]]) -> Iterator[str]:
        """The lines of ``pending`` for the parser again (as _decoded_lines gives them), then stop."""
        while pending:
            n, text, reason = pending.popleft()
            if reason is not None:
                bad.append((n, reason))
            row_lines.append(text)
            self._replay_at = n
            yield text
        self._replay_at = 0

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


def _sample_rows(pending: Iterable[tuple[int, str, str | None]], options: dict[str, Any]) -> list[list[str]]:
    """The rows of the lines read ahead (for learning the columns' types); a line that does not
    parse ends the sample there."""
    rows: list[list[str]] = []
    try:
        rows.extend(csv.reader((text for _, text, _ in pending), **options))
    except csv.Error:
        pass
    return rows
