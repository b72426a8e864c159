"""Where dead letters go: a JSON-lines file (the default) or a callable.

Contract, for both kinds:

* ``write(letter)`` is called in the pipeline's own process, one call at a time, in the order the
  letters arrive: on the caller's thread in the ``sync`` mode, on the pipeline's ``dead-letters``
  thread in the ``threads`` and ``processes`` modes (node processes send their letters there
  through a channel, so a callable sink sees them all, and what it changes stays here).
* ``close()`` runs once the run has ended (finished or failed), on the caller's thread.
* If writing raises, the run fails: the caller gets a :class:`DeadLetterSinkError` (an
  ActorError of the ``dead-letters`` actor in every mode) naming the sink, the node and the
  original error. A letter that could not be written is not counted as written anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .letters import DeadLetter

__all__ = ["SINK_ACTOR", "TRACK_LAST", "CallableSink", "DeadLetterFile", "DeadLetterSinkError", "FailureLog", "Sink",
           "open_sink", "to_channel"]

#: The name under which a failing sink is reported (the actor that writes letters in actor modes).
SINK_ACTOR = "dead-letters"
#: Failures ``guarantee="track"`` keeps (the last ones).
TRACK_LAST = 100


class DeadLetterSinkError(RuntimeError):
    """The dead-letter sink raised: the run cannot keep its promise, so it stops.

    >>> str(DeadLetterSinkError("dl.jsonl", "parse", OSError(28, "No space left on device")))
    "dead-letter sink dl.jsonl failed on a dead letter of node 'parse': OSError: [Errno 28] No space left on device"
    """

    def __init__(self, sink: str, node: str, exc: BaseException) -> None:
        super().__init__(f"dead-letter sink {sink} failed on a dead letter of node {node!r}: "
                         f"{type(exc).__name__}: {exc}")
        self.sink, self.node = sink, node


class Sink:
    """A dead-letter sink: ``write(letter)`` each letter, ``close()`` at the end of the run."""

    #: How errors and summaries name the sink.
    name: str = "?"

    def write(self, letter: DeadLetter) -> None:
        """Keep one letter. Raises DeadLetterSinkError when it cannot (the run then fails)."""
        raise NotImplementedError

    def close(self) -> None:
        """The run is over: make what was written durable. Raises DeadLetterSinkError."""


class DeadLetterFile(Sink):
    """Appends each letter to ``path`` as one line of JSON (letters.py), in one ``write`` on a
    file opened with ``O_APPEND``, so each line lands whole even beside other writers; the file is
    created (mode 0o644, umask applied) with the first letter, so a run that dead-letters nothing
    leaves no file. ``close()`` fsyncs it. Lines already there are kept.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "dl.jsonl")
    >>> sink = DeadLetterFile(path)
    >>> os.path.exists(path)
    False
    >>> sink.write(DeadLetter.of("p", "parse", 1, ValueError("bad"), "1;2")); sink.close()
    >>> sink.written, open(path).read().count("\\n")
    (1, 1)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = os.fspath(path)
        self.written = 0
        self._fd: int | None = None

    def check_not_input(self, inputs: Iterable[str | os.PathLike[str]]) -> None:
        """Refuse to write dead letters onto one of ``inputs``.

        Raises:
            ValueError: the dead-letter file is one of ``inputs`` (same path, or the same file
                through a link).
        """
        for given in inputs:
            other = Path(given)
            same = other.resolve() == self.path.resolve()
            if not same and other.exists() and self.path.exists():
                same = os.path.samefile(other, self.path)
            if same:
                raise ValueError(f"dead_letter={self.name!r} is also an input of this run ({os.fspath(given)}): "
                                 "dead letters are never written onto an input; give another file")

    def write(self, letter: DeadLetter) -> None:
        data = (letter.to_line() + "\n").encode("utf-8")
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            done = os.write(self._fd, data)
            if done != len(data):  # a regular file writes all or fails, except on a full disk
                raise OSError(f"wrote {done} of {len(data)} bytes (disk full?)")
        except OSError as exc:
            raise DeadLetterSinkError(self.name, letter.node, exc) from exc
        self.written += 1

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            raise DeadLetterSinkError(self.name, "(closing)", exc) from exc
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"DeadLetterFile({self.name!r})"


class CallableSink(Sink):
    """Calls ``fn(letter)`` with each DeadLetter (see the module's contract for where and when).

    >>> got = []
    >>> sink = CallableSink(got.append)
    >>> sink.write(DeadLetter.of("p", "parse", 1, ValueError("bad"), 7)); [g.record for g in got]
    [7]
    """

    def __init__(self, fn: Callable[[DeadLetter], Any]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__qualname__", None) or repr(fn)
        self.written = 0

    def write(self, letter: DeadLetter) -> None:
        try:
            self.fn(letter)
        except Exception as exc:
            raise DeadLetterSinkError(self.name, letter.node, exc) from exc
        self.written += 1

    def __repr__(self) -> str:
        return f"CallableSink({self.name})"


def to_channel(channel: Any) -> Callable[[DeadLetter], None]:
    """How a node actor sends its dead letters to the sink's thread: put into ``channel``, and
    sent at once (a letter never waits in a partial batch, nor dies with it in a killed process);
    into a process channel, a record plain pickle cannot carry goes :meth:`DeadLetter.portable`.

    Raises (when called): ChannelBroken, the channel's errors (the run is being torn down).
    """

    crosses = getattr(channel, "mode", "thread") == "process"

    def send(letter: DeadLetter) -> None:
        channel.put(letter.portable() if crosses else letter)
        channel.flush()

    return send


def default_path(pipeline: str) -> str:
    """Where a pipeline's dead letters go when it names no ``dead_letter``: a file in the
    current folder named after the pipeline.

    >>> default_path("orders")
    'orders.dead-letters.jsonl'
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in pipeline) or "pipeline"
    return f"{safe}.dead-letters.jsonl"


class FailureLog(Sink):
    """Where the failures of ``"confirm"`` and ``"track"`` nodes go, in the pipeline's process:
    counted, and the last ``keep`` of them kept (``"track"``: TRACK_LAST; ``"confirm"``: none).

    >>> log = FailureLog(keep=1)
    >>> for record in (1, 2):
    ...     log.write(DeadLetter.of("p", "parse", 1, ValueError("bad"), record))
    >>> log.count, [letter.record for letter in log.last]
    (2, [2])
    """

    name = "(kept in memory)"

    def __init__(self, keep: int = TRACK_LAST) -> None:
        from collections import deque

        self.count = 0
        self.last: deque[DeadLetter] = deque(maxlen=keep)

    def write(self, letter: DeadLetter) -> None:
        self.count += 1
        if self.last.maxlen:
            self.last.append(letter)


def open_sink(dead_letter: Any, pipeline: str) -> Sink:
    """The sink for ``Pipeline(dead_letter=...)``: a path (str or PathLike; None is the
    pipeline's default file), a callable, or a Sink as it is.

    Raises:
        TypeError: anything else.
    """
    if dead_letter is None:
        return DeadLetterFile(default_path(pipeline))
    if isinstance(dead_letter, Sink):
        return dead_letter
    if isinstance(dead_letter, (str, os.PathLike)):
        return DeadLetterFile(dead_letter)
    if callable(dead_letter):
        return CallableSink(dead_letter)
    raise TypeError(f"dead_letter must be a file path or a callable taking a DeadLetter, not {dead_letter!r}")
