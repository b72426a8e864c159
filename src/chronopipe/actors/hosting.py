"""The host contract: what a runtime needs from an Actor, and what an Actor needs from a runtime.

A *host* runs one actor somewhere (a thread, a forked process; a Ray worker next) and tells the
parent how it ended. The runtime that owns the hosts (``chronopipe.runtime``) keeps what it
knows about each one (the host, its pid, its status pipe, its outcome, why it was cancelled) in
a record of its own, never on the actor. The actor side of the contract is a few methods of
:class:`~chronopipe.actors.Actor`, called by hosts only, in this order:

1. ``actor._hosted(stop_flag=None, counts=None)`` in the parent, when the host takes the actor
   (under the runtime's lock, before the thread starts or the process forks): the actor is
   ``running`` from then on; a host whose actor runs elsewhere passes a stop flag and a
   :class:`Counts` the parent can read there (e.g. in shared memory).
2. ``actor.run_hosted()`` where the actor runs (its thread, its child process): on_start, the
   loop, on_stop, close the outputs. Never raises: returns an :class:`Outcome`.
3. ``actor._finish(result, error, cancelled)`` in the parent, once: records how it ended and
   wakes ``join()``; on success it first calls the public hook ``on_result(result)``, the one
   way for an actor to adopt what its host brought back (see ``Actor.on_result``).

A process host whose actor dies without reporting asks ``actor.on_death(exitcode)`` (in the
parent) whether to fork it again after some seconds, instead of concluding 3. with an error.

and, at any time, from any thread (a signal handler included: they take no lock),
``actor.stop()`` and reading ``actor.counts``. The runtime side is :class:`Host`; an actor
finds its default runtime through :func:`default_runtime`, which the runtime installs when it
is imported (:func:`install_default_runtime`): actors import no runtime code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .errors import NO_RECORD

if TYPE_CHECKING:
    from .actor import Actor
    from .errors import ActorError

__all__ = ["Counts", "Host", "HostingRuntime", "Outcome", "default_runtime", "install_default_runtime"]


class Counts:
    """An actor's record counts: ``received`` (records handled from its inputs) and ``emitted``
    (records sent to its outputs). The actor's loops add to them once per batch, not per record.

    A host may replace ``actor.counts`` (in ``_hosted``, before the actor runs) by any object
    with the same two int attributes, e.g. ``runtime.counts.SharedCounts`` over shared memory,
    which the parent reads while the actor's process runs and still after it was killed.

    >>> c = Counts(); c.received += 3; c
    Counts(received=3, emitted=0)
    """

    __slots__ = ("emitted", "received")

    def __init__(self, received: int = 0, emitted: int = 0) -> None:
        self.received = received
        self.emitted = emitted

    def __repr__(self) -> str:
        return f"{type(self).__name__}(received={self.received}, emitted={self.emitted})"


class Outcome(NamedTuple):
    """How ``run_hosted()`` ended: ``("ok", on_stop's value)`` or ``("error", the exception, the
    record being handled when it was raised, or NO_RECORD)``."""

    status: str
    value: Any
    record: Any = NO_RECORD


class Host(Protocol):
    """Runs one actor and reports its end to the parent (runtime/hosts.py: ThreadHost, ProcessHost).

    ``start()`` returns once the actor runs (its thread started, its process forked); ``pid`` is
    the process it runs in; ``alive()`` is True until the host's thread or process has ended;
    ``join(timeout)`` waits up to ``timeout`` seconds for that; ``cancel(reason)`` ends it now,
    called after ``actor.stop()`` and the channels' abort (a process is sent SIGTERM, SIGKILL
    with ``kill=True``; a thread cannot be ended from outside and ends when its loop sees the
    stop flag or a broken channel). All are called in the parent; none raises for an actor that
    already ended. The host reports the end by the runtime's own means (ThreadHost: a callback
    on its thread; ProcessHost: a status pipe and the process sentinel, read by the supervisor).
    """

    pid: int | None

    def start(self) -> None: ...

    def alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...

    def cancel(self, reason: ActorError | None, *, kill: bool = False) -> None: ...


class HostingRuntime(Protocol):
    """What ``Actor.start()`` needs of a runtime: ``start(actor)`` hosts it and returns it."""

    def start(self, actor: Actor) -> Actor: ...


#: Imported (and so installed) when an actor is started before anything imported a runtime.
DEFAULT_RUNTIME_MODULE = "chronopipe.runtime"
_default_runtime: Callable[[], HostingRuntime] | None = None


def install_default_runtime(factory: Callable[[], HostingRuntime]) -> None:
    """Make ``factory()`` the runtime ``Actor.start()`` uses when given none (the runtime
    package calls this when it is imported; a test or another runtime may replace it)."""
    global _default_runtime
    _default_runtime = factory


def default_runtime() -> HostingRuntime:
    """The runtime ``Actor.start()`` uses when given none."""
    if _default_runtime is None:
        importlib.import_module(DEFAULT_RUNTIME_MODULE)  # installs itself (by name: no import edge)
    if _default_runtime is None:
        raise RuntimeError(f"no runtime installed: {DEFAULT_RUNTIME_MODULE} did not call install_default_runtime()")
    return _default_runtime()
