"""merge_channels: the one loop that merges channels, for the multiplexers and the pipeline nodes.

It takes what its inputs have without waiting (``get_batch(0)``), strips their END, keeps
track of which are still live, and yields merged batches; when nothing can be yielded it hands
over what the caller holds (``before_wait``) and waits on the inputs it needs with
:func:`~chronopipe.channels.wait_any`, at most ``POLL_INTERVAL`` at a time so a stop is
noticed within that. Two orders:

* **FIFO** (``window=None``, QueueMultiplexer): records waiting on several inputs at once are
  interleaved one at a time in registration order (:func:`interleave`), each input's order kept;
  an input gives up to ``ROUND`` records beyond its first batch per round.
* **By key** (a :class:`~chronopipe.order.MergeWindow`): the window says what is safe to emit.
  By default (SortedQueueMultiplexer) an input is read only when the window wants more of it
  and the merge waits only on the input that holds it back, so it holds about one batch per
  input; ``idle_timeout`` moves on without that input once it has been silent that long.
  ``drain=True`` (a pipeline node merging branches) takes from every input as soon as it has
  something instead: the branches of one pipeline share their producers, which a branch left
  full would block, and with them the branch the merge waits for.

Inputs registered after the merge started (appended to ``inputs``) take part from the next
round on; a FIFO merge that saw all its inputs end has finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from ..channels import END, Channel, wait_any
from ..channels.base import POLL_INTERVAL
from ..order.window import ENDED, MergeWindow

__all__ = ["ROUND", "Counted", "interleave", "merge_channels"]

ROUND = 1000  # records taken from one input per FIFO round, beyond its first batch


class Counted(Protocol):
    """Where a merge counts the records it takes (an actor's ``counts``)."""

    received: int


def _nothing() -> None:
    return None


def merge_channels(
    inputs: Sequence[Channel],
    window: MergeWindow | None = None,
    *,
    stopped: Callable[[], object] = _nothing,
    before_wait: Callable[[], object] = _nothing,
    counts: Counted | None = None,
    idle_timeout: float | None = None,
    on_idle: Callable[[int], object] | None = None,
    drain: bool = False,
    sift: Callable[[int, list[Any]], list[Any]] | None = None,
) -> Iterator[list[Any]]:
    """Merge ``inputs`` and yield the merged records, a list at a time, until every input ended.

    ``inputs`` is read at every round, so channels appended to it while the merge runs take part.
    ``window`` (with an input added for each channel not yet in it) merges by key; None merges
    first come first out. It returns once ``stopped()`` is true (checked every round, and at least
    every ``POLL_INTERVAL`` while it waits); it calls ``before_wait()`` before every wait;
    ``counts.received`` grows by each batch once the caller has handled it (when the generator
    resumes after the yield; a late record once the merge ended), as an actor counts a batch
    received once it handled it and passed it on. With a window, ``idle_timeout`` seconds of
    silence of the input that holds the merge back make it move on without it
    (``window.set_idle(i)``, then ``on_idle(i)``), and ``drain=True`` reads every input as soon
    as it has something (see the module's docstring); then, after a round that took records
    but could emit none, it yields an empty list, so the caller may send on what is due.
    ``sift(i, batch)`` (with a window) sees each batch of input ``i`` before the window and
    returns what the window gets (a pipeline node takes its acknowledgement marks out there).

    >>> from chronopipe.channels import Channel
    >>> a, b = Channel(mode="thread"), Channel(mode="thread")
    >>> a.put_many([1, 2]); b.put_many(["x", "y", "z"]); a.close(); b.close()
    2
    3
    >>> list(merge_channels([a, b]))
    [[1, 'x', 2, 'y', 'z']]
    >>> a, b = Channel(mode="thread"), Channel(mode="thread")
    >>> a.put_many([1, 4]); b.put_many([2, 3]); a.close(); b.close()
    2
    2
    >>> [r for batch in merge_channels([a, b], MergeWindow(lambda r: r)) for r in batch]
    [1, 2, 3, 4]

    Raises:
        ValueError: ``idle_timeout`` not above 0, or given, like ``drain``, without a window;
            while merging, a record out of order when the window has no ``on_late``.
        ChannelBroken: while merging, an input was aborted or its writers are gone.
    """
    if window is None:
        if idle_timeout is not None or drain:
            raise ValueError("idle_timeout and drain belong to a merge by key: give a MergeWindow")
        return _fifo(inputs, stopped, before_wait, counts)
    if idle_timeout is not None and not idle_timeout > 0:
        raise ValueError(f"idle_timeout must be > 0 seconds or None, not {idle_timeout!r}")
    return _by_key(inputs, window, stopped, before_wait, counts, idle_timeout, on_idle, drain, sift)


def _fifo(inputs: Sequence[Channel], stopped: Callable[[], object], before_wait: Callable[[], object],
          counts: Counted | None) -> Iterator[list[Any]]:
    """Round robin over the inputs: take what each has, interleave it, wait when none has."""
    live: list[Channel] = []
    seen = 0
    while True:
        if len(inputs) > seen:
            new = inputs[seen:]
            live.extend(new)
            seen += len(new)
        if not live:
            return
        taken: list[list[Any]] = []
        progressed = False
        for ch in list(live):
            batch = _round(ch)
            if batch is None:
                continue
            progressed = True
            if batch[-1] is END:
                batch.pop()
                live.remove(ch)
            if batch:
                taken.append(batch)
        if taken:
            merged = taken[0] if len(taken) == 1 else interleave(taken)
            yield merged
            if counts is not None:
                counts.received += len(merged)
        if stopped():
            return
        if progressed:
            continue
        before_wait()
        wait_any(live, POLL_INTERVAL)


def _round(ch: Channel) -> list[Any] | None:
    """Every batch ``ch`` has now (up to about ROUND records; END last if it ended), or None."""
    batch = _batch_now(ch)
    if batch is None:
        return None
    while batch[-1] is not END and len(batch) < ROUND:
        more = _batch_now(ch)
        if more is None:
            break
        batch += more
    return batch


def _batch_now(ch: Channel) -> list[Any] | None:
    """``ch``'s next batch if it has one now, else None (asking ready() first spares the raise
    and catch of a TimeoutError: a thread channel answers from its buffer)."""
    if not ch.ready():
        return None
    try:
        return ch.get_batch(0)
    except TimeoutError:
        return None


def _by_key(inputs: Sequence[Channel], window: MergeWindow, stopped: Callable[[], object],
            before_wait: Callable[[], object], counts: Counted | None, idle_timeout: float | None,
            on_idle: Callable[[int], object] | None, drain: bool,
            sift: Callable[[int, list[Any]], list[Any]] | None) -> Iterator[list[Any]]:
    # Take what the inputs have without waiting, emit what the window says is safe, and only
    # when nothing is, wait (see order/window.py).
    held, quiet_since = -1, 0.0  # the input that holds the merge back, and since when, in silence
    state = window.state
    fed = handed = 0  # records fed to the window; records yielded and handled (late ones: the rest)
    while True:
        if stopped():
            return
        while len(state) < len(inputs):  # inputs registered after the start take part from now on
            window.add()
        got = False
        for i in [i for i, s in enumerate(state) if s != ENDED] if drain else window.wants():
            batch = _batch_now(inputs[i])
            if batch is None:
                continue
            got = True
            if i == held:
                held = -1  # it spoke: its silence starts again
            ended = batch[-1] is END
            if ended:
                batch.pop()
            if sift is not None and batch:
                batch = sift(i, batch)
            if batch:
                fed += len(batch)
                window.feed(i, batch)
            if ended:
                window.end(i)
        records = window.take()
        if records:
            held = -1
            yield records
            handed += len(records)
            if counts is not None:
                counts.received += len(records)
            continue
        if window.done:
            if counts is not None:
                counts.received += fed - handed  # the late records, handled by the window's on_late
            return
        held_by = window.waiting_on()
        wait = POLL_INTERVAL
        if idle_timeout is not None and held_by:
            now = time.monotonic()
            if held != held_by[0]:
                held, quiet_since = held_by[0], now
            elif now - quiet_since >= idle_timeout:
                window.set_idle(held)
                if on_idle is not None:
                    on_idle(held)
                held = -1
                continue
            wait = min(wait, quiet_since + idle_timeout - now)
        if drain and got:
            yield []
            continue
        if drain:
            waited_on = [inputs[i] for i, s in enumerate(state) if s != ENDED]
        elif held_by:
            waited_on = [inputs[held_by[0]]]  # only the input that holds the merge back: bounded memory
        else:  # every input left went idle (idle_timeout): wait for any of them
            waited_on = [inputs[i] for i, s in enumerate(state) if s != ENDED]
        before_wait()
        wait_any(waited_on, wait)


def interleave(batches: list[list[Any]]) -> list[Any]:
    """One record of each batch in turn (round robin), each batch's order kept.

    Built with one extended-slice assignment per batch and per length step, so it costs
    C-speed copies, not Python code per record.

    >>> interleave([[1, 2], ["a", "b", "c"], [], [True]])
    [1, 'a', True, 2, 'b', 'c']
    """
    batches = [b for b in batches if b]
    if len(batches) <= 1:
        return batches[0] if batches else []
    out: list[Any] = [None] * sum(map(len, batches))
    at = start = 0  # records placed; records taken from each batch still in play
    while len(batches) > 1:
        stop, k = min(map(len, batches)), len(batches)
        end = at + k * (stop - start)
        for j, batch in enumerate(batches):
            out[at + j:end:k] = batch if start == 0 and stop == len(batch) else batch[start:stop]
        at, start = end, stop
        batches = [b for b in batches if len(b) > stop]
    if batches:
        out[at:] = batches[0][start:]
    return out
