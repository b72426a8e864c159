"""BatchedWriter: the writer side of the channels that send whole batches (process and ray channels).

Their write buffer is an :class:`~chronopipe.channels.outbox.Outbox` whose sender is the
channel's own ``_send_batch`` (a pipe's, a hub's), and ``LINGER``, the thread of each process that
sends partial batches once due, is its timer. What is theirs alike is here: ``put`` appends to
the outbox without a lock (a lock per record costs more than the rest of put); sends, by the
writer or by the linger thread (``_linger_flush`` once a partial batch's linger has passed), run
one at a time under ``_wlock`` and take whole runs from the left, so records leave in order and
none is lost; ``put_many`` of an iterator streams it into the outbox while the linger thread
sends what came every ``linger`` seconds (a live source's records never wait for the next one).
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .end import is_end
from .outbox import LINGER, Outbox

__all__ = ["BatchedWriter"]

_first = operator.itemgetter(0)


class BatchedWriter:
    """Mixin of a Channel subclass with ``batch_size``, ``linger``, ``close()`` and
    ``_send_batch(batch, timeout)``; it calls ``_reset_writer()`` in each process that writes
    (its constructor, a forked child, an unpickled copy)."""

    name: str
    batch_size: int
    linger: float
    _outbox: Outbox
    _wlock: threading.RLock
    _closes_here: int
    _closed_here: bool

    def _reset_writer(self) -> None:
        self._wlock = threading.RLock()  # serialises sends (close() flushes under it), never taken per record
        self._outbox = Outbox(self._send_batch, limit=self.batch_size, linger=self.linger,  # type: ignore[attr-defined]
                              lock=self._wlock, on_wait=self._wait_until)
        self._closes_here = 0  # writers of this process that closed it (a thread channel counts them too)
        self._closed_here = False  # every writer this channel has closed it here: no more puts or sends

    def put(self, item: Any, timeout: float | None = None) -> None:
        if is_end(item):
            self.close()  # type: ignore[attr-defined]
            return
        if self._closed_here:
            raise ValueError(f"channel {self.name!r}: put after close")
        self._outbox.put(item, timeout)

    def put_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        if self._closed_here:
            raise ValueError(f"channel {self.name!r}: put after close")
        if not isinstance(items, (list, tuple)):
            return self._stream(iter(items), timeout)
        self._outbox.put_many(items, timeout)  # whole batches go as they are, no copy
        return len(items)

    def _stream(self, it: Iterator[Any], timeout: float | None) -> int:
        # Records go straight from the iterator into the outbox (in C), so while the iterator
        # pauses (a live source waiting for data) the linger thread, which polls us meanwhile,
        # can send what has arrived: no record waits for the next one.
        box, taken = self._outbox, 0
        pending, size = box.pending, box.limit
        LINGER.poll(self)
        try:
            while True:
                pulled = itertools.count()
                chunk = itertools.islice(it, max(1, size - len(pending)))
                pending.extend(map(_first, zip(chunk, pulled, strict=False)))
                n = next(pulled)
                if not n:
                    return taken
                taken += n
                if len(pending) >= size:
                    box.flush(timeout)
        finally:
            LINGER.unpoll(self)
            if pending:  # the rest is due one linger from now, like a put's
                box.wait_from(time.monotonic())

    def _wait_until(self, due: float) -> None:
        """The outbox's on_wait: a partial batch waits; the linger thread sends it at ``due``."""
        LINGER.watch(self, due)

    def _linger_flush(self, polled: bool = False) -> None:
        """Called by the linger thread once a partial batch may have waited ``linger`` seconds
        (``polled``: every ``linger`` seconds while put_many streams an iterator in)."""
        with self._wlock:
            if not self._closed_here:
                if polled:
                    self._outbox.flush()
                else:
                    self._outbox.flush_due(time.monotonic())
