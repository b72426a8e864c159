"""Callbacks as the EventManager handles them: their names, their keys, and the pools they run on."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..either import Pending
from ..runtime import Runtime
from .pools import AsyncPool, user_pool
from .threads import Deadline, callback_threads

__all__ = ["NamedCall", "Outstanding", "callback_key", "name_of", "pool_mode", "submit_task"]

log = logging.getLogger("chronopipe.events")


class NamedCall:
    """A callback on its way to a pool, named for the pool's error reports."""

    def __init__(self, fn: Callable[[Any], Any], name: str) -> None:
        self.fn = fn
        self.__name__ = name

    def __call__(self, event: Any) -> Any:
        return self.fn(event)


def pool_mode(pool: Any) -> str | AsyncPool:
    """``async_pool`` as "thread" / "process" (the Runtime's pools) or the user's own pool.

    The user's pool may be a pathos ProcessPool or ThreadPool (``pathos.pools``,
    ``pathos.multiprocessing``, ``pathos.threading``), a ``multiprocess`` or
    ``multiprocessing`` Pool or ThreadPool, or a ``concurrent.futures`` executor (see pools.py).

    Raises:
        TypeError: anything else (a pathos ParallelPool or SerialPool, an object that is no pool).
    """
    if pool is None:
        return "thread"
    if isinstance(pool, str) and pool in ("thread", "process"):
        return pool
    from pathos.pools import ProcessPool, ThreadPool

    if isinstance(pool, ProcessPool) and pool is Runtime().process_pool():
        return "process"
    if isinstance(pool, ThreadPool) and pool is Runtime().thread_pool():
        return "thread"
    wrapped = user_pool(pool)
    if wrapped is None:
        raise TypeError(
            "async_pool must be 'thread', 'process', a pathos ProcessPool or ThreadPool (the seed's ProcessPool(), "
            "or the Runtime's, MultiProcessing().ProcessPool()), a multiprocessing Pool or a concurrent.futures "
            f"executor, not {pool!r:.100}"
        )
    return wrapped


def name_of(callback: Callable[..., Any]) -> str:
    """The callback's name for logs and errors (its qualified name, without ``<locals>``)."""
    name = getattr(callback, "__qualname__", None) or type(callback).__name__
    return name.rpartition("<locals>.")[2]


def callback_key(callback: Any) -> Any:
    """What registrations are filed under by callback: the callback, or its id if unhashable."""
    try:
        hash(callback)
    except TypeError:
        return ("unhashable", id(callback))
    return callback


def submit_task(mode: str | AsyncPool, callback: Callable[[Any], Any], event: Any, label: str,
                timeout: float | None) -> Any:
    """Submit ``callback(event)`` to its pool; the task a ``Pending`` waits on (given up at ``timeout``).

    ``"thread"``: the manager's daemon callback threads (threads.py), never the Runtime's thread
    pool, whose threads the Runtime joins at exit; ``"process"``: the Runtime's process pool.

    Raises:
        Exception: what the pool raises when it refuses the task (closed, broken).
    """
    if mode == "thread":
        task: Any = callback_threads().submit(callback, (event,), label)
    elif isinstance(mode, str):
        task = Runtime().submit(NamedCall(callback, label), event, mode=mode)
    else:
        task = mode.submit(NamedCall(callback, label), event)
    return task if timeout is None else Deadline(task, timeout, label, event)


class Outstanding(deque[tuple[str, Pending[Any]]]):
    """The async callbacks submitted and not seen settled yet, oldest first, as (label, Pending).

    Not thread-safe: the EventManager calls it under its lock. ``errors`` counts those that
    settled to a Left (each logged once, as it is reaped).
    """

    def __init__(self) -> None:
        super().__init__()
        self.errors = 0

    def pendings(self) -> list[Pending[Any]]:
        return [pending for _, pending in self]

    def reap(self, full: bool) -> None:
        """Count and log the results that have settled: the oldest ones (up to the first still
        pending), or all (``full``). Never blocks."""
        waiting: deque[tuple[str, Pending[Any]]] = deque()
        while self:
            label, pending = self.popleft()
            settled = pending.poll()
            if settled is not pending:
                if settled.is_left:
                    self.errors += 1
                    log.error("async callback %s failed (its result is a Left):\n%s", label,
                              getattr(settled.error, "traceback", "").rstrip() or repr(settled.error))  # type: ignore[attr-defined]
            elif full:
                waiting.append((label, pending))
            else:
                self.appendleft((label, pending))
                break
        self.extendleft(reversed(waiting))
