"""Sinks: where a producer loads the batches of its stages.

The contract, for implementors (``PostgresSink`` in runs/postgres.py and classes of yours):

* ``open()`` runs once, in the producer's own thread or process, before the first batch. If it
  raises, the producer fails: no ``write`` follows, ``close()`` still does.
* ``write(batch)`` runs in that same thread, one batch at a time. It must commit the batch
  durably before it returns: the producer marks the batch done in the stage only then, and the
  stage may then delete it. It must be idempotent per ``batch.id``: a rerun after a crash hands
  the same batch (same id) again, and the sink then writes nothing and returns 0. It returns
  the rows written. If it raises, the batch is not marked done and the producer fails (a
  rerun hands that batch again); what it wrote must then not count as committed.
* ``close()`` runs once at the end, in that thread, also after a failure (even one of
  ``open()``). Nothing is called after ``close()``.
* ``statistics()`` may run at any time after ``close()`` too: a dict with at least
  ``batches`` (written), ``rows`` (written) and ``skipped`` (batches already there). The base
  class keeps these when a subclass reports each write through ``_count``.

A sink's constructor takes only what a YAML runner can give (its keyword parameters are the
producer variety's accepted options); it runs in the process that builds the run.

The built-in sinks:

* :class:`CSVSink` and :class:`ParquetSink` write one file per batch into a folder, named
  ``{consumer}-{seq:09d}-{id}.csv`` / ``.parquet`` and written whole or not at all
  (:func:`~chronopipe.runs.batch.write_once`): a file of that name already there means the batch
  was written, so ``write`` returns 0. They only ever create new files, never open an existing
  one for writing, so no input file can be overwritten; the ``path`` must be a folder (or not
  exist yet). Several producers may share a folder (their batches have distinct names).
* :class:`CallableSink` calls a function of yours per batch; idempotence is then yours.
"""

from __future__ import annotations

import base64
import csv
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

from .batch import Batch, batch_file_name, check_name, content_id, json_default, one_line, remove_dead_temps, write_once

__all__ = ["SINKS", "CSVSink", "CallableSink", "ParquetSink", "Sink", "SinkError", "open_sink", "resolve_target"]


class SinkError(Exception):
    """A sink cannot write a batch: one line naming the file (or target) and the reason."""


class Sink(ABC):
    """A producer's target (see the module text for the contract). Subclasses implement
    ``write``; ``open`` and ``close`` do nothing unless overridden. Usable as a context manager
    (``open()`` on entry, ``close()`` on exit)."""

    #: written batches, written rows, batches that were there already (see ``_count``)
    batches: int = 0
    rows: int = 0
    skipped: int = 0

    def open(self) -> None:  # noqa: B027 -- an optional hook, as close()
        """Prepare to write (connect, make a folder): once, before the first ``write``."""

    @abstractmethod
    def write(self, batch: Batch) -> int:
        """Commit ``batch`` durably; the rows written, 0 if this ``batch.id`` was written already."""

    def close(self) -> None:  # noqa: B027 -- an optional hook
        """Let resources go: once, at the end, also after a failure."""

    def statistics(self) -> dict[str, Any]:
        """``batches``, ``rows`` and ``skipped`` so far (see ``_count``)."""
        return {"batches": self.batches, "rows": self.rows, "skipped": self.skipped}

    def _count(self, written: int | None) -> int:
        """Record one ``write``: the rows written, or None for a batch that was there already.
        Returns what ``write`` should return."""
        if written is None:
            self.skipped += 1
            return 0
        self.batches += 1
        self.rows += written
        return written

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _FolderSink(Sink):
    """One file per batch in the folder ``path`` (made by ``open()``)."""

    suffix: ClassVar[str]

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{type(self).__name__.lower()[:-4]} sink path {os.fspath(path)!r} is a file: "
                             "give a folder (one file is written per batch)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({os.fspath(self.path)!r})"

    def open(self) -> None:
        """Make the folder; remove the temporary files a dead writer left in it.

        Raises:
            SinkError: it cannot be made or listed.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            remove_dead_temps(self.path)
        except OSError as exc:
            raise SinkError(f"{self.path}: cannot make the output folder ({exc.strerror or exc})") from None

    def write(self, batch: Batch) -> int:
        """Write the batch's file unless it is there; the rows written (0 if it was there).

        Raises:
            ValueError: the batch's consumer name cannot be part of a file name.
            SinkError: the file cannot be written (the disk, or values the format cannot hold);
                nothing is left at its name.
        """
        check_name("consumer", batch.consumer)
        batch_id = batch.id or content_id(batch.consumer, batch.seq, batch)
        file = self.path / batch_file_name(batch.consumer, batch.seq, batch_id, self.suffix)
        try:
            new = write_once(file, lambda tmp: self._write(batch, tmp))
        except (OSError, ValueError, TypeError, NotImplementedError) as exc:
            raise SinkError(f"{file}: cannot write the batch: {one_line(exc)}") from exc
        return self._count(batch.num_rows if new else None)

    @abstractmethod
    def _write(self, batch: Batch, tmp: Path) -> None:
        """Write the whole batch to the file ``tmp``."""


class CSVSink(_FolderSink):
    """Each batch as a CSV file with a header row (UTF-8, ``\\n`` line ends).

    A batch held as a Table is written by ``pyarrow.csv.write_csv`` (strings quoted, null an
    empty field, timestamps as ``2015-02-04 17:51:00`` with their unit's fraction); nested columns
    (which it cannot write) make the Table go as rows. Rows are written with :mod:`csv`: columns in the
    order keys first appear, a key a row lacks and None are empty fields, bools ``true`` /
    ``false`` (as pyarrow writes them), bytes base64 text, lists and dicts JSON, anything else
    ``str(value)``.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with CSVSink(path=folder) as sink:
    ...     sink.write(Batch([{"a": 1, "b": None}, {"a": 2, "c": True}], id="x", consumer="c", seq=1))
    ...     sink.write(Batch([{"a": 1}], id="x", consumer="c", seq=1))  # written already
    2
    0
    >>> print(open(f"{folder}/c-000000001-x.csv").read(), end="")
    a,b,c
    1,,
    2,,true
    """

    suffix = ".csv"

    def _write(self, batch: Batch, tmp: Path) -> None:
        if batch.arrow:
            import pyarrow.csv as pacsv
            import pyarrow.types as patypes

            if not any(patypes.is_nested(field.type) for field in batch.table.schema):  # those go as rows
                pacsv.write_csv(batch.table, tmp)
                return
        rows = batch.rows
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            if columns:
                writer.writerow(columns)
            writer.writerows([_csv_value(row.get(key)) for key in columns] for row in rows)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=json_default, ensure_ascii=False, separators=(",", ":"))
    return value


class ParquetSink(_FolderSink):
    """Each batch as a Parquet file (pyarrow; ``compression``: zstd, snappy, gzip, brotli, lz4 or none).

    Raises:
        ValueError: the path is a file, or an unknown compression.
    """

    suffix = ".parquet"
    _CODECS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")

    def __init__(self, path: str | os.PathLike[str], compression: str = "zstd") -> None:
        super().__init__(path)
        if compression not in self._CODECS:
            raise ValueError(f"parquet sink compression {compression!r}: one of {', '.join(self._CODECS)}")
        self.compression = compression

    def _write(self, batch: Batch, tmp: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(batch.table, tmp, compression=self.compression)


def resolve_target(spec: str) -> Callable[..., Any]:
    """The callable ``package.module:function`` names (``module:Class.method`` too), found by
    :func:`chronopipe.runs.varieties.resolve_import`.

    Raises:
        ValueError: not of that form, the module cannot be imported, no such attribute, or not
            callable (one line naming the target).

    >>> resolve_target("os.path:basename")("a/b")
    'b'
    """
    from .varieties import resolve_import

    if not all(spec.partition(":")[::2]):  # a module and a name
        raise ValueError(f"callable sink target {spec!r}: expected 'package.module:function'")
    obj = resolve_import(spec, "callable sink target")
    if not callable(obj):
        raise ValueError(f"callable sink target {spec!r} is a {type(obj).__name__}, not callable")
    return obj


class CallableSink(Sink):
    """``target(batch)`` for each batch: a callable, or its import path ``package.module:function``
    (imported here, so a bad one fails when the run is built). ``write`` returns ``batch.num_rows``.

    The target runs in the producer's thread or process. It must commit what it does before it
    returns and do nothing for a ``batch.id`` it saw before (a rerun repeats the batches the
    producer had not marked done). What it raises propagates unchanged and fails the producer.

    Raises:
        ValueError: the target cannot be imported or is not callable.

    >>> seen = []
    >>> CallableSink(seen.append).write(Batch([{"a": 1}])), len(seen)
    (1, 1)
    """

    def __init__(self, target: Callable[[Batch], Any] | str) -> None:
        self.target = resolve_target(target) if isinstance(target, str) else target
        if not callable(self.target):
            raise ValueError(f"callable sink target {target!r} is not callable")

    def __repr__(self) -> str:
        name = getattr(self.target, "__qualname__", None) or repr(self.target)
        return f"CallableSink({getattr(self.target, '__module__', '?')}:{name})"

    def write(self, batch: Batch) -> int:
        self.target(batch)
        return self._count(batch.num_rows)


#: The built-in sinks by producer variety (``postgres`` is runs/postgres.py's PostgresSink).
SINKS: dict[str, type[Sink]] = {"csv": CSVSink, "parquet": ParquetSink, "callable": CallableSink}


def open_sink(variety: str, **options: Any) -> Sink:
    """The built-in sink ``variety`` with ``options`` (its constructor's keywords).

    Raises:
        ValueError: an unknown variety, an option it does not take, or a bad option value.

    >>> open_sink("parquet", path="out", compression="gzip")
    ParquetSink('out')
    """
    if variety not in SINKS:
        raise ValueError(f"unknown sink {variety!r} (built in: {', '.join(SINKS)})")
    cls = SINKS[variety]
    import inspect

    accepted = set(inspect.signature(cls).parameters)
    if unknown := sorted(set(options) - accepted):
        raise ValueError(f"{variety} sink: unknown option {unknown[0]!r} (accepted: {', '.join(sorted(accepted))})")
    return cls(**options)
