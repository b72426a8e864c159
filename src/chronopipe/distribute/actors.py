"""The actors of a distributed run: one WorkerActor per worker, one CollectorActor.

Messages (plain tuples, through chronopipe channels):

- distributor -> worker inbox: ``("init", metadata)`` once, then ``("task", task_id, data)``;
- worker (and distributor) -> collector: ``("data", task_id, type, result)``, ``("finished", type)``;
- collector -> distributor: the acknowledged task ids, and ``("finished", type)`` once the
  collector's handle_finished for that type returned.

Both kinds of actor are started again after their process (or Ray actor) dies: from the
parent's copy, which the distributor keeps up to date (the metadata for a worker, every
acknowledgement for the collector). The parent-only parts (the death queue, locks, threads)
are left out when an actor is pickled for Ray.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from ..actors import Actor
from ..channels import Channel, Mode
from .types import MESSAGE_TYPE_DATA, Collector, MultiThreadedWorker, TaskType, Worker, checked_output

__all__ = ["CollectorActor", "WorkerActor"]

RESTART_DELAY = 0.05  # seconds before a dead worker or collector is started again
_PARENT_ONLY = ("deaths", "_lock", "_threads", "_work", "_errors")


def _portable_state(actor: Actor) -> dict[str, Any]:
    """The actor's state as Actor pickles it, without the parent-only parts (what Ray gets)."""
    state = Actor.__getstate__(actor) if hasattr(Actor, "__getstate__") else actor.__dict__.copy()
    return {k: (None if k in _PARENT_ONLY else v) for k, v in state.items()}


class WorkerActor(Actor):
    """Hosts one ``Worker`` (made in the actor's thread or process, at its start)."""

    def __init__(self, name: str, worker_cls: type[Worker], inbox: Channel, results: Channel, mode: Mode,
                 deaths: queue.SimpleQueue[str], max_restarts: int) -> None:
        super().__init__(name, inbox=inbox, outputs=results, mode=mode)
        self.worker_cls = worker_cls
        self.type_name = str(worker_cls.task_type)
        self.deaths = deaths
        self.max_restarts = max_restarts
        self.restarts = 0
        #: set in the parent once the init message is sent: a restarted process starts with it
        self.restart_metadata: dict[str, Any] | None = None
        self._lock = threading.RLock()
        self._initialized = False
        self._threads: list[threading.Thread] = []
        self._work: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()

    def __getstate__(self) -> dict[str, Any]:
        return _portable_state(self)

    def on_start(self) -> None:
        self._lock = threading.RLock()  # fresh in a forked process (or a Ray actor)
        self._errors: list[BaseException] = []
        self._threads, self._work = [], queue.SimpleQueue()
        self.worker = self.worker_cls()
        if self.restart_metadata is not None:
            self._init(self.restart_metadata)

    def _init(self, metadata: dict[str, Any]) -> None:
        self._initialized = True
        self.worker.metadata = metadata
        self.worker.init_worker()
        if isinstance(self.worker, MultiThreadedWorker):
            n = self.worker.n_threads
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"{self.worker_cls.__name__}.n_threads must be a positive integer, not {n!r}")
            self._work = queue.SimpleQueue()
            self._threads = [threading.Thread(target=self._thread, args=(i,), name=f"{self.name}-{i}", daemon=True)
                             for i in range(n)]
            for t in self._threads:
                t.start()

    def on_receive(self, message: tuple[Any, ...]) -> Any:
        if message[0] == "init":
            if not self._initialized:
                self._init(message[1])
            return None
        _, task_id, data = message
        if not self._initialized:
            raise RuntimeError(f"worker {self.name!r} got a task before the run's metadata")
        name = f"{self.worker_cls.__name__}.handle_execution"
        out = checked_output(self.worker.handle_execution(data), name)
        if self._threads:
            self._work.put((task_id, out))
            return None
        return ("data", task_id, self.type_name, out)

    def _thread(self, index: int) -> None:
        assert isinstance(self.worker, MultiThreadedWorker)
        name = f"{self.worker_cls.__name__}.handle_thread_execution"
        while (item := self._work.get()) is not None:
            task_id, data = item
            try:
                out = checked_output(self.worker.handle_thread_execution(data, index), name)
            except Exception as exc:  # the actor stops and fails with it (on_stop): the run reports it
                self._errors.append(exc)
                self.stop()
                continue
            try:
                with self._lock:
                    self._outbox.put(("data", task_id, self.type_name, out))
                    Actor.flush(self)
            except Exception as exc:  # the results channel broke (the run is being cancelled)
                self._errors.append(exc)
                self.stop()
                return

    def flush(self) -> None:
        with self._lock:
            super().flush()

    def on_stop(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        for t in self._threads:
            t.join()
        if self._errors:
            raise self._errors[0]
        self.flush()

    def on_death(self, exitcode: int | None) -> float | None:
        """Restart a killed worker process (up to ``max_restarts`` times) and tell the
        distributor, which hands its unacknowledged tasks out again."""
        return _restarted(self)

    @property
    def death_note(self) -> str:  # type: ignore[override]
        return f" (restarted {self.restarts} times: max_restarts)"


class CollectorActor(Actor):
    """Hosts the Collector: hands it each task's result once, then acknowledges the task id
    (and each ``("finished", type)`` once, after handle_finished).

    ``acked`` is what it handled: in its own process, and in the parent's copy, which the
    distributor adds every acknowledgement it reads to, so a collector started again after a
    death drops the results it was sent again instead of handling them twice.
    """

    def __init__(self, collector: Collector, inbox: Channel, acks: Channel, mode: Mode,
                 deaths: queue.SimpleQueue[str], max_restarts: int) -> None:
        super().__init__("collector", inbox=inbox, outputs=acks, mode=mode)
        self.collector = collector
        self.acked: set[Any] = set()
        self.duplicates = 0
        self.deaths = deaths
        self.max_restarts = max_restarts
        self.restarts = 0
        #: set by the distributor once every task and type is acknowledged: a death then fails the run
        self.finishing = False

    def __getstate__(self) -> dict[str, Any]:
        state = _portable_state(self)
        state["acked"] = set(self.acked)  # one copy in C: the distributor adds to it meanwhile
        return state

    def on_receive(self, message: tuple[Any, ...]) -> Any:
        if message[0] == "finished":
            key = ("finished", message[1])
            if key not in self.acked:
                self.collector.handle_finished({}, TaskType.known(message[1]))
                self.acked.add(key)
            return key  # acknowledged again if seen again: the first acknowledgement may be lost
        _, task_id, type_name, data = message
        if task_id in self.acked:
            self.duplicates += 1
            return None
        self.collector.handle_collection(data, TaskType.known(type_name), MESSAGE_TYPE_DATA)
        self.acked.add(task_id)
        return task_id

    def remember(self, keys: list[Any]) -> None:
        """In the parent: acknowledgements a restarted collector must not handle again."""
        self.acked.update(keys)

    def on_death(self, exitcode: int | None) -> float | None:
        """Start a dead collector again (up to ``max_restarts`` times, not once every task is
        acknowledged) and tell the distributor, which sends again what it may have lost."""
        return None if self.finishing else _restarted(self)

    @property
    def death_note(self) -> str:  # type: ignore[override]
        if self.finishing:
            return " (after every task was acknowledged; the collector's state is lost)"
        return f" (restarted {self.restarts} times: max_restarts)"

    def on_stop(self) -> tuple[dict[str, Any], int]:
        return self.collector.__dict__, self.duplicates

    def on_result(self, result: tuple[dict[str, Any], int]) -> None:
        state, self.duplicates = result
        if state is not self.collector.__dict__:  # a process's copy: the caller's collector takes it over
            self.collector.__dict__.update(state)


def _restarted(actor: WorkerActor | CollectorActor) -> float | None:
    """A dead worker or collector started again, counted, and the distributor told (None once
    its ``max_restarts`` are used up)."""
    if actor.restarts >= actor.max_restarts:
        return None
    actor.restarts += 1
    actor.deaths.put(actor.name)
    return RESTART_DELAY
