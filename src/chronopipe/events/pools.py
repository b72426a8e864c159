"""The user's own pools for async callbacks: pathos pools, multiprocessing pools, executors.

``EventManager(queue, async_pool=ProcessPool())`` (the seed's line, with pathos' ProcessPool)
hands each async callback to that pool; what comes back is a task that ``Pending`` waits on
and that never leaves it waiting forever:

* a callback on a *process* pool runs inside an envelope (``runtime.pools.call_enveloped``):
  its value or its exception comes back as plain data, so a result that cannot be unpickled
  becomes an error instead of breaking the pool's result thread; callback and event travel
  with dill, so lambdas work on any process pool;
* a pathos or multiprocessing process pool does not notice a worker that dies (the task is
  lost and its result never comes): while a Pending waits or is polled, the pool's worker
  processes are watched (``exitcode``) and a worker that died with a non-zero code settles it
  to an ActorError ``BrokenProcessPool`` naming the worker's pid, as ``PoolTask`` does for the
  Runtime's own pools;
* concurrent.futures' ProcessPoolExecutor notices by itself: BrokenProcessPool settles the
  Pending to a Left.

Limits, on a pathos or multiprocessing process pool only: the workers are looked at while
the Pending is waited on or polled (``wait``, ``poll``, the EventManager's ``join``,
``statistics``, ``trigger`` and its ``run()`` loop when idle), not by a thread of their own;
such a pool does not say which worker runs which task, so a worker that dies settles every
callback outstanding on that pool then (the pool is the user's and is left running:
multiprocessing replaces the worker, and a callback that was on another worker may still
run, its result unseen); a worker started *after* the submission that takes the callback
and dies is noticed only if it is seen in the pool before multiprocessing reaps it (about
0.1 s): with ``maxtasksperchild`` and nothing polling, such a callback can stay pending.
"""

from __future__ import annotations

import multiprocessing.pool
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import dill
import multiprocess.pool

from ..actors.errors import ActorError, describe_exit
from ..runtime.pools import call_enveloped, unwrap

__all__ = ["AsyncPool", "ExecutorPool", "WatchedTask", "WorkerPool", "user_pool"]

POLL = 0.05  # seconds between looks at a pool's workers while a task is waited on
_RAW_POOLS = (multiprocess.pool.Pool, multiprocessing.pool.Pool)
_RAW_THREAD_POOLS = (multiprocess.pool.ThreadPool, multiprocessing.pool.ThreadPool)


class AsyncPool:
    """A user's pool as the EventManager submits to it: ``submit(call, event)`` gives a task
    that ``Pending`` can wait on (``ready()``/``get(timeout)`` or ``done()``/``result(timeout)``)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def submit(self, call: Callable[[Any], Any], event: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self.pool).__name__


class ExecutorPool(AsyncPool):
    """A ``concurrent.futures`` executor (a process executor gets the callback through dill)."""

    def submit(self, call: Callable[[Any], Any], event: Any) -> Any:
        if isinstance(self.pool, ProcessPoolExecutor):
            label = getattr(call, "__name__", "callback")
            return _Enveloped(self.pool.submit(run_dilled, dill.dumps((call, event)), label), label)
        return self.pool.submit(call, event)


class WorkerPool(AsyncPool):
    """A pathos ProcessPool / ThreadPool, or a ``multiprocess``/``multiprocessing`` Pool."""

    def __init__(self, pool: Any, processes: bool) -> None:
        super().__init__(pool)
        self.processes = processes

    def submit(self, call: Callable[[Any], Any], event: Any) -> WatchedTask:
        raw = self.pool._serve() if hasattr(self.pool, "_serve") else self.pool  # pathos: its multiprocess Pool
        label = getattr(call, "__name__", "callback")
        if self.processes:
            payload = dill.dumps((call, event))
            return WatchedTask(lambda: raw.apply_async(run_dilled, (payload, label)), label, raw)
        return WatchedTask(lambda: raw.apply_async(call_enveloped, (call, (event,), label, False)), label, None)


class _Enveloped:
    """A Future of an enveloped call: its value, or the callback's error as an ActorError."""

    def __init__(self, future: Any, label: str) -> None:
        self._future, self._label = future, label

    def ready(self) -> bool:
        return bool(self._future.done())

    def get(self, timeout: float | None = None) -> Any:
        return unwrap(self._future.result(timeout), self._label)  # TimeoutError, BrokenProcessPool raise


class WatchedTask:
    """A pool's AsyncResult (``submit()``'s) that cannot hang on a dead worker: ``get`` watches them.

    The workers watched are those alive when the task was submitted and those the pool starts
    later; one that ends with a non-zero exit code fails the task. A multiprocessing pool does
    not say which worker holds which task, so (like BrokenProcessPool) a worker that dies fails
    every task outstanding on the pool then; the pool itself is the user's and is left alone.
    """

    def __init__(self, submit: Callable[[], Any], label: str, raw_pool: Any | None) -> None:
        self._label, self._raw = label, raw_pool
        workers = list(raw_pool._pool) if raw_pool is not None else []
        self._known = set(workers)
        self._watched = [w for w in workers if w.exitcode is None]  # before the task exists: it cannot
        self._result = submit()  # have killed one of these yet

    def ready(self) -> bool:
        return bool(self._result.ready())

    def get(self, timeout: float | None = None) -> Any:
        """The callback's value.

        Raises:
            ActorError: the callback raised, or a worker of the pool died (``BrokenProcessPool``).
            TimeoutError: no result within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._result.ready():
            self._result.wait(POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic())))
            if self._raw is not None:
                self._check_workers()
            if deadline is not None and time.monotonic() >= deadline and not self._result.ready():
                raise TimeoutError(f"{self._label}: no result within {timeout} s")
        return unwrap(self._result.get(), self._label)

    def _check_workers(self) -> None:
        for w in list(self._raw._pool):
            if w not in self._known:
                self._known.add(w)
                self._watched.append(w)
        for w in self._watched:
            code = w.exitcode
            if code not in (None, 0):
                raise ActorError(
                    self._label, "BrokenProcessPool",
                    f"pool worker pid {w.pid} died while this callback was pending "
                    f"({describe_exit(self._label, code).message}); its result will never come",
                    exitcode=code,
                )


def run_dilled(payload: bytes, label: str) -> tuple[str, Any]:
    """In a pool worker: the callback and event sent with dill, run in an envelope."""
    call, event = dill.loads(payload)
    return call_enveloped(call, (event,), label, True)


def user_pool(pool: Any) -> AsyncPool | None:
    """``pool`` wrapped for the EventManager, or None if it is no pool we can supervise.

    Raises:
        TypeError: a pathos ParallelPool or SerialPool (see the message).
    """
    if isinstance(pool, Executor):
        return ExecutorPool(pool)
    if isinstance(pool, _RAW_POOLS):
        return WorkerPool(pool, processes=not isinstance(pool, _RAW_THREAD_POOLS))
    from pathos.abstract_launcher import AbstractWorkerPool
    from pathos.multiprocessing import ProcessPool
    from pathos.threading import ThreadPool

    if isinstance(pool, ProcessPool | ThreadPool):
        return WorkerPool(pool, processes=isinstance(pool, ProcessPool))
    if isinstance(pool, AbstractWorkerPool):
        raise TypeError(
            f"async_pool: a pathos {type(pool).__name__} cannot run async callbacks here: a ParallelPool "
            "(ppft) ships the callback's source code (lambdas fail), turns its exception into a None "
            "result and has no worker processes to watch; a SerialPool runs nothing asynchronously. "
            "Use pathos' ProcessPool or ThreadPool, or a concurrent.futures executor"
        )
    return None
