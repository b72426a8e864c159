"""Live record counts of process actors, and what a failure cost.

A process actor counts what it received and emitted in ``_received`` / ``_emitted``; in its
own process those are plain ints, invisible to the parent until it reports at its end (and
never, if it is killed). ``share_counts`` moves them into shared memory (two int64 per actor)
before the fork: the actor's loops update them once per batch as before, the parent reads them
live, and they are still there, final, after a SIGKILL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import multiprocess

from ..actors.actor import Actor

__all__ = ["in_flight", "progress", "share_counts"]

_ctx = multiprocess.get_context("fork")
_classes: dict[type, type] = {}


def _shared(index: int) -> property:
    def get(self: Any) -> int:
        return self._shared_counts[index]

    def put(self: Any, value: int) -> None:
        self._shared_counts[index] = value

    return property(get, put)


def share_counts(actor: Actor) -> None:
    """Back ``actor``'s counts by shared memory. Runs in the parent, before the actor's process
    is forked. The actor's class is swapped for a subclass of the same name whose ``_received``
    and ``_emitted`` are properties over the shared array; if that cannot be done (a class with
    ``__slots__``), the counts stay private to the child and arrive with its report, as before."""
    counts = memoryview(_ctx.RawArray("q", 2)).cast("B").cast("q")
    counts[0], counts[1] = actor._received, actor._emitted
    cls = type(actor)
    if "_shared_counts" not in vars(cls):
        sub = _classes.get(cls)
        if sub is None:
            sub = type(cls.__name__, (cls,), {
                "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                "_shared_counts": None, "_received": _shared(0), "_emitted": _shared(1),
            })
            _classes[cls] = sub
        try:
            actor.__class__ = sub
        except TypeError:
            return
    vars(actor).pop("_received", None)
    vars(actor).pop("_emitted", None)
    actor._shared_counts = counts  # type: ignore[attr-defined]


def progress(actors: Iterable[Actor]) -> dict[str, tuple[int, int]]:
    """(received, emitted) so far, by actor name."""
    return {a.name: (int(a._received), int(a._emitted)) for a in actors}


def in_flight(actors: Iterable[Actor]) -> dict[str, int]:
    """By channel: records written into it and not (fully) handled by its readers.

    A reader counts a batch as received once it has handled it, so the batch an actor was
    working on when it died is in flight too. Channels whose writer is not one of ``actors``
    (the caller feeds them) count what the caller put; channels nobody here reads are left out.
    """
    actors = list(actors)
    out: dict[str, int] = {}
    seen: set[int] = set()
    for a in actors:
        for ch in a.channels():
            if id(ch) in seen:
                continue
            seen.add(id(ch))
            readers = [r for r in actors if any(c is ch for c in r.inputs())]
            if not readers:
                continue
            writers = [w for w in actors if any(c is ch for c in w.outputs)]
            if writers:
                written = sum(int(w._emitted) for w in writers)
            else:
                try:
                    written = ch.statistics().items_put
                except Exception:
                    continue
            out[ch.name] = max(0, written - sum(int(r._received) for r in readers))
    return out


def describe(done: dict[str, tuple[int, int]], flight: dict[str, int]) -> str:
    """``progress: a received 0 emitted 10; b received 5 emitted 5; in flight (lost): 5 (a->b 5)``"""
    parts = "; ".join(f"{name} received {r} emitted {e}" for name, (r, e) in done.items())
    lost = sum(flight.values())
    where = ", ".join(f"{name} {n}" for name, n in flight.items() if n)
    return f"progress: {parts}; in flight (lost): {lost}" + (f" ({where})" if where else "")
