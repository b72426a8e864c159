"""SortedQueueMultiplexer: a k-way merge of sorted inputs, by a key, stable, never guessing.

Each input is assumed sorted by the key. The merge takes what its inputs have, emits every
record that no input can still precede (order/window.py: a window at a time, sorted in C), and waits
only on an input that holds it back (merge.py: the loop every merge shares), so the output is in
key order; ties go in input-registration order, so equal input gives identical output every run.
It holds about one batch per input beyond the channels' own bounds.

A record smaller than one already emitted cannot be placed in order: an input that steps back
(out of order), or one that ``idle_timeout`` let the merge move on without and that speaks up
later. Such a record is *late*: it is counted (with the first example, per input), logged once,
and sent to ``late_queue()`` when one is registered, else kept in ``late_records`` (up to
``max_late``; all are counted). It is never emitted out of order and never dropped unseen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..channels import Channel, Mode
from ..channels.base import renamed_mode
from ..channels.queues import QueueOutput
from ..order import MergeWindow, SortKey, key_function
from .fifo import QueueMultiplexer
from .merge import merge_channels

__all__ = ["MergeReport", "SortedQueueMultiplexer"]

log = logging.getLogger("chronopipe.multiplex")


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


class SortedQueueMultiplexer(QueueMultiplexer):
    """Chronological (or any key) merge of sorted inputs; the seed's usage works as written.

    ``max_size`` is the seed's spelling of the bound, kept as it was (third positional argument
    too); ``maxsize=`` is the same bound spelt as everywhere else in the package (Channel,
    QueueMultiplexer), and ``mux.maxsize`` holds it.

    >>> from chronopipe.channels import END
    >>> mux = SortedQueueMultiplexer(sort_key="timestamp", sort_direction="min", max_size=100, channel_mode="thread")
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
        max_size: int | None = None,
        *,
        maxsize: int | None = None,
        idle_timeout: float | None = None,
        max_late: int = 10_000,
        on_late: Callable[[int, Any, Any], None] | None = None,
        name: str = "sorted-multiplexer",
        channel_mode: Mode = "process",
        mode: Mode = "thread",
        kind: Mode | None = None,
    ) -> None:
        """``on_late(input_index, record, frontier)`` is told of each late record, after it was
        counted and kept (in the thread that runs the merge; what it raises ends the merge).

        Raises:
            ValueError: a bad sort_direction, idle_timeout or sort_key; max_size and maxsize both
                given, and different.
            TypeError: a sort_key of the wrong type."""
        if max_size is not None and maxsize is not None and max_size != maxsize:
            raise ValueError(f"max_size={max_size} and maxsize={maxsize} are the same bound: give one")
        bound = 10_000 if max_size is None and maxsize is None else (maxsize if max_size is None else max_size)
        if sort_direction not in ("min", "max"):
            raise ValueError(f"sort_direction must be 'min' or 'max', not {sort_direction!r}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0 seconds or None, not {idle_timeout!r}")
        channel_mode = renamed_mode(channel_mode, kind, warn=kind is not None)
        super().__init__(name, maxsize=bound, channel_mode=channel_mode, mode=mode)
        self.sort_key = sort_key
        self.sort_direction = sort_direction
        self.idle_timeout = idle_timeout
        self.max_late = max_late
        self.on_late = on_late
        key_function(sort_key)  # a bad sort_key fails here, not in the merge
        self._late_out: Channel | None = None
        self.report = MergeReport(name)

    def late_queue(self, queue: Any = None) -> Any:
        """Where late records go (a new channel, or ``queue``), instead of ``late_records``."""
        self._check_open("late_queue")
        if queue is None:
            self._late_out = Channel(self.maxsize, mode=self.channel_mode, name=f"{self.name}.late")
            return self._late_out
        self._late_out = queue if isinstance(queue, Channel) else QueueOutput(queue, name=f"{self.name}.late")
        return queue

    @property
    def max_size(self) -> int:
        """The seed's name of ``maxsize``."""
        return self.maxsize

    @property
    def late_records(self) -> list[Any]:
        return self.report.late_records

    def channels(self) -> list[Channel]:
        return super().channels() + ([self._late_out] if self._late_out is not None else [])

    def on_stop(self) -> MergeReport:
        self.report.emitted = self.counts.emitted
        if self._late_out is not None:
            self._late_out.close()
        return self.report

    def on_result(self, result: Any) -> None:
        """In the parent, once the merge ended: take over the child's report."""
        if isinstance(result, MergeReport):
            self.report = result  # a process-hosted merge: take over the child's report

    # -- the merge -------------------------------------------------------------------------
    def _batches(self) -> Iterator[list[Any]]:
        # Take what the inputs have without waiting, emit what the window says is safe, and
        # only when nothing is, wait on an input that holds the merge back (merge.py, window.py).
        window = MergeWindow(self.sort_key, self.sort_direction, self._late)
        return merge_channels(self._inputs, window, stopped=lambda: self.stopping, before_wait=self.flush,
                              counts=self.counts, idle_timeout=self.idle_timeout, on_idle=self._moved_on)

    def _moved_on(self, idx: int) -> None:
        """idle_timeout let the merge move on without input ``idx``."""
        self.report.idle_moves += 1

    def _late(self, idx: int, record: Any, frontier: Any) -> None:
        report = self.report
        name = self._inputs[idx].name
        report.late += 1
        if name not in report.out_of_order:
            report.first_out_of_order[name] = (record, frontier)
            log.warning("multiplexer %r: input %r is late or out of order: %.200r after key %.100r",
                        self.name, name, record, frontier)
        report.out_of_order[name] = report.out_of_order.get(name, 0) + 1
        if self._late_out is not None:
            self._late_out.put(record)
        elif len(report.late_records) < self.max_late:
            report.late_records.append(record)
        if self.on_late is not None:
            self.on_late(idx, record, frontier)

