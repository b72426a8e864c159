"""Distributor: hands registered tasks out to load-balanced workers, in dependency order, until
the collector has acknowledged every one (docs/distribute.md).

The distributor runs in the caller's thread; each worker and the collector is an Actor (its own
process with ``mode="processes"``, a thread with ``mode="threads"``) with its own inbox channel.
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..actors import Actor, ActorError
from ..channels import END, Channel, ChannelBroken
from ..runtime import Runtime
from .actors import CollectorActor, WorkerActor
from .ledger import Ledger
from .types import (
    MESSAGE_TYPE_READY,
    Collector,
    EndpointAddress,
    MetaDataWorker,
    Task,
    TaskType,
    Worker,
    checked_output,
)

__all__ = ["DistributeReport", "Distributor"]

MODES = {"processes": "process", "threads": "thread"}
#: The unacknowledged tasks a worker holds by default (twice its threads for a MultiThreadedWorker).
DEFAULT_UNACKED = 4


@dataclass
class DistributeReport:
    """What a run did: tasks acknowledged by this run, skipped (acknowledged by an earlier run,
    per the ledger), per task type, and how many worker processes were restarted."""

    acknowledged: int = 0
    skipped: int = 0
    restarts: int = 0
    per_type: dict[str, int] = field(default_factory=dict)
    acknowledged_ids: list[str] = field(default_factory=list)


class _Type:
    """The distributor's book on one task type."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.name = str(task.task_type)
        self.deps = [str(d) for d in task.dependencies]
        self.seq = 0
        self.redo: deque[tuple[str, dict[str, Any]]] = deque()
        self.outstanding: set[str] = set()
        self.complete = False
        self.workers: list[WorkerActor] = []


class Distributor:
    """The seed's distributor: ``register_task(MyTask)`` each task class, then ``run(...)``.

    ``collector_endpoint`` and friends are the seed's addresses, validated and kept for
    compatibility (chronopipe channels carry the messages).

    Raises:
        TypeError: an address is not an EndpointAddress-valid string.
        ValueError: ``receive_metadata`` without a ``metadata_endpoint``.
    """

    def __init__(self, collector_endpoint: str, collector_ack_endpoint: str, receive_metadata: bool = False,
                 metadata_endpoint: str | None = None) -> None:
        self.collector_endpoint = EndpointAddress(collector_endpoint)
        self.collector_ack_endpoint = EndpointAddress(collector_ack_endpoint)
        if receive_metadata and metadata_endpoint is None:
            raise ValueError("receive_metadata=True needs a metadata_endpoint")
        self.receive_metadata = receive_metadata
        self.metadata_endpoint = EndpointAddress(metadata_endpoint) if metadata_endpoint is not None else None
        self.tasks: dict[str, type[Task]] = {}
        #: the run's actors while it runs (the workers, then the collector), for monitoring
        self.actors: list[Actor] = []

    def register_task(self, task_cls: type[Task]) -> None:
        """Register a Task class (one per task type).

        Raises:
            TypeError: not a Task subclass, or its task_type / dependencies are not TaskTypes.
            ValueError: a task of that type is registered already.
        """
        if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
            raise TypeError(f"register_task takes a Task subclass, not {task_cls!r}")
        task_type = getattr(task_cls, "task_type", None)
        if not isinstance(task_type, TaskType):
            raise TypeError(f"{task_cls.__name__}.task_type must be a TaskType, not {task_type!r}")
        if not all(isinstance(d, TaskType) for d in task_cls.dependencies):
            raise TypeError(f"{task_cls.__name__}.dependencies must be a list of TaskType")
        if str(task_type) in self.tasks:
            raise ValueError(f"a task of type {task_type!r} is registered already: {self.tasks[task_type].__name__}")
        self.tasks[str(task_type)] = task_cls

    # -- a run ---------------------------------------------------------------------------
    def run(self, workers: Mapping[type[Worker], int], collector: Collector,
            metadata: MetaDataWorker | None = None, mode: str = "processes",
            ledger: str | os.PathLike[str] | None = None, max_unacked: int | None = None,
            max_restarts: int = 3, timeout: float | None = None) -> DistributeReport:
        """Run every registered task on ``workers`` ({Worker class: how many}) until ``collector``
        has acknowledged them all; returns the report. ``collector`` holds the collector's state
        afterwards (a process collector's is copied back). ``max_unacked``: the tasks a worker
        holds that are not acknowledged yet (default: 4, or twice the threads of a
        MultiThreadedWorker): enough that a worker never waits for its next task while its last
        result travels to the collector and back.

        Raises:
            ValueError: a bad mode or count, a worker type without a task (or the reverse), a
                dependency on an unregistered type or a cycle, metadata missing or not a dict.
            TypeError: a handle() returned something other than a dict or None.
            ActorError: a worker or the collector failed (or a worker died more than max_restarts times).
            TimeoutError: ``timeout`` seconds went by.
        """
        books = self._books(workers, mode, max_unacked)
        meta = self._metadata(metadata)
        for book in books.values():
            book.task.initialize(meta)
        store = Ledger(ledger) if ledger is not None else None
        run = _Run(self, books, collector, meta, MODES[mode], store, max_unacked, max_restarts, workers)
        try:
            return run.go(timeout)
        finally:
            self.actors = []

    def _books(self, workers: Mapping[type[Worker], int], mode: str, max_unacked: int | None) -> dict[str, _Type]:
        if mode not in MODES:
            raise ValueError(f"mode must be 'processes' or 'threads', not {mode!r}")
        if max_unacked is not None and (not isinstance(max_unacked, int) or max_unacked < 1):
            raise ValueError(f"max_unacked must be an int >= 1 (or None), got {max_unacked!r}")
        books = {name: _Type(cls()) for name, cls in self.tasks.items()}
        for wcls, n in workers.items():
            name = str(getattr(wcls, "task_type", ""))
            if name not in books:
                raise ValueError(f"worker {wcls.__name__} is for task type {name!r}, which has no registered task")
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"{wcls.__name__}: the number of workers must be a positive integer, not {n!r}")
        served = {str(w.task_type) for w in workers}
        for name, book in books.items():
            if name not in served:
                raise ValueError(f"task type {name!r} has no worker: give run() a worker class for it")
            for dep in book.deps:
                if dep not in books:
                    raise ValueError(f"task type {name!r} depends on {dep!r}, which has no registered task")
        _check_acyclic(books)
        return books

    def _metadata(self, metadata: MetaDataWorker | None) -> dict[str, Any]:
        if metadata is None:
            if self.receive_metadata:
                raise ValueError("this distributor receives metadata (receive_metadata=True): give run() metadata=")
            return {}
        value = metadata.get_metadata()
        if not isinstance(value, dict):
            raise ValueError(f"get_metadata() must return a dict, not {type(value).__name__}")
        return value


def _check_acyclic(books: dict[str, _Type]) -> None:
    done: set[str] = set()
    while len(done) < len(books):
        ready = [n for n, b in books.items() if n not in done and all(d in done for d in b.deps)]
        if not ready:
            raise ValueError(f"task dependencies form a cycle among {sorted(set(books) - done)}")
        done.update(ready)


class _Run:
    """One run of a Distributor: its actors, channels and books."""

    def __init__(self, dist: Distributor, books: dict[str, _Type], collector: Collector, meta: dict[str, Any],
                 mode: Any, ledger: Ledger | None, max_unacked: int | None, max_restarts: int,
                 workers: Mapping[type[Worker], int]) -> None:
        self.dist, self.books, self.meta, self.ledger = dist, books, meta, ledger
        self.limit: dict[str, int] = {}  # worker -> the unacknowledged tasks it may hold
        self.done: set[str] = set(ledger.ids) if ledger is not None else set()
        self.report = DistributeReport(per_type={name: 0 for name in books})
        self.deaths: queue.SimpleQueue[str] = queue.SimpleQueue()
        n_workers = sum(workers.values())
        self.results = Channel(mode=mode, name="distribute-results", writers=n_workers + 1)
        self.acks = Channel(mode=mode, name="distribute-acks")
        self.held: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}  # worker -> task id -> (type, data)
        self.owner: dict[str, str] = {}  # task id -> worker holding it
        self.workers: dict[str, WorkerActor] = {}
        for wcls, n in workers.items():
            for i in range(n):
                name = f"{wcls.task_type}-{wcls.__name__}-{i}"
                inbox = Channel(mode=mode, name=f"{name}-inbox")
                actor = WorkerActor(name, wcls, inbox, self.results, mode, self.deaths, max_restarts)
                self.workers[name] = actor
                self.held[name] = {}
                self.limit[name] = max_unacked or max(DEFAULT_UNACKED, 2 * int(getattr(wcls, "n_threads", 1)))
                books[actor.type_name].workers.append(actor)
        self.collector = CollectorActor(collector, self.results, self.acks, mode)

    def go(self, timeout: float | None) -> DistributeReport:
        deadline = None if timeout is None else time.monotonic() + timeout
        runtime = Runtime()
        actors: list[Actor] = [*self.workers.values(), self.collector]
        self.dist.actors = actors
        try:
            for actor in actors:
                actor.start(runtime)
            for w in self.workers.values():
                w.inbox.put(("init", self.meta))  # type: ignore[union-attr]
                w.inbox.flush()  # type: ignore[union-attr]
                w.restart_metadata = self.meta  # a restarted process starts with it
            self._loop(deadline)
            self._finish(deadline)
        except BaseException as exc:
            failed = next((a.error for a in actors if a.error is not None and not isinstance(exc, ActorError)), None)
            runtime.cancel(actors, ActorError("distributor", type(exc).__name__, str(exc)), wait=2.0)
            if failed is not None and isinstance(exc, ChannelBroken):
                raise failed from None
            raise
        self.report.restarts = sum(w.restarts for w in self.workers.values())
        return self.report

    def _loop(self, deadline: float | None) -> None:
        while not all(b.complete for b in self.books.values()):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the distributed run did not finish in time")
            for actor in self.dist.actors:
                if actor.error is not None:
                    raise actor.error
            self._deaths()
            self._dispatch()
            self._completions()
            if all(b.complete for b in self.books.values()):
                return
            try:
                batch = self.acks.get_batch(0.05)
            except TimeoutError:
                continue
            if batch and batch[-1] is END:
                raise RuntimeError("the collector ended before every task was acknowledged")
            self._acknowledged(batch)

    def _deaths(self) -> None:
        """Hand out again what the workers that died held."""
        while True:
            try:
                name = self.deaths.get_nowait()
            except queue.Empty:
                return
            for task_id, (type_name, data) in self.held[name].items():
                self.books[type_name].redo.append((task_id, data))
                del self.owner[task_id]
            self.held[name] = {}

    def _dispatch(self) -> None:
        for book in self.books.values():
            if book.complete or not all(self.books[d].complete for d in book.deps):
                continue
            sent = set()
            for _ in range(max(self.limit[w.name] for w in book.workers)):
                for worker in sorted(book.workers, key=lambda w: len(self.held[w.name])):
                    if len(self.held[worker.name]) >= self.limit[worker.name]:
                        continue
                    task = self._next(book, worker.name)
                    if task is None:
                        break
                    task_id, data = task
                    self.held[worker.name][task_id] = (book.name, data)
                    self.owner[task_id] = worker.name
                    book.outstanding.add(task_id)
                    worker.inbox.put(("task", task_id, data))  # type: ignore[union-attr]
                    sent.add(worker.name)
            for name in sent:
                self.workers[name].inbox.flush()  # type: ignore[union-attr]

    def _next(self, book: _Type, address: str) -> tuple[str, dict[str, Any]] | None:
        """The type's next task: one to send again, else the next handle() result not yet acknowledged."""
        while book.redo:
            task_id, data = book.redo.popleft()
            if task_id not in self.done:
                return task_id, data
        while not book.task.is_complete:
            data = checked_output(book.task.handle(self.meta, address, MESSAGE_TYPE_READY),
                                  f"{type(book.task).__name__}.handle")
            task_id = f"{book.name}:{book.seq}"
            book.seq += 1
            if task_id in self.done:
                self.report.skipped += 1
                continue
            return task_id, data
        return None

    def _completions(self) -> None:
        for book in self.books.values():
            ready = book.task.is_complete and not book.outstanding and not book.redo
            if not book.complete and ready and all(self.books[d].complete for d in book.deps):
                book.complete = True
                self.results.put(("finished", book.name))
                self.results.flush()

    def _acknowledged(self, ids: list[str]) -> None:
        fresh = [i for i in ids if i not in self.done]
        if self.ledger is not None:
            self.ledger.append(fresh)
        for task_id in fresh:
            self.done.add(task_id)
            type_name = task_id.rsplit(":", 1)[0]
            self.books[type_name].outstanding.discard(task_id)
            owner = self.owner.pop(task_id, None)
            if owner is not None:
                self.held[owner].pop(task_id, None)
            self.report.acknowledged += 1
            self.report.per_type[type_name] += 1
            self.report.acknowledged_ids.append(task_id)

    def _finish(self, deadline: float | None) -> None:
        """Every task is acknowledged: end the workers, then the collector, and wait for them."""
        for w in self.workers.values():
            w.inbox.close()  # type: ignore[union-attr]
        self.results.close()
        while True:
            wait = 10.0 if deadline is None else max(0.0, deadline - time.monotonic())
            batch = self.acks.get_batch(wait)
            end = bool(batch) and batch[-1] is END
            self._acknowledged([i for i in batch if i is not END])
            if end:
                break
        for actor in self.dist.actors:
            actor.join(10.0 if deadline is None else max(0.1, deadline - time.monotonic()))
