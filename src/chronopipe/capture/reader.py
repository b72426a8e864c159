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

``keyed=True`` is for a merge in mergecap's order: a packet's merge key is the latest timestamp
of its file so far, so a packet that steps back keeps its place right after the one before it
in its file (mergecap takes the earliest head of the files, and a step back is the earliest
head at once), and a merge by that key (SortedQueueMultiplexer with ``sort_key=PACKET_KEY``,
ties in input order) is exactly mergecap's merge, with none late. A packet in order is its own
key; one that steps back is sent as ``Stepped((key, packet))`` (rare: a writer unwraps it).

It works a list of packets at a time, as read_batches parses them: per packet only the parse
loop runs Python code; counting, reordering and sending take whole lists, in C (map, sorted,
sum, list slices), and stop() is noticed between lists.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import accumulate, chain, compress
from typing import Any

from ..actors.actor import Actor, ActorStatistics, Mode
from ..readers.hosting import ReaderHosting
from ..readers.output import mode_of
from .decode import decode as decode_frame
from .formats import CustomBlock, Damage, read_batches
from .stream import Stepped

__all__ = ["PACKET_FIELDS", "PACKET_KEY", "CaptureReader", "CaptureStatistics", "CaptureSummary"]

log = logging.getLogger("chronopipe.capture")

PACKET_FIELDS = ("ts_ns", "source", "interface", "index", "caplen", "wirelen", "linktype", "data")
#: sort key of a packet tuple: its timestamp
PACKET_KEY = operator.itemgetter(0)
_CAPLEN = operator.itemgetter(4)


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
    first_step_back_ns: int | None = None  #: its timestamp
    complete: bool = False  #: the whole file was read (False after stop())
    seconds: float = 0.0
    damage: list[Damage] = field(default_factory=list)

    @property
    def span_ns(self) -> int:
        return 0 if self.first_ns is None or self.last_ns is None else self.last_ns - self.first_ns

    def __str__(self) -> str:
        damaged = f", {len(self.damage)} damage report(s)" if self.damage else ""
        return f"{self.name}: {self.packets} packets, {self.steps_back} steps back{damaged}"

    def count(self, packets: list[tuple[Any, ...]]) -> None:
        """Count the next packets of the file, in file order.

        >>> s = CaptureSummary("a", "a.pcap")
        >>> s.count([(5, "a", 0, 1, 60), (3, "a", 0, 2, 60)]); s.count([(4, "a", 0, 3, 60), (1, "a", 0, 4, 60)])
        >>> s.packets, s.bytes, s.first_ns, s.last_ns, s.steps_back, s.worst_step_ns, s.first_step_back
        (4, 240, 5, 1, 2, 3, 2)
        >>> s.first_step_back_ns
        3
        """
        if not packets:
            return
        ts = list(map(PACKET_KEY, packets))
        if self.last_ns is None:
            self.first_ns = ts[0]
        else:
            ts.insert(0, self.last_ns)  # the first packet steps back if it is before the last one counted
        if ts != sorted(ts):  # the usual case, a sorted list, costs two passes in C
            self._count_steps(ts, packets)
        self.last_ns = ts[-1]
        self.packets += len(packets)
        self.bytes += sum(map(_CAPLEN, packets))

    def _count_steps(self, ts: list[int], packets: list[tuple[Any, ...]]) -> None:
        later = ts[1:]
        back = list(compress(range(len(later)), map(operator.gt, ts, later)))  # later[i] steps back from ts[i]
        self.steps_back += len(back)
        self.worst_step_ns = max(self.worst_step_ns, *(ts[i] - later[i] for i in back))
        if self.first_step_back is None:
            first = packets[back[0] + len(packets) - len(later)]
            self.first_step_back, self.first_step_back_ns = first[3], first[0]


@dataclass(frozen=True)
class CaptureStatistics(ActorStatistics):
    file: str = ""
    packets: int = 0
    damage: int = 0


class CaptureReader(ReaderHosting, Actor):
    """Streams the packets of one pcap / pcapng (/ .gz) file, then END.

    >>> import os, tempfile
    >>> from chronopipe.capture import CaptureWriter
    >>> path = os.path.join(tempfile.mkdtemp(), "tap.pcap")
    >>> with CaptureWriter(path) as out:
    ...     for i in range(3):
    ...         out.write((1_324_071_333_493_287_000 + i, "tap", 0, i + 1, 2, 60, 1, b"ab"))
    >>> packets = list(CaptureReader(path))                      # in this thread: no actor
    >>> len(packets), packets[0][:4]
    (3, (1324071333493287000, 'tap.pcap', 0, 1))
    >>> reader = CaptureReader(path, source="tap-A", start=True, mode="thread")
    >>> sum(1 for _ in reader.queue), reader.join().packets      # hosted: packets arrive on .queue
    (3, 3)

    ``queue``: where packets go (any object with ``put()``; default: a Channel of the reader's
    mode, ``.queue``). ``source``: the tap's name on every packet (default: the file's name).
    ``offset``: seconds added to every timestamp (a tap's known clock offset; exact to the
    nanosecond). ``reorder``: a window in seconds (default 0.01, 0 to keep the file's order): a
    packet stamped before ones the file holds ahead of it is put back in place when it is at
    most that much behind (one further behind may be too, if it comes close after them). Files
    are rarely sorted strictly and a merge needs them sorted. Steps back are counted in the
    summary either way; one left out of place reaches the merge as it is, which reports it late.
    ``decode``: send decoded dicts instead of tuples. ``keyed``: send packets keyed for a merge in
    mergecap's order (see the module docstring; the file's own order: reorder 0).
    ``blocks``: send copyable pcapng custom blocks too (:class:`~chronopipe.capture.formats.
    CustomBlock`, not counted as packets), for a writer to copy. ``mode``: ``"process"``
    (default) or ``"thread"``.
    """

    def __init__(self, filename: str | os.PathLike[str], queue: Any = None, start: bool = False, *,
                 source: str | None = None, name: str | None = None, offset: float | str = 0,
                 reorder: float | str = 0.01, decode: bool = False, keyed: bool = False, blocks: bool = False,
                 mode: Mode | None = None, maxsize: int = 10_000) -> None:
        self.filename = os.fspath(filename)
        if mode is None:
            mode = "thread" if queue is not None and mode_of(queue) == "thread" else "process"
        self.source = source or os.path.basename(self.filename)
        super().__init__(name or self.source, mode=mode)
        self.offset_ns = seconds_to_ns(offset)
        self.reorder_ns = seconds_to_ns(reorder)
        if self.reorder_ns < 0:
            raise ValueError(f"reader {self.name!r}: reorder is a window in seconds >= 0, not {reorder!r}")
        if keyed and (self.reorder_ns or decode):
            raise ValueError(f"reader {self.name!r}: keyed sends the file's order, as tuples: reorder=0, decode=False")
        self.decode, self.keyed, self.blocks = decode, keyed, blocks
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
    def _batches(self) -> Iterator[list[Any]]:
        """The packets (or decoded records) to send, a list at a time."""
        batches = self._counted()
        if self.reorder_ns:
            batches = _reordered(batches, self.reorder_ns)
        if self.decode:
            batches = (list(map(decode_frame, batch)) for batch in batches)
        if self.keyed:
            batches = _keyed(batches)
        return batches

    def _counted(self) -> Iterator[list[tuple[Any, ...]]]:
        """The file's packets in file order, a list per chunk read, counted into a new summary."""
        summary = self.summary = CaptureSummary(self.name, self.filename)
        began = time.monotonic()
        offset = self.offset_ns
        try:
            for packets in read_batches(self.filename, name=self.source, on_damage=self._damage, tag=self.source,
                                        blocks=self.blocks):
                if offset:  # an Untimed or CustomBlock keeps its kind
                    packets = [(p[0] + offset, *p[1:]) if p.__class__ is tuple else p.__class__((p[0] + offset, *p[1:]))
                               for p in packets]
                if packets and packets[0].__class__ is not CustomBlock:  # a custom block comes in a list of its own
                    summary.count(packets)
                yield packets
            summary.complete = True
        finally:
            summary.seconds = time.monotonic() - began

    def _damage(self, damage: Damage) -> None:
        self.summary.damage.append(damage)
        log.warning("capture %r: %s", self.name, damage)

    def _stream(self) -> Iterator[Any]:
        return chain.from_iterable(self._batches())

    def run(self) -> None:
        self._run_batches(self._batches())

    def on_stop(self) -> CaptureSummary:
        return self.summary

    def join(self, timeout: float | None = None) -> CaptureSummary:
        """Wait for the reader to end; returns its :class:`CaptureSummary`."""
        return super().join(timeout)  # type: ignore[no-any-return]

    def on_result(self, result: Any) -> None:
        """In the parent, once the reader ended: take over the child's summary."""
        if isinstance(result, CaptureSummary):  # from a child process
            self.summary = result


def _reordered(batches: Iterator[list[tuple[Any, ...]]], window_ns: int,
               chunk: int = 1024) -> Iterator[list[tuple[Any, ...]]]:
    """``batches`` in timestamp order wherever a packet is at most ``window_ns`` late (stable),
    a list per list taken (it may be empty: the caller sees stop() while the window fills).

    The packets are taken ``chunk`` at a time whatever the lists' sizes, so where a packet
    further behind ends up does not depend on how the file was read. Sorting a nearly sorted
    list is linear in C (Timsort finds the runs), so this costs little.

    >>> def ts(batches): return [[p[0] for p in batch] for batch in batches]
    >>> ts(_reordered(iter([[(1,), (5,), (3,)], [(9,), (7,)]]), 4, chunk=2))
    [[1], [3, 5], [7, 9]]
    >>> ts(_reordered(iter([[(1,), (5,), (3,), (9,), (2,)]]), 4, chunk=2))  # 2 is 7 behind 9
    [[1, 3, 5], [2, 9]]
    """
    held: list[tuple[Any, ...]] = []
    taken: list[tuple[Any, ...]] = []  # the start of the next chunk
    for batch in batches:
        taken += batch
        whole = len(taken) - len(taken) % chunk
        ready: list[tuple[Any, ...]] = []
        for start in range(0, whole, chunk):
            held += taken[start:start + chunk]
            held.sort(key=PACKET_KEY)
            safe = bisect_right(held, held[-1][0] - window_ns, key=PACKET_KEY)
            ready += held[:safe]
            del held[:safe]
        del taken[:whole]
        yield ready
    held += taken  # the last chunk, short: then every packet held is sent, in order
    held.sort(key=PACKET_KEY)
    yield held


def _keyed(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[list[tuple[Any, ...]]]:
    """The packets, each that steps back as ``Stepped((key, packet))``, the key the latest
    timestamp before it; the others are their own key. A sorted list costs two passes in C.

    >>> [[p if p.__class__ is tuple else ("stepped", *p) for p in batch]
    ...  for batch in _keyed(iter([[(5,), (3,), (7,)], [(6,), (9,)]]))]
    [[(5,), ('stepped', 5, (3,)), (7,)], [('stepped', 7, (6,)), (9,)]]
    """
    top = None
    for batch in batches:
        if not batch:
            yield batch
            continue
        ts = list(map(PACKET_KEY, batch))
        if (top is None or top <= ts[0]) and ts == sorted(ts):
            top = ts[-1]
            yield batch
            continue
        keys = list(accumulate(ts, max) if top is None else accumulate(ts, max, initial=top))
        if top is not None:
            del keys[0]
        top = keys[-1]
        yield [p if k == t else Stepped((k, p)) for k, t, p in zip(keys, ts, batch, strict=True)]


def seconds_to_ns(value: float | str) -> int:
    """Seconds, as a number or text, to exact integer nanoseconds.

    >>> seconds_to_ns("-0.250"), seconds_to_ns(1.5), seconds_to_ns("0.000000001")
    (-250000000, 1500000000, 1)
    """
    from decimal import Decimal, InvalidOperation

    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        seconds = Decimal("nan")
    if not seconds.is_finite():
        raise ValueError(f"a clock offset is a finite number of seconds, like -0.250, not {value!r}")
    return int(seconds * 1_000_000_000)
