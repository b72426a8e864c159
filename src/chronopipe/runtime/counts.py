"""Live record counts of process actors, and what a failure cost.

An actor counts what it received and emitted in ``actor.counts`` (``actors.hosting.Counts``);
in a child process plain ints would be invisible to the parent until the child reports at its
end (and never, if it is killed). So the process host gives the actor a :class:`SharedCounts`
(two int64 in shared memory) before the fork (``Actor._hosted``): the actor's loops add to them
once per batch as before, the parent reads them live, and they are still there, final, after a
SIGKILL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import multiprocess

from ..actors.actor import Actor

__all__ = ["SharedCounts", "SharedInts", "in_flight", "progress"]

_ctx = multiprocess.get_context("fork")


class SharedInts:
    """Named int64 fields in shared memory, inherited by a forked child (no pickling): the
    child adds to them, the parent reads them live, and they are still there after a SIGKILL.
    Make one before the fork. A subclass names its fields: ``class X(SharedInts, fields=("a", "b"))``.
    """

    __slots__ = ("_view",)
    fields: tuple[str, ...] = ()

    def __init_subclass__(cls, fields: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fields = fields
        for i, name in enumerate(fields):
            setattr(cls, name, property(lambda self, i=i: self._view[i],
                                        lambda self, value, i=i: self._view.__setitem__(i, value)))

    def __init__(self) -> None:
        self._view = memoryview(_ctx.RawArray("q", max(1, len(self.fields)))).cast("B").cast("q")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={self._view[i]}' for i, n in enumerate(self.fields))})"


class SharedCounts(SharedInts, fields=("received", "emitted")):
    """``received`` and ``emitted`` of a process actor (the host gives it one: ``Actor._hosted``).

    >>> c = SharedCounts(); c.emitted += 5; (c.received, c.emitted)
    (0, 5)
    """

    __slots__ = ()
    received: int
    emitted: int


def progress(actors: Iterable[Actor]) -> dict[str, tuple[int, int]]:
    """(received, emitted) so far, by actor name."""
    return {a.name: (int(a.counts.received), int(a.counts.emitted)) for a in actors}


def in_flight(actors: Iterable[Actor]) -> dict[str, int]:
    """By channel: records written into it and not (fully) handled by its readers.

    A reader counts a batch as received once it has handled it, so the batch an actor was
    working on when it died is in flight too. Channels whose writer is not one of ``actors``
    (the caller feeds them) count what the caller put; channels nobody here reads are left out.

    Counts are kept per actor, not per channel, so channels whose figures cannot be told apart
    are reported together, under their names joined by "+": those one reader reads (a merge),
    and those one writer splits its records among (``Actor.broadcast`` False: a pipeline node
    routing or dealing to workers). An actor that broadcasts wrote its ``emitted`` into each
    of its outputs.
    """
    actors = list(actors)
    channels: dict[int, Any] = {}
    readers_of: dict[int, list[Actor]] = {}
    for a in actors:
        for ch in a.inputs():
            channels[id(ch)] = ch
            readers_of.setdefault(id(ch), []).append(a)
    group = {key: key for key in channels}  # union-find over the channels read here

    def root(key: int) -> int:
        while group[key] != key:
            group[key] = group[group[key]]
            key = group[key]
        return key

    def join(keys: list[int]) -> None:
        for key in keys[1:]:
            group[root(key)] = root(keys[0])

    for a in actors:
        join([id(ch) for ch in a.inputs()])  # one reader's received covers all it reads
        if not getattr(a, "broadcast", True):
            join([id(ch) for ch in a.outputs if id(ch) in channels])  # one writer's emitted covers them all
    members: dict[int, list[int]] = {}
    for key in channels:
        members.setdefault(root(key), []).append(key)
    out: dict[str, int] = {}
    for keys in members.values():
        written = 0
        for key in keys:
            writers = [w for w in actors if any(c is channels[key] for c in w.outputs)]
            if writers:
                written += sum(int(w.counts.emitted) for w in writers if getattr(w, "broadcast", True))
            else:
                try:  # (less what a pipeline put into it that is not a record: its acknowledgement marks)
                    written += channels[key].statistics().items_put - getattr(channels[key], "not_records", 0)
                except Exception:
                    continue
        splitters = {id(w): w for w in actors if not getattr(w, "broadcast", True)
                     and any(id(c) in keys for c in w.outputs)}
        written += sum(int(w.counts.emitted) for w in splitters.values())
        readers = {id(r): r for key in keys for r in readers_of[key]}
        received = sum(int(r.counts.received) for r in readers.values())
        out["+".join(channels[key].name for key in keys)] = max(0, written - received)
    return out


def describe(done: dict[str, tuple[int, int]], flight: dict[str, int]) -> str:
    """``progress: a received 0 emitted 10; b received 5 emitted 5; in flight (lost): 5 (a->b 5)``"""
    parts = "; ".join(f"{name} received {r} emitted {e}" for name, (r, e) in done.items())
    lost = sum(flight.values())
    where = ", ".join(f"{name} {n}" for name, n in flight.items() if n)
    return f"progress: {parts}; in flight (lost): {lost}" + (f" ({where})" if where else "")
