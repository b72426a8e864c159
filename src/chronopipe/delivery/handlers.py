"""Retries and dead letters for actor chains without a Pipeline: a replaying handler.

A Pipeline's nodes get ``guarantee="replay"`` from the pipeline; an :class:`~chronopipe.actors.Actor`
on the Runtime gets it by wrapping its handler::

    parse = Actor("parse", replaying(parse_row, "parse", max_retries=3, dead_letter="dl.jsonl"),
                  inbox=rows, outputs=parsed, mode="process")

A record whose handler raises an ``Exception`` is given to it again, up to ``max_retries`` more
times (at once); if every attempt raised, it becomes a dead letter (the letter format of
letters.py, the same file a Pipeline writes) and the actor goes on with the next record, emitting
nothing for it. The handler's return value is emitted only once an attempt returned, so retries
never emit twice. ``KeyboardInterrupt`` and ``SystemExit`` are not retried.

Letters are written where the handler runs (its thread, or its process: a dead-letter file is
appended to with one ``write`` per line on an ``O_APPEND`` file, which survives the process; a
callable sink runs in that process). ``tally`` counts ``retried`` and ``dead_lettered`` in
shared memory, so the caller reads a process actor's counts. ``close()`` fsyncs the file (call
it once the actor ended). A dead worker process is not restarted here: that is a Pipeline's
(docs/delivery.md).

>>> letters = []
>>> handle = replaying(int, "parse", max_retries=2, dead_letter=letters.append)
>>> handle("7"), handle("x"), (handle.tally.retried, handle.tally.dead_lettered)
(7, None, (2, 1))
>>> letters[0].node, letters[0].attempts, letters[0].record, letters[0].error_type
('parse', 3, 'x', 'ValueError')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .letters import DeadLetter
from .policy import DEFAULT_MAX_RETRIES, check_max_retries
from .retry import SharedTally
from .sinks import Sink, open_sink

__all__ = ["ReplayingHandler", "replaying"]


class ReplayingHandler:
    """``handler`` with retries and dead letters (made by :func:`replaying`)."""

    def __init__(self, handler: Callable[[Any], Any], name: str, max_retries: int, sink: Sink,
                 pipeline: str) -> None:
        self.handler, self.name, self.max_retries = handler, name, max_retries
        self.sink, self.pipeline = sink, pipeline
        self.tally = SharedTally()  # made here, before the actor's process is forked

    def __call__(self, record: Any) -> Any:
        try:
            return self.handler(record)
        except Exception as exc:
            failed = exc
        for _ in range(self.max_retries):  # outside the except: an attempt's error is not chained
            self.tally.retried += 1
            try:
                return self.handler(record)
            except Exception as exc:
                failed = exc
        if failed.__traceback__ is not None:  # from the handler's code on, not this wrapper's frame
            failed = failed.with_traceback(failed.__traceback__.tb_next)
        self.sink.write(DeadLetter.of(self.pipeline, self.name, 1 + self.max_retries, failed, record))
        self.tally.dead_lettered += 1
        return None

    def close(self) -> None:
        """Make the letters written here durable (a dead-letter file is fsynced)."""
        self.sink.close()

    def __repr__(self) -> str:
        return f"replaying({self.handler!r}, {self.name!r}, max_retries={self.max_retries})"


def replaying(handler: Callable[[Any], Any], name: str, *, max_retries: int = DEFAULT_MAX_RETRIES,
              dead_letter: Any = None, pipeline: str = "") -> ReplayingHandler:
    """``handler`` (an actor's ``on_receive``) retried up to ``max_retries`` times, then
    dead-lettered into ``dead_letter`` (a path, default ``<name>.dead-letters.jsonl``, or a
    callable taking a DeadLetter); ``name`` (the actor's) and ``pipeline`` go into each letter.

    Raises:
        ValueError: ``max_retries`` is not an int >= 0, or ``name`` is empty.
        TypeError: ``handler`` is not callable, or ``dead_letter`` is neither a path nor a callable.
    """
    if not callable(handler):
        raise TypeError(f"replaying(handler): give it the actor's handler (a callable), not {handler!r}")
    if not isinstance(name, str) or not name:
        raise ValueError("replaying() needs the actor's name: it goes into every dead letter")
    check_max_retries(max_retries)
    return ReplayingHandler(handler, name, max_retries, open_sink(dead_letter, pipeline or name), pipeline)
