"""How ``push`` is wired: the functions that move an item from a node to the next ones.

Everything here is built once, when a pipeline begins, so that pushing an item costs one or
two plain calls: no attribute lookups, no logging checks, no mode checks per item.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..channels import Channel
from .node import GroupByNode, Node, RouterNode, bad_route

__all__ = ["LIMIT", "Port", "Target", "input_of", "logged", "make_push", "push_in_begin", "route_to", "stdout_write",
           "to_port"]

Target = Callable[[Any], Any]
#: An actor sends what it pushed at the latest once this many items wait for one channel
#: (a process channel's batch size: such a batch is pickled and sent as it is).
LIMIT = 1000
#: Seconds a partial batch for a process channel may wait while its actor keeps busy.
LINGER = 0.005


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
            raise bad_route(router, name)
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


class Port:
    """An actor's buffered way to one downstream node: batches go round robin over its inboxes
    (one per worker), or into the one channel meant for this branch.

    Into thread channels a batch goes as soon as the actor has handled its input batch. Into
    process channels whole batches of ``LIMIT`` go as they fill (the channel pickles and sends
    them as they are), and a partial one once it is ``LINGER`` seconds old, or when the actor
    goes idle or ends: so nothing waits long, and nothing is re-buffered item by item.
    """

    __slots__ = ("buf", "channels", "eager", "rr", "sent", "since")

    def __init__(self, channels: Sequence[Channel]) -> None:
        self.channels = list(channels)
        self.eager = all(ch.kind == "thread" for ch in self.channels)
        self.buf: list[Any] = []
        self.rr = 0
        self.sent = 0
        self.since: float | None = None  # when a partial batch started waiting

    def flush(self) -> None:
        buf = self.buf
        self.since = None
        if buf:
            channels = self.channels
            if len(channels) == 1:
                channels[0].put_many(buf)
            else:
                channel = channels[self.rr]
                self.rr = (self.rr + 1) % len(channels)
                channel.put_many(buf)
            self.sent += len(buf)
            buf.clear()  # channels copy what they are given

    def flush_due(self, now: float) -> None:
        """After an input batch: send what waits, as the kind of channel wants (see above)."""
        if self.buf:
            if self.eager or (self.since is not None and now - self.since >= LINGER):
                self.flush()
            elif self.since is None:
                self.since = now


def to_port(port: Port, tag: str | None = None, current: list[Any] | None = None) -> Target:
    """A target appending to ``port``: the item as it is, or tagged ``(seq, item)`` with a new
    sequence number (``tag="new"``) or the sequence number in ``current[0]`` (``tag="current"``)."""
    buf, flush = port.buf, port.flush
    if tag is None:

        def put(item: Any) -> None:
            buf.append(item)
            if len(buf) >= LIMIT:
                flush()

    elif tag == "new":
        numbers = itertools.count()

        def put(item: Any) -> None:
            buf.append((next(numbers), item))
            if len(buf) >= LIMIT:
                flush()

    else:
        assert current is not None

        def put(item: Any) -> None:
            buf.append((current[0], item))
            if len(buf) >= LIMIT:
                flush()

    return put
