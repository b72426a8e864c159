"""UpsertStore: a durable keyed store on SQLite, the idempotent sink that makes replays exactly-once.

``guarantee="replay"`` delivers every record at least once: a restarted worker sends on again
what its dead predecessor had sent (``duplicates_possible``), and ``Pipeline.replay`` gives dead
letters back. A sink that *upserts* each record under a key of its own turns "at least once"
into "exactly once" in what it holds: writing the same record twice leaves one row, the second
write replacing the first. :class:`UpsertStore` is such a sink, on the standard library's
``sqlite3``; ``chronopipe.graph.UpsertSink`` is the pipeline node that writes into it (or into any
``MutableMapping``, such as a dict). docs/delivery.md ("Exactly once with an idempotent sink").

- A ``MutableMapping``: keys are ``str`` or ``int`` (``1`` and ``"1"`` are two keys; ``bool`` is
  refused), values anything ``pickle`` can write (``format="pickle"``, the default) or JSON values
  (``format="json"``: readable by any SQLite tool; tuples come back as lists).
- One table (``table="records"``): ``key`` (the primary key), ``value``, ``version`` (how many
  times the key was written: 1, then one more per replace) and ``updated`` (seconds since the
  epoch). ``INSERT ... ON CONFLICT (key) DO UPDATE``, so a write never fails on a duplicate.
- ``store[key] = value`` commits at once; :meth:`upsert_many` writes many pairs in one
  transaction, one commit (about 4x the throughput). Either way a committed row survives a crash.
- WAL mode (readers do not block the writer) and a busy timeout (``timeout``, 30 s): several
  processes or threads can write the same file, each with its own ``UpsertStore``.
- The connection is opened on first use, in the process that uses it: a store created before a
  fork opens its own connection in the child (the parent's is never used or closed there).

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "orders.sqlite")
>>> with UpsertStore(path) as store:
...     store.upsert_many([("a", {"n": 1}), ("b", {"n": 2})])
...     store.upsert_many([("a", {"n": 1})])  # the same record again: replaced, not added
...     len(store), store["a"], store.version("a")
0
1
(2, {'n': 1}, 2)
>>> with UpsertStore(path) as again:  # durable: reopened, it holds the same rows
...     dict(again.items()), again.statistics().rows
({'a': {'n': 1}, 'b': {'n': 2}}, 2)
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

__all__ = ["FORMATS", "UpsertStatistics", "UpsertStore", "check_key"]

Key = str | int
FORMATS = ("pickle", "json")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Connections opened in a process this one was forked from: kept, never closed or used here.
_INHERITED: list[sqlite3.Connection] = []


def check_key(key: Any) -> Key:
    """``key`` if it can be a key of an UpsertStore (a ``str`` or an ``int``, not a ``bool``).

    >>> check_key(7), check_key("a-7")
    (7, 'a-7')
    >>> check_key(2.5)
    Traceback (most recent call last):
    ...
    TypeError: an UpsertStore key must be a str or an int, not float (2.5)
    """
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return key
    raise TypeError(f"an UpsertStore key must be a str or an int, not {type(key).__name__} ({key!r:.60})")


@dataclass(frozen=True)
class UpsertStatistics:
    """A store's table and what this ``UpsertStore`` object wrote (in this process) since it was made."""

    path: str
    table: str
    rows: int  # in the table now (all writers)
    written: int  # upserts through this object
    replaced: int  # of those, the ones whose key was there already (a duplicate neutralised)
    commits: int  # transactions committed by this object


class UpsertStore(MutableMapping[Key, Any]):
    """A table of ``key -> value`` in the SQLite file ``path``, written by upserts (see the module).

    ``table`` names the table (letters, digits, ``_``); ``format`` is ``"pickle"`` or ``"json"``;
    ``timeout`` is how long a write waits for another writer's lock (seconds). The file and table
    are created when first used. Close it (or use ``with``) when done; a closed store opens again
    on its next use.

    Raises:
        ValueError: a bad table name or format (at once); TypeError: a key that is not str or int,
            a value the format cannot write; sqlite3.Error: the file cannot be opened or written.
    """

    def __init__(self, path: str | os.PathLike[str], table: str = "records", *,
                 format: Literal["pickle", "json"] = "pickle", timeout: float = 30.0) -> None:
        if not isinstance(table, str) or not _TABLE.match(table):
            raise ValueError(f"UpsertStore table must be a name of letters, digits and '_', not {table!r}")
        if format not in FORMATS:
            raise ValueError(f"UpsertStore format must be one of {FORMATS}, not {format!r}")
        self.path = os.fspath(path)
        self.table = table
        self.format = format
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self.written = self.replaced = self.commits = 0

    # -- the connection ----------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:  # forked: the parent's connection is not ours to use or close
            _INHERITED.append(self._conn)
            self._lock = threading.Lock()
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Two copies opening a new file at once both want the exclusive lock that switching to WAL
        # takes; SQLite answers one of them "database is locked" at once, without waiting out the
        # busy timeout (it would deadlock), so the switch is retried until the timeout is spent.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous=NORMAL")  # durable at each commit against a crash of the process
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" (key PRIMARY KEY NOT NULL, value, '
                     "version INTEGER NOT NULL DEFAULT 1, updated REAL NOT NULL)")

    def close(self) -> None:
        """Close the connection (in the process that opened it); the next use opens it again."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()
        elif conn is not None:
            _INHERITED.append(conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """What a copy in another process gets: where the table is, not the connection or counts."""
        return {"path": self.path, "table": self.table, "format": self.format, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["table"], format=state["format"],  # type: ignore[misc]
                      timeout=state["timeout"])

    def sibling(self) -> UpsertStore:
        """A new store object on the same file and table (its own connection, its own counts)."""
        return UpsertStore(self.path, self.table, format=self.format, timeout=self.timeout)

    # -- writing -----------------------------------------------------------------------------
    def row(self, key: Any, value: Any) -> tuple[Key, Any]:
        """``(key, value)`` as written into the table: the key checked, the value encoded.

        Raises:
            TypeError: the key is not str or int, or the value cannot be written in this format.
        """
        key = check_key(key)
        try:
            data = pickle.dumps(value, protocol=5) if self.format == "pickle" else json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, pickle.PicklingError, AttributeError, RecursionError) as exc:
            raise TypeError(f"UpsertStore {self.path}: the value of key {key!r} cannot be written as "
                            f"{self.format} ({type(exc).__name__}: {exc})") from None
        return key, data

    def upsert_rows(self, rows: Iterable[tuple[Key, Any]]) -> int:
        """Write ``rows`` (from :meth:`row`) in one transaction and commit; how many replaced a row.

        Nothing is written if one fails (the transaction is rolled back)."""
        sql = (f'INSERT INTO "{self.table}" (key, value, updated) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE '
               "SET value = excluded.value, version = version + 1, updated = excluded.updated RETURNING version")
        with self._lock:
            db = self._db()
            now, written, replaced = time.time(), 0, 0
            db.execute("BEGIN IMMEDIATE")  # the write lock now (waiting up to timeout), not halfway
            try:
                for key, data in rows:
                    (version,) = db.execute(sql, (key, data, now)).fetchone()
                    written += 1
                    replaced += version > 1
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self.written += written
            self.replaced += replaced
            self.commits += 1
        return replaced

    def upsert_many(self, pairs: Iterable[tuple[Any, Any]]) -> int:
        """Upsert every ``(key, value)`` of ``pairs`` in one transaction (one commit); how many
        of them replaced a row that was there. All or nothing: a bad key or value writes none."""
        return self.upsert_rows([self.row(key, value) for key, value in pairs])

    def __setitem__(self, key: Key, value: Any) -> None:
        self.upsert_rows([self.row(key, value)])

    def __delitem__(self, key: Key) -> None:
        with self._lock:
            if self._db().execute(f'DELETE FROM "{self.table}" WHERE key = ?', (check_key(key),)).rowcount == 0:
                raise KeyError(key)

    # -- reading -----------------------------------------------------------------------------
    def _decode(self, data: Any) -> Any:
        return pickle.loads(data) if self.format == "pickle" else json.loads(data)

    def __getitem__(self, key: Key) -> Any:
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise KeyError(key)
        with self._lock:
            found = self._db().execute(f'SELECT value FROM "{self.table}" WHERE key = ?', (key,)).fetchone()
        if found is None:
            raise KeyError(key)
        return self._decode(found[0])

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            return False
        with self._lock:
            return self._db().execute(f'SELECT 1 FROM "{self.table}" WHERE key = ?', (key,)).fetchone() is not None

    def version(self, key: Key) -> int:
        """How many times ``key`` was written (1: never replaced). Raises KeyError."""
        with self._lock:
            found = self._db().execute(f'SELECT version FROM "{self.table}" WHERE key = ?', (key,)).fetchone()
        if found is None:
            raise KeyError(key)
        return int(found[0])

    def __iter__(self) -> Iterator[Key]:
        """The keys, in the order they were first written."""
        with self._lock:
            keys = [k for (k,) in self._db().execute(f'SELECT key FROM "{self.table}" ORDER BY rowid')]
        return iter(keys)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute(f'SELECT COUNT(*) FROM "{self.table}"').fetchone()[0])

    def statistics(self) -> UpsertStatistics:
        """The rows in the table now, and what this object wrote."""
        return UpsertStatistics(self.path, self.table, len(self), self.written, self.replaced, self.commits)

    def __repr__(self) -> str:
        return f"UpsertStore({self.path!r}, table={self.table!r}, format={self.format!r})"
