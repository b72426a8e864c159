"""QueueOutput: the write side of a Channel over any object with ``put()``.

Lets an actor feed a ``queue.Queue``, a ``multiprocess``/``multiprocessing`` ``Queue`` or a
``Manager().Queue()`` proxy the way it feeds a chronopipe Channel: records one ``put`` each,
then END. Such queues cannot be aborted, so when the actor fails or is cancelled the parent
puts END on them instead: their consumers stop waiting, and the actor's ``join()`` tells
whether the stream was complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from ..channels import END, Channel
from ..channels.base import Kind, kind_of

__all__ = ["QueueOutput", "kind_of"]

log = logging.getLogger("chronopipe.readers")


class QueueOutput(Channel):
    """Write-only Channel adapter around ``target.put`` (END goes through ``put`` too)."""

    def __init__(self, target: Any, *, name: str = "queue", kind: Kind | None = None) -> None:
        if not callable(getattr(target, "put", None)):
            raise TypeError(f"queue= needs an object with put(), got {type(target).__name__}")
        resolved = kind or kind_of(target)
        super().__init__(1, name=name, kind=resolved)
        self.kind = resolved  # type: ignore[misc]  (per instance: it depends on the target)
        self.target = target
        self._owner_pid = os.getpid()
        self._closed = False

    def put_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        if self._closed:
            raise ValueError(f"channel {self.name!r}: put after close")
        put = self.target.put
        n = 0
        for item in items:
            self._check_broken()
            put(item)
            n += 1
        self._items_put += n
        self._batches_sent += 1
        return n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.target.put(END)
        if os.getpid() != self._owner_pid and callable(getattr(self.target, "join_thread", None)):
            # A (multiprocessing) Queue in a child: wait for its feeder thread to hand every
            # record to the pipe before this process exits; close() only ends this side.
            self.target.close()
            self.target.join_thread()

    def abort(self, reason: BaseException | None = None) -> None:
        first = self._broken is None
        super().abort(reason)
        if first and not self._closed:
            self._closed = True
            try:
                self.target.put(END, True, 1.0)
            except TypeError:  # a put(item) without block/timeout
                self.target.put(END)
            except Exception as exc:  # full, or its manager is gone: nothing more we can do
                log.debug("queue %r: could not put END after abort: %s", self.name, exc)

    def _receive(self, timeout: float) -> list[Any] | None:
        raise TypeError(f"channel {self.name!r} is write-only: read the queue you gave it")

    def __repr__(self) -> str:
        return f"<QueueOutput {self.name!r} -> {type(self.target).__name__}>"

