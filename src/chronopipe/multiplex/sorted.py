"""SortedQueueMultiplexer: a k-way merge of sorted inputs, by a key, stable, never guessing.

Each input is assumed sorted by the key. The merge emits the smallest head among the inputs
and waits for an input that has nothing buffered (its next record might be smaller), so the
output is in key order; ties go in input-registration order, so equal input gives identical
output every run. It holds at most one batch per input beyond the channels' own bounds.

A record smaller than one already emitted cannot be placed in order: an input that steps back
(out of order), or one that ``idle_timeout`` let the merge move on without and that speaks up
later. Such a record is *late*: it is counted (with the first example, per input), logged once,
and sent to ``late_queue()`` when one is registered, else kept in ``late_records`` (up to
``max_late``; all are counted). It is never emitted out of order and never dropped unseen.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..actors.actor import Mode
from ..channels import END, Channel
from ..channels.base import POLL_INTERVAL, Kind
from ..readers.output import QueueOutput
from .fifo import QueueMultiplexer, _Stopped
from .keys import SortKey, fast_key_function, key_function

__all__ = ["MergeReport", "SortedQueueMultiplexer"]

log = logging.getLogger("chronopipe.multiplex")

OUT_BATCH = 1000
_IDLE = object()  # an input said nothing for idle_timeout seconds
_DONE = object()  # an input ended


def _exhausted() -> Any:
    raise StopIteration


@dataclass
class MergeReport:
    """What a sorted merge saw; ``join()`` returns it (also from a process)."""

    name: str
    emitted: int = 0
    late: int = 0
    out_of_order: dict[str, int] = field(default_factory=dict)  # per input: steps back
    first_out_of_order: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # input: (record, previous key)
    idle_moves: int = 0  # times the merge moved on without a silent input
    late_records: list[Any] = field(default_factory=list)


class _Reversed:
    """Key wrapper for sort_direction="max": the largest key sorts first."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Reversed) -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.key == other.key

    __hash__ = None  # type: ignore[assignment]


class SortedQueueMultiplexer(QueueMultiplexer):
    """Chronological (or any key) merge of sorted inputs; the seed's usage works as written.

    >>> mux = SortedQueueMultiplexer(sort_key="timestamp", sort_direction="min", max_size=100, kind="thread")
    >>> a, b, out = mux.input_queue(), mux.input_queue(), mux.output_queue()
    >>> _ = mux.run()
    >>> for t in (1010, 1020, 1030): a.put({"timestamp": t})
    >>> for t in (1019, 1020, 1021): b.put({"timestamp": t})
    >>> a.put(END); b.put(END)
    >>> [r["timestamp"] for r in out]
    [1010, 1019, 1020, 1020, 1021, 1030]
    """

    def __init__(
        self,
        sort_key: SortKey = "timestamp",
        sort_direction: Literal["min", "max"] = "min",
        max_size: int = 10_000,
        *,
        idle_timeout: float | None = None,
        max_late: int = 10_000,
        name: str = "sorted-multiplexer",
        kind: Kind = "process",
        mode: Mode = "thread",
    ) -> None:
        if sort_direction not in ("min", "max"):
            raise ValueError(f"sort_direction must be 'min' or 'max', not {sort_direction!r}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0 seconds or None, not {idle_timeout!r}")
        super().__init__(name, maxsize=max_size, kind=kind, mode=mode)
        self.sort_key = sort_key
        self.sort_direction = sort_direction
        self.idle_timeout = idle_timeout
        self.max_late = max_late
        self._fast_key = fast_key_function(sort_key)
        self._key = key_function(sort_key)
        self._late_out: Channel | None = None
        self.report = MergeReport(name)

    def late_queue(self, queue: Any = None) -> Any:
        """Where late records go (a new channel, or ``queue``), instead of ``late_records``."""
        self._check_open("late_queue")
        if queue is None:
            self._late_out = Channel(self.maxsize, kind=self.kind, name=f"{self.name}.late")
            return self._late_out
        self._late_out = queue if isinstance(queue, Channel) else QueueOutput(queue, name=f"{self.name}.late")
        return queue

    @property
    def late_records(self) -> list[Any]:
        return self.report.late_records

    def channels(self) -> list[Channel]:
        return super().channels() + ([self._late_out] if self._late_out is not None else [])

    def on_stop(self) -> MergeReport:
        if self._late_out is not None:
            self._late_out.close()
        return self.report

    def _finish(self, result: Any = None, error: Any = None, cancelled: bool = False) -> None:
        if isinstance(result, MergeReport):
            self.report = result  # a process-hosted merge: take over the child's report
        super()._finish(result, error, cancelled)

    # -- the merge -------------------------------------------------------------------------
    def _merge(self) -> None:
        # Hot loop shaped like heapq.merge: one heap entry per input, [key, input index,
        # record, next-record function of the input's current batch, input ended]. Records
        # come from a list iterator; the channel is asked only when a batch runs out. New
        # inputs, silent inputs and stop() are looked at once per output batch.
        heap: list[list[Any]] = []
        idle: dict[int, Channel] = {}
        out = self._out
        append = out.append
        report = self.report
        seen = 0
        frontier: Any = None  # key of the last record emitted
        checked = 0  # records emitted since the last look at inputs, silent ones and stop()
        if self.sort_direction == "max":
            full = self._key
            fast = slow = lambda record: _Reversed(full(record))
        else:
            fast, slow = self._fast_key, self._key
        refill, heapreplace, inputs = self._refill, heapq.heapreplace, self._inputs
        while True:
            if checked >= OUT_BATCH or not heap or len(inputs) > seen:
                checked = 0
                self._send_out()
                if self._stop[0]:
                    raise _Stopped
                while seen < len(inputs):  # inputs registered after run(), even while we admit one
                    self._admit(heap, [None, seen, None, _exhausted, False], frontier, idle, slow)
                    seen += 1
                for idx, ch in list(idle.items()):  # a silent input that speaks again rejoins
                    try:
                        batch = ch.get_batch(0)
                    except TimeoutError:
                        continue
                    del idle[idx]
                    entry = [None, idx, None, _exhausted, False]
                    self._take(entry, batch)
                    self._admit(heap, entry, frontier, idle, slow)
                if not heap:
                    if not idle:
                        report.emitted = self._emitted
                        return
                    self._pause()
                    continue
            entry = heap[0]
            k = entry[0]
            append(entry[2])
            checked += 1
            frontier = k
            try:
                nxt = entry[3]()
            except StopIteration:
                nxt = refill(entry)
            while True:
                if nxt is _DONE:
                    heapq.heappop(heap)
                    break
                if nxt is _IDLE:
                    heapq.heappop(heap)
                    idle[entry[1]] = self._inputs[entry[1]]
                    report.idle_moves += 1
                    break
                try:
                    nk = fast(nxt)
                except Exception:
                    nk = slow(nxt)  # attribute, nested or missing: the full lookup, with a clear error
                if nk < k:
                    self._late(entry[1], nxt, k)
                    try:
                        nxt = entry[3]()
                    except StopIteration:
                        nxt = refill(entry)
                    continue
                entry[0] = nk
                entry[2] = nxt
                heapreplace(heap, entry)
                break

    def _admit(self, heap: list[list[Any]], entry: list[Any], frontier: Any, idle: dict[int, Channel],
               key: Callable[[Any], Any]) -> None:
        """Put the input's first record that is not late on the heap (or mark it idle)."""
        while True:
            try:
                record = entry[3]()
            except StopIteration:
                record = self._refill(entry)
            if record is _DONE:
                return
            if record is _IDLE:
                idle[entry[1]] = self._inputs[entry[1]]
                self.report.idle_moves += 1
                return
            k = key(record)
            if frontier is not None and k < frontier:
                self._late(entry[1], record, frontier)
                continue
            entry[0], entry[2] = k, record
            heapq.heappush(heap, entry)
            return

    def _refill(self, entry: list[Any]) -> Any:
        """The input's current batch ran out: its next record from the channel, _IDLE or _DONE."""
        if entry[4]:
            return _DONE
        ch = self._inputs[entry[1]]
        try:
            batch = ch.get_batch(0)
        except TimeoutError:
            self.flush()  # about to wait on this input: hand over what we hold
            batch = self._wait(ch)
            if batch is None:
                return _IDLE
        self._take(entry, batch)
        try:
            return entry[3]()
        except StopIteration:
            return _DONE  # an empty last batch: [END]

    def _take(self, entry: list[Any], batch: list[Any]) -> None:
        if batch[-1] is END:
            batch.pop()
            entry[4] = True
        self._received += len(batch)
        entry[3] = iter(batch).__next__

    def _wait(self, ch: Channel) -> list[Any] | None:
        """Block on ``ch`` until it has records (None after idle_timeout), noticing stop()."""
        deadline = None if self.idle_timeout is None else time.monotonic() + self.idle_timeout
        while True:
            if self._stop[0]:
                raise _Stopped
            step = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - time.monotonic())
            if step <= 0:
                return None
            try:
                return ch.get_batch(step)
            except TimeoutError:
                continue

    def _pause(self) -> None:
        """Every live input is silent: hand over what we hold, then poll them gently."""
        if self._stop[0]:
            raise _Stopped
        self.flush()
        time.sleep(0.001)

    def _late(self, idx: int, record: Any, frontier: Any) -> None:
        report = self.report
        name = self._inputs[idx].name
        report.late += 1
        if name not in report.out_of_order:
            report.first_out_of_order[name] = (record, frontier.key if isinstance(frontier, _Reversed) else frontier)
            log.warning("multiplexer %r: input %r is late or out of order: %.200r after key %.100r",
                        self.name, name, record, frontier)
        report.out_of_order[name] = report.out_of_order.get(name, 0) + 1
        if self._late_out is not None:
            self._late_out.put(record)
        elif len(report.late_records) < self.max_late:
            report.late_records.append(record)

