"""Reordering: a stream that is *almost* in order made exactly in order, within a bounded lateness.

Records of a live source come in the order they arrived, which is not quite the order of their
event time: a sensor's clock, a network path, a batch sent late. When no record comes more than
``lateness`` (in the key's units) after a later one, holding each record until the stream has
gone ``lateness`` past it puts them all in key order. A record that is later than that cannot
be placed: it is *late*, handed to ``late`` (or an error), never emitted out of order. Once in
order, streams of several sources merge with ``merge_sorted`` or the SortedQueueMultiplexer.

>>> list(reorder([{"t": 1}, {"t": 3}, {"t": 2}, {"t": 6}, {"t": 5}], key="t", lateness=2))
[{'t': 1}, {'t': 2}, {'t': 3}, {'t': 5}, {'t': 6}]
>>> list(reorder([1, 5, 9, 2], key=lambda x: x, lateness=3, late=lambda r: print("late", r)))
late 2
[1, 5, 9]
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from .keys import SortKey, key_function

__all__ = ["Reorder", "reorder"]


class Reorder:
    """The buffer of :func:`reorder`, fed a list at a time (a source's reads).

    ``push(records)`` returns the records now certain of their place; ``flush()`` releases the
    rest, at the end of the stream (or when a source has been quiet long enough that nothing
    earlier can come). Ties keep their arrival order. ``unkeyed(record, error)``, when given, takes a record whose
    key cannot be read (else the key's error is raised).

    >>> r = Reorder("t", 10)
    >>> r.push([{"t": 100}, {"t": 95}, {"t": 112}])
    [{'t': 95}, {'t': 100}]
    >>> r.held, r.flush()
    (1, [{'t': 112}])
    """

    def __init__(self, key: SortKey, lateness: float | timedelta, late: Callable[[Any], Any] | None = None,
                 unkeyed: Callable[[Any, Exception], Any] | None = None) -> None:
        if not (lateness >= timedelta(0) if isinstance(lateness, timedelta) else lateness >= 0):
            raise ValueError(f"lateness must be >= 0, not {lateness!r}")
        self.key, self.lateness, self.late, self.unkeyed = key_function(key), lateness, late, unkeyed
        self.late_count = 0
        self.seen = 0  #: records pushed so far (the one being handled is record number ``seen``)
        self._heap: list[tuple[Any, int, Any]] = []
        self._order = itertools.count()
        self._top: Any = None  # the largest key seen
        self._floor: Any = None  # the key of the last record released

    @property
    def held(self) -> int:
        """Records held, waiting for their place to be certain."""
        return len(self._heap)

    def push(self, records: Iterable[Any]) -> list[Any]:
        """Take ``records``; return those whose place is now certain, in key order.

        Raises:
            ValueError: a record is late and no ``late`` was given."""
        key, heap, order, out = self.key, self._heap, self._order, []
        top, floor = self._top, self._floor
        for record in records:  # released record by record: the result does not depend on how records are cut
            self.seen += 1
            try:
                k = key(record)
                later = floor is not None and k < floor
                newest = top is None or k > top  # (a key that cannot be compared with the others fails here)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                if self.unkeyed is None:
                    raise
                self.unkeyed(record, exc)
                continue
            if later:
                self._reject(record, k, floor)
                continue
            heapq.heappush(heap, (k, next(order), record))
            if newest:
                top = k
                bound = self._bound(top)
                while heap and heap[0][0] <= bound:
                    floor, _, released = heapq.heappop(heap)
                    out.append(released)
        self._top, self._floor = top, floor
        return out

    def _bound(self, top: Any) -> Any:
        """``top - lateness``: a lateness in seconds goes with datetime keys as a timedelta."""
        if isinstance(top, datetime) and not isinstance(self.lateness, timedelta):
            self.lateness = timedelta(seconds=self.lateness)
        return top - self.lateness

    def flush(self) -> list[Any]:
        """The stream ended: every held record, in key order."""
        held = sorted(self._heap)  # (key, arrival, record): the arrival settles ties, records are never compared
        self._heap.clear()
        if held:
            self._floor = held[-1][0]
        return [record for _, _, record in held]

    def _reject(self, record: Any, k: Any, floor: Any) -> None:
        self.late_count += 1
        if self.late is None:
            raise ValueError(f"a record of key {k!r} after one of key {floor!r} was released ({record!r:.100}): "
                             f"later than the lateness of {self.lateness} allows")
        self.late(record)


def reorder(records: Iterable[Any], key: SortKey, lateness: float,
            late: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """``records`` in key order, each held until the stream has gone ``lateness`` past its key.

    Exact for a stream where no record comes more than ``lateness`` after a later one; a record
    that does is late: given to ``late(record)``, or a ValueError when ``late`` is None. Holds the
    records of one ``lateness`` span. ``key`` is spelt as for ``merge_sorted`` (keys.py).

    Raises:
        ValueError: ``lateness`` below 0; while iterating, a late record when ``late`` is None.
        TypeError: a bad ``key``; while iterating, keys that cannot be compared or subtracted."""
    buffer = Reorder(key, lateness, late)
    for chunk in _chunks(records):
        yield from buffer.push(chunk)
    yield from buffer.flush()


def _chunks(records: Iterable[Any], size: int = 1000) -> Iterator[list[Any]]:
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
