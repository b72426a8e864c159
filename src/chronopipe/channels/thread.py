"""ThreadChannel: a bounded deque guarded by one lock, for actors in one process.

Whoever waits for records registers a wake-up in ``_wakers``: the reader blocked in ``get``
(its condition's ``notify``) and ``wait_any`` (through ``watch``). A put checks that list once,
so it costs nothing more when nobody waits; a wake-up is called once and dropped, so the puts
that follow it, while the woken thread waits for its turn to run, cost nothing more either.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .base import Channel, Mode, remaining
from .end import END

__all__ = ["ThreadChannel"]


class ThreadChannel(Channel, mode="thread"):
    """In-process channel: records are handed over by reference, never copied."""

    def __init__(
        self, maxsize: int = 10_000, *, name: str = "channel", mode: Mode = "thread", kind: Mode | None = None,
        writers: int = 1,
    ) -> None:
        super().__init__(maxsize, name=name, mode=mode, kind=kind, writers=writers)
        self._buf: deque[Any] = deque()
        self._lock = threading.RLock()  # re-entrant: a signal handler may abort mid-put
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed_writers = 0
        self._wakers: list[Callable[[], object]] = []  # called once (under _lock) when records or END arrive
        self._wake_reader = self._not_empty.notify_all

    def put(self, item: Any, timeout: float | None = None) -> None:
        if item is END or item is queue.Empty:
            self.close()
            return
        with self._lock:  # fast path: room, open, not broken
            if len(self._buf) < self.maxsize and self._closed_writers < self.writers and self._broken is None:
                self._buf.append(item)
                self._items_put += 1
                self._batches_sent += 1
                if self._wakers:  # somebody waits (one check: nothing more to pay when nobody does)
                    self._wake()
                return
        self.put_many((item,), timeout)

    def put_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        if not isinstance(items, (list, tuple)):  # an iterator may be endless, or pause
            taken = 0
            for item in items:
                self.put(item, timeout)
                taken += 1
            return taken
        n = len(items)
        deadline = None if timeout is None else time.monotonic() + timeout
        done = 0
        with self._lock:
            if self._closed_writers >= self.writers:
                raise ValueError(f"channel {self.name!r}: put after close (every writer has closed it)")
            while done < n:
                self._check_broken()
                room = self.maxsize - len(self._buf)
                if room <= 0:
                    try:
                        self._not_full.wait(remaining(deadline, f"channel {self.name!r} stayed full for {timeout} s"))
                    except TimeoutError as exc:
                        self._items_put += done
                        exc.taken = done  # type: ignore[attr-defined]
                        raise
                    continue
                self._buf.extend(items[done : done + room] if done or room < n else items)
                done = min(n, done + room)
                if self._wakers:
                    self._wake()
            self._items_put += n
            self._batches_sent += 1
        return n

    def close(self) -> None:
        with self._lock:
            if self._closed_writers < self.writers:
                self._closed_writers += 1
                self._ends_seen = self._closed_writers
            self._wake()

    def _wake(self) -> None:
        """Wake whoever waits for records, once (under _lock)."""
        wakers = self._wakers
        if wakers:
            self._wakers = []
            for wake in wakers:
                wake()

    def _receive(self, timeout: float) -> list[Any] | None:
        with self._lock:
            if not self._buf:
                if self._closed_writers >= self.writers:
                    return [END]
                if timeout <= 0:
                    return None
                self._wakers.append(self._wake_reader)
                try:
                    self._not_empty.wait(timeout)
                finally:
                    self._forget(self._wake_reader)
                if not self._buf:
                    return [END] if self._closed_writers >= self.writers else None
            batch = list(self._buf)
            self._buf.clear()
            self._not_full.notify_all()
            return batch

    # -- wait_any's hooks (base.py) --------------------------------------------------------
    def ready(self) -> bool:
        return (bool(self._buf) or self._closed_writers >= self.writers or self._broken is not None
                or self._ridx < len(self._rbatch))

    def watch(self, wake: Callable[[], object]) -> Callable[[], object]:
        with self._lock:
            self._wakers.append(wake)
        return lambda: self._forget(wake)

    def _forget(self, wake: Callable[[], object]) -> None:
        with self._lock:
            if wake in self._wakers:  # else it was woken, which dropped it
                self._wakers.remove(wake)

    def abort(self, reason: BaseException | None = None) -> None:
        super().abort(reason)
        with self._lock:
            self._wake()
            self._not_full.notify_all()

    def qsize(self) -> int:
        return len(self._buf) + super().qsize()
