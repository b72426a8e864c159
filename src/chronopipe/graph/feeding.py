"""ControlledFeed: what ``consume()`` feeds from under ``Pipeline(control=...)`` (graph/control.py).

The stop flag is looked at between chunks, never per record: the records of a chunk go through
C iterators (``itertools.chain`` over ``islice`` chunks, or over slices of a list, tuple or range,
which the processes mode sends as whole batches, as it sends such an input without control). The
first record of each chunk is given to ``features.see``. This module imports nothing of the
control plane: the feed of every actor run may look for a ControlledFeed at no cost.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["CHUNK", "SLOW", "ControlledFeed"]

#: The most records fed between two looks at the stop flag (chunks of an iterator grow to it from 1
#: while it gives its records at once; a record that kept the feed waiting makes the next chunk 1).
CHUNK = 1024
#: Seconds an iterator may take to give a chunk's first record before the chunks shrink to one record.
SLOW = 0.02
_DONE: Any = object()


class ControlledFeed:
    """``records`` as a pipeline under control feeds them.

    ``fed_from``: the input they come from (a source the feed's watcher stops when a node fails);
    ``stopped``: the stop flag; ``features``: anything with ``see(record)``; ``stoppable``: the
    input is stopped by the control plane itself and ends by itself, after the records it holds
    (a chronopipe source, a PushInput), so the flag is not looked at (no record it took is left).
    """

    def __init__(self, records: Iterable[Any], fed_from: Any, stopped: threading.Event, features: Any,
                 stoppable: bool = False) -> None:
        self.records, self.fed_from, self.stopped = records, fed_from, stopped
        self.features, self.stoppable = features, stoppable
        #: a list, tuple or range: fed a slice at a time (``parts``)
        self.sized = isinstance(records, (list, tuple, range))

    def __iter__(self) -> Iterator[Any]:
        if self.sized:
            return itertools.chain.from_iterable(self.parts(CHUNK))
        return itertools.chain.from_iterable(self._chunks(iter(self.records)))

    def parts(self, size: int) -> Iterator[Sequence[Any]]:
        """A sized input's slices of ``size`` records, until the stop flag is set."""
        seq: Any = self.records
        see, stopped = self.features.see, self.stopped.is_set
        for start in range(0, len(seq), size):
            if stopped():
                return
            part = seq[start:start + size]
            see(part[0])
            yield part

    def watching(self, stop: Callable[[], bool], put: Callable[[Any], Any]
                 ) -> tuple[Callable[[], bool], Callable[[Any], Any]]:
        """For a feed loop that asks ``stop()`` between chunks and ``put``s the record read ahead
        of each (``wiring.fed_in_chunks``) over ``iter(self.records)`` itself: that ``stop`` or the
        stop flag (unless the input is ``stoppable``), and that ``put`` giving its record to
        ``features.see`` first. No code runs per record: a wrapping iterator cost about 15 ns."""
        see, stopped = self.features.see, self.stopped.is_set
        watched = (lambda: stop() or stopped()) if not self.stoppable else stop

        def seen(record: Any) -> Any:
            see(record)
            return put(record)

        return watched, seen

    def _chunks(self, records: Iterator[Any]) -> Iterator[Iterable[Any]]:
        see, stopped = self.features.see, self.stopped.is_set
        watch_flag = not self.stoppable
        islice, clock, size = itertools.islice, time.monotonic, 1
        while not (watch_flag and stopped()):
            started = clock()
            first = next(records, _DONE)
            if first is _DONE:
                return
            size = 1 if clock() - started > SLOW else min(size * 2, CHUNK)
            see(first)
            yield (first,)
            if size > 1:
                yield islice(records, size - 1)
