"""CaptureReader: one capture file streamed onto a channel as packets, by an actor or in a loop.

A packet is a plain tuple in :data:`PACKET_FIELDS` order, ``(ts_ns, source, interface, index,
caplen, wirelen, linktype, data)``: tuples cross process channels about three times cheaper
than objects, and a merge orders them by ``ts_ns`` with ``sort_key=PACKET_KEY`` (the
``operator.itemgetter(0)`` the merge runs in C). ``decode=True`` sends decoded dicts instead
(see decode.py), decoding in the reader's own process.

The reader counts what a validation run wants to know per file as it goes: packets, bytes,
first and last timestamp, timestamps that step back (count and worst step: a merge assumes
each input sorted), and every :class:`~chronopipe.capture.formats.Damage`. ``join()`` returns
that :class:`CaptureSummary`, from a process too.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..actors.actor import Actor, ActorStatistics, Mode
from ..readers.hosting import ReaderHosting
from ..readers.output import kind_of
from .decode import decode as decode_frame
from .formats import Damage, read_frames

if TYPE_CHECKING:
    from ..actors.errors import ActorError

__all__ = ["PACKET_FIELDS", "PACKET_KEY", "CaptureReader", "CaptureStatistics", "CaptureSummary"]

log = logging.getLogger("chronopipe.capture")

PACKET_FIELDS = ("ts_ns", "source", "interface", "index", "caplen", "wirelen", "linktype", "data")
#: sort key of a packet tuple: its timestamp
PACKET_KEY = operator.itemgetter(0)


@dataclass
class CaptureSummary:
    """What a reader found in its file (``join()``'s value)."""

    name: str
    file: str
    packets: int = 0
    bytes: int = 0  #: captured bytes (sum of caplen)
    first_ns: int | None = None
    last_ns: int | None = None
    steps_back: int = 0  #: packets whose timestamp is before the previous packet's
    worst_step_ns: int = 0  #: the largest such step back
    first_step_back: int | None = None  #: frame number of the first one
    complete: bool = False  #: the whole file was read (False after stop())
    seconds: float = 0.0
    damage: list[Damage] = field(default_factory=list)

    @property
    def span_ns(self) -> int:
        return 0 if self.first_ns is None or self.last_ns is None else self.last_ns - self.first_ns

    def __str__(self) -> str:
        damaged = f", {len(self.damage)} damage report(s)" if self.damage else ""
        return f"{self.name}: {self.packets} packets, {self.steps_back} steps back{damaged}"


@dataclass(frozen=True)
class CaptureStatistics(ActorStatistics):
    file: str = ""
    packets: int = 0
    damage: int = 0


class CaptureReader(ReaderHosting, Actor):
    """Streams the packets of one pcap / pcapng (/ .gz) file, then END.

    >>> from pathlib import Path
    >>> path = Path(__file__).parents[3] / "tests" / "data" / "captures" / "taps" / "ssh.pcap"
    >>> packets = list(CaptureReader(path))                      # in this thread: no actor
    >>> len(packets), packets[0][:4]
    (1797, (1324071333493287000, 'ssh.pcap', 0, 1))
    >>> reader = CaptureReader(path, source="tap-A", start=True, mode="thread")
    >>> sum(1 for _ in reader.queue), reader.join().packets      # hosted: packets arrive on .queue
    (1797, 1797)

    ``queue``: where packets go (any object with ``put()``; default: a Channel of the reader's
    kind, ``.queue``). ``source``: the tap's name on every packet (default: the file's name).
    ``offset``: seconds added to every timestamp (a tap's known clock offset; exact to the
    nanosecond). ``reorder``: a window in seconds (default 0.01, 0 to keep the file's order): a
    packet stamped before ones the file holds ahead of it is put back in place when it is at
    most that much behind (one further behind may be too, if it comes close after them). Files
    are rarely sorted strictly and a merge needs them sorted. Steps back are counted in the
    summary either way; one left out of place reaches the merge as it is, which reports it late.
    ``decode``: send decoded dicts instead of tuples. ``mode``: ``"process"`` (default) or
    ``"thread"``.
    """

    def __init__(self, filename: str | os.PathLike[str], queue: Any = None, start: bool = False, *,
                 source: str | None = None, name: str | None = None, offset: float | str = 0,
                 reorder: float | str = 0.01, decode: bool = False, mode: Mode | None = None,
                 maxsize: int = 10_000) -> None:
        self.filename = os.fspath(filename)
        if mode is None:
            mode = "thread" if queue is not None and kind_of(queue) == "thread" else "process"
        self.source = source or os.path.basename(self.filename)
        super().__init__(name or self.source, mode=mode)
        self.offset_ns = seconds_to_ns(offset)
        self.reorder_ns = seconds_to_ns(reorder)
        if self.reorder_ns < 0:
            raise ValueError(f"reader {self.name!r}: reorder is a window in seconds >= 0, not {reorder!r}")
        self.decode = decode
        self.maxsize = maxsize
        self._queue = queue
        self.summary = CaptureSummary(self.name, self.filename)
        if start:
            self.start()

    def statistics(self) -> CaptureStatistics:
        base = super().statistics()
        return CaptureStatistics(**{f.name: getattr(base, f.name) for f in fields(base)}, file=self.filename,
                                 packets=self.summary.packets, damage=len(self.summary.damage))

    # -- reading ---------------------------------------------------------------------------
    def _packets(self) -> Iterator[Any]:
        packets = self._read() if not self.reorder_ns else _reordered(self._read(), self.reorder_ns)
        if not self.decode:
            return packets
        return map(decode_frame, packets)

    def _read(self) -> Iterator[tuple[Any, ...]]:
        summary = self.summary = CaptureSummary(self.name, self.filename)
        began = time.monotonic()
        source, offset = self.source, self.offset_ns
        last = first = None
        steps = worst = 0
        size = 0
        n = 0
        try:
            for ts, interface, index, caplen, wirelen, linktype, data in read_frames(
                    self.filename, name=self.source, on_damage=self._damage):
                ts += offset
                if last is not None and ts < last:
                    steps += 1
                    if summary.first_step_back is None:
                        summary.first_step_back = index
                    worst = max(worst, last - ts)
                elif first is None:
                    first = ts
                last = ts
                n += 1
                size += caplen
                yield (ts, source, interface, index, caplen, wirelen, linktype, data)
            summary.complete = True
        finally:
            summary.packets, summary.bytes, summary.first_ns, summary.last_ns = n, size, first, last
            summary.steps_back, summary.worst_step_ns = steps, worst
            summary.seconds = time.monotonic() - began

    def _damage(self, damage: Damage) -> None:
        self.summary.damage.append(damage)
        log.warning("capture %r: %s", self.name, damage)

    def _stream(self) -> Iterator[Any]:
        return self._packets()

    def on_stop(self) -> CaptureSummary:
        return self.summary

    def join(self, timeout: float | None = None) -> CaptureSummary:
        """Wait for the reader to end; returns its :class:`CaptureSummary`."""
        return super().join(timeout)  # type: ignore[no-any-return]

    def _finish(self, result: Any = None, error: ActorError | None = None, cancelled: bool = False) -> None:
        if isinstance(result, CaptureSummary):  # from a child process
            self.summary = result
        super()._finish(result, error, cancelled)


def _reordered(packets: Iterator[tuple[Any, ...]], window_ns: int, chunk: int = 1024) -> Iterator[tuple[Any, ...]]:
    """``packets`` in timestamp order wherever a packet is at most ``window_ns`` late (stable).

    Sorting a nearly sorted list is linear in C (Timsort finds the runs), so this costs little.

    >>> [p[0] for p in _reordered(iter([(1,), (5,), (3,), (9,), (7,)]), 4, chunk=2)]
    [1, 3, 5, 7, 9]
    >>> [p[0] for p in _reordered(iter([(1,), (5,), (3,), (9,), (2,)]), 4, chunk=2)]  # 2 is 7 behind 9
    [1, 3, 5, 2, 9]
    """
    held: list[tuple[Any, ...]] = []
    while True:
        more = list(islice(packets, chunk))
        if not more:
            yield from held
            return
        held += more
        held.sort(key=PACKET_KEY)
        safe = bisect_right(held, held[-1][0] - window_ns, key=PACKET_KEY)
        if safe:
            yield from held[:safe]
            del held[:safe]


def seconds_to_ns(value: float | str) -> int:
    """Seconds, as a number or text, to exact integer nanoseconds.

    >>> seconds_to_ns("-0.250"), seconds_to_ns(1.5), seconds_to_ns("0.000000001")
    (-250000000, 1500000000, 1)
    """
    from decimal import Decimal, InvalidOperation

    try:
        return int(Decimal(str(value)) * 1_000_000_000)
    except InvalidOperation:
        raise ValueError(f"a clock offset is a number of seconds, like -0.250, not {value!r}") from None
