"""Outbox: records waiting to leave for one or more channels, sent a whole batch at a time.

The one batching mechanism of chronopipe's writers (issue 16):

* an actor's ``emit()`` and its loops, and a reader's lists (actors/actor.py, readers/hosting.py):
  an outbox sending each batch to every output, handed over after each input batch;
* a pipeline node's way to the next node (graph/wiring.py ``Port``): an outbox dealing batches
  round robin over that node's worker inboxes, a partial batch due ``linger`` seconds after it
  began waiting;
* a process channel's own write buffer (pipe.py): an outbox whose sender pickles a batch into
  the pipe, shared by the writer and the process's linger thread (``lock``, ``on_wait``).

A source actor's loop is the one writer without an outbox of its own: it streams an iterator
into its channel (``put_many(iterator)``), whose outbox takes records as they come.

Here too, for process channels (pipe.py): :func:`dumps_batch`, how a batch is pickled, and
``LINGER``, the thread of each process that sends partial batches once they are due.
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .base import Channel
from .quiet import start_quiet

__all__ = ["BATCH", "LINGER", "Outbox", "Send", "batch_limit", "dumps_batch"]

log = logging.getLogger("chronopipe.channels")

#: Records per batch when no channel asks for fewer (a process channel's default batch_size).
BATCH = 1000

#: A sender: sends one batch (a list it must not keep: the outbox reuses it) within ``timeout``.
Send = Callable[[list[Any], "float | None"], object]


_UNLOCKED = nullcontext()


def batch_limit(channels: Iterable[Channel], default: int = BATCH) -> int:
    """Records per batch that suit ``channels``: their smallest ``batch_size``, at most ``default``.

    A process channel pickles and sends a batch of its ``batch_size`` as it is (no copy into
    its own buffer, one slot of its bound); a thread channel has no batch size.

    >>> from chronopipe.channels import Channel
    >>> batch_limit([Channel(mode="thread")]), batch_limit([]), batch_limit([Channel(8, mode="process")])
    (1000, 1000, 8)
    """
    return min([default, *(getattr(channel, "batch_size", default) for channel in channels)])


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


class Outbox:
    """Records waiting to leave for one or more channels, sent a whole batch at a time.

    The owner puts records in (``put``, ``put_many``): each whole batch of ``limit`` records
    leaves as it fills. A partial batch waits until the owner sends it (``flush()``: after an
    input batch, before going idle, at the end) or until it is due (``flush_due(now)``, called
    by whoever keeps time: ``linger`` seconds after the batch began waiting, at once if
    ``linger`` is 0). Records leave in the order they were put, in batches of at most ``limit``.

    Where batches go (``to``): a Channel, or channels, each batch to every one of them
    (``put_many``), or with ``deal=True`` to the next one in turn (round robin, as over a node's
    worker inboxes); or a sender ``send(batch, timeout)`` (a process channel's pipe), which must
    not keep ``batch``. A partial batch that is due also flushes the channels' own buffers, so
    it is not held back a second time there.

    Who calls it: its owner, from one thread. Nothing locks then, and a record costs a list
    append and a length check. A process channel's buffer is also flushed by its linger thread:
    given ``lock``, every send takes the first records of ``pending`` and removes them once sent
    under that lock, so the owner appends meanwhile without it (``list.append`` is atomic);
    ``on_wait(deadline)`` is called, by whichever thread leaves a partial batch waiting, so that
    a timer calls ``flush_due`` by then.

    It never blocks unless a channel is full (a bounded channel blocks the send: backpressure)
    or, given ``lock``, while another thread sends. ``pending`` is public for hot loops: they
    append to it (a C call a record) and call ``flush`` or ``flush_due`` after their batch.
    ``sent`` and ``batches`` count the records and batches that left.

    >>> from chronopipe.channels import Channel
    >>> out = Channel(name="out")
    >>> box = Outbox(out, limit=3)
    >>> sum(box.put(n) for n in range(7)), len(box), out.get_batch(0)
    (6, 1, [0, 1, 2, 3, 4, 5])
    >>> box.flush(), out.get_batch(0), (box.sent, box.batches)
    (1, [6], (7, 3))

    Raises:
        ValueError: from the constructor, ``limit`` < 1 or ``linger`` < 0; from a send, a
            channel already closed.
        ChannelBroken, TimeoutError, TypeError: what a send raises (a channel was aborted; it
            stayed full past ``timeout``; a process channel cannot pickle a record). Batches
            sent before it are gone from ``pending`` and counted; the batch that failed stays
            first in ``pending``, nothing of it lost or reordered. A retry (the next put or
            flush) sends it again whole: right for a sender that takes nothing when it raises,
            as a process channel's pipe; a channel that took it before another one failed, or
            a thread channel that took what fitted before its ``timeout``, gets part of it twice.
    """

    __slots__ = ("_send", "_turn", "batches", "channels", "limit", "linger", "lock", "on_wait", "pending", "sent",
                 "since")

    def __init__(
        self,
        to: Channel | Sequence[Channel] | Send,
        *,
        limit: int | None = None,
        linger: float = 0.0,
        deal: bool = False,
        lock: AbstractContextManager[Any] | None = None,
        on_wait: Callable[[float], object] | None = None,
    ) -> None:
        if isinstance(to, Channel) or not callable(to):
            channels = [to] if isinstance(to, Channel) else list(to)
            send: Send = channels[0].put_many if len(channels) == 1 else self._deal if deal else self._copy
        else:
            channels, send = [], to
        self.channels: list[Channel] = channels
        self.limit = batch_limit(channels) if limit is None else limit
        if self.limit < 1 or linger < 0:
            raise ValueError(f"an outbox needs limit >= 1 and linger >= 0, not {self.limit} and {linger}")
        self.linger = linger
        self.lock = lock
        self.on_wait = on_wait
        self.pending: list[Any] = []
        self.since: float | None = None  # when the partial batch began waiting, once known
        self.sent = 0
        self.batches = 0
        self._send = send
        self._turn = 0

    def __len__(self) -> int:
        return len(self.pending)

    def put(self, item: Any, timeout: float | None = None) -> int:
        """Add one record; a whole batch leaves now. Returns how many records were sent."""
        pending = self.pending
        pending.append(item)
        n = len(pending)
        if n >= self.limit:
            return self._take(True, timeout)
        if n == 1 and (self.linger or self.on_wait is not None):
            self.wait_from(time.monotonic())
        return 0

    def put_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        """Add records in order; the whole batches among them leave now, the rest waits.
        Returns how many records were sent. A list that holds whole batches and finds nothing
        waiting is sent from as it is (batches of it, no copy into ``pending``)."""
        pending = self.pending
        if not pending and isinstance(items, (list, tuple)) and len(items) >= self.limit:
            return self._send_from(items, timeout)
        before = len(pending)
        pending.extend(items)
        n = len(pending)
        if n >= self.limit:
            return self._take(True, timeout)
        if n and not before and (self.linger or self.on_wait is not None):
            self.wait_from(time.monotonic())
        return 0

    def flush(self, timeout: float | None = None) -> int:
        """Send every waiting record now; returns how many."""
        if not self.pending:
            self.since = None
            return 0
        return self._take(False, timeout)

    def flush_due(self, now: float) -> int:
        """Send the partial batch if it is due at ``now`` (``time.monotonic()``), and have the
        channels send it on; returns how many records were sent. A batch first seen waiting here
        (records appended to ``pending`` directly) waits from ``now``."""
        if not self.pending:
            return 0
        since = self.since
        if since is None:
            self.since = since = now
        if now < since + self.linger:  # the sum on_wait was given: a timer woken then finds it due
            return 0
        sent = self._take(False, None)
        for channel in self.channels:
            channel.flush()
        return sent

    def wait_from(self, now: float) -> None:
        """The partial batch in ``pending`` waits from ``now``: it is due at ``now + linger``
        (``on_wait`` is told so)."""
        self.since = now
        if self.on_wait is not None:
            self.on_wait(now + self.linger)

    # -- sending -----------------------------------------------------------------------
    def _take(self, whole: bool, timeout: float | None) -> int:
        """Send the first records of ``pending``: its whole batches, or all of it."""
        pending, limit, send, shared = self.pending, self.limit, self._send, self.lock is not None
        done = 0
        with self.lock or _UNLOCKED:
            n = len(pending)
            if whole:
                n -= n % limit
            try:
                while done < n:
                    size = min(limit, n - done)
                    # the list itself when it is one batch, unless another thread may append to it mid-send
                    send(pending if size == len(pending) and not shared else pending[done:done + size], timeout)
                    done += size
                    self.batches += 1
            finally:
                if done:
                    del pending[:done]
                    self.sent += done
            if not pending:
                self.since = None
            elif done and (self.linger or self.on_wait is not None):  # the rest (or what came meanwhile) waits from now
                self.wait_from(time.monotonic())
        return done

    def _send_from(self, items: list[Any] | tuple[Any, ...], timeout: float | None) -> int:
        """``put_many`` of whole batches into an empty outbox: send them from ``items``."""
        limit, send, n = self.limit, self._send, len(items)
        whole = n - n % limit
        done = 0
        with self.lock or _UNLOCKED:
            try:
                while done < whole:
                    send(items if n == limit else items[done:done + limit], timeout)  # type: ignore[arg-type]
                    done += limit
                    self.batches += 1
            finally:
                self.sent += done
                if done < n:  # the rest, or the batch that failed and what follows: first in line
                    self.pending[0:0] = items[done:]
            if self.pending and (self.linger or self.on_wait is not None):
                self.wait_from(time.monotonic())
        return done

    def _copy(self, batch: list[Any], timeout: float | None) -> None:
        for channel in self.channels:
            channel.put_many(batch, timeout)

    def _deal(self, batch: list[Any], timeout: float | None) -> None:
        channels = self.channels
        channels[self._turn].put_many(batch, timeout)
        self._turn = (self._turn + 1) % len(channels)

    def __repr__(self) -> str:
        where = [c.name for c in self.channels] or getattr(self._send, "__qualname__", "send")
        return f"<{type(self).__name__} {len(self.pending)} pending, limit {self.limit} -> {where}>"


class _Linger:
    """One thread per process sends the partial batches of process channels once their linger
    time has passed (``ch._linger_flush``): the timer of their outboxes (pipe.py)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[Any, float] = {}
        self._polled: set[Any] = set()  # streaming: flushed every `linger` seconds
        self._thread: threading.Thread | None = None
        self._stopping = False

    def poll(self, ch: Any) -> None:
        with self._cond:
            self._polled.add(ch)
        self.watch(ch, time.monotonic() + ch.linger)

    def unpoll(self, ch: Any) -> None:
        with self._cond:
            self._polled.discard(ch)

    def watch(self, ch: Any, due: float) -> None:
        with self._cond:
            self._due[ch] = due
            if self._thread is None and not self._stopping:
                # SIGINT/SIGTERM blocked in it, so they reach the main thread (see quiet.py)
                self._thread = start_quiet(threading.Thread(target=self._run, name="chronopipe-linger", daemon=True))
            self._cond.notify()

    def forget(self, ch: Any) -> None:
        with self._cond:
            self._due.pop(ch, None)
            self._polled.discard(ch)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    ready = [(c, c in self._polled) for c, t in self._due.items() if t <= now]
                    if ready:
                        for c, _ in ready:
                            del self._due[c]
                        break
                    self._cond.wait(min(self._due.values()) - now if self._due else None)
                else:
                    return
            for ch, polled in ready:
                _quiet_flush(ch._linger_flush, polled)
            with self._cond:
                for ch, _ in ready:
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


def _quiet_flush(flush: Any, polled: bool) -> None:
    """A flush on behalf of someone else; the owner sees any error on its own next call."""
    try:
        flush(polled)
    except Exception:  # broken, closed, unpicklable, aborted by an ActorError: all theirs to see
        log.debug("linger flush failed; the channel's owner sees it on its next call", exc_info=True)


LINGER = _Linger()
