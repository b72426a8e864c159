"""CSVBatches: one CSV file as typed pyarrow Tables of exactly ``size`` rows, with its rejects.

The CSV consumer of ``chronopipe run`` stays in Arrow (``pyarrow.csv``, no Python rows) and
loses nothing: each data row ends in a Table, a reject or the blank count (``rows + rejected ==
data lines - blank`` when no value spans lines); each :class:`~chronopipe.readers.Reject` names
the file, the exact physical line (header = line 1, values spanning lines counted) and why.

- **Layout as CSVReader decides it**: ``delimiter=None`` sniffs ``, ; TAB |``; when most first
  rows have one field more than the header (UCI occupancy files, pandas' ``to_csv``), that
  leading column is named ``row``, as CSVReader names it; empty names become ``column_<n>``,
  repeated ones ``_2``; unnamed trailing columns are dropped (a value under one: a reject).
- **Values as ``psql \\copy ... (FORMAT csv, HEADER)`` reads them**: an unquoted empty field is
  NULL, a quoted ``""`` an empty string (a reject in a numeric column); ``NA`` is text. A row of
  only unquoted empty fields (an empty line too) is *blank*: counted, not loaded, not a reject.
- **Types**, learned from the first ``size`` rows: int64, float64, date32, timestamp[us],
  timestamp[us, UTC], bool, else string. A type is kept when at most 1% of the values there
  misfit (a typo does not make a numeric column text; under 100 values, none may). Then FIXED:
  every Table has one schema; a later misfit rejects its row (``column CO2: 'abc' is not a
  number``), the rest is kept. ``column_types`` pins columns (int, float, str, date, datetime...).
- **Rejects**: a wrong number of fields (``expected 8 fields, got 9``; text: the raw line),
  misfits (text: the fields joined again), a value under an unnamed trailing column; all are
  counted in ``rejected``, the first ``max_rejects`` kept in ``rejects``.
- **Batches**: exactly ``size`` rows (the last fewer), one chunk per column, identical when the
  file is read again (a rerun after a crash re-creates the same batches). ``limit`` stops after
  that many rows (the counts then cover the lines up to the last row).

Limits of pyarrow's parser: a quote left open takes the lines up to the next quote into its
field (one value, or one reject spanning them); a row of a wrong width with bytes that are not
UTF-8 stops the reading (ReaderError).

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
>>> _ = open(path, "w").write('"date","CO2"\\n"1","2015-02-04 17:51:00",426\\n"2",,abc\\n\\n')
>>> reader = CSVBatches(path)
>>> [t.to_pylist() for t in reader]
[[{'row': 1, 'date': datetime.datetime(2015, 2, 4, 17, 51), 'CO2': '426'}, {'row': 2, 'date': None, 'CO2': 'abc'}]]
>>> reader.rows, reader.rejected, reader.blank
(2, 0, 1)
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import csv
import functools
import itertools
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from ..readers import ReaderError, Reject
from ..readers.csvlayout import LAYOUT_ROWS, count_fields, layout_of, sniff_delimiter

__all__ = ["CSVBatches", "arrow_type"]

#: Bytes pyarrow parses at a time; fixed, so that the same file always gives the same batches.
BLOCK_SIZE = 1 << 22
_ALIASES = {"int": "int64", "integer": "int64", "float": "float64", "number": "float64", "str": "string",
            "text": "string", "date": "date32", "datetime": "timestamp[us]", "timestamp": "timestamp[us]",
            "boolean": "bool"}
# Shapes of the text the casts to these types take (a little wider; checked against pyarrow): a
# value of another shape misfits for sure, so only the others need casting one by one.
_TIME = r"^\d{4}-\d\d-\d\d([ T]\d\d(:\d\d(:\d\d(\.\d+)?)?)?)?(Z|[+-]\d\d(:?\d\d)?)?$"
_SHAPES = {"int64": r"(?i)^[+-]?(\d+|0x[0-9a-f]+)$", "date32[day]": r"^\d{4}-\d\d-\d\d$",
           "double": r"(?i)^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$|^[+-]?(inf|infinity|nan)$",
           "timestamp[us]": _TIME, "timestamp[us, tz=UTC]": _TIME, "bool": r"(?i)^(true|false|1|0)$"}


def arrow_type(name: str | pa.DataType) -> pa.DataType:
    """The Arrow type a ``column_types`` value names.

    >>> arrow_type("float"), arrow_type("datetime"), arrow_type("string")
    (DataType(double), TimestampType(timestamp[us]), DataType(string))

    Raises:
        ValueError: an unknown name.
    """
    try:  # a type itself passes (a rerun pins the types it staged)
        return name if isinstance(name, pa.DataType) else pa.type_for_alias(_ALIASES.get(name, name))
    except ValueError:
        raise ValueError(f"unknown column type {name!r} (int, float, str, date, datetime, bool, ...)") from None


def _as(t: pa.DataType, values: pa.Array) -> pa.Array:
    """The array of text as type ``t``; ArrowInvalid if a value does not fit (text: is not UTF-8)."""
    return values if pa.types.is_string(t) and values.validate(full=True) is None else pc.cast(values, t)


def _fits(t: pa.DataType, values: pa.Array) -> bool:
    """Whether every value fits ``t`` (the first ones alone first: a failing cast costs a whole array's)."""
    try:
        _as(t, values.slice(0, 1000))
        _as(t, values)
    except pa.ArrowInvalid:
        return False
    return True


def _failures(values: pa.Array, t: pa.DataType, cap: int | None = None) -> list[int]:
    """Positions of the values that do not fit type ``t``: those not of its shape, then among the
    others, found by halving (a few casts per misfit). Stops once more than ``cap`` were found."""
    shape = _SHAPES.get(str(t))
    shaped = pc.fill_null(pc.match_substring_regex(values, shape), True) if shape else None
    found = [] if shaped is None else pc.indices_nonzero(pc.invert(shaped)).to_pylist()
    rest = values.filter(shaped) if found else values
    halved: list[int] = []

    def visit(lo: int, n: int) -> None:
        if n == 0 or (cap is not None and len(found) + len(halved) > cap) or _fits(t, rest.slice(lo, n)):
            return
        if n == 1:
            halved.append(lo)
        else:
            visit(lo, n // 2)
            visit(lo + n // 2, n - n // 2)

    visit(0, len(rest))
    if found and halved:  # positions in `rest`: back to positions in `values`
        halved = pc.take(pc.indices_nonzero(shaped), pa.array(halved, pa.int64())).to_pylist()
    return sorted(found + halved)


def _infer(values: pa.Array) -> pa.DataType:
    """The type of a column of text (see the module docstring): numbers, dates, times, booleans."""
    col = values.drop_null()
    allowed = len(col) // 100
    for wide, narrow in ((pa.float64(), pa.int64()), (pa.timestamp("us"), pa.date32()),
                         (pa.timestamp("us", "UTC"), None), (pa.bool_(), None)):
        misfits = [] if _fits(wide, col) else _failures(col, wide, allowed)
        if len(misfits) > allowed:
            continue
        if narrow is not None:  # the narrow type when every value that fits the wide one fits it
            fit = col.filter(pa.array([i not in set(misfits) for i in range(len(col))])) if misfits else col
            if _fits(narrow, fit):
                return narrow
        return wide
    return pa.string()


def _misfit(names: list[str], types: list[pa.DataType], j: int, value: str | None) -> str:
    """Why ``value`` in the ``j``-th field of a row is a misfit."""
    if j >= len(types):
        return f"a value under an unnamed trailing column: {value!r}"
    name, t = names[j], types[j]
    if pa.types.is_string(t):
        return f"column {name}: not valid UTF-8 (wrong encoding=?)"
    what = {"int": "an integer", "dou": "a number", "flo": "a number", "dec": "a number", "dat": "a date",
            "tim": "a timestamp", "boo": "a boolean"}.get(str(t)[:3], f"a {t}")
    shown = repr(value if value is None or len(value) <= 40 else value[:37] + "...")
    empty = " (a quoted \"\" is an empty string; NULL is an unquoted empty field)" if value == "" else ""
    return f"column {name}: {shown} is not {what}{empty}"


def _text(column: pa.Array, i: int) -> str | None:
    """The value at ``i`` of a column of (unchecked) text; bytes that are not UTF-8 as ``\\x..``."""
    raw = column.slice(i, 1).cast(pa.binary())[0].as_py()
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


class CSVBatches:
    """Read one CSV file as pyarrow Tables of exactly ``size`` rows (the last one fewer), typed,
    with rejects (see the module docstring). Each iteration reads the file again; ``rows``,
    ``rejected``, ``blank``, ``lines`` (physical), ``rejects``, ``columns``, ``schema`` describe
    the last. ``encoding``: UTF-8 is read as is, other codecs are transcoded (slower).

    Raises (when iterated; the constructor raises ValueError for bad arguments, LookupError for
    an unknown encoding):
        OSError: the file cannot be opened (FileNotFoundError, IsADirectoryError, PermissionError).
        ReaderError: (a ValueError; ``str()`` is ``file:line: reason``) the file is empty or its
            header blank or not in ``encoding``; bytes not in a non-UTF-8 ``encoding``; pyarrow
            cannot parse on (see the limits above); ``column_types`` names unknown columns.
    """

    def __init__(self, path: str | os.PathLike[str], *, size: int = 100_000, delimiter: str | None = None,
                 encoding: str = "utf8", column_types: Mapping[str, str] | None = None, limit: int | None = None,
                 max_rejects: int = 100) -> None:
        if size < 1 or (limit is not None and limit < 0) or (delimiter is not None and len(delimiter) != 1):
            raise ValueError(f"need size >= 1, limit >= 0, a one-character delimiter: {size=}, {limit=}, {delimiter=}")
        self.encoding = codecs.lookup(encoding).name  # (LookupError: no such codec)
        if self.encoding.startswith(("utf-16", "utf-32")):
            raise ValueError(f"encoding {encoding!r} is not supported (lines are split at b'\\n')")
        self.path = os.fspath(path)
        self.size, self.delimiter, self.limit, self.max_rejects = size, delimiter, limit, max_rejects
        self.column_types = {name: arrow_type(t) for name, t in (column_types or {}).items()}
        self.columns: list[str] = []  #: the columns' names, known once reading began
        self.schema: pa.Schema | None = None  #: every Table's schema, known with the first one
        self._reset()

    def _reset(self) -> None:
        self.rows = self.rejected = self.blank = self.lines = self.batches = 0
        self.rejects: list[Reject] = []
        self.complete = False  #: the whole file was read (not stopped by ``limit``)
        self._began, self._seconds = time.monotonic(), 0.0
        # pyarrow's number of the next row (rows skipped included), newlines in values before it
        self._ord, self._extra = 2, 0
        self._skipped: deque[tuple[int, str, str]] = deque()  # rows of a wrong width: (number, text, reason)

    def statistics(self) -> dict[str, Any]:
        """The counts of the last (or current) reading, for ``chronopipe run``'s report."""
        seconds = self._seconds or time.monotonic() - self._began
        return {"file": self.path, "lines": self.lines, "rows": self.rows, "rejected": self.rejected,
                "blank": self.blank, "batches": self.batches, "complete": self.complete, "seconds": seconds}

    def _layout(self) -> tuple[list[str], int, str, int]:
        """(names of all fields, how many are used, delimiter, header lines), as CSVReader reads them."""
        with open(self.path, "rb") as f:
            first = f.readline().removeprefix(codecs.BOM_UTF8 if self.encoding.startswith("utf-8") else b"")
            try:
                text = first.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise ReaderError(Reject(self.path, 1, first.decode(self.encoding, "backslashreplace").rstrip(),
                                         f"header: not valid {self.encoding} ({exc.reason}; encoding=?)")) from None
            if not text.strip():
                raise ReaderError(Reject(self.path, 1, "", "the first line is blank: expected the header" if text
                                         else "empty file: no header line"))
            delimiter = self.delimiter or sniff_delimiter(text)
            options = {"delimiter": delimiter, "quotechar": '"'}
            source = itertools.chain([text], (raw.decode(self.encoding, "replace") for raw in f))
            header = next(csv.reader(source, **options))
            counts = count_fields(source, options, LAYOUT_ROWS)
        header_lines = 1 + sum(name.count("\n") for name in header)  # (a name may be quoted over lines)
        layout = layout_of(header, counts, None, "row")
        names = layout.names + [f"\0trailing {i}" for i in range(layout.hi, layout.width)]
        return names, layout.hi, delimiter, header_lines

    def __iter__(self) -> Iterator[pa.Table]:
        self._reset()
        names, used, delimiter, header_lines = self._layout()
        self.columns, self._ord = names[:used], header_lines + 1
        if unknown := sorted(set(self.column_types) - set(self.columns)):
            raise ReaderError(Reject(self.path, 1, "", f"column_types names columns the file does not have: "
                                                       f"{unknown} (columns: {self.columns})"))
        raws = self._raw(names, delimiter, header_lines)
        first: list[pa.RecordBatch] = []  # the first `size` rows decide the types
        while sum(b.num_rows for b in first) < self.size and (raw := next(raws, None)) is not None:
            first.append(raw)
        sample = pa.Table.from_batches(first, pa.schema([(n, pa.string()) for n in names])).slice(0, self.size)
        types = [self.column_types.get(n) or _infer(sample.column(i).combine_chunks())
                 for i, n in enumerate(self.columns)]
        self.schema = pa.schema(list(zip(self.columns, types, strict=True)))
        pending: list[pa.RecordBatch] = []
        held = 0
        for raw in itertools.chain(first, raws) if self.limit != 0 else ():
            batch = self._take(raw, types, delimiter, held)
            pending.append(batch)
            held += batch.num_rows
            while held >= self.size:
                table = pa.Table.from_batches(pending, self.schema)
                pending, held = table.slice(self.size).to_batches(), held - self.size
                yield self._emit(table.slice(0, self.size))
            if self.limit is not None and self.rows + held >= self.limit:
                break
        else:
            while self._skipped and self.limit != 0:  # rows of a wrong width after the last row
                number, text, reason = self._skipped.popleft()
                self._reject(number + self._extra, text, reason)
                self._ord, self._extra = number + 1, self._extra + text.count("\n")
            self.complete = self.limit != 0
        if held:
            yield self._emit(pa.Table.from_batches(pending, self.schema))
        self.lines = self._ord - 1 + self._extra
        self._seconds = time.monotonic() - self._began

    def _emit(self, table: pa.Table) -> pa.Table:
        self.rows, self.batches = self.rows + table.num_rows, self.batches + 1
        return table.combine_chunks()

    def _raw(self, names: list[str], delimiter: str, header_lines: int) -> Iterator[pa.RecordBatch]:
        """pyarrow's batches of text, parsed one ahead in a thread (casting a batch overlaps parsing
        the next); a row of a wrong width is in ``_skipped`` before its batch comes. Its errors as
        ReaderError (file, about where, reason)."""

        def wrong_width(row: Any) -> str:  # pyarrow numbers rows only when reading on one thread
            self._skipped.append((row.number, row.text, f"expected {row.expected_columns} fields, "
                                                        f"got {row.actual_columns}"))
            return "skip"

        def send(item: Any) -> None:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    return ahead.put(item, timeout=0.1)

        def parse() -> None:
            try:
                for batch in pv.open_csv(self.path, read_options=pv.ReadOptions(
                        use_threads=False, block_size=BLOCK_SIZE, skip_rows=header_lines, column_names=names,
                        encoding="utf8" if self.encoding.startswith("utf-8") else self.encoding),
                        parse_options=pv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                                      ignore_empty_lines=False, invalid_row_handler=wrong_width),
                        convert_options=pv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                          null_values=[""], strings_can_be_null=True,
                                                          quoted_strings_can_be_null=False, check_utf8=False)):
                    send(batch)
                send(None)
            except Exception as exc:  # raised again in the reading thread
                send(exc)

        ahead: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        thread = threading.Thread(target=parse, name=f"csv {self.path}", daemon=True)
        thread.start()
        try:
            while (item := ahead.get()) is not None:
                if isinstance(item, (pa.ArrowInvalid, UnicodeDecodeError)):
                    why = f"not {self.encoding}: {item.reason}" if isinstance(item, UnicodeDecodeError) else item
                    raise ReaderError(Reject(self.path, self._ord + self._extra, "", f"CSV: {why}")) from None
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def _reject(self, line: int, text: str, reason: str) -> None:
        self.rejected += 1
        if len(self.rejects) < self.max_rejects:
            end = line + text.count("\n")
            self.rejects.append(Reject(self.path, line, text.rstrip("\r\n"), reason, end if end != line else None))

    def _take(self, raw: pa.RecordBatch, types: list[pa.DataType], delimiter: str, held: int) -> pa.RecordBatch:
        """The good rows of one batch of text, typed; its blank rows and rejects counted."""
        m, names, used, skipped = raw.num_rows, self.columns, len(self.columns), self._skipped
        # pyarrow numbers rows on, skipped ones included: the skipped rows among this batch's rows
        # are the events (index of the row they come before, number, text, reason), and row k
        # is numbered self._ord + k + the number of events before it.
        events: list[tuple[int, int, str, str]] = []
        while skipped and (index := skipped[0][0] - self._ord - len(events)) <= m:
            events.append((index, *skipped.popleft()))
        blank = pc.is_null(raw.column(0))
        for column in raw.columns[1:] if raw.column(0).null_count else ():  # (else no row is blank)
            blank = pc.and_(blank, pc.is_null(column))
        bad: dict[int, list[int]] = {}  # row -> the fields that misfit (spelled out for the rejects kept)
        typed: list[pa.Array | None] = []
        for j, t in enumerate(types):
            try:
                typed.append(_as(t, raw[j]))
            except pa.ArrowInvalid:
                typed.append(None)
                for k in _failures(raw[j], t):
                    bad.setdefault(k, []).append(j)
        for j in range(used, raw.num_columns):
            for k in pc.indices_nonzero(pc.is_valid(raw[j])).to_pylist() if raw[j].null_count < m else ():
                bad.setdefault(k, []).append(j)
        keep = pc.and_(pc.invert(blank), pa.array([k not in bad for k in range(m)])) if bad else pc.invert(blank)
        cut = m
        if self.limit is not None and (pc.sum(keep).as_py() or 0) >= self.limit - self.rows - held:
            cut = pc.index(pc.cumulative_sum(keep.cast(pa.int64())), self.limit - self.rows - held).as_py() + 1
            raw, keep, blank = raw.slice(0, cut), keep.slice(0, cut), blank.slice(0, cut)
            events = [e for e in events if e[0] < cut]
            bad = {k: v for k, v in bad.items() if k < cut}
            typed = [None if a is None else a.slice(0, cut) for a in typed]
        self.blank += pc.sum(blank).as_py() or 0
        # Newlines inside values, for the line numbers: in every column before a reject, else only
        # in text columns (a value with a newline never casts to another type).
        counted = raw.columns if bad or events else [raw[j] for j, t in enumerate(types) if pa.types.is_string(t)]
        newlines = functools.reduce(pc.add, [pc.fill_null(pc.count_substring(c, "\n"), 0) for c in counted],
                                    pa.repeat(pa.scalar(0, pa.int64()), cut))
        within = pc.sum(newlines).as_py() or 0
        if bad or events:
            before = [0, *pc.cumulative_sum(newlines).to_pylist()] if within else [0] * (cut + 1)
            at = [k for k, _, _, _ in events]
            incidents: list[tuple[int, int, str | None, str]] = sorted(
                [(n, k, text, why) for k, n, text, why in events]
                + [(self._ord + k + bisect.bisect_right(at, k), k, None, "") for k in bad])
            spanned = 0  # newlines inside the skipped rows met so far in this batch
            for n, k, text, reason in incidents:
                line = n + self._extra + before[k] + spanned
                if text is None:  # a row of misfits: its text and reasons only if kept
                    kept = len(self.rejects) < self.max_rejects
                    text = _row_text(raw, k, delimiter) if kept else ""
                    reason = "; ".join(_misfit(names, types, j, _text(raw[j], k)) for j in bad[k]) if kept else ""
                else:
                    spanned += text.count("\n")
                self._reject(line, text, reason)
            within += spanned
        self._ord, self._extra = self._ord + cut + len(events), self._extra + within
        self.lines = self._ord - 1 + self._extra
        if bad or pc.any(blank).as_py():
            raw = raw.filter(keep)
            typed = [pc.cast(raw.column(j), t) for j, t in enumerate(types)]
        return pa.RecordBatch.from_arrays(typed, schema=self.schema)


def _row_text(raw: pa.RecordBatch, k: int, delimiter: str) -> str:
    """Row ``k``'s fields joined again as CSV (quoted where they need it, "" for an empty string)."""
    values = [_text(column, k) for column in raw.columns]
    return delimiter.join("" if v is None else f'"{v.replace(chr(34), 2 * chr(34))}"'
                          if v == "" or any(c in v for c in (delimiter, '"', "\n", "\r")) else v for v in values)

