"""The sorted merge's core: emit, a window at a time, every record no input can still precede.

Each input is sorted by the key. What an input will send next cannot come before the last key
it sent, so everything buffered that is before the smallest of those last keys (the *cut*) is
safe to emit now: the window takes it from every buffer and sorts it with ``list.sort``. The
pieces are already sorted runs, which Timsort finds and merges in C with galloping, so a
window costs a few comparisons per record and no Python code per record. That is what makes
it faster than a heap, which runs Python code for every record (``heapq.merge`` included).

Stability: the pieces are concatenated in input-registration order and ``list.sort`` is
stable, so ties come out in registration order. A record equal to the cut waits while an
input registered before its own could still send that key.

A record that comes before what its input already sent, or before what was already emitted
(from an input that was idle or registered late), is *late*: handed to ``on_late``, never
emitted out of order, never dropped unseen.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Literal

from .keys import SortKey, fast_key_function, key_function

__all__ = ["MergeWindow", "merge_sorted"]

_UNSET: Any = object()  # no key yet
LIVE, IDLE, ENDED = 0, 1, 2


class MergeWindow:
    """Buffers of sorted inputs, and what of them can be emitted in order now.

    >>> w = MergeWindow("t")
    >>> a, b = w.add(), w.add()
    >>> w.feed(a, [{"t": 1}, {"t": 5}]); w.feed(b, [{"t": 2}, {"t": 3}])
    >>> [r["t"] for r in w.take()]  # b may still send 3 or more: 5 waits
    [1, 2, 3]
    >>> w.end(b); [r["t"] for r in w.take()]
    [5]
    """

    def __init__(self, sort_key: SortKey = "timestamp", sort_direction: Literal["min", "max"] = "min",
                 on_late: Callable[[int, Any, Any], None] | None = None) -> None:
        if sort_direction not in ("min", "max"):
            raise ValueError(f"sort_direction must be 'min' or 'max', not {sort_direction!r}")
        self.descending = sort_direction == "max"
        self._before = operator.gt if self.descending else operator.lt  # a comes before b
        self._fast, self._slow = fast_key_function(sort_key), key_function(sort_key)
        # a key implemented in C re-keys faster than an index sort reuses our keys
        self._sort_by_key = isinstance(self._fast, operator.itemgetter | operator.attrgetter)
        self._on_late = on_late
        self.bufs: list[list[Any]] = []  # per input: records received, not yet emitted, from pos
        self.keys: list[list[Any]] = []  # their keys
        self.pos: list[int] = []
        self.last: list[Any] = []  # key of the last record each input sent (_UNSET: none yet)
        self.state: list[int] = []
        self.frontier: Any = _UNSET  # key of the last record emitted
        self.emitted = 0

    # -- inputs ----------------------------------------------------------------------------
    def add(self) -> int:
        """Register an input (it takes part from now on); returns its index."""
        for column, value in ((self.bufs, []), (self.keys, []), (self.pos, 0), (self.last, _UNSET),
                              (self.state, LIVE)):
            column.append(value)
        return len(self.state) - 1

    def feed(self, i: int, batch: list[Any]) -> None:
        """Records from input ``i``, in its order (late ones go to on_late)."""
        if not batch:
            return
        try:
            ks = list(map(self._fast, batch))
        except Exception:
            ks = [self._slow(r) for r in batch]  # attributes, nesting: the full lookup, with its clear error
            self._sort_by_key = False  # the fast key does not fit these records: sort by the keys we have
        before, last, frontier = self._before, self.last[i], self.frontier
        try:  # nothing may come before what this input sent, nor before what was emitted
            floor = last if frontier is _UNSET or (last is not _UNSET and before(frontier, last)) else frontier
            ordered = not any(map(before, islice(ks, 1, None), ks)) and (floor is _UNSET or not before(ks[0], floor))
            if not ordered:
                batch, ks = self._drop_late(i, batch, ks, floor)
        except TypeError as exc:
            raise _incomparable(exc, frontier if last is _UNSET else last, ks[0]) from None
        if not batch:
            return
        if self.state[i] == IDLE:
            self.state[i] = LIVE  # it speaks again: it takes part in the cut again
        buf, p = self.bufs[i], self.pos[i]
        if p >= len(buf):
            self.bufs[i], self.keys[i], self.pos[i] = batch, ks, 0
        else:  # records held at the cut: keep them ahead of the new ones
            self.bufs[i], self.keys[i], self.pos[i] = buf[p:] + batch, self.keys[i][p:] + ks, 0
        self.last[i] = ks[-1]

    def _drop_late(self, i: int, batch: list[Any], ks: list[Any], floor: Any) -> tuple[list[Any], list[Any]]:
        before, keep, keep_keys = self._before, [], []
        for record, k in zip(batch, ks, strict=True):
            if floor is not _UNSET and before(k, floor):
                self._late(i, record, floor)
                continue
            keep.append(record)
            keep_keys.append(k)
            floor = k
        return keep, keep_keys

    def _late(self, i: int, record: Any, floor: Any) -> None:
        if self._on_late is None:
            raise ValueError(f"input {i} is out of order: {record!r:.200} comes after key {floor!r:.100}")
        self._on_late(i, record, floor)

    def is_repeat(self, i: int, record: Any) -> bool:
        """Whether ``record`` (late) could be one input ``i`` sent already: its key is not after
        the last key ``i`` sent (a restarted producer sending its last records again).

        >>> w = MergeWindow("t"); a = w.add(); w.feed(a, [{"t": 1}, {"t": 5}])
        >>> w.is_repeat(a, {"t": 3}), w.is_repeat(a, {"t": 6})
        (True, False)
        """
        last = self.last[i]
        if last is _UNSET:
            return False
        try:
            return not self._before(last, self._slow(record))
        except TypeError:
            return False

    def end(self, i: int) -> None:
        """Input ``i`` sent everything."""
        self.state[i] = ENDED

    def set_idle(self, i: int) -> None:
        """Move on without input ``i`` until it sends again (what it sends before the frontier is late)."""
        if self.state[i] == LIVE:
            self.state[i] = IDLE

    @property
    def done(self) -> bool:
        """Every input ended and everything was emitted."""
        return all(s == ENDED for s in self.state) and all(p >= len(b) for b, p in zip(self.bufs, self.pos,
                                                                                     strict=True))

    # -- the window ------------------------------------------------------------------------
    def cut(self) -> tuple[Any, int]:
        """The smallest last key among live inputs and the first input that sent it
        (``(_UNSET, i)`` when live input ``i`` sent nothing yet; ``(_UNSET, -1)``: no live input)."""
        before, cut, first = self._before, _UNSET, -1
        for i, (state, last) in enumerate(zip(self.state, self.last, strict=True)):
            if state != LIVE:
                continue
            if last is _UNSET:
                return _UNSET, i
            try:
                if cut is _UNSET or before(last, cut):
                    cut, first = last, i
            except TypeError as exc:
                raise _incomparable(exc, cut, last) from None
        return cut, first

    def waiting_on(self) -> list[int]:
        """The live inputs the window needs more from before it can move (empty: it can move, or all ended)."""
        cut, first = self.cut()
        if first < 0:
            return []
        if cut is _UNSET:
            return [first]
        return [i for i, (s, last) in enumerate(zip(self.state, self.last, strict=True))
                if s == LIVE and (last is cut or last == cut)]

    def wants(self) -> list[int]:
        """Inputs worth asking for more without waiting: all buffered records used, or limiting the cut."""
        cut = self.cut()[0]
        return [i for i, (s, b, p, last) in enumerate(zip(self.state, self.bufs, self.pos, self.last, strict=True))
                if s != ENDED and (p >= len(b) or last is cut or last == cut)]

    def take(self) -> list[Any]:
        """Every buffered record that no input can still precede, in order (may be empty)."""
        cut, first = self.cut()
        if cut is _UNSET and first >= 0:
            return []  # a live input has sent nothing yet: anything might come first
        pieces: list[Any] = []
        piece_keys: list[Any] = []
        sources, top, before = 0, _UNSET, self._before
        for i, (buf, ks, p) in enumerate(zip(self.bufs, self.keys, self.pos, strict=True)):
            if p >= len(buf):
                continue
            # ties with the cut are safe only from inputs registered no later than the first that sent it
            q = len(buf) if cut is _UNSET else self._upto(ks, p, cut, inclusive=i <= first)
            if q > p:
                pieces += buf[p:q] if p or q < len(buf) else buf
                piece_keys += ks[p:q] if p or q < len(ks) else ks
                sources += 1
                self.pos[i] = q
                try:
                    if top is _UNSET or before(top, ks[q - 1]):
                        top = ks[q - 1]
                except TypeError as exc:
                    raise _incomparable(exc, top, ks[q - 1]) from None
        if not pieces:
            return pieces
        if sources > 1:
            pieces = self._sorted(pieces, piece_keys)
        self.frontier = top
        self.emitted += len(pieces)
        return pieces

    def _upto(self, ks: list[Any], lo: int, cut: Any, inclusive: bool) -> int:
        try:
            if not self.descending:
                return (bisect_right if inclusive else bisect_left)(ks, cut, lo)
            if inclusive:  # keys descend: count those >= cut
                return bisect_left(ks, True, lo, key=lambda k: k < cut)
            return bisect_left(ks, True, lo, key=lambda k: k <= cut)
        except TypeError as exc:
            raise _incomparable(exc, ks[lo], cut) from None

    def _sorted(self, pieces: list[Any], piece_keys: list[Any]) -> list[Any]:
        try:
            if self._sort_by_key:
                pieces.sort(key=self._fast, reverse=self.descending)
                return pieces
            order = sorted(range(len(pieces)), key=piece_keys.__getitem__, reverse=self.descending)
        except TypeError as exc:
            raise _incomparable(exc, piece_keys[0], piece_keys[-1]) from None
        return [pieces[j] for j in order]


def _incomparable(exc: TypeError, a: Any, b: Any) -> TypeError:
    return TypeError(f"sort keys cannot be compared: {a!r:.100} and {b!r:.100} ({exc}); every record's key "
                     "must be comparable with every other's (all numbers, all timestamps, ...)")


def merge_sorted(*iterables: Iterable[Any], key: SortKey = "timestamp", direction: Literal["min", "max"] = "min",
                 late: Callable[[Any], Any] | None = None, batch_size: int = 1000) -> Iterator[Any]:
    """Merge sorted iterables into one sorted iterator, in this process (``heapq.merge``, exact).

    Stable: ties come out in argument order. ``key`` is what SortedQueueMultiplexer takes (a
    field, a path as ``"a.b"`` or ``["a", "b"]``, a tuple of paths or a callable: keys.py). A
    record out of order raises ValueError, or goes to ``late(record)`` when given; it is never
    yielded out of order.
    Each iterable is read up to ``batch_size`` records ahead.

    It takes iterables only: pipeline branches are merged by ``chronopipe.graph.merge_branches``.

    >>> [r["t"] for r in merge_sorted([{"t": 1}, {"t": 4}], [{"t": 2}, {"t": 4}, {"t": 9}], key="t")]
    [1, 2, 4, 4, 9]
    >>> list(merge_sorted([3, 1], [2], key=lambda x: x, direction="max"))
    [3, 2, 1]
    >>> list(merge_sorted([1, 3, 2], key=lambda x: x, late=print))
    2
    [1, 3]

    Raises:
        ValueError: ``batch_size`` below 1, ``direction`` not "min" or "max"; while iterating, a
            record out of order when ``late`` is not given.
        TypeError: a bad ``key`` (keys.py); while iterating, keys that cannot be compared.
        KeyError: while iterating, a record without the key's field.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size!r}")
    window = MergeWindow(key, direction, None if late is None else lambda i, record, floor: late(record))
    return _merged(window, [iter(iterable) for iterable in iterables], batch_size)


def _merged(window: MergeWindow, its: list[Iterator[Any]], batch_size: int) -> Iterator[Any]:
    for _ in its:
        window.add()
    while True:
        for i in window.wants():
            batch = list(islice(its[i], batch_size))
            if len(batch) < batch_size:
                window.end(i)
            window.feed(i, batch)
        records = window.take()
        if records:
            yield from records
        elif window.done:
            return
