"""Stages: the folder where consumers leave batches for producers.

Layout of a stage folder (several consumers and producers may share one, in threads and in
processes, forked or not)::

    {consumer}-{seq:09d}-{id}.jsonl | .parquet   one file per batch, named by its content id
    manifest.jsonl       {"batch": id, "consumer": c, "seq": n, "rows": r, "file": name} per complete batch
    done-{producer}.jsonl  {"batch": id} per batch that producer's sink has committed
    .{name}.tmp-{pid}-{hex}  a batch file being written (never listed; a dead process's are removed)

The protocol. ``put`` writes the batch to a temporary name in the folder, fsyncs it, links it
to its name (never over an existing file: the name holds the content id, so an existing file is
the same batch), fsyncs the folder, and only then appends its manifest line. A producer
``load``\\ s the batches ``complete()`` lists, has its sink commit each, ``mark_done`` it, then
``release``\\ s it: the file is deleted once every producer that reads it has marked it done
(kept if ``keep``). A crash at any point leaves either no manifest line (the rerun re-creates
the same batch, same id, and ``put`` finds the file there) or a batch a producer sees again
(its sink's write is idempotent per batch id).

Appends to ``manifest.jsonl`` and the done files are one ``os.write`` of a whole line on a
descriptor opened with ``O_APPEND``, under an exclusive ``flock`` (so a duplicate check and its
append are one step across threads and processes), then ``fsync``. A line without its newline
(a crash mid-write) is ignored when read; the next writer starts its line on a new one. Other
unparsable lines are ignored too (counted in ``statistics()["ignored_lines"]``).

Thread and process use: a Stage keeps no open file between calls and re-makes its thread lock in
a forked child, so one object may be shared by threads and inherited by ``fork``. It can be
pickled (its caches are left behind). Its counters are those of the object in that process.

For implementors of a stage type (a subclass sets ``suffix`` and implements two methods):
``_write(batch, tmp)`` writes the whole batch to the path ``tmp`` (it runs in ``put``'s caller
thread, with no lock held); ``_read(file, ref)`` returns the batch in ``file`` (in ``load``'s
caller thread). An ``OSError``, ``ValueError``, ``TypeError`` or ``NotImplementedError`` either
raises (pyarrow's are among them) becomes a :class:`StageError` naming the file; a failed ``_write`` stages nothing.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .batch import Batch, batch_file_name, check_name, content_id, one_line, remove_dead_temps, write_once

__all__ = ["MANIFEST", "BatchRef", "LocalStage", "ParquetStage", "Stage", "StageError", "open_stage"]

#: The manifest of complete batches, in a stage folder.
MANIFEST = "manifest.jsonl"
_WRAPPED = (OSError, ValueError, TypeError, NotImplementedError)  # pyarrow's errors are among these


class StageError(Exception):
    """A stage cannot do what was asked: one line naming the file and the reason."""


@dataclass(frozen=True)
class BatchRef:
    """A complete batch as the manifest lists it: its id, consumer, sequence number, row count and file name."""

    id: str
    consumer: str
    seq: int
    rows: int
    file: str

    def record(self) -> dict[str, Any]:
        """The manifest line's fields."""
        return {"batch": self.id, "consumer": self.consumer, "seq": self.seq, "rows": self.rows, "file": self.file}


class _Journal:
    """An append-only JSON-lines file: records read incrementally, appends as described above."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.ignored = path, 0, 0

    def read_new(self) -> list[dict[str, Any]]:
        """The complete lines appended since the last call, parsed (unparsable ones counted and skipped)."""
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:
                    raise StageError(f"{self.path}: shrank since it was read (a stage file is only appended to)")
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a last line without its newline is being written, or torn
        records = []
        for line in filter(bytes.strip, data[:end].splitlines()):  # blank lines are no records
            try:
                records.append(json.loads(line))
            except ValueError:
                self.ignored += 1
        self.ignored += sum(not isinstance(record, dict) for record in records)
        records = [record for record in records if isinstance(record, dict)]
        self.offset += end
        return records

    def append(self, record: dict[str, Any], unless: Callable[[], bool]) -> bool:
        """Append ``record`` as one line unless ``unless()`` (asked under the lock) is true."""
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if unless():
                return False
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # end the torn line a crashed writer left
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, f"short write to {self.path}")
            os.fsync(fd)
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicitly: a child forked meanwhile shares the lock
            os.close(fd)


class Stage(ABC):
    """A stage folder (see the module text). ``path`` is created if missing; temporary files
    left by dead processes are removed. With ``keep``, released batches' files stay.

    Raises:
        StageError: the folder cannot be made or read.
    """

    #: The batch files' suffix.
    suffix: ClassVar[str]

    def __init__(self, path: Path | str, *, keep: bool = False) -> None:
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            removed = remove_dead_temps(path)
        except OSError as exc:
            raise StageError(f"{path}: cannot use it as a stage folder ({exc.strerror or exc})") from None
        self.__setstate__({"path": path, "keep": keep,
                           "_counts": {"put": 0, "skipped": 0, "loaded": 0, "released": 0, "temps_removed": removed}})

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "keep": self.keep, "_counts": dict(self._counts)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._manifest = _Journal(self.path / MANIFEST)
        self._refs: dict[str, BatchRef] = {}  # the manifest read so far: by id, and in order
        self._order: list[BatchRef] = []
        self._done: dict[str, tuple[_Journal, set[str]]] = {}  # producer -> its done file, the ids in it
        self._lock_pid, self._thread_lock = os.getpid(), threading.RLock()

    @property
    def _lock(self) -> threading.RLock:
        if self._lock_pid != os.getpid():  # forked: the parent's lock may have been held by a thread not copied
            self._lock_pid, self._thread_lock = os.getpid(), threading.RLock()
        return self._thread_lock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({os.fspath(self.path)!r}{', keep=True' if self.keep else ''})"

    def _refresh(self) -> dict[str, BatchRef]:
        with self._lock:
            for record in self._manifest.read_new():
                try:
                    ref = BatchRef(str(record["batch"]), str(record["consumer"]), int(record["seq"]),
                                   int(record["rows"]), str(record["file"]))
                except (KeyError, TypeError, ValueError):
                    self._manifest.ignored += 1
                    continue
                if ref.id not in self._refs:
                    self._refs[ref.id] = ref
                    self._order.append(ref)
            return self._refs

    def _done_set(self, producer: str) -> set[str]:
        with self._lock:
            if producer not in self._done:
                check_name("producer", producer)
                self._done[producer] = (_Journal(self.path / f"done-{producer}.jsonl"), set())
            journal, ids = self._done[producer]
            ids.update(str(record.get("batch")) for record in journal.read_new())
            return ids

    def put(self, batch: Batch) -> bool:
        """Stage a batch: write its file, then list it in the manifest. An empty ``batch.id`` is
        set to :func:`content_id`. Runs in the caller's thread.

        Returns False, writing nothing, if a batch with that id is listed already (a rerun).

        Raises:
            ValueError: the consumer name or id cannot be part of a file name.
            StageError: the batch cannot be written (the disk, or values the format cannot hold).
        """
        check_name("consumer", batch.consumer)
        if not batch.id:
            batch.id = content_id(batch.consumer, batch.seq, batch)
        check_name("batch id", batch.id)
        if batch.id in self._refresh():
            self._counts["skipped"] += 1
            return False
        name = batch_file_name(batch.consumer, batch.seq, batch.id, self.suffix)
        try:
            write_once(self.path / name, lambda tmp: self._write(batch, tmp))
            ref = BatchRef(batch.id, batch.consumer, batch.seq, batch.num_rows, name)
            listed = self._manifest.append(ref.record(), unless=lambda: batch.id in self._refresh())
        except _WRAPPED as exc:
            raise StageError(f"{self.path / name}: cannot stage the batch: {one_line(exc)}") from exc
        self._counts["put" if listed else "skipped"] += 1
        return listed

    def load(self, batch_id: str) -> Batch:
        """The batch the manifest lists under ``batch_id``, with its id, consumer and seq. Runs in the caller's thread.

        Raises:
            StageError: not listed, its file is missing (released already?) or damaged, or
                holds another number of rows than listed.
        """
        ref = self._refresh().get(batch_id)
        if ref is None:
            raise StageError(f"{self.path / MANIFEST}: no complete batch {batch_id!r} listed")
        file = self.path / ref.file
        if not file.name.endswith(self.suffix):
            raise StageError(f"{file}: not a {self.suffix} batch: the folder is shared with another stage type")
        try:
            batch = self._read(file, ref)
        except FileNotFoundError:
            raise StageError(f"{file}: missing (released already, or deleted)") from None
        except _WRAPPED as exc:
            raise StageError(f"{file}: damaged: {one_line(exc)}") from None
        if batch.num_rows != ref.rows:
            raise StageError(f"{file}: damaged: {batch.num_rows} rows where the manifest lists {ref.rows}")
        batch.id, batch.consumer, batch.seq = ref.id, ref.consumer, ref.seq
        self._counts["loaded"] += 1
        return batch

    def complete(self, consumers: Iterable[str]) -> list[BatchRef]:
        """The complete batches of these consumers, in manifest order."""
        wanted = {consumers} if isinstance(consumers, str) else set(consumers)
        with self._lock:
            self._refresh()
            return [ref for ref in self._order if ref.consumer in wanted]

    def done(self, producer: str) -> set[str]:
        """The ids of the batches ``producer`` marked done (a copy).

        Raises:
            ValueError: the producer name cannot be part of a file name.
        """
        with self._lock:
            return set(self._done_set(producer))

    def mark_done(self, producer: str, batch_id: str) -> None:
        """Record that ``producer``'s sink committed this batch (call it only then). Marking twice writes one line.

        Raises:
            ValueError: the producer name cannot be part of a file name.
            StageError: the done file cannot be written.
        """
        self._done_set(producer)
        journal = self._done[producer][0]
        try:
            journal.append({"batch": batch_id}, unless=lambda: batch_id in self._done_set(producer))
        except OSError as exc:
            raise StageError(f"{journal.path}: cannot mark {batch_id!r} done: {exc.strerror or exc}") from None

    def release(self, batch_id: str, producers: Iterable[str]) -> bool:
        """Delete the batch's file if every one of ``producers`` marked it done and the stage does not
        ``keep`` its batches. True if this call deleted it (a second release finds nothing to delete).

        Raises:
            ValueError: no producers given (nobody would have read the batch).
        """
        producers = [producers] if isinstance(producers, str) else list(producers)
        if not producers:
            raise ValueError(f"release({batch_id!r}) needs the producers that read the batch")
        ref = self._refresh().get(batch_id)
        if ref is None or self.keep or any(batch_id not in self._done_set(p) for p in producers):
            return False
        try:
            (self.path / ref.file).unlink()
        except FileNotFoundError:
            return False
        self._counts["released"] += 1
        return True

    def statistics(self) -> dict[str, int]:
        """Batches and rows listed; put, skipped, loaded and released by this object in this process;
        ignored manifest or done lines; temporary files of dead processes removed when opened."""
        with self._lock:
            refs = list(self._refresh().values())
            ignored = self._manifest.ignored + sum(journal.ignored for journal, _ in self._done.values())
        return {"batches": len(refs), "rows": sum(ref.rows for ref in refs), **self._counts, "ignored_lines": ignored}

    @abstractmethod
    def _write(self, batch: Batch, tmp: Path) -> None:
        """Write the whole batch to the file ``tmp``."""

    @abstractmethod
    def _read(self, file: Path, ref: BatchRef) -> Batch:
        """The batch stored in ``file``."""


class LocalStage(Stage):
    """Batches as JSON lines, one object per row (UTF-8, compact). Values JSON has no form for
    are written as :func:`chronopipe.runs.batch.json_default` says: datetimes as ISO 8601
    strings, bytes as base64 text, Decimals as strings; they load back as those strings. A Table
    is written through its rows. Works without pyarrow for rows.
    """

    suffix = ".jsonl"

    def _write(self, batch: Batch, tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(batch.json_lines())

    def _read(self, file: Path, ref: BatchRef) -> Batch:
        data = file.read_bytes()
        if data and not data.endswith(b"\n"):
            raise ValueError("truncated (the last line has no newline)")
        lines = data.splitlines()
        try:  # one parse of the lines as a JSON array is twice as fast as a parse per line
            rows = json.loads(b"[" + b",".join(lines) + b"]")
            if len(rows) == len(lines) and all(isinstance(row, dict) for row in rows):
                return Batch(rows)
        except ValueError:
            pass  # find the damaged line below
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"line {number} is not JSON ({one_line(exc)})") from None
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            rows.append(row)
        return Batch(rows)


class ParquetStage(Stage):
    """Batches as Parquet files (pyarrow, zstd): a Table is written and read as Arrow, never
    through Python rows, and comes back with its column types (timestamps in seconds too); rows
    are converted with ``Table.from_pylist``.
    """

    suffix = ".parquet"
    #: The Parquet compression codec.
    compression: ClassVar[str] = "zstd"

    def _write(self, batch: Batch, tmp: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(batch.table, tmp, compression=self.compression)

    def _read(self, file: Path, ref: BatchRef) -> Batch:
        import pyarrow.parquet as pq

        with pq.ParquetFile(file) as parquet:
            return Batch(_restore_seconds(parquet.read(), parquet.metadata.metadata or {}))


def _restore_seconds(table: Any, metadata: dict[bytes, bytes]) -> Any:
    """Parquet has no timestamp in seconds: pyarrow writes them as milliseconds and keeps the
    Arrow schema beside; cast such columns back, so a Table comes out as it went in."""
    import pyarrow as pa

    schema = metadata.get(b"ARROW:schema")
    stored = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(schema))) if schema else []
    for i, field in enumerate(stored):
        if (i < table.num_columns and table.field(i).name == field.name and pa.types.is_timestamp(field.type)
                and table.field(i).type != field.type):
            table = table.set_column(i, table.field(i).with_type(field.type), table.column(i).cast(field.type))
    return table


_STAGES: dict[str, type[Stage]] = {"local": LocalStage, "parquet": ParquetStage}


def open_stage(type: str, path: Path | str, *, keep: bool = False) -> Stage:
    """The stage of a consumer's ``stage: {type: ..., path: ...}``.

    Raises:
        ValueError: an unknown type.
        StageError: the folder cannot be made.

    >>> import tempfile
    >>> open_stage("local", tempfile.mkdtemp()).suffix
    '.jsonl'
    """
    if type not in _STAGES:
        raise ValueError(f"unknown stage type {type!r} (known: {', '.join(_STAGES)})")
    return _STAGES[type](path, keep=keep)
