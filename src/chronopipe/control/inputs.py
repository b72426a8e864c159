"""PushInput: records pushed into a running pipeline through the control API.

``pipeline.consume(PushInput("orders"))`` runs the pipeline on what clients send with
``POST /push {"input": "orders", "records": [...]}``: the pipeline's control target finds the
input by its name. The input holds at most ``maxsize`` records not yet taken by the pipeline; a
request that would go beyond is refused whole (429, nothing of it taken), so a client retries
it as it is. ``close()`` (or ``POST /stop``) ends it: what it holds is still fed, then the
pipeline's feed ends and the run drains.

>>> orders = PushInput("orders", maxsize=3)
>>> orders.put_many([{"id": 1}, {"id": 2}])
2
>>> orders.put_many([{"id": 3}, {"id": 4}])
Traceback (most recent call last):
...
chronopipe.control.target.InputFull: input 'orders' holds 2 of 3 records: 2 more do not fit (none taken)
>>> orders.close()
>>> list(orders)
[{'id': 1}, {'id': 2}]
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from .target import InputClosed, InputFull

__all__ = ["POLL", "PushInput"]

#: Seconds between two looks of a waiting iterator at whether the input was closed.
POLL = 0.1


class PushInput:
    """A bounded, closable iterable fed by the control API (or any thread) with ``put_many``.

    Iterated once (by the pipeline's feed): the iterator waits for records, yields them in the
    order they were accepted, and ends once the input is closed and every record was taken.

    Raises:
        ValueError: an empty name or a ``maxsize`` below 1.
    """

    def __init__(self, name: str, maxsize: int = 10_000) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"PushInput name must be a non-empty string, not {name!r}")
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"PushInput {name!r}: maxsize must be an int >= 1, not {maxsize!r}")
        self.name, self.maxsize = name, maxsize
        self.accepted = self.taken = self.refused = self.confirmed = 0
        self.created_at, self.closed_at = time.time(), None
        self._records: deque[Any] = deque()
        self._closed = False
        self._iterated = False
        self._ready = threading.Condition(threading.Lock())

    # -- the producers' side (the control API) -----------------------------------------
    def put_many(self, records: Iterable[Any]) -> int:
        """Take every record of ``records`` or none of them; how many were taken.

        Raises:
            InputFull: they do not all fit now (the input holds ``maxsize`` records): none taken.
            InputClosed: the input was closed.
        """
        batch = records if isinstance(records, list) else list(records)
        with self._ready:
            if self._closed:
                raise InputClosed(f"input {self.name!r} is closed: it takes no more records")
            held = len(self._records)
            if held + len(batch) > self.maxsize:
                self.refused += len(batch)
                raise InputFull(f"input {self.name!r} holds {held:,} of {self.maxsize:,} records: "
                                f"{len(batch):,} more do not fit (none taken)")
            self._records.extend(batch)
            self.accepted += len(batch)
            if batch:
                self._ready.notify()
        return len(batch)

    def put(self, record: Any) -> None:
        """Take one record.

        Raises:
            InputFull: the input holds ``maxsize`` records. InputClosed: it was closed.
        """
        self.put_many([record])

    def close(self) -> None:
        """Take no more records; the iterator ends once it gave those held (idempotent)."""
        with self._ready:
            if not self._closed:
                self._closed, self.closed_at = True, time.time()
            self._ready.notify_all()

    stop = close  # what a pipeline's /stop calls on its input

    @property
    def closed(self) -> bool:
        """Whether close() (or stop()) was called."""
        return self._closed

    def qsize(self) -> int:
        """Records held, not taken by the pipeline yet."""
        return len(self._records)

    # -- the pipeline's side ------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        """The records as they come, until closed and drained (one iterator per input).

        Raises:
            RuntimeError: the input was iterated already.
        """
        with self._ready:
            if self._iterated:
                raise RuntimeError(f"input {self.name!r} is iterated already (a PushInput feeds one consumer)")
            self._iterated = True
        return self._records_as_they_come()

    def _records_as_they_come(self) -> Iterator[Any]:
        ready, records = self._ready, self._records
        while True:
            with ready:
                while not records and not self._closed:
                    ready.wait(POLL)
                if not records:  # closed and drained
                    return
                batch = list(records)
                records.clear()
                self.taken += len(batch)
            yield from batch

    def confirm(self, n: int) -> None:
        """Under acknowledgements: the pipeline finished with the first ``n`` records taken."""
        self.confirmed = max(self.confirmed, n)

    def statistics(self) -> dict[str, Any]:
        """``{"name", "maxsize", "queued", "accepted", "taken", "refused", "confirmed", "closed"}``."""
        return {"name": self.name, "maxsize": self.maxsize, "queued": len(self._records), "accepted": self.accepted,
                "taken": self.taken, "refused": self.refused, "confirmed": self.confirmed, "closed": self._closed}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"PushInput({self.name!r}, {state}, {len(self._records)}/{self.maxsize} held)"
