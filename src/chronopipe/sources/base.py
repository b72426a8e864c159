"""Source: records from outside the process, iterated here or hosted as an actor into a channel.

A source is an Actor (named, with ``statistics()``, ``stop()``, ``join()``), hosted by the
Runtime on a thread (the default) or in its own process, writing to ``queue``: the queue it was
given, or a Channel of its mode made on first use (``maxsize`` records). Or it is simply iterated
(``for record in source``) in the calling thread, as ``Pipeline.consume(source)`` does.

**For implementors of new source kinds**: subclass :class:`Source` and define ``_batches()``, a
generator of lists of records. Its contract:

- It runs in the actor's thread or process, or in the thread iterating the source.
- It must never block longer than :data:`POLL` seconds without looking at ``self.stopping``,
  and it returns soon after that is true: a socket waits with a timeout, a pause is
  ``self._pause(seconds)``.
- It yields one list per read (a socket's ``recv``, a poll's response). The list is handed
  to the channel before the next read, and the channel blocks while it is full. The source
  reads nothing meanwhile, so a socket's receive buffer fills up and the sender's TCP window
  closes: that is the backpressure. Memory stays bounded by the channel's size.
- Its ``finally`` closes what it opened (sockets, files). It runs when the source ends, when
  it is stopped, when iteration stops early (the generator is closed) and when it fails.
- An error it recovers from (a dropped connection, an HTTP 503) is counted with ``_failed()``
  and retried. An error it cannot recover from (a port in use, a bad address) is raised as a
  :class:`SourceError`, whose message starts with the source's name.
- A gap in the data (a reconnect, a missed timer tick) is never silent. It becomes a
  :class:`Marker` record in the stream, made with ``_marker()`` and yielded in a list of
  markers only.
- When nothing came for a while it may yield an empty list (a socket's wait timed out): that
  is how a source ordering by event time learns it has gone quiet.

With ``event_time`` (a key, spelt as for ``merge_sorted``) the source puts its records in
event-time order before they leave (``order.Reorder``): each is held until the stream has gone
``lateness`` past it, or until the source has been quiet for ``lateness`` seconds. A record later
than that is set aside (counted in ``late``, kept in ``late_records``), never sent out of order.
Each source's output is then sorted, so ``merge_sorted`` or the SortedQueueMultiplexer merge
several sources by event time. Markers pass at once, after what was held.

The source counts records (markers included) and the bytes it read. With ``stamp=True``
every record is wrapped in an :class:`Arrival`: its arrival time and sequence number, so that
records of mixed sources can be merged by either.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypedDict

from ..actors.actor import Actor, ActorStatistics, Mode
from ..channels.thread import ThreadChannel
from ..order import Reorder, SortKey, key_function
from ..readers.base import Reject
from ..readers.hosting import ReaderHosting
from .framing import LengthFramer, LineFramer

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = [
    "POLL",
    "Arrival",
    "Marker",
    "MarkerKind",
    "Source",
    "SourceError",
    "SourceOptions",
    "SourceStatistics",
]

#: Seconds a source may block before it looks at ``stopping`` again.
POLL = 0.1
#: Late records and rejects a source keeps in ``late_records`` and ``rejects``; more are only counted.
MAX_KEPT = 10_000

MarkerKind = Literal["gap_start", "gap_end", "missed"]


class SourceError(Exception):
    """A source cannot go on: a port in use, a bad address, an unreadable file. The message
    starts with ``source 'name':``; ``.source`` holds the name."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"source {source!r}: {message}")
        self.source = source

    def __reduce__(self) -> Any:
        return _rebuilt_error, (self.source, str(self))


def _rebuilt_error(source: str, text: str) -> SourceError:
    error = SourceError.__new__(SourceError)
    Exception.__init__(error, text)
    error.source = source
    return error


@dataclass(frozen=True)
class Marker:
    """A record that says something about the stream itself, never about the data.

    ``kind`` is one of these:

    - ``"gap_start"``: the connection was lost at ``at``.
    - ``"gap_end"``: it is back at ``at``; ``detail["gap"]`` gives the seconds without data,
      ``detail["attempts"]`` the connection attempts.
    - ``"missed"``: timer ticks were skipped; ``detail["ticks"]`` lists their scheduled times.

    ``source`` is the name of the source that made the marker.

    >>> Marker("gap_start", "feed", 1700000000.0, {"reason": "connection closed"}).kind
    'gap_start'
    """

    kind: MarkerKind
    source: str
    at: float  # time.time() when the source noticed
    detail: dict[str, Any] = field(default_factory=dict)


class Arrival(NamedTuple):
    """A record as it arrived: ``stamp=True`` makes a source emit these.

    ``at`` is ``time.time()`` when the source read it. Records read together share it. ``seq``
    counts the source's records from 0. A merge orders by arrival with the key ``"at"`` (or
    ``("at", "seq")``), and by event time with a path into the record (``"record.ts"``).

    >>> a = Arrival({"ts": 5}, 1700000000.25, 0, "tap")
    >>> a.record["ts"], a.seq, a.source
    (5, 0, 'tap')
    """

    record: Any
    at: float
    seq: int
    source: str


@dataclass(frozen=True)
class SourceStatistics(ActorStatistics):
    """An actor's figures, and the source's own:

    - ``records``: the records it made, markers included.
    - ``bytes``: the bytes it read.
    - ``markers``: how many of the records were markers.
    - ``errors``: the errors it recovered from.
    - ``late``: records set aside because they came later than ``lateness`` allows.
    - ``rejected``: records set aside because their event time could not be read.
    - ``last_error``: the latest of those errors, as text.
    - ``detail``: figures of the source's own kind (connections, polls, ticks, rotations).

    A source hosted in a process keeps these in its child; the parent gets them when it ends."""

    records: int = 0
    bytes: int = 0
    markers: int = 0
    errors: int = 0
    late: int = 0
    rejected: int = 0
    last_error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class SourceOptions(TypedDict, total=False):
    """What every source takes, beside its own arguments (see :class:`Source`)."""

    queue: Any
    mode: Mode
    stamp: bool
    event_time: SortKey | None
    lateness: float | timedelta
    maxsize: int


class Source(ReaderHosting, Actor):
    """The base of every source: hosting, counting, stamping, markers and pauses.

    ``queue``: where records go, as for a reader (a Channel, or anything with ``put()``); when
    None the source makes a Channel of its mode, of ``maxsize`` records, as ``.queue``.
    ``mode``: ``"thread"`` (the default) or ``"process"``. ``stamp``: wrap each record in an
    :class:`Arrival`. ``event_time`` and ``lateness``: put the records in event-time order, within
    that lateness (in the key's units, also taken as seconds of quiet; see the module docstring).
    """

    #: figures of the source's own kind, reported in ``statistics().detail`` (subclasses add to it)
    detail: dict[str, Any]

    def __init__(self, name: str, *, queue: Any = None, mode: Mode = "thread", stamp: bool = False,
                 event_time: SortKey | None = None, lateness: float | timedelta = 0.0,
                 maxsize: int = 10_000) -> None:
        super().__init__(name, mode=mode)
        self.stamp = stamp
        self.maxsize = maxsize
        self._queue = queue
        self.records = self.bytes = self.markers = self.errors = self.late = self.rejected = 0
        self.last_error: str | None = None
        self.detail = {}
        #: late records and rejects (up to MAX_KEPT each; all are counted in ``late`` and ``rejected``)
        self.late_records: list[Any] = []
        self.rejects: list[Reject] = []
        self._seq = itertools.count()
        self.event_time, self.lateness = event_time, lateness
        self._reorder: Reorder | None = None
        if lateness and event_time is None:
            raise ValueError(f"source {name!r}: lateness={lateness!r} needs event_time= (the key it is a lateness of)")
        if not (lateness >= timedelta(0) if isinstance(lateness, timedelta) else lateness >= 0):
            raise ValueError(f"source {name!r}: lateness must be >= 0, not {lateness!r}")
        #: seconds of quiet after which what is held goes out
        self._quiet = lateness.total_seconds() if isinstance(lateness, timedelta) else float(lateness)
        if event_time is not None:
            key = key_function(event_time)
            self._reorder = Reorder((lambda a: key(a.record)) if stamp else key, lateness, self._late, self._reject)

    # -- for implementors --------------------------------------------------------------------
    def _batches(self) -> Iterator[list[Any]]:
        """The source's records, a list per read (see the module docstring for the contract)."""
        raise NotImplementedError

    def _marker(self, kind: MarkerKind, **detail: Any) -> Marker:
        """A marker of this source, counted; put it in the list yielded."""
        self.markers += 1
        return Marker(kind, self.name, time.time(), detail)

    def _failed(self, error: BaseException | str, count: int = 1) -> None:
        """Count an error the source recovers from (it goes on after it); ``count``: as many
        errors of one kind at once (lines that did not decode)."""
        self.errors += count
        self.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"

    def _framed(self, framing: LineFramer | LengthFramer, data: bytes) -> list[Any]:
        """The records ``data`` completes (b"": the stream ended), lines that did not decode
        counted as errors.

        Raises:
            FramingError: the stream broke its framing (framing.py)."""
        records = framing.feed(data) if data else framing.end()
        if isinstance(framing, LineFramer) and framing.undecodable:
            self._failed("undecodable bytes in a line, kept with backslash escapes", framing.undecodable)
            framing.undecodable = 0
        return records

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``, waking every POLL to look at ``stopping``; False once stopping."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, POLL))
        return False

    # -- what every source does --------------------------------------------------------------
    def _late(self, record: Any) -> None:
        self.late += 1
        if len(self.late_records) < MAX_KEPT:
            self.late_records.append(record)

    def _reject(self, record: Any, error: Exception) -> None:
        """A record without a readable event time: set aside as a Reject (the source goes on)."""
        self.rejected += 1
        if len(self.rejects) < MAX_KEPT:
            assert self._reorder is not None
            self.rejects.append(Reject(self.name, self._reorder.seen, f"{record!r:.200}",
                                       f"no event time: {type(error).__name__}: {error}"))

    def _counted(self) -> Iterator[list[Any]]:
        batches, reorder, heard = self._batches(), self._reorder, time.monotonic()
        try:
            for batch in batches:
                held: list[Any] = []
                if not batch:  # nothing came: a source quiet for ``lateness`` lets go of what it held
                    if reorder is not None and reorder.held and time.monotonic() - heard >= self._quiet:
                        held = reorder.flush()
                elif isinstance(batch[0], Marker):  # markers come alone, and what is held goes before them
                    held = reorder.flush() if reorder is not None else []
                    batch = self._stamped(batch)
                else:
                    batch = self._stamped(batch)
                    if reorder is not None:
                        heard, batch = time.monotonic(), reorder.push(batch)
                if held:
                    batch = held + batch
                if batch:
                    self.records += len(batch)
                    yield batch
            if reorder is not None and (rest := reorder.flush()):
                self.records += len(rest)
                yield rest
        finally:
            batches.close()
            if reorder is not None and reorder.held:  # the reader stopped reading (or stop() met a full channel)
                self.detail["unsent"] = self.detail.get("unsent", 0) + reorder.held

    def _stamped(self, batch: list[Any]) -> list[Any]:
        if not self.stamp:
            return batch
        at, seq, name = time.time(), self._seq, self.name
        return [Arrival(record, at, next(seq), name) for record in batch]

    def _stream(self) -> Iterator[Any]:
        for batch in self._counted():
            yield from batch

    def __iter__(self) -> Iterator[Any]:
        """Read the source here, in the calling thread (no actor, no queue), until it ends or
        ``stop()`` is called from another thread."""
        if self.state != "new":
            raise RuntimeError(f"source {self.name!r} was started as an actor: iterate its .queue instead")
        return self._stream()

    def start(self, runtime: Runtime | None = None) -> Self:
        """Host the source (one actor, in its mode) and return at once; returns self."""
        self.outputs = [self._output_channel()]
        Actor.start(self, runtime)
        return self

    def run(self) -> None:
        # Each list goes to the channel as it is read: the channel batches and lingers, so a
        # line that arrives alone leaves within the channel's linger, and a full channel blocks
        # here, before the next read (the backpressure). A stop asked for is noticed while the
        # channel is full (a thread channel says what it took before each POLL); what stays unsent
        # is counted in ``detail["unsent"]``. After stop() the source's own generator ends by
        # itself (its contract), so records held for event-time order still go out.
        output, counts = self.outputs[0], self.counts
        timeout = POLL if isinstance(output, ThreadChannel) else None  # others do not say what they took
        batches = self._counted()
        try:
            for batch in batches:
                if type(batch) is not list:  # (a thread channel says what it took of a list)
                    batch = list(batch)
                while True:
                    try:
                        output.put_many(batch, timeout)
                    except TimeoutError as exc:
                        taken = exc.taken  # type: ignore[attr-defined]
                        counts.emitted += taken
                        batch = batch[taken:]
                        if not self.stopping:
                            continue
                        self.detail["unsent"] = self.detail.get("unsent", 0) + len(batch)
                        return
                    counts.emitted += len(batch)
                    break
        finally:
            batches.close()

    def statistics(self) -> SourceStatistics:
        base = super().statistics()
        return SourceStatistics(**{f.name: getattr(base, f.name) for f in fields(base)}, records=self.records,
                                bytes=self.bytes, markers=self.markers, errors=self.errors, late=self.late,
                                rejected=self.rejected, last_error=self.last_error, detail=dict(self.detail))

    def on_stop(self) -> dict[str, Any]:
        return {"records": self.records, "bytes": self.bytes, "markers": self.markers, "errors": self.errors,
                "late": self.late, "late_records": self.late_records, "rejected": self.rejected,
                "rejects": self.rejects, "last_error": self.last_error,
                "detail": dict(self.detail)}

    def on_result(self, result: Any) -> None:
        """In the parent, once the source ended: take over the child's figures."""
        if isinstance(result, dict) and "records" in result:
            for name, value in result.items():
                setattr(self, name, value)

    def join(self, timeout: float | None = None) -> SourceStatistics:  # type: ignore[override]
        """Wait for the source to end; returns its statistics.

        Raises:
            ActorError: the source failed (its SourceError, or whatever it raised).
            TimeoutError: it is still running after ``timeout`` seconds.
            RuntimeError: it was never started."""
        super().join(timeout)
        return self.statistics()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop a hosted source and wait for it (its sockets and files are closed then)."""
        if self.state != "new":
            self.stop()
            self.wait(10.0)
