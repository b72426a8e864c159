"""The actors of a distributed run: one WorkerActor per worker, one CollectorActor.

Messages (plain tuples, through chronopipe channels):

- distributor -> worker inbox: ``("init", metadata)`` once, then ``("task", task_id, data)``;
- worker (and distributor) -> collector: ``("data", task_id, type, result)``, ``("finished", type)``;
- collector -> distributor: the acknowledged task ids.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from ..actors import Actor
from ..channels import Channel, Mode
from .types import MESSAGE_TYPE_DATA, Collector, MultiThreadedWorker, TaskType, Worker, checked_output

__all__ = ["CollectorActor", "WorkerActor"]

RESTART_DELAY = 0.05  # seconds before a dead worker process is started again


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

    def on_start(self) -> None:
        self._lock = threading.RLock()  # fresh in a forked process
        self._errors: list[BaseException] = []
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
        if self.restarts >= self.max_restarts:
            return None
        self.restarts += 1
        self.deaths.put(self.name)
        return RESTART_DELAY

    @property
    def death_note(self) -> str:  # type: ignore[override]
        return f" (restarted {self.restarts} times: max_restarts)"


class CollectorActor(Actor):
    """Hosts the Collector: hands it each task's result once, then acknowledges the task id."""

    def __init__(self, collector: Collector, inbox: Channel, acks: Channel, mode: Mode) -> None:
        super().__init__("collector", inbox=inbox, outputs=acks, mode=mode)
        self.collector = collector
        self.acked: set[str] = set()
        self.duplicates = 0

    def on_receive(self, message: tuple[Any, ...]) -> Any:
        if message[0] == "finished":
            self.collector.handle_finished({}, TaskType(message[1]))
            return None
        _, task_id, type_name, data = message
        if task_id in self.acked:
            self.duplicates += 1
            return None
        self.collector.handle_collection(data, TaskType(type_name), MESSAGE_TYPE_DATA)
        self.acked.add(task_id)
        return task_id

    def on_stop(self) -> tuple[dict[str, Any], int]:
        return self.collector.__dict__, self.duplicates

    def on_result(self, result: tuple[dict[str, Any], int]) -> None:
        state, self.duplicates = result
        if state is not self.collector.__dict__:  # a process's copy: the caller's collector takes it over
            self.collector.__dict__.update(state)
