"""Callbacks as the EventManager handles them: their names, their keys, and the pools they run on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..runtime import Runtime
from .pools import AsyncPool, user_pool

__all__ = ["NamedCall", "callback_key", "name_of", "pool_mode"]


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
