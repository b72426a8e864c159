"""Callbacks as the EventManager handles them: their names, their keys, and the pools they run on."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ..runtime import Runtime

__all__ = ["NamedCall", "callback_key", "name_of", "pool_mode"]


class NamedCall:
    """A callback on its way to a pool, named for the pool's error reports."""

    def __init__(self, fn: Callable[[Any], Any], name: str) -> None:
        self.fn = fn
        self.__name__ = name

    def __call__(self, event: Any) -> Any:
        return self.fn(event)


def pool_mode(pool: Any) -> str | Executor:
    """``async_pool`` as "thread" / "process" (the Runtime's pools) or an executor."""
    if pool is None:
        return "thread"
    if isinstance(pool, str) and pool in ("thread", "process"):
        return pool
    if isinstance(pool, Executor):
        return pool
    from pathos.pools import ProcessPool, ThreadPool

    if isinstance(pool, ProcessPool) and pool is Runtime().process_pool():
        return "process"
    if isinstance(pool, ThreadPool) and pool is Runtime().thread_pool():
        return "thread"
    raise TypeError(
        f"async_pool must be 'thread', 'process', one of the Runtime's pools (Runtime().process_pool(), the seed's "
        f"MultiProcessing().ProcessPool() / ThreadPool()) or a concurrent.futures executor, not {pool!r:.100}: "
        "other pools can hang forever on a worker that dies"
    )


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
