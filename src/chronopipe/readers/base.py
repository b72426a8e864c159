"""FileReader: stream the lines of a file onto a channel or a queue, as an actor or in a loop.

A reader is an Actor (named, with ``statistics()``, ``stop()``, ``join()``), hosted by the
Runtime in its own process (``mode="process"``, the default) or on a thread; or it is simply
iterated (``for line in FileReader(path)``) in the calling process, with no actor at all.

Bad rows are never dropped silently. With ``on_error="collect"`` (the default) each one becomes
a :class:`Reject` (file, physical line number, raw text, reason) in ``reader.rejects`` and is
counted in ``reader.rejected`` and ``statistics().rejected``; ``on_error="raise"`` makes the
first one fatal with a :class:`ReaderError` whose message starts with ``file:line:``.

Where the rejects end up: a reader in a process collects them in its child; when the child
finishes, ``on_stop()`` returns a :class:`ReaderSummary` (counts and rejects), which travels
back to the parent. There the reader object adopts it as soon as the actor ends, so after
``join()`` (which returns that summary) ``reader.rejects``, ``reader.rejected`` and
``reader.statistics()`` hold the child's figures. Until then they stay empty in the parent.
If the child fails, the error (with file:line for a bad row) is what comes back.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import IO, TYPE_CHECKING, Any, Literal, Self

from ..actors.actor import Actor, ActorStatistics, Mode
from .hosting import ReaderHosting
from .output import mode_of

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["FileReader", "OnError", "ReaderError", "ReaderStatistics", "ReaderSummary", "Reject"]

log = logging.getLogger("chronopipe.readers")

OnError = Literal["collect", "raise"]
#: Rejects kept in ``reader.rejects`` by default; later ones are only counted (and logged once).
MAX_REJECTS = 10_000


@dataclass(frozen=True)
class Reject:
    """A bad row: where it is (1-based physical lines, header = line 1), its raw text, why.

    >>> str(Reject("data.csv", 7, "1,2,3", "expected 2 fields, got 3"))
    'data.csv:7: expected 2 fields, got 3'
    """

    file: str
    line: int
    text: str
    reason: str
    end_line: int | None = None  #: last physical line of a row spanning several (quoted newlines)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


class ReaderError(ValueError):
    """A bad row met with ``on_error="raise"``; ``str()`` starts with ``file:line:``."""

    def __init__(self, reject: Reject) -> None:
        super().__init__(str(reject))
        self.reject = reject

    def __reduce__(self) -> Any:
        return (type(self), (self.reject,))


@dataclass
class ReaderSummary:
    """What a reader did: its result (``join()``'s value, ``on_stop()``'s return value)."""

    name: str
    file: str
    lines: int  #: physical lines read, header included
    records: int  #: records produced
    rejected: int  #: bad rows (all counted, even beyond ``max_rejects``)
    blank: int  #: blank rows skipped (CSV only)
    complete: bool  #: the whole file was read (False after stop())
    seconds: float
    rejects: list[Reject] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.name}: {self.records} records from {self.lines} lines of {self.file}, {self.rejected} rejected,"
                f" {self.blank} blank, in {self.seconds:.3f} s{'' if self.complete else ' (stopped early)'}")


@dataclass(frozen=True)
class ReaderStatistics(ActorStatistics):
    """Actor statistics plus the reader's counts (a process reader's are final once it ended)."""

    file: str = ""
    lines: int = 0
    records: int = 0
    rejected: int = 0
    blank: int = 0


def _checked_encoding(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    if name.startswith(("utf-16", "utf-32")):
        raise ValueError(f"encoding {encoding!r} is not supported: readers split lines at b'\\n' (use utf-8)")
    return name


class FileReader(ReaderHosting, Actor):
    """Streams the lines of a text file (without their line endings), then END.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.txt")
    >>> _ = open(path, "w").write("first\\nsecond\\n")
    >>> list(FileReader(path))                                  # synchronous: no actor
    ['first', 'second']
    >>> reader = FileReader(path, wrapper=str.upper, start=True, mode="thread")
    >>> list(reader.queue), reader.join().records               # hosted: records arrive on .queue
    (['FIRST', 'SECOND'], 2)

    ``queue``: where records go: any object with ``put()`` (a Channel, a ``queue.Queue``, a
    multiprocess(ing) Queue, a ``Manager().Queue()``). When None the reader makes a Channel of
    of its mode (``maxsize`` records), available as ``.queue`` / ``.channel``.
    ``wrapper``: applied to each record before it is sent (an exception in it is fatal: it is
    your code, not the data); ``mode``: ``"process"`` (default) or ``"thread"`` (default for a
    thread-only queue); ``name``: defaults to the file's base name; ``encoding``: any
    ASCII-compatible codec (a UTF-8 BOM is skipped); a line that does not decode is rejected.
    Lines are counted at each ``\\n``.

    Bad rows go to ``rejects`` (see the module docstring); for a reader hosted in a process they
    arrive in this object when the actor ends: ``join()`` returns the :class:`ReaderSummary`
    and ``reader.rejects`` / ``reader.statistics()`` then hold the child's figures.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        queue: Any = None,
        wrapper: Callable[[Any], Any] | None = None,
        start: bool = False,
        *,
        name: str | None = None,
        mode: Mode | None = None,
        encoding: str = "utf-8",
        on_error: OnError = "collect",
        max_rejects: int | None = MAX_REJECTS,
        maxsize: int = 10_000,
    ) -> None:
        self.filename = os.fspath(filename)
        if on_error not in ("collect", "raise"):
            raise ValueError(f"on_error must be 'collect' or 'raise', not {on_error!r}")
        if mode is None:
            mode = "thread" if queue is not None and mode_of(queue) == "thread" else "process"
        super().__init__(name or os.path.basename(self.filename), mode=mode)
        self.encoding = _checked_encoding(encoding)
        self.wrapper = wrapper
        self.on_error: OnError = on_error
        self.max_rejects = max_rejects
        self.maxsize = maxsize
        self._queue = queue
        self._reset()
        if start:
            self.start()

    # -- counters --------------------------------------------------------------------------
    def _reset(self) -> None:
        self.lines = 0
        self.records = 0
        self.rejected = 0
        self.blank = 0
        self.complete = False
        self.rejects: list[Reject] = []
        self._began = time.monotonic()
        self._seconds = 0.0

    @property
    def summary(self) -> ReaderSummary:
        """The counts so far, with the rejects kept (in this process): an attribute, as
        ``CaptureReader.summary`` is."""
        seconds = self._seconds or time.monotonic() - self._began
        return ReaderSummary(self.name, self.filename, self.lines, self.records, self.rejected, self.blank,
                             self.complete, seconds, self.rejects)

    def _adopt(self, summary: ReaderSummary) -> None:
        self.lines, self.records, self.rejected, self.blank = (summary.lines, summary.records, summary.rejected,
                                                               summary.blank)
        self.complete, self._seconds, self.rejects = summary.complete, summary.seconds, summary.rejects

    def statistics(self) -> ReaderStatistics:
        base = super().statistics()
        return ReaderStatistics(**{f.name: getattr(base, f.name) for f in fields(base)}, file=self.filename,
                                lines=self.lines, records=self.records, rejected=self.rejected, blank=self.blank)

    def _reject(self, line: int, text: str, reason: str, end_line: int | None = None) -> None:
        rej = Reject(self.filename, line, text.rstrip("\r\n"), reason, end_line if end_line != line else None)
        if self.on_error == "raise":
            raise ReaderError(rej)
        self.rejected += 1
        if self.max_rejects is None or len(self.rejects) < self.max_rejects:
            self.rejects.append(rej)
        elif self.rejected == self.max_rejects + 1:
            log.warning("reader %r: more than %d bad rows; the rest are only counted", self.name, self.max_rejects)

    def _wrap_failed(self, line: int, text: str, exc: Exception) -> ReaderError:
        wrapper = getattr(self.wrapper, "__name__", repr(self.wrapper))
        return ReaderError(Reject(self.filename, line, text.rstrip("\r\n"),
                                  f"wrapper {wrapper} raised {type(exc).__name__}: {exc}"))

    # -- reading -----------------------------------------------------------------------------
    def _open(self) -> IO[bytes]:
        """The file, opened for reading bytes.

        Raises:
            IsADirectoryError: the path is a directory (the message says so, with the reader's name).
            OSError: as ``open()`` (FileNotFoundError, PermissionError, ...).
        """
        if os.path.isdir(self.filename):
            raise self._is_a_directory()
        return open(self.filename, "rb")

    def _is_a_directory(self) -> IsADirectoryError:
        return IsADirectoryError(f"reader {self.name!r}: {self.filename} is a directory, not a file")

    def _decoded_lines(self, f: IO[bytes], keep: list[str] | None, bad: list[tuple[int, str]]) -> Iterator[str]:
        """Each physical line decoded (line endings kept); undecodable ones are noted in ``bad``
        as (line number, reason) and yielded with the bad bytes as backslash escapes.
        ``keep`` receives every line yielded (the caller clears it)."""
        enc = self.encoding
        first = f.readline()
        if first.startswith(codecs.BOM_UTF8) and enc in ("utf-8", "utf-8-sig"):
            first = first[len(codecs.BOM_UTF8):]
        for n, raw in enumerate(itertools.chain((first,), f) if first else (), 1):
            self.lines = n
            try:
                text = raw.decode(enc)
            except UnicodeDecodeError as exc:
                text = raw.decode(enc, "backslashreplace")
                bad.append((n, f"undecodable bytes ({enc}: {exc.reason}) at byte {exc.start} of line {n}"))
            if keep is not None:
                keep.append(text)
            yield text

    def _records(self) -> Iterator[Any]:
        """The records of the file, counting and rejecting as it goes. Subclasses override."""
        wrap = self.wrapper
        bad: list[tuple[int, str]] = []
        with self._open() as f:
            for text in self._decoded_lines(f, None, bad):
                if bad:
                    line, reason = bad.pop()
                    self._reject(line, text, reason)
                    continue
                record = text.rstrip("\r\n")
                if wrap is not None:
                    try:
                        record = wrap(record)
                    except Exception as exc:
                        raise self._wrap_failed(self.lines, text, exc) from exc
                self.records += 1
                yield record

    def _read(self) -> Iterator[Any]:
        self._reset()
        yield from self._records()
        self.complete = True
        self._seconds = time.monotonic() - self._began

    def _stream(self) -> Iterator[Any]:
        return self._read()

    # -- as an actor -------------------------------------------------------------------------
    def start(self, runtime: Runtime | None = None) -> Self:
        """Host the reader (one actor per file, in its mode) and return at once; returns self.

        Raises:
            IsADirectoryError: the path is a directory ("... is a directory, not a file").
            FileNotFoundError: there is no such file.
        """
        if os.path.isdir(self.filename):
            raise self._is_a_directory()
        return super().start(runtime)

    def run(self) -> None:
        super().run()
        self._seconds = time.monotonic() - self._began

    def on_stop(self) -> ReaderSummary:
        summary = self.summary
        if summary.rejected:
            first = summary.rejects[0] if summary.rejects else "?"
            log.warning("reader %r: %d bad row(s) rejected, first: %s", self.name, summary.rejected, first)
        return summary

    def join(self, timeout: float | None = None) -> ReaderSummary:
        """Wait for the reader to end; returns its :class:`ReaderSummary` (rejects included).

        Raises its ActorError (e.g. a ReaderError with file:line) or TimeoutError."""
        return super().join(timeout)  # type: ignore[no-any-return]

    def on_result(self, result: Any) -> None:
        """In the parent, once the reader ended: take over the child's counts and rejects."""
        if isinstance(result, ReaderSummary):  # from a child process: make the parent's view whole
            self._adopt(result)
