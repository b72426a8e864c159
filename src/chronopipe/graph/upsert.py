"""UpsertSink: a terminal node that upserts each record under its key, an idempotent sink.

Under ``guarantee="replay"`` a record can reach the end of a pipeline twice (a restarted worker
sends its last batch on again; ``Pipeline.replay`` gives dead letters back). Written by key, the
second copy replaces the first: the store holds each record once. ``replaced`` counts such
duplicates neutralised (or records that were there from an earlier run).

>>> from chronopipe.graph import Pipeline
>>> rows = {}
>>> sink = UpsertSink("load", key="id", store=rows)
>>> Pipeline(sink).consume([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "a"}])
>>> rows, sink.written, sink.replaced
({1: {'id': 1, 'v': 'a'}, 2: {'id': 2, 'v': 'b'}}, 3, 1)

``store`` is a path (an :class:`~chronopipe.delivery.upsert.UpsertStore` on that SQLite file,
table ``records``), an ``UpsertStore`` (the node opens its own connection to the same file and
table), or any ``MutableMapping`` (a dict). In the ``processes`` mode the SQLite connection is
opened in ``begin()``, in the node's process; with ``workers=N`` each copy has its own, and the
busy timeout lets them take turns. What a dict store gets in a node process comes back to the
caller's dict when the run ends, like any node attribute (state.py).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, MutableMapping
from typing import Any

from ..delivery.upsert import UpsertStore
from .node import Node

__all__ = ["COMMIT_EVERY", "UpsertSink"]

#: Records per commit of a SQLite store (and at every commit(): see UpsertSink).
COMMIT_EVERY = 1000


class UpsertSink(Node):
    """Upserts every record it receives into ``store`` under ``key(record)``; pushes nothing.

    ``key`` is a field name (``record[key]``) or a callable taking the record. ``commit_every``
    (SQLite stores) is how many records go in one transaction (``None``: :data:`COMMIT_EVERY`);
    what waits is also committed at every ``commit()`` (Node's hook: under acknowledgements,
    before records are confirmed; in a worker that ``"replay"`` restarts, before a batch is
    acknowledged), and in ``end()``.

    ``written`` and ``replaced`` count the last run's upserts and, of them, those whose key was
    already there; they are summed over the node's workers (``tallies`` holds them per worker).
    A key that cannot be computed (the field is missing, the callable raises) or a value that
    cannot be stored raises in ``process()``: under ``"replay"`` the record is retried, then
    dead-lettered.
    """

    def __init__(self, name: str, *, key: str | Callable[[Any], Any], store: Any,
                 commit_every: int | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        if not (isinstance(key, str) or callable(key)):
            raise TypeError(f"UpsertSink {name!r}: key must be a field name or a callable, not {key!r}")
        if not isinstance(store, (str, os.PathLike, UpsertStore, MutableMapping)):
            raise TypeError(f"UpsertSink {name!r}: store must be a path, an UpsertStore or a MutableMapping "
                            f"(a dict), not {type(store).__name__}")
        if commit_every is not None and (not isinstance(commit_every, int) or commit_every < 1):
            raise ValueError(f"UpsertSink {name!r}: commit_every must be an int >= 1 (or None), not {commit_every!r}")
        self.key = key
        self.store = store
        self.commit_every = commit_every
        self.tallies: dict[str, list[int]] = {}  #: per worker: [written, replaced], summed by the properties
        self._copied = False
        self._home = os.getpid()
        self._db: UpsertStore | None = None
        self._pending: list[tuple[Any, Any]] = []
        self._every = COMMIT_EVERY
        self._mine: list[int] = [0, 0]

    # -- counts ------------------------------------------------------------------------------
    @property
    def written(self) -> int:
        """Records upserted in the last run, by every worker."""
        return sum(t[0] for t in self.tallies.values())

    @property
    def replaced(self) -> int:
        """Of those, the ones whose key was already in the store (duplicates neutralised)."""
        return sum(t[1] for t in self.tallies.values())

    def __copy__(self) -> UpsertSink:
        """A worker copy (``workers=N``): its counts go into the same ``tallies``, emptied for the
        run (every copy is made before any worker begins)."""
        self.tallies.clear()
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._copied = True
        return twin

    # -- the run -----------------------------------------------------------------------------
    def begin(self) -> None:
        if not self._copied:
            self.tallies = {}
        self._mine = self.tallies.setdefault(f"{os.getpid()}-{id(self)}", [0, 0])
        self._mine[:] = [0, 0]
        self._pending = []
        self._db = None
        store = self.store
        if isinstance(store, UpsertStore):
            self._db = store.sibling()
        elif isinstance(store, (str, os.PathLike)):
            self._db = UpsertStore(store)
        if self._db is not None:
            len(self._db)  # open it (and create the table) now: a bad path fails the run's start
        self._every = self.commit_every or COMMIT_EVERY

    def key_of(self, record: Any) -> Any:
        """The key ``record`` is stored under."""
        key = self.key
        return key(record) if callable(key) else operator.getitem(record, key)

    def process(self, record: Any) -> None:
        key = self.key_of(record)
        db = self._db
        if db is None:  # a MutableMapping: written at once
            store = self.store
            replaced = key in store
            store[key] = record
            self._mine[0] += 1
            self._mine[1] += replaced
            return
        self._pending.append(db.row(key, record))
        if len(self._pending) >= self._every:
            try:
                self._commit()
            except BaseException:
                self._pending.pop()  # this record failed (and may be retried); the others wait
                raise

    def _commit(self) -> None:
        if not self._pending or self._db is None:
            return
        replaced = self._db.upsert_rows(self._pending)
        self._mine[0] += len(self._pending)
        self._mine[1] += replaced
        self._pending = []

    def commit(self) -> None:
        """Under acknowledgements (docs/delivery.md): after each batch of the source, what waits
        is committed, so what is confirmed is in the store."""
        self._commit()

    def end(self) -> None:
        try:
            self._commit()
        finally:
            if self._db is not None:
                self._db.close()
