"""ProcessChannel: pickled batches through a one-way OS pipe, for actors in other processes.

Records travel as plain pickle (protocol 5) in batches of up to ``batch_size``; a partial
batch leaves after at most ``linger`` seconds (or at once when its actor goes idle), so a
lone record is not parked. A process-shared semaphore bounds the batches in flight, which
bounds memory to about ``maxsize + 2 * batch_size`` records whatever the pipe holds.

A batch of flat tuples (rows of ints, floats, strings, bytes: packets, CSV rows) is pickled
without the memo (see :func:`dumps_batch`): half the cost to send and a tenth less to receive.

Children are forked (see chronopipe.runtime): a channel made before an actor starts is
inherited by it; channels cannot be pickled into pool tasks.
"""

from __future__ import annotations

import fcntl
import io
import itertools
import logging
import operator
import os
import pickle
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import multiprocess
from multiprocess.connection import Pipe

from .base import Channel, ChannelBroken, Kind, remaining
from .end import END
from .quiet import start_quiet

__all__ = ["ProcessChannel", "dumps_batch", "keep_only", "live_channels"]

_ctx = multiprocess.get_context("fork")
_F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20
_END_FRAME = b""

log = logging.getLogger("chronopipe.channels")
_first = operator.itemgetter(0)
_live: weakref.WeakSet[ProcessChannel] = weakref.WeakSet()


_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})


def dumps_batch(batch: list[Any] | tuple[Any, ...]) -> bytes:
    """``batch`` pickled (protocol 5) for a process channel: rows without the memo.

    The memo lets pickle write an object seen before as a reference: it pays for dict records,
    whose keys repeat, but for tuples of scalars it only costs, two dict inserts per row to send
    and the matching lookups to receive. So a batch whose first record is such a tuple goes in
    pickle's fast mode (no memo), which measured on packet tuples halves ``dumps`` and takes
    10% off ``loads`` (benchmarks/bench_merge.py). Equal records come out equal either way;
    objects shared between records of a batch come out as copies in fast mode, and a batch
    fast mode cannot pickle (a cycle) is pickled with the memo.

    >>> rows = [(1, "tapA", b"x"), (2, "tapA", b"y")]
    >>> pickle.loads(dumps_batch(rows)) == rows, len(dumps_batch(rows)) < len(pickle.dumps(rows, 5)) + 8
    (True, True)
    >>> loop = [1]; loop.append(loop)
    >>> pickle.loads(dumps_batch([(0, "a"), (1, loop)]))[1][1][1][0]  # a cycle: with the memo
    1
    """
    first = batch[0] if batch else None
    if type(first) is tuple and all([type(field) in _SCALARS for field in first]):
        out = io.BytesIO()
        pickler = pickle.Pickler(out, protocol=5)
        pickler.fast = True
        try:
            pickler.dump(batch)
            return out.getvalue()
        except (ValueError, RecursionError):  # a cycle in a later record: fast mode cannot pickle it
            pass
    return pickle.dumps(batch, protocol=5)


def live_channels() -> list[ProcessChannel]:
    """Every process channel alive in this process."""
    return list(_live)


class ProcessChannel(Channel, kind="process"):
    """Cross-process channel with batching, bounded by a semaphore over batches in flight."""

    def __init__(
        self,
        maxsize: int = 10_000,
        *,
        name: str = "channel",
        kind: Kind = "process",
        writers: int = 1,
        batch_size: int = 1000,
        linger: float = 0.005,
    ) -> None:
        super().__init__(maxsize, name=name, kind=kind, writers=writers)
        if batch_size < 1 or linger < 0:
            raise ValueError(f"channel {name!r}: batch_size must be >= 1 and linger >= 0")
        self.batch_size = min(batch_size, maxsize)
        self.linger = linger
        self._reader, self._writer = Pipe(duplex=False)
        try:  # a larger pipe halves the context switches; capped for non-root users
            fcntl.fcntl(self._writer.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass
        self._slots = _ctx.BoundedSemaphore(max(1, maxsize // self.batch_size))
        self._send_lock = _ctx.Lock() if writers > 1 else None
        self._reset_local_state()
        _live.add(self)

    def _reset_local_state(self) -> None:
        """Per-process state: a forked child must not resend its parent's partial batch."""
        self._wlock = threading.Lock()  # serialises flushes, never taken per record
        self._wq: deque[Any] = deque()  # append/popleft are atomic: put needs no lock
        self._closed_here = False
        self._rbatch, self._ridx = [], 0

    def __reduce__(self) -> Any:
        raise TypeError(
            f"channel {self.name!r} cannot be pickled: give it to an Actor, which inherits it "
            "when its process starts"
        )

    # -- writer side -------------------------------------------------------------------
    # put() appends to a deque without a lock (a lock per record costs more than the rest of
    # put). Flushes, by the writer or by the linger thread, run one at a time under _wlock
    # and take whole runs from the left, so records leave in order and none is lost.
    def put(self, item: Any, timeout: float | None = None) -> None:
        if item is END or item is queue.Empty:
            self.close()
            return
        if self._closed_here:
            raise ValueError(f"channel {self.name!r}: put after close")
        q = self._wq
        q.append(item)
        n = len(q)
        if n >= self.batch_size:
            self._flush(timeout)
        elif n == 1:
            LINGER.watch(self, time.monotonic() + self.linger)

    def put_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        if self._closed_here:
            raise ValueError(f"channel {self.name!r}: put after close")
        q = self._wq
        if not isinstance(items, (list, tuple)):
            return self._stream(iter(items), timeout)
        if not q and len(items) >= self.batch_size:  # a whole batch already: send it as it is
            with self._wlock:
                if not q:
                    self._send_batch(items, timeout)
                    return len(items)
        before = len(q)
        q.extend(items)
        n = len(q)
        if n >= self.batch_size:
            self._flush(timeout)
        elif n and not before:
            LINGER.watch(self, time.monotonic() + self.linger)
        return len(items)

    def _stream(self, it: Iterator[Any], timeout: float | None) -> int:
        # Records go straight from the iterator into the deque (in C), so while the iterator
        # pauses (a live source waiting for data) the linger thread, which polls us meanwhile,
        # can send what has arrived: no record waits for the next one.
        q, size, taken = self._wq, self.batch_size, 0
        LINGER.poll(self)
        try:
            while True:
                pulled = itertools.count()
                q.extend(map(_first, zip(itertools.islice(it, max(1, size - len(q))), pulled, strict=False)))
                n = next(pulled)
                if not n:
                    return taken
                taken += n
                if len(q) >= size:
                    self._flush(timeout)
        finally:
            LINGER.unpoll(self)

    def flush(self) -> None:
        self._flush(None)

    def close(self) -> None:
        with self._wlock:
            if self._closed_here:
                return
            self._flush_locked(None)
            self._send(_END_FRAME, None)
            self._closed_here = True

    def _flush(self, timeout: float | None) -> None:
        with self._wlock:
            self._flush_locked(timeout)

    def _flush_locked(self, timeout: float | None) -> None:
        q = self._wq
        n = len(q)
        if not n:
            return
        batch = [q.popleft() for _ in range(n)]
        try:
            self._send_batch(batch, timeout)
        except BaseException:
            q.extendleft(reversed(batch))  # nothing sent: the records stay, in order
            raise
        if q:  # records that arrived during the flush must not wait for the next put
            LINGER.watch(self, time.monotonic() + self.linger)

    def _send_batch(self, batch: list[Any] | tuple[Any, ...], timeout: float | None) -> None:
        """Pickle and send one batch (under _wlock); raises, having sent nothing, if it cannot."""
        try:
            data = dumps_batch(batch)
        except Exception as exc:
            raise TypeError(
                f"channel {self.name!r}: a record cannot be pickled ({exc}); process channels carry "
                "plain pickle: send plain data, or connect the actors with a thread channel"
            ) from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._slots.acquire(timeout=remaining(deadline, f"channel {self.name!r} stayed full")):
            self._check_broken()
        self._send(data, deadline)
        self._items_put += len(batch)
        self._batches_sent += 1

    def _send(self, data: bytes, deadline: float | None) -> None:
        self._check_broken()
        lock = self._send_lock
        if lock is not None:
            while not lock.acquire(timeout=remaining(deadline, f"channel {self.name!r}: writers busy")):
                self._check_broken()
        try:
            self._writer.send_bytes(data)
        except (OSError, ValueError, TypeError) as exc:  # TypeError: abort() closed the pipe mid-send
            self._check_broken()
            raise ChannelBroken(f"channel {self.name!r}: the reader is gone ({exc})") from exc
        finally:
            if lock is not None:
                lock.release()

    def _linger_flush(self) -> None:
        """Called by the linger thread once a partial batch has waited ``linger`` seconds."""
        with self._wlock:
            if not self._closed_here:
                self._flush_locked(None)

    # -- reader side -------------------------------------------------------------------
    def _receive(self, timeout: float) -> list[Any] | None:
        try:
            if not self._reader.poll(timeout):
                return None
            data = self._reader.recv_bytes()
        except (EOFError, OSError, TypeError) as exc:  # TypeError: abort() closed the pipe mid-receive
            self._check_broken()
            raise ChannelBroken(
                f"channel {self.name!r}: every writer is gone before END (a producer died?)"
            ) from exc
        if data == _END_FRAME:
            self._ends_seen += 1
            return [END] if self._ends_seen >= self.writers else None
        self._slots.release()
        return pickle.loads(data)

    def qsize(self) -> int:
        return len(self._wq) + super().qsize()

    # -- cancellation and fork hygiene -------------------------------------------------
    def abort(self, reason: BaseException | None = None) -> None:
        """Break the channel here; closing our ends wakes a thread blocked in the pipe."""
        super().abort(reason)
        LINGER.forget(self)
        self.release()

    def release(self, *, read: bool = True, write: bool = True) -> None:
        """Close this process's copy of the pipe ends (no END is sent)."""
        for conn, wanted in ((self._reader, read), (self._writer, write)):
            if wanted and not conn.closed:
                try:
                    conn.close()
                except OSError:
                    pass


def keep_only(readers: Iterable[Channel] = (), writers: Iterable[Channel] = ()) -> None:
    """In a fresh child: close every inherited pipe end this process will not use.

    Then a dead neighbour shows up as EOF or a broken pipe instead of a silent hang.
    """
    read_ids = {id(c) for c in readers}
    write_ids = {id(c) for c in writers}
    for ch in live_channels():
        ch.release(read=id(ch) not in read_ids, write=id(ch) not in write_ids)


class _Linger:
    """One thread per process sends partial batches whose linger time has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[ProcessChannel, float] = {}
        self._polled: set[ProcessChannel] = set()  # streaming: flushed every `linger` seconds
        self._thread: threading.Thread | None = None
        self._stopping = False

    def poll(self, ch: ProcessChannel) -> None:
        with self._cond:
            self._polled.add(ch)
        self.watch(ch, time.monotonic() + ch.linger)

    def unpoll(self, ch: ProcessChannel) -> None:
        with self._cond:
            self._polled.discard(ch)

    def watch(self, ch: ProcessChannel, due: float) -> None:
        with self._cond:
            self._due[ch] = due
            if self._thread is None and not self._stopping:
                # SIGINT/SIGTERM blocked in it, so they reach the main thread (see quiet.py)
                self._thread = start_quiet(threading.Thread(target=self._run, name="chronopipe-linger", daemon=True))
            self._cond.notify()

    def forget(self, ch: ProcessChannel) -> None:
        with self._cond:
            self._due.pop(ch, None)
            self._polled.discard(ch)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    ready = [c for c, t in self._due.items() if t <= now]
                    if ready:
                        for c in ready:
                            del self._due[c]
                        break
                    self._cond.wait(min(self._due.values()) - now if self._due else None)
                else:
                    return
            for ch in ready:
                _quiet_flush(ch._linger_flush)
            with self._cond:
                for ch in ready:
                    if ch in self._polled and ch not in self._due:
                        self._due[ch] = time.monotonic() + ch.linger

    def stop(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._thread, self._stopping, self._due, self._polled = None, False, {}, set()

    def thread(self) -> threading.Thread | None:
        return self._thread

    def _after_fork_in_child(self) -> None:
        self._cond = threading.Condition()
        self._due, self._polled, self._thread, self._stopping = {}, set(), None, False


def _quiet_flush(flush: Any) -> None:
    """A flush on behalf of someone else; the owner sees any error on its own next call."""
    try:
        flush()
    except Exception:  # broken, closed, unpicklable, aborted by an ActorError: all theirs to see
        log.debug("linger flush failed; the channel's owner sees it on its next call", exc_info=True)


LINGER = _Linger()


def _after_fork_in_child() -> None:
    LINGER._after_fork_in_child()
    for ch in live_channels():
        ch._reset_local_state()


os.register_at_fork(after_in_child=_after_fork_in_child)
