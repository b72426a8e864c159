"""Pool calls that never leave the caller waiting.

pathos (like multiprocessing.Pool) waits forever when a worker dies, busy or idle, and its
result thread breaks on a result or exception that cannot be unpickled. Here:

* every task runs inside an envelope: the worker returns ("ok", dill bytes) or ("error",
  plain-data description), so nothing a task returns or raises can break the pool;
* the process pool is a ``GuardedProcessPool``: a pathos ``ProcessPool`` (same methods, and
  ``isinstance`` still holds) whose calls run on a ``workers.WorkerPool``, which shares no lock
  with its workers and watches their sentinels, so a dead worker becomes an ActorError (like
  concurrent.futures' BrokenProcessPool) within milliseconds instead of a hang.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dill
from pathos.pools import ProcessPool as _PathosProcessPool

from ..actors.errors import ActorError, error_envelope, error_from_envelope, from_exception
from .workers import Job, WorkerPool, chunk_rows

__all__ = ["GuardedProcessPool", "PoolTask", "call_enveloped", "unwrap"]

_ids = itertools.count(1)


def call_enveloped(fn: Callable[..., Any], args: tuple[Any, ...], label: str, serialize: bool) -> tuple[str, Any]:
    """Run ``fn(*args)`` in a worker; never raises, never returns something unpicklable."""
    try:
        value = fn(*args)
        return "ok", (dill.dumps(value) if serialize else value)
    except BaseException as exc:
        record = args[0] if len(args) == 1 else args
        if not serialize:
            return "raised", (exc, record)
        return "error", error_envelope(label, exc, record)


def unwrap(outcome: tuple[str, Any], label: str) -> Any:
    """The value of one enveloped call, or its ActorError raised here."""
    status, payload = outcome
    if status == "ok":
        if isinstance(payload, bytes):
            try:
                return dill.loads(payload)
            except Exception as exc:
                raise ActorError(
                    label, "UnpicklingError", f"the worker's result cannot be unpickled here: {exc}"
                ) from exc
        return payload
    if status == "raised":
        exc, record = payload
        raise from_exception(label, exc, record)
    raise error_from_envelope(payload)


class PoolTask:
    """A pending pool call (from Runtime.submit / Runtime.map, or a GuardedProcessPool's
    ``amap`` / ``apipe``): ``ready()``, ``wait(timeout)``, ``get(timeout)``."""

    def __init__(self, result: Any, label: str, many: bool) -> None:
        self._result = result  # a workers.Job, or a thread pool's AsyncResult of enveloped outcomes
        self._label = label
        self._many = many

    def ready(self) -> bool:
        return self._result.ready()

    def wait(self, timeout: float | None = None) -> None:
        self._result.wait(timeout)

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self._label}: not ready")
        try:
            self.get(0)
        except ActorError:
            return False
        return True

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises the task's ActorError, an ActorError for a dead worker, or TimeoutError."""
        if isinstance(self._result, Job):
            outcomes = self._result.outcomes(timeout)
            outcome: Any = outcomes if self._many else outcomes[0]
        else:
            self._result.wait(timeout)
            if not self._result.ready():
                raise TimeoutError(f"{self._label}: no result within {timeout} s")
            outcome = self._result.get()
        if self._many:
            return [unwrap(o, self._label) for o in outcome]
        return unwrap(outcome, self._label)


def label_of(fn: Any) -> str:
    return f"pool:{getattr(fn, '__name__', 'task')}"


class GuardedProcessPool(_PathosProcessPool):
    """pathos' ``ProcessPool`` API on a WorkerPool: ``map`` / ``amap`` / ``imap`` / ``uimap`` /
    ``pipe`` / ``apipe`` never hang on a dead worker; task errors arrive as ActorError.

    ``close()`` + ``join()`` end it; ``clear()`` ends it too, and the next call starts new workers
    (pathos' behaviour). ``initializer`` runs first in every worker process (if it raises, that
    worker exits with status 1 and is replaced; a call it was given fails with an ActorError).
    """

    def __init__(self, nodes: int, initializer: Callable[[], None] | None = None, id: str | None = None) -> None:
        self._guarded_nodes = max(1, int(nodes))
        self._initializer = initializer
        self._workers: WorkerPool | None = None
        self._closed = False
        super().__init__(nodes=self._guarded_nodes, id=id or f"chronopipe-guarded-{next(_ids)}")

    # pathos' pool cache (__state__) is not used: each GuardedProcessPool owns its workers.
    def _serve(self, nodes: int | None = None) -> WorkerPool:  # type: ignore[override]
        if self._closed:
            raise ValueError("Pool not running (closed): call clear() or restart() first")
        if nodes is not None and nodes != self._guarded_nodes:
            self._clear()
            self._guarded_nodes = nodes
        if self._workers is None or not self._workers.usable:
            self._workers = WorkerPool(self._guarded_nodes, self._initializer, name=f"pool-{self._id}")
        return self._workers

    def _clear(self) -> None:
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()
            workers.join(5.0)
            if workers._thread.is_alive():
                workers.terminate()
        self._closed = False

    clear = _clear

    @property
    def nodes(self) -> int:  # type: ignore[override]
        return self._guarded_nodes

    @nodes.setter
    def nodes(self, value: int) -> None:
        self._serve(value)

    ncpus = nodes

    @property
    def workers(self) -> WorkerPool | None:
        """The running WorkerPool (None before the first call or after clear())."""
        return self._workers

    # -- calls -------------------------------------------------------------------------
    def submit_rows(self, fn: Callable[..., Any], rows: list[tuple[Any, ...]], label: str | None = None) -> Job:
        pool = self._serve()
        return pool.submit(fn, chunk_rows(rows, pool.nodes) if rows else [], label or label_of(fn))

    def amap(self, f: Callable[..., Any], *args: Iterable[Any], **kwds: Any) -> PoolTask:
        return PoolTask(self.submit_rows(f, list(zip(*args, strict=False))), label_of(f), many=True)

    def map(self, f: Callable[..., Any], *args: Iterable[Any], **kwds: Any) -> list[Any]:
        return self.amap(f, *args).get()

    def imap(self, f: Callable[..., Any], *args: Iterable[Any], **kwds: Any) -> Iterator[Any]:
        job, label = self.submit_rows(f, list(zip(*args, strict=False))), label_of(f)
        return (unwrap(o, label) for o in job.iter_outcomes(ordered=True))

    def uimap(self, f: Callable[..., Any], *args: Iterable[Any], **kwds: Any) -> Iterator[Any]:
        job, label = self.submit_rows(f, list(zip(*args, strict=False))), label_of(f)
        return (unwrap(o, label) for o in job.iter_outcomes(ordered=False))

    def apipe(self, f: Callable[..., Any], *args: Any, **kwds: Any) -> PoolTask:
        call = (lambda *a: f(*a, **kwds)) if kwds else f
        label = label_of(f)
        return PoolTask(self._serve().submit(call, [[args]], label), label, many=False)

    def pipe(self, f: Callable[..., Any], *args: Any, **kwds: Any) -> Any:
        return self.apipe(f, *args, **kwds).get()

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
        self._closed = True

    def join(self) -> None:
        if self._workers is not None:
            self._workers.join(5.0)

    def terminate(self) -> None:
        """End the workers now (pending calls fail with an ActorError); never waits on a lock."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.terminate()
        self._closed = True

    def restart(self, force: bool = False) -> WorkerPool:
        self._clear()
        return self._serve()

    def __repr__(self) -> str:
        return f"<pool GuardedProcessPool(ncpus={self._guarded_nodes})>"
