"""How ``push`` is wired: the functions that move an item from a node to the next ones.

Everything here is built once, when a pipeline begins, so that pushing an item costs one or
two plain calls: no attribute lookups, no logging checks, no mode checks per item.
"""

from __future__ import annotations

import itertools
import operator
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..channels import Channel
from ..channels.outbox import BATCH, Outbox, batch_limit
from ..channels.quiet import start_quiet
from .node import GroupByNode, Node, RouterNode, bad_route

__all__ = [
    "LIMIT",
    "MARKED",
    "Port",
    "Target",
    "fed_in_batches",
    "input_of",
    "lingering",
    "logged",
    "make_push",
    "push_in_begin",
    "route_to",
    "send_mark",
    "stdout_write",
    "to_port",
]

Target = Callable[[Any], Any]
#: An actor sends what it pushed at the latest once this many items wait for one channel
#: (a process channel's batch size: such a batch is pickled and sent as it is).
LIMIT = BATCH
#: Records of the source between two acknowledgement marks: with its mark, a batch of LIMIT items.
MARKED = LIMIT - 1
#: Seconds a partial batch for a process channel may wait while its actor keeps busy.
LINGER = 0.005
#: seconds: a source slower than this to give its next record makes the feed's chunks one record (fed_in_chunks)
SLOW_CHUNK = 0.02


def stdout_write(line: str) -> None:
    """Where node logs go in this process (looked up per call, so redirections apply)."""
    sys.stdout.write(line)


def _discard(item: Any) -> None:
    """push() of a node with nothing downstream."""


def make_push(targets: Sequence[Target]) -> Target:
    """One function calling every target with the item (the fewest calls for 0, 1 or 2)."""
    if not targets:
        return _discard
    if len(targets) == 1:
        return targets[0]
    if len(targets) == 2:
        first, second = targets

        def push2(item: Any) -> None:
            first(item)
            second(item)

        return push2
    every = tuple(targets)

    def push_all(item: Any) -> None:
        for target in every:
            target(item)

    return push_all


def route_to(router: RouterNode, table: dict[str, Target]) -> Target:
    """Send each item to ``table[router.route(item)]``; an unknown name is a RouteError."""
    route, get = router.route, table.get

    def routed(item: Any) -> None:
        name = route(item)
        target = get(name)
        if target is None:
            raise bad_route(router, name, table)
        target(item)

    return routed


def logged(fn: Target, what: str, name: str, write: Callable[[str], Any]) -> Target:
    """``fn``, writing ``node_log,<what>,<name>,<item>`` first (consecution's log format)."""
    prefix = f"node_log,{what},{name},"

    def logging_fn(item: Any) -> None:
        write(f"{prefix}{item}\n")
        fn(item)

    return logging_fn


def input_of(node: Node, write: Callable[[str], Any]) -> Target:
    """What receives an item sent to ``node``: its process (items grouped for a GroupByNode)."""
    fn: Target = node._process_item if isinstance(node, GroupByNode) else node.process
    return logged(fn, "input", node.name, write) if node._logging == "input" else fn


def output_of(node: Node, push: Target, write: Callable[[str], Any]) -> Target:
    """``push`` as ``node`` calls it (logging what it pushes when asked to)."""
    return logged(push, "output", node.name, write) if node._logging == "output" else push


def push_in_begin(node: Node) -> Target:
    """``push`` while begin() runs: not allowed (nothing flows before every node has begun)."""

    def push(item: Any) -> None:
        raise AttributeError(f"node {node.name!r} called push() in begin(): push from process() or end() instead "
                             "(begin() runs before any item flows)")

    return push


class Port(Outbox):
    """An actor's way to one downstream node: an outbox dealing batches round robin over that
    node's inboxes (one per worker), or sending them into the one channel meant for this branch.

    Whole batches go as they fill (``limit``: the channels' batch size, at most ``LIMIT``; a
    process channel pickles and sends such a batch as it is). After each input batch the actor
    calls ``flush_due``: into thread channels the partial batch goes at once; into process
    channels once it is ``LINGER`` seconds old (the channel then sends it on at once), or when
    the actor goes idle or ends (``flush``). So nothing waits long, and nothing is re-buffered
    item by item. ``sent`` is what the actor counts as emitted.
    """

    __slots__ = ()

    def __init__(self, channels: Sequence[Channel]) -> None:
        eager = all(ch.mode == "thread" for ch in channels)
        super().__init__(channels, limit=batch_limit(channels, LIMIT), linger=0.0 if eager else LINGER, deal=True)


def send_mark(ports: Sequence[Port], others: Sequence[Channel], mark: Any) -> list[Channel]:
    """Send what ``ports`` hold, then ``mark`` down each of their channels and ``others``; the
    channels it went to. Where a port has one channel the mark goes in the same batch as the
    records before it (one message, not two: the caller feeds ``LIMIT - 1`` records a mark)."""
    sent: dict[int, Channel] = {}
    for port in ports:
        if len(port.channels) == 1:
            port.put(mark)
            sent[id(port.channels[0])] = port.channels[0]
            port.flush()
            port.sent -= 1  # records sent: the mark is not one (counts.py's in-flight figures)
        else:
            port.flush()
    for channel in [*(ch for port in ports for ch in port.channels), *others]:
        if id(channel) not in sent:
            channel.put(mark)
            sent[id(channel)] = channel
    for channel in sent.values():
        channel.flush()
    return list(sent.values())


@contextmanager
def lingering(ports: Sequence[Port]) -> Iterator[None]:
    """While the caller feeds ``ports`` from an iterator that may pause (a live source), a
    timer thread sends what waits in them once it is due (``flush_due`` every ``LINGER``
    seconds), as a process channel's linger thread does: no record waits for the next one.

    The ports share a lock with that thread meanwhile (their sends take it; appends do not).
    A send that fails in the timer stops it; the caller meets the same error on its next send.
    """
    if not ports:
        yield
        return
    for port in ports:
        port.lock = threading.RLock()
    done = threading.Event()

    def tick() -> None:
        while not done.wait(LINGER):
            try:
                for port in ports:
                    port.flush_due(time.monotonic())
            except BaseException:  # broken or full and aborted: the feeding thread sees it too
                return

    timer = start_quiet(threading.Thread(target=tick, name="chronopipe-feed-linger", daemon=True))
    try:
        yield
    except BaseException:
        # The feed failed or was interrupted (Ctrl-C): the timer may be blocked sending to a full
        # channel whose readers stop now. Not waiting for it: the run's teardown breaks that
        # channel, and the timer's send raises and ends it.
        done.set()
        timer.join(LINGER)
        raise
    else:
        done.set()
        timer.join()
    finally:
        for port in ports:
            port.lock = None


def fed_in_batches(records: Iterator[Any], put: Target, size: int = LIMIT) -> Iterator[int]:
    """``put`` each record as it comes; after every ``size`` records, and after the last, yield
    how many were put (fewer than ``size``: the records ended).

    >>> out = []
    >>> list(fed_in_batches(iter(range(5)), out.append, 2)), out
    ([2, 2, 1], [0, 1, 2, 3, 4])
    """
    while True:
        pulled = itertools.count()
        deque(map(put, map(_first, zip(itertools.islice(records, size), pulled, strict=False))), maxlen=0)
        n = next(pulled)
        yield n
        if n < size:
            return


def fed_in_chunks(records: Iterator[Any], put_chunk: Callable[[Iterator[Any]], Any], put: Target,
                  stop: Callable[[], bool]) -> None:
    """Feed ``records`` a chunk at a time to ``put_chunk`` (which takes an iterator), asking
    ``stop()`` between chunks; ``put`` takes the one record read ahead to learn whether a chunk was
    the last. Chunks grow from 1 to LIMIT records while records come fast and fall back to 1 when
    the source keeps the next one waiting (a live source that pauses), so a failure downstream is
    noticed within about one record of a slow source, at no cost per record of a fast one.

    >>> out = []
    >>> fed_in_chunks(iter(range(5)), out.extend, out.append, lambda: False); out
    [0, 1, 2, 3, 4]
    >>> out = []  # a chunk of 1 and the record after it, then stopped
    >>> fed_in_chunks(iter(range(5)), out.extend, out.append, lambda: len(out) >= 2); out
    [0, 1]
    """
    size = 1
    while not stop():
        put_chunk(itertools.islice(records, size))
        started = time.monotonic()  # (how long the source takes, not a put held by a full channel)
        ahead = next(records, _DONE)
        if ahead is _DONE:
            return
        slow = time.monotonic() - started > SLOW_CHUNK
        put(ahead)
        size = 1 if slow else min(size * 2, LIMIT)


def put_all(put: Target) -> Callable[[Iterator[Any]], None]:
    """``put_chunk`` for :func:`fed_in_chunks` from a target that takes one record, in C."""
    return lambda chunk: deque(map(put, chunk), maxlen=0)


_DONE: Any = object()  # no record left


#: the first of a pair, in C (a Python function per record would cost more than the count it feeds)
_first = operator.itemgetter(0)


def to_port(port: Port, tag: str | None = None, current: list[Any] | None = None) -> Target:
    """A target appending to ``port``: the item as it is, or tagged ``(seq, item)`` with a new
    sequence number (``tag="new"``) or the sequence number in ``current[0]`` (``tag="current"``)."""
    put = port.put
    if tag is None:
        return put
    if tag == "new":
        numbers = itertools.count()

        def put_new(item: Any) -> None:
            put((next(numbers), item))

        return put_new
    assert current is not None

    def put_current(item: Any) -> None:
        put((current[0], item))

    return put_current
