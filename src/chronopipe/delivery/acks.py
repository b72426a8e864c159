"""Acknowledgements (``guarantee="confirm"`` or ``"track"``, and resume): marks and the ledger.

The caller numbers the records it feeds and, after every batch of them, sends a :class:`Mark`
carrying the count fed so far (its *offset*) down every channel of the top node. A node passes a
mark on once it arrived from every writer of its inbox (:class:`Aligner`) and once everything it
pushed before it was sent: the mark then travels behind every record derived from the records
before it, on every path. A terminal node (nothing downstream) writes the offset into its slot
of the :class:`Ledger` instead (the caller also waits until the dead letters of those records
are written: acking.py); the smallest slot is how many records
of the source every terminal node has finished with: the *confirmed* offset, per batch, without
an id per record (Flink's checkpoint barriers, at-least-once: no alignment wait).

>>> ledger = Ledger(2)
>>> ledger.confirmed
0
>>> ledger.confirm(0, 2000); ledger.confirm(1, 1000); ledger.confirmed, ledger.lagging()
(1000, [1])
>>> batch = [1, 2, Mark(1000, -1), 3]
>>> [(records, mark and mark.offset) for records, mark in split(batch)]
[([1, 2], 1000), ([3], None)]
>>> split([1, 2]) is None
True
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from itertools import repeat
from typing import Any

import multiprocess

__all__ = ["Aligner", "Ledger", "Mark", "split"]

_ctx = multiprocess.get_context("fork")
_is = operator.is_


class Mark:
    """"Every record before the ``offset``-th of the source was sent before me", from ``writer``
    (the flag index of the node actor that sent it on; -1 for the caller's feed)."""

    __slots__ = ("offset", "writer")

    def __init__(self, offset: int, writer: int) -> None:
        self.offset = offset
        self.writer = writer

    def __reduce__(self) -> Any:
        return Mark, (self.offset, self.writer)

    def __repr__(self) -> str:
        return f"Mark({self.offset}, {self.writer})"


def split(batch: list[Any]) -> Iterator[tuple[list[Any], Mark | None]] | None:
    """None when ``batch`` holds no mark (the common case: one pass in C, ~35 ns a record);
    else its pieces: ``(records, mark)``, the mark that follows them (None after the last)."""
    if not any(map(_is, map(type, batch), repeat(Mark))):
        return None
    return _pieces(batch)


def _pieces(batch: list[Any]) -> Iterator[tuple[list[Any], Mark | None]]:
    start = 0
    for i, kind in enumerate(map(type, batch)):
        if kind is Mark:
            yield batch[start:i], batch[i]
            start = i + 1
    if start < len(batch):
        yield batch[start:], None


class Aligner:
    """One inbox's marks: which writers sent each offset. :meth:`arrived` is true once all
    ``writers`` did (a writer that sends the same mark twice, a restarted worker, counts once).

    >>> a = Aligner(2)
    >>> a.arrived(Mark(10, 0)), a.arrived(Mark(10, 0)), a.arrived(Mark(10, 1))
    (False, False, True)
    """

    __slots__ = ("_seen", "writers")

    def __init__(self, writers: int) -> None:
        self.writers = writers
        self._seen: dict[int, set[int]] = {}

    def arrived(self, mark: Mark) -> bool:
        if self.writers <= 1:
            return True
        seen = self._seen.setdefault(mark.offset, set())
        seen.add(mark.writer)
        if len(seen) < self.writers:
            return False
        del self._seen[mark.offset]
        return True


class Ledger:
    """The offset each terminal (a slot) has confirmed, in shared memory (made before the fork:
    a node process writes its slot, the caller reads them all; one int64 store, no lock), or in
    ``ints`` given (a ``RayInts``, for terminals on Ray)."""

    def __init__(self, slots: int, ints: Any = None) -> None:
        self.slots = slots
        self._view = ints if ints is not None else memoryview(_ctx.RawArray("q", max(slots, 1))).cast("B").cast("q")

    def confirm(self, slot: int, offset: int) -> None:
        """Terminal ``slot`` finished with every record before ``offset`` (offsets only grow)."""
        if offset > self._view[slot]:
            self._view[slot] = offset

    @property
    def confirmed(self) -> int:
        """How many records of the source every terminal finished with."""
        return min(self._view[: self.slots]) if self.slots else 0

    def lagging(self) -> list[int]:
        """The slots behind the others (those holding ``confirmed`` back)."""
        low = self.confirmed
        return [i for i in range(self.slots) if self._view[i] == low] if self.slots else []

    def slot(self, i: int) -> int:
        return int(self._view[i])
