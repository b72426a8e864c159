"""Distributor: hands registered tasks out to load-balanced workers, in dependency order, until
the collector has acknowledged every one (docs/distribute.md).

The distributor runs in the caller's thread (run.py); each worker and the collector is an Actor
with its own inbox channel: its own process with ``mode="processes"``, a Ray actor with
``mode="ray"`` (channels through Ray too), a thread with ``mode="threads"``. The same code runs
in every mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..actors import Actor
from .ledger import Ledger
from .run import DistributeReport, _Run, _Type
from .types import Collector, EndpointAddress, MetaDataWorker, Task, TaskType, Worker

__all__ = ["DistributeReport", "Distributor"]

#: run()'s modes, and the actor mode each one hosts the workers and the collector in.
MODES = {"processes": "process", "ray": "ray", "threads": "thread"}


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
        has acknowledged them all; returns the report. ``mode``: "processes" (the default),
        "ray" (Ray actors and channels; the caller's ``ray.init(...)`` if it made one, else a
        local Ray) or "threads". ``collector`` holds the collector's state afterwards (a
        process's or Ray actor's is copied back). ``max_restarts``: how often each worker and
        the collector is started again after dying. ``max_unacked``: the tasks a worker
        holds that are not acknowledged yet (default: 4, 16 on Ray, or twice the threads of a
        MultiThreadedWorker): enough that a worker never waits for its next task while its last
        result travels to the collector and back.

        Raises:
            ValueError: a bad mode or count, a worker type without a task (or the reverse), a
                dependency on an unregistered type or a cycle, metadata missing or not a dict.
            TypeError: a handle() returned something other than a dict or None.
            ActorError: a worker or the collector failed (or died more than max_restarts times).
            RayMissingError: ``mode="ray"`` without Ray installed.
            TimeoutError: ``timeout`` seconds went by.
        """
        books = self._books(workers, mode, max_unacked)
        meta = self._metadata(metadata)
        for book in books.values():
            book.task.initialize(meta)
        store = Ledger(ledger) if ledger is not None else None
        self.actors = []
        run = _Run(self.actors, books, collector, meta, MODES[mode], store, max_unacked, max_restarts, workers)
        try:
            return run.go(timeout)
        finally:
            self.actors = []

    def _books(self, workers: Mapping[type[Worker], int], mode: str, max_unacked: int | None) -> dict[str, _Type]:
        if mode not in MODES:
            raise ValueError(f"mode must be 'processes', 'ray' or 'threads', not {mode!r}")
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
