"""Intake: how a consumer runner takes what its source gives, without ever waiting blind.

* :class:`Pump` reads a plain iterable (a generator, a class of yours) on a helper thread, so
  the runner waits for records with a timeout: it cuts a partial batch after ``seconds`` and
  sees a stop within POLL even while the iterable is blocked in ``next()``.
* :func:`recut` cuts a stream of Arrow tables into batches of the sizes the runner asks for in
  turn (a rerun cuts where the earlier run cut, then ``size`` rows a batch).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["POLL", "Pump", "recut"]

POLL = 0.1  # seconds: how often a waiting runner looks at its stop flag and its batch's age


class Pump:
    """A plain iterable read on a daemon thread into a bounded buffer.

    ``take(timeout)`` (the runner's thread) returns every record read so far, waiting up to
    ``timeout`` for at least one; ``ended`` once the iterable is exhausted or raised and every
    record was taken; then ``error`` is what it raised, if it did (for the runner to raise). The
    helper waits while ``high`` records are untaken, and stops reading once ``stopping()`` is
    true; a helper blocked inside the iterable at that moment is left there (a daemon: it ends
    with the process), and what it read before is still taken.

    >>> pump = Pump(iter(range(5)), name="demo", stopping=lambda: False).start()
    >>> got = []
    >>> while not pump.ended:
    ...     got += pump.take(1.0)
    >>> got
    [0, 1, 2, 3, 4]
    """

    def __init__(self, records: Iterator[Any], *, name: str, stopping: Callable[[], bool], high: int = 10_000) -> None:
        self._records, self._stopping, self._high = records, stopping, high
        self._items: deque[Any] = deque()
        self._ready, self._room = threading.Event(), threading.Event()
        self._done = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name=f"chronopipe:{name}:reader", daemon=True)

    def start(self) -> Pump:
        self._thread.start()
        return self

    def _read(self) -> None:
        items, ready, room, stopping, high = self._items, self._ready, self._room, self._stopping, self._high
        try:
            for record in self._records:
                items.append(record)
                if not ready.is_set():
                    ready.set()
                while len(items) >= high and not stopping():
                    room.clear()
                    if len(items) >= high:
                        room.wait(POLL)
                if stopping():
                    return
        except BaseException as exc:  # raised again in the runner's thread, by take()
            self.error = exc
        finally:
            self._done = True
            ready.set()

    @property
    def ended(self) -> bool:
        return self._done and not self._items

    def take(self, timeout: float) -> list[Any]:
        """What was read so far (at most ``high`` records); [] after ``timeout`` seconds of nothing."""
        items = self._items
        if not items and not self._done:
            self._ready.clear()
            if not items and not self._done:
                self._ready.wait(timeout)
        taken = [items.popleft() for _ in range(len(items))]
        self._room.set()
        return taken


def recut(tables: Iterable[Any], size: Callable[[], int]) -> Iterator[Any]:
    """The rows of ``tables`` (pyarrow Tables of one schema) again, in tables of ``size()`` rows
    (asked before each cut), the last one with what is left. A table of exactly the size asked
    goes through as it is.

    >>> import pyarrow as pa
    >>> sizes = iter([2, 3, 10])
    >>> [t.num_rows for t in recut([pa.table({"a": [1, 2, 3, 4]}), pa.table({"a": [5, 6]})], lambda: next(sizes))]
    [2, 3, 1]
    """
    import pyarrow as pa

    held: list[Any] = []
    rows = 0
    want = size()
    for table in tables:
        if not held and table.num_rows == want:
            yield table
            want = size()
            continue
        held.append(table)
        rows += table.num_rows
        while rows >= want:
            whole = pa.concat_tables(held) if len(held) > 1 else held[0]
            yield whole.slice(0, want)
            rest = whole.slice(want)
            held, rows = ([rest] if rest.num_rows else []), rest.num_rows
            want = size()
    if rows:
        yield pa.concat_tables(held) if len(held) > 1 else held[0]
