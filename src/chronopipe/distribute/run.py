"""One run of a Distributor: its actors, channels and books (docs/distribute.md).

The distributor's loop runs in the caller's thread: it hands tasks out, reads acknowledgements,
and after a death hands out again what may have been lost. A worker's death loses the tasks it
held; the collector's loses the results it held (read from its inbox, not acknowledged yet),
which the distributor cannot tell apart from results still on their way, so every task not
acknowledged is handed out again (the collector drops a result it handled already). An id is
written to the ledger after the collector acknowledged it and before the run counts it done.
"""

from __future__ import annotations

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
from .types import MESSAGE_TYPE_READY, Collector, Task, Worker, checked_output

__all__ = ["DistributeReport"]

#: The unacknowledged tasks a worker holds by default (twice its threads for a MultiThreadedWorker).
DEFAULT_UNACKED = 4
#: On Ray, where a task's round trip (distributor, worker, collector, through the hub) is a few
#: milliseconds, not a fraction of one: more in flight keeps a worker busy meanwhile.
RAY_UNACKED = 16
#: Acknowledgements a message at most: a batch of ids stays under a pipe's atomic write
#: (4 KiB), so a collector killed while sending one leaves no half message behind.
ACK_BATCH = 100


@dataclass
class DistributeReport:
    """What a run did: tasks acknowledged by this run, skipped (acknowledged by an earlier run,
    per the ledger), per task type, and how many worker or collector processes (Ray actors)
    were started again after dying."""

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
        self.complete = False  # every task acknowledged: "finished" sent to the collector
        self.finished = False  # ... and acknowledged by it
        self.workers: list[WorkerActor] = []


class _Run:
    """One run of a Distributor: its actors, channels and books."""

    def __init__(self, actors_out: list[Actor], books: dict[str, _Type], collector: Collector,
                 meta: dict[str, Any], mode: Any, ledger: Ledger | None, max_unacked: int | None,
                 max_restarts: int, workers: Mapping[type[Worker], int]) -> None:
        self.actors, self.books, self.meta, self.ledger = actors_out, books, meta, ledger
        self.limit: dict[str, int] = {}  # worker -> the unacknowledged tasks it may hold
        self.done: set[str] = set(ledger.ids) if ledger is not None else set()
        self.report = DistributeReport(per_type={name: 0 for name in books})
        self.deaths: queue.SimpleQueue[str] = queue.SimpleQueue()
        n_workers = sum(workers.values())
        self.results = Channel(mode=mode, name="distribute-results", writers=n_workers + 1)
        small = {} if mode == "thread" else {"batch_size": ACK_BATCH}
        self.acks = Channel(mode=mode, name="distribute-acks", **small)
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
                least = RAY_UNACKED if mode == "ray" else DEFAULT_UNACKED
                self.limit[name] = max_unacked or max(least, 2 * int(getattr(wcls, "n_threads", 1)))
                books[actor.type_name].workers.append(actor)
        self.collector = CollectorActor(collector, self.results, self.acks, mode, self.deaths, max_restarts)

    def go(self, timeout: float | None) -> DistributeReport:
        deadline = None if timeout is None else time.monotonic() + timeout
        runtime = Runtime()
        actors: list[Actor] = [*self.workers.values(), self.collector]
        self.actors[:] = actors
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
        self.report.restarts = sum(w.restarts for w in self.workers.values()) + self.collector.restarts
        return self.report

    def _settled(self) -> bool:
        return all(b.finished for b in self.books.values())

    def _loop(self, deadline: float | None) -> None:
        while not self._settled():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the distributed run did not finish in time")
            for actor in self.actors:
                if actor.error is not None:
                    raise actor.error
            self._deaths()
            self._dispatch()
            self._completions()
            try:
                batch = self.acks.get_batch(0.05)
            except TimeoutError:
                continue
            if batch and batch[-1] is END:
                raise RuntimeError("the collector ended before every task was acknowledged")
            self._acknowledged(batch)

    def _deaths(self) -> None:
        """Hand out again what a worker that died held; after the collector's death, every task
        not acknowledged, and the "finished" of every type it did not acknowledge."""
        while True:
            try:
                name = self.deaths.get_nowait()
            except queue.Empty:
                return
            for worker in (self.held if name == self.collector.name else [name]):
                for task_id, (type_name, data) in self.held[worker].items():
                    self.books[type_name].redo.append((task_id, data))
                    del self.owner[task_id]
                self.held[worker] = {}
            if name == self.collector.name:
                for book in self.books.values():
                    if book.complete and not book.finished:
                        self.results.put(("finished", book.name))
                self.results.flush()

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

    def _acknowledged(self, acks: list[Any]) -> None:
        """Record the collector's acknowledgements: the ledger first, then the books."""
        fresh = [i for i in acks if isinstance(i, str) and i not in self.done]
        if self.ledger is not None:
            self.ledger.append(fresh)
        self.collector.remember(acks)
        for key in acks:
            if isinstance(key, tuple):  # ("finished", type)
                self.books[key[1]].finished = True
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
        """Every task and type is acknowledged: end the workers, then the collector, and wait for them."""
        self.collector.finishing = True
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
        for actor in self.actors:
            actor.join(10.0 if deadline is None else max(0.1, deadline - time.monotonic()))
