"""Pool calls that never leave the caller waiting.

pathos (like multiprocessing.Pool) waits forever when a worker dies mid-task, and its
result thread breaks on a result or exception that cannot be unpickled. Here every task
runs inside an envelope: the worker returns ("ok", dill bytes) or ("error", plain-data
description), and the caller polls the worker processes while it waits, so a dead worker
becomes an ActorError (like concurrent.futures' BrokenProcessPool) within ~50 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dill

from ..actors.errors import ActorError, describe_exit, error_envelope, error_from_envelope

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["PoolTask", "call_enveloped"]

POLL = 0.05


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
    from ..actors.errors import from_exception

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
    """A pending pool call (from Runtime.submit / Runtime.map)."""

    def __init__(self, runtime: Runtime, result: Any, raw_pool: Any, label: str, many: bool) -> None:
        self._runtime = runtime
        self._result = result
        self._raw = raw_pool  # None for thread pools: threads cannot die silently
        self._label = label
        self._many = many
        self._workers = list(raw_pool._pool) if raw_pool is not None else []

    def ready(self) -> bool:
        return self._result.ready()

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises the task's ActorError, TimeoutError, or ActorError for a dead worker."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._result.ready():
            self._result.wait(POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic())))
            if self._raw is not None:
                self._check_workers()
            if deadline is not None and time.monotonic() >= deadline and not self._result.ready():
                raise TimeoutError(f"{self._label}: no result within {timeout} s")
        outcome = self._result.get()
        if self._many:
            return [unwrap(o, self._label) for o in outcome]
        return unwrap(outcome, self._label)

    def _check_workers(self) -> None:
        self._workers.extend(w for w in self._raw._pool if w not in self._workers)
        for w in self._workers:
            code = w.exitcode
            if code not in (None, 0):
                self._runtime._discard_process_pool()
                died = describe_exit(self._label, code)
                raise ActorError(
                    self._label, "BrokenProcessPool",
                    f"pool worker pid {w.pid} died while tasks were pending ({died.message}); the pool was "
                    "discarded and the next call starts a fresh one",
                    exitcode=code,
                )
