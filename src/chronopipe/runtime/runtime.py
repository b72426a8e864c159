"""Runtime: the one-per-process owner of pools, actor threads and actor processes.

Start method: fork. Actor processes inherit their channels and behaviour (lambdas and
closures included) with no pickling and start in about a millisecond. The known hazard of
forking while other threads hold locks is handled for the runtime's own locks (they are
re-created in the child) and by the standard library for logging and imports; a lock held
by a thread of your own at fork time would stay held in the child, so start actors before
starting threads that hold locks for long.

Pool tasks are shipped with dill. The runtime turns on ``dill.settings["recurse"]``
so that a lambda pickles the globals it uses with it: pool workers are forked when the
pool is first used, and a global defined after that would otherwise be missing in them.
The process pool shares no lock with its workers and watches them (pools.py, workers.py);
the signal handlers never block and act only in this process (signals.py).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import dill
import multiprocess
from multiprocess.connection import Pipe

from ..actors.actor import Actor
from ..actors.errors import ActorError
from ..actors.hosting import install_default_runtime
from ..channels.pipe import LINGER
from ..channels.quiet import die_of_sigint
from ..control.security import remove_token_files
from .child import init_pool_worker
from .control import RuntimeControl
from .hosts import ActorHosting, HostRecord, ProcessHost
from .pools import GuardedProcessPool, PoolTask, call_enveloped, label_of
from .rayhost import RayHost, RayHosting
from .seed import SeedNames
from .signals import HANDLED_SIGNALS, SignalHandlers
from .workers import kill_processes

__all__ = ["Runtime"]

log = logging.getLogger("chronopipe.runtime")
#: Seconds shutdown() waits for a pool to finish its tasks before abandoning it (hung user code).
POOL_JOIN_TIMEOUT = 2.0
_ctx = multiprocess.get_context("fork")
dill.settings["recurse"] = True


class Runtime(SeedNames, ActorHosting, RayHosting):
    """The process-wide runtime (a singleton; ``MultiProcessing`` is the seed's name for it, seed.py).

    >>> Runtime() is Runtime()
    True
    >>> Runtime().map(lambda x: x * x, [1, 2, 3], mode="thread")
    [1, 4, 9]
    """

    _instance: Runtime | None = None
    _class_lock = threading.Lock()
    _atexit_registered = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Runtime:
        with cls._class_lock:
            if cls._instance is None or cls._instance._pid != os.getpid():
                inst = super().__new__(cls)
                inst._setup()
                cls._instance = inst
            return cls._instance

    def __init__(self, processes: int | None = None, threads: int | None = None, control: str | None = None) -> None:
        """``processes`` / ``threads``: pool sizes (default: CPU count); changing them
        replaces the pool on its next use. ``control``: ``"HOST:PORT"`` to serve the control API
        over the runtime's actors (docs/control.md; started once, closed by shutdown()).

        Raises:
            ControlError: the control address cannot be served.
            RuntimeError: the control API is served on another address already.
        """
        if control is not None:
            self._control.serve(self, control)
        with self._lock:
            if processes is not None and processes != self.processes:
                self.processes = processes
                self._discard_process_pool()
            if threads is not None and threads != self.threads:
                self.threads = threads
                self._close_pool("_thread_pool", terminate=False)

    def _setup(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self.processes = os.cpu_count() or 1
        self.threads = os.cpu_count() or 1
        self._records: dict[int, HostRecord] = {}  # by id(actor), in start order (hosts.py)
        self._process_pool: Any = None
        self._thread_pool: Any = None
        self._manager: Any = None
        self._shared_lock: Any = None
        self._generation = 0
        self._supervisor: threading.Thread | None = None
        self._control = RuntimeControl()
        self._wake_r, self._wake_w = Pipe(duplex=False)
        self._signals = SignalHandlers(self._pid, self._teardown_in_handler)
        self._signals.install()
        if not Runtime._atexit_registered:
            atexit.register(_shutdown_at_exit)
            Runtime._atexit_registered = True

    @property
    def control(self) -> Any:
        """The ControlServer serving this runtime's actors (``.url``, ``.token``), or None."""
        return self._control.server

    # -- actors ------------------------------------------------------------------------
    def start(self, actor: Actor) -> Actor:
        """Host ``actor`` on a thread or in its own process, as its ``mode`` says."""
        if actor.state != "new":
            raise RuntimeError(f"actor {actor.name!r} was already started (state: {actor.state}); make a new one")
        if actor.mode == "ray":
            for ch in actor.channels():
                if ch.mode != "ray":
                    raise ValueError(
                        f"actor {actor.name!r} runs on Ray but channel {ch.name!r} is a {ch.mode} channel: "
                        "use Channel(mode='ray') for the channels of Ray actors"
                    )
        if actor.mode == "process":
            for ch in actor.channels():
                if ch.mode == "thread":
                    raise ValueError(
                        f"actor {actor.name!r} runs in a process but channel {ch.name!r} is a thread channel: "
                        "use Channel(mode='process') for channels that cross processes"
                    )
        with self._lock:
            self._host(actor)
        return actor

    def actors(self) -> list[Actor]:
        """Every actor started since the last shutdown that is still running, and the last
        ``ENDED_KEPT`` (32) that ended (older ones are let go, with their pipes)."""
        with self._lock:
            return [r.actor for r in self._records.values()]

    def cancel(self, actors: Iterable[Actor], reason: ActorError, wait: float = 1.0) -> None:
        """Stop ``actors`` now, as when a neighbour fails: the running ones are told to stop, every
        channel of theirs breaks (a blocked put or get raises ``reason``), their processes are
        terminated; then wait up to ``wait`` seconds for them to end. For the owner of a group of
        actors that has to give up (a pipeline whose node failed, a run whose caller raised).
        """
        actors = list(actors)
        running = [a for a in actors if a.state == "running"]
        if running:
            self._cancel(running, {id(ch): ch for a in actors for ch in a.channels()}.values(), reason)
        deadline = time.monotonic() + wait
        for actor in actors:
            if actor.state != "new":
                actor.wait(max(0.0, deadline - time.monotonic()))

    # -- pools -------------------------------------------------------------------------
    def process_pool(self) -> GuardedProcessPool:
        """The shared process pool: a pathos ProcessPool whose calls never hang on a dead worker
        (created on first use, or again after it was closed; workers ignore Ctrl-C)."""
        with self._lock:
            if self._process_pool is None or self._process_pool._closed:
                self._generation += 1
                self._process_pool = GuardedProcessPool(
                    self.processes, initializer=init_pool_worker, id=f"chronopipe-{self._pid}-{self._generation}"
                )
            return self._process_pool

    def thread_pool(self) -> Any:
        """The shared pathos ThreadPool (created on first use)."""
        with self._lock:
            if self._thread_pool is None:
                from pathos.threading import ThreadPool

                self._generation += 1
                previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(HANDLED_SIGNALS))  # see start_quiet
                try:
                    self._thread_pool = ThreadPool(nodes=self.threads, id=f"chronopipe-{self._pid}-{self._generation}")
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            return self._thread_pool

    def submit(self, fn: Callable[..., Any], *args: Any, mode: str = "process") -> PoolTask:
        """Run ``fn(*args)`` on a pool; ``.get()`` the result (errors arrive as ActorError)."""
        label = label_of(fn)
        if mode == "process":
            return PoolTask(self.process_pool().submit_rows(fn, [args], label), label, many=False)
        return PoolTask(self._threads(mode).apipe(call_enveloped, fn, args, label, False), label, many=False)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], mode: str = "process",
            timeout: float | None = None) -> list[Any]:
        """``[fn(*xs) for xs in zip(*iterables)]`` on a pool, in order; never hangs on a dead worker:
        an idle worker that died is replaced, one that died running this call's records raises
        an ActorError naming its pid and signal (within milliseconds)."""
        label = label_of(fn)
        rows = list(zip(*iterables, strict=False))
        if mode == "process":
            return PoolTask(self.process_pool().submit_rows(fn, rows, label), label, many=True).get(timeout)
        n = len(rows)
        task = self._threads(mode).amap(call_enveloped, [fn] * n, rows, [label] * n, [False] * n)
        return PoolTask(task, label, many=True).get(timeout)

    def _threads(self, mode: str) -> Any:
        if mode != "thread":
            raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
        return self.thread_pool()

    def manager(self) -> Any:
        """A multiprocess SyncManager owned by the runtime (ends with it, and with the parent)."""
        with self._lock:
            if self._manager is None:
                from multiprocess.managers import SyncManager

                self._manager = SyncManager(ctx=_ctx)
                self._manager.start(initializer=init_pool_worker)
            return self._manager

    def _discard_process_pool(self) -> None:
        with self._lock:
            pool, self._process_pool = self._process_pool, None
        if pool is not None:
            pool.terminate()

    def _close_pool(self, attr: str, terminate: bool) -> None:
        with self._lock:
            pool, _ = getattr(self, attr), setattr(self, attr, None)
        if pool is None:
            return
        raw = type(pool).__state__.pop(pool._id, None)  # pathos caches pools by id: forget ours
        if raw is None:
            return
        raw.terminate() if terminate else raw.close()
        # A task hung in user code must not keep the interpreter from exiting: join with a
        # deadline from a daemon thread, and abandon what is left with a warning.
        joiner = threading.Thread(target=raw.join, name=f"chronopipe-join-{attr}", daemon=True)
        joiner.start()
        joiner.join(POOL_JOIN_TIMEOUT)
        if joiner.is_alive():
            log.warning("runtime: the %s still runs a task after %g s; abandoned (its threads end with the "
                        "interpreter)", attr.strip("_").replace("_", " "), POOL_JOIN_TIMEOUT)

    # -- teardown ----------------------------------------------------------------------
    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop every actor, end the pools, join everything; the runtime can be used again."""
        if self._pid != os.getpid():
            return  # a forked copy: the parent owns these processes
        deadline = time.monotonic() + timeout
        self._control.close()
        with self._lock:
            running = [r for r in self._records.values() if r.actor.state == "running"]
            reason = ActorError("runtime", "Shutdown", "the runtime shut down (shutdown(), exit, Ctrl-C or SIGTERM)")
            self._cancel([r.actor for r in running], {ch for r in running for ch in r.actor.channels()}, reason)
        for r in running:
            r.host.join(max(0.0, deadline - time.monotonic()))
            if isinstance(r.host, ProcessHost):
                if r.host.alive():
                    r.host.cancel(reason, kill=True)
                    r.host.join(1.0)
                self._reap(r)
            elif isinstance(r.host, RayHost) and r.host.alive():
                r.host.cancel(reason, kill=True)  # its run() call then fails: the supervisor concludes it
                r.host.join(max(0.5, deadline - time.monotonic()))
        self._discard_process_pool()
        self._close_pool("_thread_pool", terminate=True)
        with self._lock:
            manager, self._manager = self._manager, None
            self._records = {}
            supervisor = self._supervisor
        if manager is not None:
            manager.shutdown()
        if supervisor is not None:
            self._wake_w.send_bytes(b"w")
            supervisor.join(max(0.1, deadline - time.monotonic()))
        LINGER.stop()

    def statistics(self) -> dict[str, Any]:
        """Actor statistics by name, and the pools in use."""
        with self._lock:
            return {
                "actors": {r.actor.name: r.actor.statistics() for r in self._records.values()},
                "process_pool": self._process_pool is not None,
                "thread_pool": self._thread_pool is not None,
            }

    # -- signals -----------------------------------------------------------------------
    def _teardown_in_handler(self, deadline: float) -> None:
        """End every child process of the runtime within ``deadline`` seconds, from a signal handler.

        Runs in the main thread, between two bytecodes of anything: takes no lock (not even the
        runtime's), breaks no channel; it marks the running actors cancelled, tells them to stop,
        SIGTERMs the actor processes, pool workers and manager by pid and SIGKILLs those left
        after half the deadline. ``shutdown()`` (atexit) does the rest later, quickly.
        """
        reason = ActorError("runtime", "Shutdown", "the runtime shut down (Ctrl-C or SIGTERM)")
        remove_token_files()  # a control server's generated token file does not outlive the process
        procs = []
        for r in list(self._records.values()):
            if r.actor.state == "running":
                r.cancelled_by = r.cancelled_by or reason
                r.actor.stop()
                if isinstance(r.host, ProcessHost):
                    procs.append(r.host.proc)
        pool = self._process_pool
        workers = pool.workers if pool is not None else None
        if workers is not None:
            workers._killed = workers._killed or reason
            procs.extend(w.proc for w in list(workers.workers))
        manager = self._manager
        if manager is not None and getattr(manager, "_process", None) is not None:
            procs.append(manager._process)
        kill_processes(procs, deadline / 2)
        if workers is not None:
            workers._wake()


install_default_runtime(Runtime)  # Actor.start() with no runtime: this one (actors import no runtime)


def _shutdown_at_exit() -> None:
    inst = Runtime._instance
    if inst is not None and inst._pid == os.getpid():
        try:
            inst.shutdown()
        except KeyboardInterrupt:  # Ctrl-C during the teardown at exit: die of it (130), no traceback
            die_of_sigint()


def _hold_signals_for_fork() -> None:
    inst = Runtime._instance
    if inst is not None:
        inst._signals.hold_for_fork()


def _release_signals_in_parent() -> None:
    inst = Runtime._instance
    if inst is not None:
        inst._signals.release_in_parent()


def _forget_in_child() -> None:
    inst = Runtime._instance
    if inst is not None:
        inst._signals.release_in_child()  # the parent's handlers are not this process's
    Runtime._instance = None  # a forked child gets its own runtime if it asks for one
    Runtime._class_lock = threading.Lock()


os.register_at_fork(before=_hold_signals_for_fork, after_in_parent=_release_signals_in_parent,
                    after_in_child=_forget_in_child)
