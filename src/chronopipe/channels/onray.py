"""RayChannel: batches through a Ray actor, for actors hosted on Ray (``mode="ray"``).

Actors on Ray run in processes chronopipe did not fork, maybe on other machines, so no pipe or
shared memory can join them. A ray channel is a buffer in the hub actor (rayhub.py): a writer
pickles each batch (as Ray pickles: cloudpickle) and sends it as one Ray call, never one a
record. The hub takes a batch at once, in the order its writer sent them, and answers once at
most ``maxsize // batch_size`` batches are ahead of it; a writer sends up to ``AHEAD`` (2)
batches before it waits for the first answer, so a round trip is not paid per batch and an
edge holds at most ``maxsize // batch_size + AHEAD`` batches per writer (backpressure across
the cluster, as a process channel's ``maxsize + 2 * batch_size``). The reader takes up to 8
batches a call, and asks for the next ones while it handles these. The channel object is a
handle: pickled into a Ray actor, it is the same channel there.

For a reader that may die (a replaying node, graph/actors.py), the channel is opened with
``redeliver=True``: the buffer keeps the batch it last handed out until the reader
``acknowledge``\\s it, with a checkpoint of the reader's state; a new reader after a death gets
that checkpoint (``restore()``) and then the same batch again first.
"""

from __future__ import annotations

import pickle
import time
import uuid
import weakref
from collections import deque
from typing import Any

from .base import Channel, ChannelBroken, Mode, NotPicklable, remaining
from .batched import BatchedWriter
from .end import END
from .outbox import LINGER
from .rayhub import drop, hub, require_ray

__all__ = ["RayChannel"]

#: Batches a writer sends before the first of them is within the buffer's bound.
AHEAD = 2
#: Seconds a blocked writer waits between two looks at whether the channel was aborted.
POLL = 0.25


class RayChannel(BatchedWriter, Channel, mode="ray"):
    """A channel between actors on Ray: batches of up to ``batch_size`` records through the
    hub, which lets in at most ``maxsize // batch_size`` of them (at least one), and ``AHEAD``
    more per writer.

    ``redeliver``: keep the batch a reader took until it acknowledges it (see the module).

    Raises:
        RayMissingError: Ray is not installed.
        ValueError: ``batch_size`` < 1 or ``linger`` < 0 (and what Channel raises).
    """

    def __init__(self, maxsize: int = 10_000, *, name: str = "channel", mode: Mode = "ray",
                 kind: Mode | None = None, writers: int = 1, batch_size: int = 1000, linger: float = 0.005,
                 redeliver: bool = False) -> None:
        super().__init__(maxsize, name=name, mode=mode, kind=kind, writers=writers)
        if batch_size < 1 or linger < 0:
            raise ValueError(f"channel {name!r}: batch_size must be >= 1 and linger >= 0")
        self.batch_size = min(batch_size, maxsize)
        self.linger = linger
        self.redeliver = redeliver
        self._hub, self._key = hub(), uuid.uuid4().hex
        require_ray().get(self._hub.open.remote(self._key, max(1, maxsize // self.batch_size), writers, redeliver))
        weakref.finalize(self, drop, self._hub, self._key)
        self._reset_local_state()

    def _reset_local_state(self) -> None:
        self._reset_writer()
        self._rbatch, self._ridx = [], 0
        self._pending_get: Any = None
        self._reader: int | None = None  # the hub's number for this process's reading of it (attach)
        self._ahead: deque[Any] = deque()  # puts sent, not yet within the bound
        self._writer, self._sent = uuid.uuid4().hex, 0  # this process's batches are numbered in order

    def __reduce__(self) -> Any:
        return _rebuild, (self.name, self.maxsize, self.writers, self.batch_size, self.linger, self.redeliver,
                          self._hub, self._key)

    # -- writer side (put, put_many, the linger timer: batched.py) --------------------
    def flush(self) -> None:
        """Send what this process holds, and wait until the buffer has every batch sent (within
        its bound): what a node sent on before it acknowledges a batch is there for its reader."""
        with self._wlock:
            self._outbox.flush()
            while self._ahead:
                self._settle(None)

    def close(self) -> None:
        """One writer is done: what this process holds is sent, then one END."""
        with self._wlock:
            if self._closed_here:
                return
            self.flush()
            self._call(self._hub.end.remote(self._key), None)
            self._closes_here += 1
            self._closed_here = self._closes_here >= self.writers

    def _send_batch(self, batch: list[Any] | tuple[Any, ...], timeout: float | None) -> None:
        """Send one batch (a copy: the outbox reuses its list); raises, having sent nothing, if it cannot.

        Up to ``AHEAD`` batches go before the first of them is let in (one round trip is not
        paid per batch); then the writer waits for the oldest, until ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._ahead) >= AHEAD:
            self._settle(deadline)
        try:  # pickled here, as Ray pickles (a class of __main__ goes by value): the hub only keeps bytes
            data = require_ray().cloudpickle.dumps(list(batch), protocol=5)
        except Exception as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NotPicklable(f"channel {self.name!r}: a record cannot be pickled ({why}); ray channels "
                               "carry pickled batches: send plain data") from exc
        self._ahead.append(self._hub.put.remote(self._key, data, self._writer, self._sent))
        self._sent += 1
        self._items_put += len(batch)
        self._batches_sent += 1

    def _settle(self, deadline: float | None) -> None:
        """Wait until the oldest batch sent is within the buffer's bound.

        Raises:
            TimeoutError: not by ``deadline`` (it stays ahead: the next call waits for it again).
            ChannelBroken: the channel was aborted, or its hub is gone.
        """
        ray = require_ray()
        while True:
            self._check_broken()
            wait = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError(f"channel {self.name!r} stayed full")
            try:
                answer = ray.get(self._ahead[0], timeout=wait)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayError as exc:
                raise ChannelBroken(f"channel {self.name!r}: its buffer actor is gone ({exc})") from exc
            self._ahead.popleft()
            if answer != "ok":
                self._broken = self._broken or ChannelBroken(f"channel {self.name!r} was aborted: {answer[8:]}")
                self._check_broken()
            return

    def _call(self, ref: Any, deadline: float | None) -> Any:
        """Wait for one call to the buffer; raises ChannelBroken when it or the channel broke."""
        ray = require_ray()
        while True:
            self._check_broken()
            try:
                answer = ray.get(ref, timeout=max(0.0, remaining(deadline, f"channel {self.name!r}: no answer")) + 1)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayError as exc:
                raise ChannelBroken(f"channel {self.name!r}: its buffer actor is gone ({exc})") from exc
            if isinstance(answer, str) and answer.startswith("broken: "):
                self._broken = self._broken or ChannelBroken(f"channel {self.name!r} was aborted: {answer[8:]}")
                self._check_broken()
            return answer

    # -- reader side -------------------------------------------------------------------
    def _receive(self, timeout: float) -> list[Any] | None:
        ray = require_ray()
        if self._reader is None:
            self._reader = self._call(self._hub.attach.remote(self._key), None)
        if self._pending_get is None:
            self._pending_get = self._hub.get.remote(self._key, max(timeout, 0.001), self._reader)
        try:
            what, data = ray.get(self._pending_get, timeout=timeout + 0.005)  # (+ a round trip)
        except ray.exceptions.GetTimeoutError:
            return None  # the call goes on: its answer is taken next time
        except ray.exceptions.RayError as exc:
            self._pending_get = None
            self._check_broken()
            raise ChannelBroken(f"channel {self.name!r}: its buffer actor is gone ({exc})") from exc
        self._pending_get = None
        if what == "batch":
            if not self.redeliver:  # the next batch comes while this one is handled
                self._pending_get = self._hub.get.remote(self._key, POLL, self._reader)
            try:
                parts = [pickle.loads(part) for part in data]
            except Exception as exc:  # a record whose class is not importable here
                raise NotPicklable(f"channel {self.name!r}: a batch cannot be unpickled here ({type(exc).__name__}: "
                                   f"{exc}); install the records' classes where the reader runs") from exc
            return parts[0] if len(parts) == 1 else [record for part in parts for record in part]
        if what == "end":
            self._ends_seen = self.writers
            return [END]
        if what == "broken":
            self._broken = self._broken or ChannelBroken(f"channel {self.name!r} was aborted: {data}")
            self._check_broken()
        if what == "gone":  # (a channel has one reader: another one began reading it)
            raise ChannelBroken(f"channel {self.name!r}: another reader took it over")
        return None

    def reader_died(self) -> None:
        """Its reader's process died (a Ray host calls this before anything is sent again): its
        calls still waiting in the hub give up, so none takes what is meant for the next reader."""
        self._call(self._hub.attach.remote(self._key), time.monotonic() + 5)

    def acknowledge(self, checkpoint: Any = None) -> None:
        """The reader handled the batch it took last and sent its outputs on; ``checkpoint`` is
        its state then, which ``restore()`` gives to a new reader after a death."""
        self._call(self._hub.acknowledge.remote(self._key, checkpoint), None)

    def restore(self) -> tuple[Any, int, bool]:
        """(the last checkpoint acknowledged, how many batches were, whether a batch that was
        taken and not acknowledged comes again first)."""
        return self._call(self._hub.restore.remote(self._key), None)

    def qsize(self) -> int:
        return len(self._outbox) + super().qsize()

    # -- cancellation ------------------------------------------------------------------
    def abort(self, reason: BaseException | None = None) -> None:
        """Break the channel here and in the buffer: every put or get anywhere raises ChannelBroken."""
        super().abort(reason)
        LINGER.forget(self)
        try:
            self._hub.abort.remote(self._key, str(reason or "aborted"))
        except Exception:  # Ray is shutting down: nothing is waiting on it any more
            pass


def _rebuild(name: str, maxsize: int, writers: int, batch_size: int, linger: float, redeliver: bool,
             hub: Any, key: str) -> RayChannel:
    ch = Channel.__new__(RayChannel)
    Channel.__init__(ch, maxsize, name=name, writers=writers)
    ch.batch_size, ch.linger, ch.redeliver, ch._hub, ch._key = batch_size, linger, redeliver, hub, key
    ch._reset_local_state()
    return ch
