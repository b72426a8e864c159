"""One batch of a run: the rows a consumer staged together, and the id that names them.

A :class:`Batch` holds either a list of dict rows or a ``pyarrow.Table`` and converts to the
other form only when asked (then keeps the result). pyarrow is imported only by that conversion,
so a run of dict rows through a local stage never loads it.

:func:`content_id` names a batch by what it holds: the same consumer, sequence number and
content give the same id in every process and every run, so a rerun after a crash re-creates
the very batches it staged before (and a stage or sink that already has one writes nothing).

JSON for rows (:func:`json_default`, used for hashing rows, by the local stage and for nested
values in CSV): a ``datetime``, ``date`` or ``time`` becomes its ISO 8601 string
(``isoformat()``: ``2015-02-04T17:51:00``), a ``timedelta`` its seconds as a float, a
``Decimal`` its exact ``str``, ``bytes`` / ``bytearray`` / ``memoryview`` standard base64 text
(with ``=`` padding), a set a sorted list, anything else JSON has no form for its ``str``. The
conversion is one way: such values come back from a local stage as those strings.

Batch files (stages and file sinks) are named by :func:`batch_file_name` and written by
:func:`write_once`: whole or not at all, never over an existing file.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow

__all__ = ["ID_LENGTH", "Batch", "batch_file_name", "check_name", "content_id", "json_default", "json_encoder",
           "one_line", "remove_dead_temps", "write_once"]

#: Hex digits of a content id (96 bits of sha256).
ID_LENGTH = 24
_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_TEMP = re.compile(r"\..+\.tmp-(\d+)-[0-9a-f]+\Z")  # what write_once writes to


def json_default(value: Any) -> Any:
    """The JSON form of a value :mod:`json` cannot write (the ``default=`` hook).

    >>> from decimal import Decimal
    >>> json_default(dt.datetime(2015, 2, 4, 17, 51)), json_default(b"\\x00\\xff"), json_default(Decimal("1.10"))
    ('2015-02-04T17:51:00', 'AP8=', '1.10')
    >>> json_default({3, 1, 2}), json_default(dt.timedelta(minutes=1, milliseconds=500))
    ([1, 2, 3], 60.5)
    """
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        # sorted by their JSON text: the order of a set of strings changes between processes
        return sorted(value, key=lambda v: json.dumps(v, sort_keys=True, default=json_default))
    return str(value)  # Decimal, UUID, Path, enums, ...: their text


def json_encoder(*, sort_keys: bool = False) -> json.JSONEncoder:
    """A compact JSON encoder using :func:`json_default` (``encode(row)`` gives one line)."""
    return json.JSONEncoder(default=json_default, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


def _is_table(data: Any) -> bool:
    # a Table cannot exist unless pyarrow was imported, so looking for it imports nothing
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(data, pa.Table | pa.RecordBatch)


class Batch:
    """Rows of one stage batch: a list of dict rows or a ``pyarrow.Table`` (a ``RecordBatch``
    is taken as a one-batch table), converted lazily and cached.

    ``id``, ``consumer`` and ``seq`` name the batch (a stage's ``put`` fills an empty ``id`` with
    :func:`content_id`). The data are not copied: do not change a list after handing it over.

    Raises:
        TypeError: ``data`` is neither a list of dicts nor a pyarrow Table.

    >>> b = Batch([{"a": 1}, {"a": 2}], consumer="c", seq=3)
    >>> b.num_rows, b.rows[1], b
    (2, {'a': 2}, Batch(id='', consumer='c', seq=3, rows=2))
    """

    __slots__ = ("_lines", "_rows", "_table", "arrow", "consumer", "id", "seq")

    def __init__(self, data: list[dict[str, Any]] | pyarrow.Table, *, id: str = "", consumer: str = "",
                 seq: int = 0) -> None:
        self._rows: list[dict[str, Any]] | None = None
        self._lines: bytes | None = None  # the rows as JSON lines, once encoded (id and local stage share it)
        self._table: pyarrow.Table | None = None
        #: whether the batch was given as a Table (the form its content id hashes)
        self.arrow = _is_table(data)
        if self.arrow:
            self._table = data if hasattr(data, "combine_chunks") else sys.modules["pyarrow"].Table.from_batches([data])
        elif isinstance(data, list) and all(isinstance(row, dict) for row in data):
            self._rows = data
        else:
            raise TypeError(f"a Batch holds a list of dict rows or a pyarrow Table, not {type(data).__name__}")
        self.id, self.consumer, self.seq = id, consumer, int(seq)

    @property
    def num_rows(self) -> int:
        """How many rows (without converting)."""
        return len(self._rows) if self._rows is not None else self._table.num_rows  # type: ignore[union-attr]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts (from a Table: ``to_pylist()``, once)."""
        if self._rows is None:
            self._rows = self._table.to_pylist()  # type: ignore[union-attr]
        return self._rows

    @property
    def table(self) -> pyarrow.Table:
        """The rows as a pyarrow Table (from rows: ``Table.from_pylist``, once; nested values stay nested).
        Its columns are every key of any row, in the order they first come (``from_pylist`` alone
        would take the first row's keys and drop the others); a row without a key has null there.

        Raises:
            pyarrow.ArrowInvalid, pyarrow.ArrowTypeError: the rows have no common Arrow type per column.

        >>> Batch([{"a": 1}, {"b": "x"}]).table.to_pylist()
        [{'a': 1, 'b': None}, {'a': None, 'b': 'x'}]
        """
        if self._table is None:
            import pyarrow as pa

            rows = self._rows or []
            first = rows[0].keys() if rows else None
            if all(row.keys() == first for row in rows):
                self._table = pa.Table.from_pylist(rows)
            else:
                keys = dict.fromkeys(key for row in rows for key in row)
                self._table = pa.Table.from_pydict({key: [row.get(key) for row in rows] for key in keys})
        return self._table

    def json_lines(self) -> bytes:
        """The rows as JSON lines (UTF-8, compact, keys in their order, :func:`json_default` for
        other values), encoded once: the content id and the local stage use the same bytes."""
        if self._lines is None:
            encode = json_encoder().encode
            text = "".join([encode(row) + "\n" for row in self.rows])
            self._lines = text.encode("utf-8", "surrogatepass")
        return self._lines

    def __repr__(self) -> str:
        return f"Batch(id={self.id!r}, consumer={self.consumer!r}, seq={self.seq}, rows={self.num_rows})"


def content_id(consumer: str, seq: int, batch: Batch) -> str:
    """The id of a batch: sha256 over the consumer, the sequence number and the content, as
    :data:`ID_LENGTH` hex digits.

    The content is hashed in the form the batch holds: a Table as the Arrow IPC stream of its
    rows alone, each column in one chunk (schema and metadata included), rows as their JSON lines
    (:meth:`Batch.json_lines`, keys in their order: a source read again gives them in the same
    order). So the same input read the same way gives the same id in every process and run; the
    same values as rows and as a Table give different ids. Values under null slots of a Table
    are assumed zeroed, as pyarrow's readers leave them.

    >>> a = content_id("c", 1, Batch([{"x": 1, "y": "s"}]))
    >>> a == content_id("c", 1, Batch([{"x": 1, "y": "s"}])), len(a)
    (True, 24)
    >>> a != content_id("c", 2, Batch([{"x": 1, "y": "s"}])) != content_id("c", 1, Batch([{"x": 2, "y": "s"}]))
    True
    """
    digest = hashlib.sha256(f"chronopipe-batch\0{consumer}\0{int(seq)}\0".encode())
    if batch.arrow:
        import pyarrow as pa

        # Each column copied into buffers of its own: a slice of a bigger table shares the
        # bigger table's buffers, which the IPC stream would carry beyond the slice's rows.
        table = batch.table
        table = pa.table([pa.concat_arrays(column.chunks) if column.num_chunks else column.combine_chunks()
                          for column in table.columns], schema=table.schema)
        out = pa.BufferOutputStream()
        with pa.ipc.new_stream(out, table.schema) as writer:
            writer.write_table(table)
        digest.update(b"arrow\0")
        digest.update(out.getvalue())
    else:
        digest.update(b"rows\0")
        digest.update(batch.json_lines())
    return digest.hexdigest()[:ID_LENGTH]


def check_name(what: str, name: str) -> str:
    """``name`` if it is fit for a file name (``[A-Za-z0-9_.-]+``).

    Raises:
        ValueError: it is not.

    >>> check_name("consumer", "websocket_1")
    'websocket_1'
    """
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"{what} name {name!r} is not usable in a file name (letters, digits, '_', '.', '-')")
    return name


def batch_file_name(consumer: str, seq: int, batch_id: str, suffix: str) -> str:
    """The file name of a batch in a stage or a file sink.

    >>> batch_file_name("ws_1", 7, "0a1b2c", ".jsonl")
    'ws_1-000000007-0a1b2c.jsonl'
    """
    return f"{consumer}-{int(seq):09d}-{batch_id}{suffix}"


def one_line(exc: BaseException) -> str:
    """The first line of an error's text (pyarrow's run over several)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_once(path: Path, write: Callable[[Path], None]) -> bool:
    """Create the file ``path`` whole, or not at all: ``write(tmp)`` writes it at a temporary
    name beside it (``.{name}.tmp-{pid}-{hex}``), which is fsynced and linked to ``path`` (never
    over an existing file), then the folder is fsynced. False, and nothing written, if ``path``
    exists already (also when another writer linked it meanwhile).

    Raises:
        OSError: the disk or the folder refused; whatever ``write`` raises. No temporary file is left.
    """
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")
    try:
        write(tmp)
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:  # a file system without hard links: check, then rename
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if path.exists():
                return False
            os.rename(tmp, path)
        _fsync(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def remove_dead_temps(folder: Path) -> int:
    """Remove the temporary files :func:`write_once` left in ``folder`` when its process died
    (a live process's are left alone); how many were removed.

    Raises:
        OSError: the folder cannot be listed.
    """
    removed = 0
    for entry in os.scandir(folder):
        match = _TEMP.match(entry.name)
        if match and not _alive(int(match.group(1))):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
