"""The process pool's workers: no lock shared between processes, so no dead worker can hang it.

``multiprocessing.Pool`` (and pathos on top of it) feeds its workers through one queue guarded
by a process-shared lock; an idle worker waits for the next task *holding* that lock. SIGKILL it
and every other worker, and ``Pool.terminate()`` too, waits for that lock forever.

Here every worker has a private pipe to the parent. One dispatcher thread in the parent (named
``chronopipe-pool``) hands each idle worker one chunk of rows, and waits (``connection.wait``) on
the workers' pipes *and* their process sentinels. So a worker's death is seen within
milliseconds, whether it was busy or idle: an idle worker is replaced and the calls go on; the
call whose chunk a dead worker was running fails with an ActorError naming the worker's pid and
how it ended (signal, or exit code).
"""

from __future__ import annotations

import collections
import math
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dill
from multiprocess.connection import Pipe, wait

from ..actors.errors import ActorError, describe_exit, error_envelope
from .procs import ForkedProcess, kill_processes
from .signals import start_quiet

__all__ = ["Job", "WorkerPool", "chunk_rows", "kill_processes"]

#: Every pipe end a worker must not keep: the parent's ends of all pools' workers and wake pipes.
_PARENT_ENDS: list[Any] = []
_ends_lock = threading.Lock()


def chunk_rows(rows: list[tuple[Any, ...]], nodes: int) -> list[list[tuple[Any, ...]]]:
    """Rows in chunks (about 4 per worker, as multiprocessing.Pool.map does)."""
    size = max(1, math.ceil(len(rows) / (4 * max(1, nodes))))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


class Job:
    """A submitted call or map: its chunks' outcomes, by chunk, as the workers deliver them.

    Outcomes are ``call_enveloped`` tuples (unwrapped by ``pools.PoolTask``). A job settles
    when every chunk is in, or as soon as one chunk is lost with its worker (``error``).
    ``_deliver`` and ``_fail`` run in the dispatcher thread; everything else in the caller's.
    """

    def __init__(self, label: str, n_chunks: int) -> None:
        self.label = label
        self._chunks: list[list[Any] | None] = [None] * n_chunks
        self._left = n_chunks
        self.error: ActorError | None = None
        self._cond = threading.Condition()

    def _deliver(self, index: int, outcomes: list[Any]) -> None:
        with self._cond:
            if self._chunks[index] is None:
                self._chunks[index] = outcomes
                self._left -= 1
            self._cond.notify_all()

    def _fail(self, error: ActorError) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()

    @property
    def settled(self) -> bool:
        return self.error is not None or self._left == 0

    def ready(self) -> bool:
        return self.settled

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.settled, timeout)

    def outcomes(self, timeout: float | None = None) -> list[Any]:
        """Every row's outcome in order; raises the lost worker's ActorError or TimeoutError."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self.label}: no result within {timeout} s")
        if self.error is not None:
            raise self.error
        return [o for chunk in self._chunks for o in chunk or ()]

    def iter_outcomes(self, ordered: bool) -> Iterator[Any]:
        """Each row's outcome as soon as its chunk is in (in order, or in order of arrival)."""
        done: set[int] = set()
        while len(done) < len(self._chunks):
            with self._cond:
                while True:
                    if self.error is not None:
                        raise self.error
                    if ordered:
                        due = [len(done)] if self._chunks[len(done)] is not None else []
                    else:
                        due = [i for i, c in enumerate(self._chunks) if c is not None and i not in done]
                    if due:
                        break
                    self._cond.wait()
            for i in due:
                done.add(i)
                yield from self._chunks[i] or ()


class _Worker:
    __slots__ = ("conn", "proc", "task")

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc, self.conn = proc, conn
        self.task: tuple[Job, int, list[Any]] | None = None


class WorkerPool:
    """``nodes`` forked worker processes fed by one dispatcher thread (see the module docstring).

    ``submit`` may be called from any thread. ``kill_now`` is safe in a signal handler: it takes
    no lock and only signals pids. Workers ignore SIGINT (the parent decides what Ctrl-C means),
    die of SIGTERM, and end themselves when the parent dies (``child.watch_parent``).
    """

    def __init__(self, nodes: int, initializer: Callable[[], None] | None = None, name: str = "pool") -> None:
        self.nodes = max(1, int(nodes))
        self.name = name
        self._initializer = initializer
        self._queue: collections.deque[tuple[Job, int, list[Any]]] = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = Pipe(duplex=False)
        self._remember(self._wake_r, self._wake_w)
        self._closing = False  # close(): finish what is queued, then end
        self._killed: ActorError | None = None  # terminate() / kill_now(): end now
        self.workers: list[_Worker] = [self._spawn() for _ in range(self.nodes)]
        self._thread = start_quiet(threading.Thread(target=self._dispatch, name=f"chronopipe-{name}", daemon=True))

    # -- the caller's side --------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self._closing and self._killed is None and self._thread.is_alive()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in list(self.workers)]

    def submit(self, fn: Callable[..., Any], chunks: list[list[tuple[Any, ...]]], label: str,
               serialize: bool = True) -> Job:
        """Queue ``fn(*row)`` for every row of ``chunks``; the Job settles with their outcomes."""
        if not self.usable:
            raise ValueError(f"{label}: the process pool is closed or terminated")
        job = Job(label, len(chunks))
        try:
            payloads = [dill.dumps((fn, chunk, label)) for chunk in chunks]
        except Exception as exc:
            raise ActorError(label, "PicklingError", f"the task cannot be sent to a pool worker: {exc}") from exc
        with self._lock:
            self._queue.extend((job, i, [p]) for i, p in enumerate(payloads))
        self._wake()
        return job

    def close(self) -> None:
        """No new calls; the workers end once the queued ones are done."""
        self._closing = True
        self._wake()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def terminate(self, timeout: float = 1.0) -> None:
        """End now: pending calls fail, workers get SIGTERM (then SIGKILL); returns within ``timeout`` + 1 s."""
        self.kill_now(timeout)
        self._wake()
        self._thread.join(timeout)

    def kill_now(self, timeout: float = 0.0) -> None:
        """Signal every worker (SIGTERM; SIGKILL after ``timeout``). Takes no lock: handler-safe."""
        if self._killed is None:
            self._killed = ActorError(self.name, "Shutdown", "the process pool was terminated with calls pending")
        procs = [w.proc for w in list(self.workers)]
        kill_processes(procs, timeout)

    # -- the dispatcher thread ------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"w")
        except OSError:
            pass

    def _remember(self, *ends: Any) -> None:
        with _ends_lock:
            _PARENT_ENDS.extend(ends)

    def _spawn(self) -> _Worker:
        parent_end, child_end = Pipe(duplex=True)
        proc = ForkedProcess(_worker_main, child_end, parent_end, self._initializer)
        child_end.close()
        self._remember(parent_end)
        return _Worker(proc, parent_end)

    def _dispatch(self) -> None:
        try:
            while True:
                if self._killed is not None:
                    return self._end_killed()
                self._assign()
                if self._closing and not self._queue and all(w.task is None for w in self.workers):
                    return self._end_closed()
                busy = {w.conn: w for w in self.workers if w.task is not None}
                sentinels = {w.proc.sentinel: w for w in self.workers}
                ready = wait([self._wake_r, *busy, *sentinels])
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for conn in ready:
                    if conn in busy:
                        self._receive(busy[conn])
                for fd in ready:
                    if fd in sentinels:
                        self._bury(sentinels[fd])
        finally:
            lost = ActorError(self.name, "BrokenProcessPool", "the process pool's dispatcher ended with calls pending")
            with self._lock:
                pending, self._queue = list(self._queue), collections.deque()
            for job, _, _ in pending + [w.task for w in self.workers if w.task is not None]:
                job._fail(self._killed or lost)
            self._forget_ends()

    def _assign(self) -> None:
        for w in self.workers:
            if w.task is not None:
                continue
            with self._lock:
                while self._queue and self._queue[0][0].settled:  # its job already failed: skip
                    self._queue.popleft()
                if not self._queue:
                    return
                task = self._queue.popleft()
            try:
                w.conn.send_bytes(task[2][0])
            except OSError:  # it died: _bury puts the task back
                with self._lock:
                    self._queue.appendleft(task)
                continue
            w.task = task

    def _receive(self, w: _Worker) -> None:
        try:
            data = w.conn.recv_bytes()
        except (EOFError, OSError):
            w.proc.join(1.0)  # it is dying: _bury tells how, from its exit code
            return self._bury(w)
        assert w.task is not None
        job, index, _ = w.task
        w.task = None
        job._deliver(index, pickle.loads(data))

    def _bury(self, w: _Worker) -> None:
        if w not in self.workers:
            return
        w.proc.join(1.0)
        code = w.proc.exitcode
        w.conn.close()
        if w.task is not None and self._killed is None:
            job, index, _ = w.task
            died = describe_exit(job.label, code)
            job._fail(ActorError(
                job.label, "BrokenProcessPool",
                f"pool worker pid {w.proc.pid} died while running chunk {index} of this call "
                f"({died.message}); it was replaced by a new worker", exitcode=code))
        self.workers.remove(w)
        if self._killed is None and not self._closing:
            self.workers.append(self._spawn())  # an idle worker's death costs nothing else

    def _end_closed(self) -> None:
        for w in self.workers:
            w.conn.close()  # EOF: the worker returns
        for w in self.workers:
            w.proc.join(1.0)
        kill_processes([w.proc for w in self.workers if w.proc.exitcode is None], 1.0)
        for w in self.workers:
            w.proc.join(1.0)

    def _end_killed(self) -> None:
        kill_processes([w.proc for w in self.workers], 1.0)  # pending calls fail in _dispatch
        for w in self.workers:
            w.proc.join(1.0)
            w.conn.close()

    def _forget_ends(self) -> None:
        with _ends_lock:
            mine = {id(self._wake_r), id(self._wake_w)} | {id(w.conn) for w in self.workers}
            _PARENT_ENDS[:] = [e for e in _PARENT_ENDS if id(e) not in mine and not e.closed]


def _fresh_multiprocess_state() -> None:
    """What multiprocess's own bootstrap does that a worker needs: run the after-fork hooks (so
    multiprocess queues, locks and Manager proxies inherited work here) and forget the parent's
    children (not ours to join)."""
    from multiprocess import process, util

    process._children = set()
    util._finalizer_registry.clear()
    util._run_after_forkers()


def _worker_main(conn: Any, initializer: Callable[[], None] | None) -> None:
    """A pool worker: run the chunks the parent sends until EOF. Runs in the worker process."""
    from .pools import call_enveloped

    for end in _PARENT_ENDS:  # the only thread here: _ends_lock may have been held at the fork
        try:
            end.close()
        except OSError:
            pass
    _PARENT_ENDS.clear()
    _fresh_multiprocess_state()
    if initializer is not None:
        initializer()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, rows, label = dill.loads(data)
        except BaseException as exc:  # e.g. a module the function needs cannot be imported here
            label = "pool:task"
            outcomes = [("error", error_envelope(label, exc))]
        else:
            outcomes = [call_enveloped(fn, row, label, True) for row in rows]
        conn.send_bytes(pickle.dumps(outcomes))
