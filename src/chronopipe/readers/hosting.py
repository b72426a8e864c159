"""ReaderHosting: what every file reader does the same way, iterated here or hosted as an actor.

A reader class mixes this in before Actor and defines ``_stream()``, the generator of its
records. Then ``for record in reader`` reads the file in the calling thread, and ``start()``
hosts it (one actor per file) writing to ``queue``: the queue it was given, or a Channel of its
mode made on first use (``maxsize`` records). A reader that makes its records a list at
a time overrides ``run()`` to hand those lists to ``_run_batches()``: hosted, it then runs no
Python code per record.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self

from ..actors.hosting import Counts
from ..channels import Channel
from .output import QueueOutput

if TYPE_CHECKING:
    from ..channels.outbox import Outbox
    from ..runtime import Runtime

__all__ = ["ReaderHosting"]


class ReaderHosting:
    name: str
    mode: str
    state: str
    filename: str
    maxsize: int
    outputs: list[Channel]
    _queue: Any
    _outbox: Outbox
    counts: Counts
    _output: Channel | None = None

    def _stream(self) -> Iterator[Any]:
        raise NotImplementedError

    # -- where records go ----------------------------------------------------------------
    @property
    def queue(self) -> Any:
        """The queue given, or the Channel this reader made (created on first use)."""
        if self._queue is None:
            self._queue = Channel(self.maxsize, mode=self.mode, name=self.name)  # type: ignore[arg-type]
        return self._queue

    channel = queue

    def _output_channel(self) -> Channel:
        if self._output is None:
            target = self.queue
            self._output = target if isinstance(target, Channel) else QueueOutput(target, name=self.name)
        return self._output

    # -- read here, or host ----------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        """Read the whole file here, synchronously, yielding records (no actor, no queue)."""
        if self.state != "new":
            raise RuntimeError(f"reader {self.name!r} was started as an actor: iterate its .queue instead")
        return self._stream()

    def start(self, runtime: Runtime | None = None) -> Self:
        """Host the reader (one actor per file) and return at once; returns self."""
        if not os.path.isfile(self.filename):
            if os.path.exists(self.filename):  # a directory, a FIFO, a device: not a file to read to its end
                raise FileNotFoundError(f"reader {self.name!r}: not a regular file: {self.filename}")
            raise FileNotFoundError(f"reader {self.name!r}: no such file: {self.filename}")
        self.outputs = [self._output_channel()]
        super().start(runtime)  # type: ignore[misc]
        return self

    def run(self) -> None:
        records = self._stream()
        try:
            for record in records:
                self.emit(record)  # type: ignore[attr-defined]
                if self.stopping:  # type: ignore[attr-defined]
                    break
        finally:
            records.close()  # type: ignore[attr-defined]

    def _run_batches(self, batches: Iterator[list[Any]]) -> None:
        """``run()`` for records made a list at a time: stop() is noticed between lists, and
        each list goes to the actor's outbox whole, whose whole batches (the output's
        batch_size: what a process channel sends as it is) leave at once; the rest waits there
        for the next list or the end, as emit()'s would."""
        put_many = self._outbox.put_many
        try:
            for batch in batches:
                put_many(batch)
                if self.stopping:  # type: ignore[attr-defined]
                    break
        finally:
            batches.close()  # type: ignore[attr-defined]
