"""Channels over foreign queues: any object with ``put()`` or ``get()`` used as a Channel.

``QueueOutput`` is the write side: it lets an actor feed a ``queue.Queue``, a
``multiprocess``/``multiprocessing`` ``Queue`` or a ``Manager().Queue()`` proxy the way it feeds a
chronopipe Channel: records one ``put`` each, then END. Such queues cannot be aborted, so when the
actor fails or is cancelled the parent puts END on them instead: their consumers stop waiting, and
the actor's ``join()`` tells whether the stream was complete.

``QueueInput`` is the read side: it reads any queue with ``get()`` as if it were a Channel
(``get_batch``, END); END (or the seed's ``queue.Empty`` class) ends it.

Neither registers a mode (see base.py): they are made around a queue, never by ``Channel(mode=...)``.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Iterable
from typing import Any

from .base import Channel, ChannelBroken, Mode, mode_of
from .end import END, is_end

__all__ = ["QueueInput", "QueueOutput", "as_input", "mode_of"]

log = logging.getLogger("chronopipe.readers")  # the name its messages always had

DRAIN = 1000  # records taken at once from a queue that has them ready


class QueueOutput(Channel):
    """Write-only Channel adapter around ``target.put`` (END goes through ``put`` too)."""

    def __init__(self, target: Any, *, name: str = "queue", mode: Mode | None = None) -> None:
        if not callable(getattr(target, "put", None)):
            raise TypeError(f"queue= needs an object with put(), got {type(target).__name__}")
        resolved = mode or mode_of(target)
        super().__init__(1, name=name, mode=resolved)
        self.mode = resolved  # type: ignore[misc]  (per instance: it depends on the target)
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


class QueueInput(Channel):
    """Read side of a ``queue.Queue``, a ``multiprocessing``/``multiprocess`` Queue or a
    ``Manager().Queue()`` proxy. END (or the seed's ``queue.Empty`` class) ends it."""

    def __init__(self, source: Any, *, name: str = "queue") -> None:
        if not callable(getattr(source, "get", None)):
            raise TypeError(f"an input queue needs get(), got {type(source).__name__}")
        super().__init__(1, name=name)
        self.mode = mode_of(source)  # type: ignore[misc]  (per instance: it depends on the source)
        self.source = source
        self._nowait = getattr(source, "get_nowait", None)

    def put_many(self, items: Any, timeout: float | None = None) -> int:
        n = 0
        for item in items:
            self.source.put(item)
            n += 1
        return n

    def close(self) -> None:
        self.source.put(END)

    def _receive(self, timeout: float) -> list[Any] | None:
        """Raises:
            ChannelBroken: the queue is a Manager proxy whose server process is gone."""
        try:
            first = self.source.get(timeout=timeout) if timeout > 0 else self._get_nowait()
        except queue.Empty:
            return None
        except (EOFError, ConnectionError, BrokenPipeError) as exc:
            raise self._gone(exc) from exc
        batch = [first]
        while not is_end(batch[-1]) and len(batch) < DRAIN:
            try:
                batch.append(self._get_nowait())
            except queue.Empty:
                break
            except (EOFError, ConnectionError, BrokenPipeError) as exc:
                raise self._gone(exc) from exc
        if is_end(batch[-1]):
            batch[-1] = END
        return batch

    def _gone(self, exc: BaseException) -> ChannelBroken:
        proxy = "Proxy" in type(self.source).__name__  # AutoProxy[Queue]
        what = "the queue's Manager server is gone" if proxy else "the queue broke"
        return ChannelBroken(f"input {self.name!r}: {what} ({type(exc).__name__}: {str(exc) or 'connection closed'})")

    def _get_nowait(self) -> Any:
        if self._nowait is not None:
            return self._nowait()
        return self.source.get(False)


def as_input(source: Any, name: str) -> Channel:
    """A Channel as it is; any other queue wrapped in QueueInput."""
    return source if isinstance(source, Channel) else QueueInput(source, name=name)

