"""The retry wrapper: a node's input function that retries a failing record, then dead-letters it.

:func:`retrying` wraps what receives a node's records (its ``process``, as the pipeline wired
it) for a node under ``guarantee="replay"`` (or ``"confirm"`` / ``"track"``: no retries, each
failure handed on at once). It runs wherever the node runs: the caller's thread
(``sync``), the node's thread or the node's process. Per record:

* the pushes of an attempt are held back and sent on only once the attempt returned; a failed
  attempt's pushes are dropped. So a retry never sends anything twice downstream, and an error
  raised downstream while they are sent is the downstream node's, never a reason to retry this
  one. (Between ``hold(push)`` and ``release()``, ``node.push`` appends to the wrapper's list:
  the executor calls ``hold`` once the node has begun and ``release`` before its ``end()``, so
  what ``end()`` pushes goes straight on.) ``each(batch)``, for an actor whose pushes carry no
  per-record tag, sends a whole input batch's pushes on at its end: the same records in the same
  order, for one Python call per batch instead of one per record;
* an ``Exception`` from ``process`` is retried at once, up to ``policy.attempts - 1`` times
  (``tally.retried`` counts the retries); ``BaseException`` (Ctrl-C, SystemExit) is not caught;
* after ``policy.attempts`` failed attempts, ``send(DeadLetter)`` hands the record on with the
  last error (``tally.dead_lettered`` counts it) and the next record is taken.

The tallies are plain ints (:class:`Tally`) for one thread, or int64 in shared memory
(:class:`SharedTally`, made before the fork) for a node process, read live by the parent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from ..actors.errors import NO_RECORD
from ..runtime.counts import SharedInts
from .letters import DeadLetter
from .policy import Policy

__all__ = ["Retrying", "SharedTally", "Tally", "retrying"]


class Tally:
    """What one node (or worker) did under ``replay``: records received and pushes sent on
    (counted by the wrapper when asked, in the sync mode), retries, dead letters.

    >>> t = Tally(); t.retried += 2; (t.received, t.retried, t.dead_lettered)
    (0, 2, 0)
    """

    __slots__ = ("dead_lettered", "dropped", "received", "retried", "sent")

    def __init__(self) -> None:
        self.received = self.sent = self.retried = self.dead_lettered = self.dropped = 0


class SharedTally(SharedInts, fields=("retried", "dead_lettered", "dropped")):
    """``retried``, ``dead_lettered`` and ``dropped`` (a merge's copies of records a restarted
    branch sent again) as int64 in shared memory: a node process adds to them, the parent reads
    them live (and after a SIGKILL). Make it before the fork.

    >>> t = SharedTally(); t.dead_lettered += 1; (t.retried, t.dead_lettered)
    (0, 1)
    """

    __slots__ = ()
    retried: int
    dead_lettered: int
    dropped: int


class Retrying(NamedTuple):
    """What :func:`retrying` returns: the wrapped input, per record (``entry``) and per batch
    (``each``), and how to switch ``node.push`` to the held-back list (``hold(push)``, ``push``
    being the node's real one) and back (``release()``); ``failing[0]``: the record ``each`` was
    handling when something that is not an Exception (SystemExit, Ctrl-C) stopped it."""

    entry: Callable[[Any], None]
    each: Callable[[list[Any]], None]
    hold: Callable[[Callable[[Any], Any]], None]
    release: Callable[[], None]
    failing: list[Any]


def _not_held(item: Any) -> None:
    raise RuntimeError("a retrying node pushed before hold(): the executor must call hold(push) first")


def retrying(node: Any, fn: Callable[[Any], Any], policy: Policy, send: Callable[[DeadLetter], Any], tally: Any,
             pipeline: str, count: bool = False) -> Retrying:
    """``fn`` (what receives ``node``'s records) with the retries and dead letters of ``policy``.

    ``send`` gets each DeadLetter (a sink's ``write`` in the sync mode, a channel's put in the
    actor modes); if it raises, so does the wrapper (the run fails). ``count=True`` also counts
    ``tally.received`` and ``tally.sent`` in ``entry`` (the sync mode, whose other nodes count
    nothing).

    >>> class Flaky:
    ...     name, fails = "flaky", 2
    ...     def process(self, item):
    ...         self.push(item)  # held back: sent on only if this attempt returns
    ...         if self.fails:
    ...             self.fails -= 1
    ...             raise ValueError("not yet")
    >>> out, letters, node, tally = [], [], Flaky(), Tally()
    >>> entry, each, hold, release, _ = retrying(node, node.process, Policy("replay", 3), letters.append, tally, "p",
    ...                                          True)
    >>> hold(out.append)
    >>> entry(1); out, tally.retried, tally.dead_lettered, letters
    ([1], 2, 0, [])
    >>> node.fails = 9; entry(2); out, tally.retried, [(d.record, d.attempts, d.error) for d in letters]
    ([1], 5, [(2, 4, 'not yet')])
    >>> tally.received, tally.sent
    (2, 1)
    >>> node.fails = 5; each([3, 4, 5]); out, tally.retried, [d.record for d in letters]
    ([1, 4, 5], 9, [2, 3])
    >>> release(); node.push == out.append
    True

    Raises:
        whatever ``send`` raises; a BaseException that is not an Exception from ``fn``.
    """
    buffer: list[Any] = []
    keep, pop = buffer.append, buffer.pop
    retries, name = policy.attempts - 1, node.name
    push: Callable[[Any], Any] = _not_held

    def hold(real: Callable[[Any], Any]) -> None:
        nonlocal push
        push = real
        node.push = keep

    def release() -> None:
        node.push = push

    def send_on() -> int:
        sent = len(buffer)
        held = buffer[:]
        buffer.clear()
        deque(map(push, held), maxlen=0)  # a C loop: one Python call per record, push's own
        return sent

    def again(item: Any, exc: Exception, mark: int) -> bool:
        """The attempts after the first, the record's pushes being ``buffer[mark:]`` (run outside
        any ``except``, so an attempt's exception is not chained to the one before). True when an
        attempt returned (its pushes are in the buffer), False once the record is dead-lettered."""
        del buffer[mark:]
        for _ in range(retries):
            tally.retried += 1
            try:
                fn(item)
            except Exception as later:
                exc = later
                del buffer[mark:]
                continue
            return True
        if exc.__traceback__ is not None:  # from the node's code on, not this wrapper's frame
            exc = exc.with_traceback(exc.__traceback__.tb_next)
        send(DeadLetter.of(pipeline, name, 1 + retries, exc, item))
        tally.dead_lettered += 1
        return False

    def entry(item: Any) -> None:
        try:
            fn(item)
        except Exception as exc:
            failed = exc
        else:
            if buffer:
                if len(buffer) == 1:
                    push(pop())
                else:
                    send_on()
            return
        if again(item, failed, 0) and buffer:
            send_on()

    def counted(item: Any) -> None:
        tally.received += 1
        try:
            fn(item)
        except Exception as exc:
            failed = exc
        else:
            if buffer:
                tally.sent += send_on()
            return
        if again(item, failed, 0) and buffer:
            tally.sent += send_on()

    failing: list[Any] = [NO_RECORD]

    def each(items: list[Any]) -> None:
        records, size, mark, item = iter(items), len, 0, None
        while True:
            try:
                for item in records:
                    mark = size(buffer)
                    fn(item)
                break
            except Exception as exc:
                failed = exc
            except BaseException:
                failing[0] = item  # the run stops: which record it was on (the executor's error names it)
                raise
            again(item, failed, mark)  # then on with the records after it
        if buffer:
            send_on()

    return Retrying(counted if count else entry, each, hold, release, failing)
