"""StdinSource: the lines of standard input (or of any readable pipe or file descriptor).

>>> import io, os
>>> r, w = os.pipe()
>>> _ = os.write(w, b"one\\ntwo\\nthree"); os.close(w)
>>> list(StdinSource(os.fdopen(r, "rb")))
['one', 'two', 'three']
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Iterator
from typing import IO, Any, Self, Unpack

from .base import POLL, Source, SourceError, SourceOptions
from .framing import MAX_RECORD, Framing, FramingError, framer

__all__ = ["StdinSource"]

CHUNK = 256 * 1024


class StdinSource(Source):
    """The records of ``stream`` (default: ``sys.stdin``), framed as ``"lines"`` (decoded with
    ``encoding``; ``None`` gives bytes) or ``"length"``, until end of file. A last line without
    ``\\n`` is a record. The stream is read through its file descriptor, in large pieces, and
    waited on with ``select`` so that ``stop()`` is noticed; it is not closed at the end (it
    is not the source's). Hosted in a process, the source reads a duplicate of the descriptor
    (a child process's own standard input is /dev/null).

    Raises (from the run):
        SourceError: the stream breaks its framing (a line longer than ``max_record`` bytes)."""

    def __init__(self, stream: IO[Any] | None = None, *, name: str = "stdin", framing: Framing = "lines",
                 encoding: str | None = "utf-8", max_record: int = MAX_RECORD,
                 **options: Unpack[SourceOptions]) -> None:
        framer(framing, encoding, max_record)  # a bad framing, encoding or bound fails here
        super().__init__(name, **options)
        self.stream = sys.stdin if stream is None else stream
        self.framing, self.encoding, self.max_record = framing, encoding, max_record
        self._fd: int | None = None  # a duplicate, for a process

    def start(self, runtime: Any = None) -> Self:
        if self.mode == "process":
            self._fd = os.dup(self.stream.fileno())
        try:
            super().start(runtime)
        finally:
            if self._fd is not None:  # the child has its copy now
                os.close(self._fd)
        return self

    def _batches(self) -> Iterator[list[Any]]:
        fd = self.stream.fileno() if self._fd is None else self._fd
        framing = framer(self.framing, self.encoding, self.max_record)
        try:
            while not self.stopping:
                ready, _, _ = select.select([fd], [], [], POLL)
                if not ready:
                    yield []
                    continue
                data = os.read(fd, CHUNK)
                self.bytes += len(data)
                try:
                    records = self._framed(framing, data)
                except FramingError as exc:
                    yield exc.records
                    raise SourceError(self.name, str(exc)) from None
                yield records
                if not data:
                    return
        finally:
            if self._fd is not None:
                os.close(self._fd)
