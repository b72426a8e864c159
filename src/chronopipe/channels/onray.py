"""RayChannel: batches through a Ray actor, for actors hosted on Ray (``mode="ray"``).

Actors on Ray run in processes chronopipe did not fork, maybe on other machines, so no pipe or
shared memory can join them. A ray channel is a buffer in a hub actor (``_Hub``, an asyncio
Ray actor taking no CPU, one for all the channels a process makes) holding at most
``maxsize // batch_size`` batches: writers send whole
batches to it (one Ray call a batch, never one a record), a call waiting while it is full
(backpressure: the batches in flight on an edge are bounded), and the reader takes what it
holds. The channel object is a handle: pickled into a Ray actor it is the same channel there.

For a reader that may die (a replaying node, graph/actors.py), the channel is opened with
``redeliver=True``: the buffer keeps the batch it last handed out until the reader
``acknowledge``\\s it, with a checkpoint of the reader's state; a new reader after a death gets
that checkpoint (``restore()``) and then the same batch again first.

Ray is an extra (``pip install 'chronopipe[ray]'``), imported by :func:`require_ray` when a
ray channel or host is first made, never when this module is imported.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import operator
import os
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from .base import Channel, ChannelBroken, Mode, NotPicklable, remaining
from .end import END, is_end
from .outbox import LINGER, Outbox

__all__ = ["RayChannel", "RayFlags", "RayMissingError", "ensure_ray", "require_ray"]

INSTALL = "pip install 'chronopipe[ray]'"
#: Batches a reader takes at most in one call (one round trip for several small batches).
TAKE = 8
_first = operator.itemgetter(0)


class RayMissingError(ImportError):
    """``mode="ray"`` was asked for, but Ray is not installed."""


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        RayMissingError: Ray is not installed (the message says how to install it).
    """
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayMissingError(f"mode='ray' needs Ray, which is not installed: {INSTALL}") from exc


def ensure_ray() -> Any:
    """The ``ray`` module, connected: the caller's ``ray.init(...)`` if it made one (an
    existing cluster: ``ray.init(address=...)``), else ``ray.init()`` as Ray does by default
    (``RAY_ADDRESS`` when set, a local Ray otherwise).

    Raises:
        RayMissingError: Ray is not installed.
    """
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 ignore_reinit_error=True)
    return ray


class _Buffer:
    """One channel's state in the hub: at most ``capacity`` batches, ``writers`` ENDs to end."""

    def __init__(self, capacity: int, writers: int, redeliver: bool) -> None:
        self.capacity, self.writers, self.redeliver = capacity, writers, redeliver
        self.batches: deque[list[Any]] = deque()
        self.ends = 0
        self.broken: str | None = None
        self.taken: list[Any] | None = None  # redeliver: handed out, not acknowledged yet
        self.checkpoint: Any = None
        self.acknowledged = 0
        self.changed = asyncio.Condition()

    async def wait(self, ready: Any, timeout: float) -> bool:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: self.broken is not None or ready()), timeout)
            except TimeoutError:
                return False
        return True

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class _Hub:
    """The Ray actor (asyncio, no CPU) holding the buffers of the ray channels, and the flags,
    that one process made: one actor for a pipeline's many edges, not one each."""

    def __init__(self) -> None:
        self.buffers: dict[str, _Buffer] = {}
        self.flags: dict[str, bytearray] = {}

    async def open(self, key: str, capacity: int, writers: int, redeliver: bool) -> None:
        self.buffers[key] = _Buffer(capacity, writers, redeliver)

    async def drop(self, key: str) -> None:
        self.buffers.pop(key, None)
        self.flags.pop(key, None)

    async def put(self, key: str, batch: list[Any], timeout: float) -> str:
        """"ok", "full" (still full after ``timeout`` s) or "broken: why"."""
        b = self.buffers[key]
        if not await b.wait(lambda: len(b.batches) < b.capacity, timeout):
            return "full"
        if b.broken is not None:
            return f"broken: {b.broken}"
        b.batches.append(batch)
        await b.notify()
        return "ok"

    async def end(self, key: str) -> str:
        b = self.buffers[key]
        if b.broken is not None:
            return f"broken: {b.broken}"
        b.ends += 1
        await b.notify()
        return "ok"

    async def get(self, key: str, timeout: float) -> tuple[str, Any]:
        """("batch", records), ("end", None), ("none", None) or ("broken", why)."""
        b = self.buffers[key]
        if b.taken is not None:  # a new reader after a death: the batch in flight again
            return "batch", b.taken
        ready = await b.wait(lambda: bool(b.batches) or b.ends >= b.writers, timeout)
        if b.broken is not None:
            return "broken", b.broken
        if not ready:
            return "none", None
        if not b.batches:
            return "end", None
        records = b.batches.popleft()
        while b.batches and len(records) < TAKE * len(b.batches[0]):
            records = records + b.batches.popleft()
        if b.redeliver:
            b.taken = records
        await b.notify()
        return "batch", records

    async def acknowledge(self, key: str, checkpoint: Any) -> None:
        b = self.buffers[key]
        b.taken, b.checkpoint = None, checkpoint
        b.acknowledged += 1

    async def restore(self, key: str) -> tuple[Any, int, bool]:
        """(the last checkpoint, batches acknowledged, whether a batch is to be handed out again)."""
        b = self.buffers[key]
        return b.checkpoint, b.acknowledged, b.taken is not None

    async def abort(self, key: str, why: str) -> None:
        b = self.buffers.get(key)
        if b is not None:
            if b.broken is None:
                b.broken = why
            await b.notify()

    async def new_flags(self, key: str, n: int) -> None:
        self.flags[key] = bytearray(n)

    async def flag(self, key: str, i: int) -> int:
        return self.flags[key][i]

    async def set_flag(self, key: str, i: int, value: int) -> None:
        self.flags[key][i] = value


_hub_of: dict[int, Any] = {}


def hub() -> Any:
    """This process's hub actor (made on first use; it lives as long as this process's Ray job).

    Raises:
        RayMissingError: Ray is not installed.
    """
    pid = os.getpid()
    if pid not in _hub_of:
        ray = ensure_ray()
        _hub_of[pid] = ray.remote(_Hub).options(num_cpus=0, max_concurrency=10_000).remote()
    return _hub_of[pid]


def _drop(hub: Any, key: str) -> None:
    try:
        hub.drop.remote(key)
    except Exception:  # Ray already shut down: the hub went with it
        pass


class RayChannel(Channel, mode="ray"):
    """A channel between actors on Ray: batches of up to ``batch_size`` records through a
    buffer actor that holds at most ``maxsize // batch_size`` of them (at least one).

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
        weakref.finalize(self, _drop, self._hub, self._key)
        self._reset_local_state()

    def _reset_local_state(self) -> None:
        import threading

        self._wlock = threading.RLock()
        self._outbox = Outbox(self._send_batch, limit=self.batch_size, linger=self.linger, lock=self._wlock,
                              on_wait=self._wait_until)
        self._closes_here = 0
        self._closed_here = False
        self._rbatch, self._ridx = [], 0
        self._pending_get: Any = None

    def __reduce__(self) -> Any:
        return _rebuild, (self.name, self.maxsize, self.writers, self.batch_size, self.linger, self.redeliver,
                          self._hub, self._key)

    # -- writer side -------------------------------------------------------------------
    def put(self, item: Any, timeout: float | None = None) -> None:
        if is_end(item):
            self.close()
            return
        if self._closed_here:
            raise ValueError(f"channel {self.name!r}: put after close")
        self._outbox.put(item, timeout)

    def put_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        if self._closed_here:
            raise ValueError(f"channel {self.name!r}: put after close")
        if not isinstance(items, (list, tuple)):
            return self._stream(iter(items), timeout)
        self._outbox.put_many(items, timeout)
        return len(items)

    def _stream(self, it: Iterator[Any], timeout: float | None) -> int:
        # As a process channel: the linger thread sends what came while the iterator pauses.
        box, taken = self._outbox, 0
        pending, size = box.pending, box.limit
        LINGER.poll(self)
        try:
            while True:
                pulled = itertools.count()
                chunk = itertools.islice(it, max(1, size - len(pending)))
                pending.extend(map(_first, zip(chunk, pulled, strict=False)))
                n = next(pulled)
                if not n:
                    return taken
                taken += n
                if len(pending) >= size:
                    box.flush(timeout)
        finally:
            LINGER.unpoll(self)
            if pending:
                box.wait_from(time.monotonic())

    def flush(self) -> None:
        self._outbox.flush()

    def close(self) -> None:
        """One writer is done: what this process holds is sent, then one END."""
        with self._wlock:
            if self._closed_here:
                return
            self._outbox.flush()
            self._call(self._hub.end.remote(self._key), None)
            self._closes_here += 1
            self._closed_here = self._closes_here >= self.writers

    def _wait_until(self, due: float) -> None:
        LINGER.watch(self, due)

    def _linger_flush(self, polled: bool = False) -> None:
        with self._wlock:
            if not self._closed_here:
                if polled:
                    self._outbox.flush()
                else:
                    self._outbox.flush_due(time.monotonic())

    def _send_batch(self, batch: list[Any] | tuple[Any, ...], timeout: float | None) -> None:
        """Send one batch (a copy: the outbox reuses its list); raises, having sent nothing, if it cannot."""
        records = list(batch)  # the buffer keeps its own copy: the batch outlives this process
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = remaining(deadline, f"channel {self.name!r} stayed full")
            try:
                ref = self._hub.put.remote(self._key, records, wait)
            except Exception as exc:  # Ray pickles the batch here
                raise NotPicklable(f"channel {self.name!r}: a record cannot be pickled ({exc}); ray channels "
                                   "carry pickled batches: send plain data") from exc
            if self._call(ref, deadline) == "ok":
                break
        self._items_put += len(batch)
        self._batches_sent += 1

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
        if self._pending_get is None:
            self._pending_get = self._hub.get.remote(self._key, max(timeout, 0.001))
        try:
            what, data = ray.get(self._pending_get, timeout=timeout + 0.5)
        except ray.exceptions.GetTimeoutError:
            return None  # the call goes on: its answer is taken next time
        except ray.exceptions.RayError as exc:
            self._pending_get = None
            self._check_broken()
            raise ChannelBroken(f"channel {self.name!r}: its buffer actor is gone ({exc})") from exc
        self._pending_get = None
        if what == "batch":
            return data
        if what == "end":
            self._ends_seen = self.writers
            return [END]
        if what == "broken":
            self._broken = self._broken or ChannelBroken(f"channel {self.name!r} was aborted: {data}")
            self._check_broken()
        return None

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



class RayFlags:
    """``n`` bytes every Ray actor given this object reads and writes (the hub holds them): what
    shared memory is to processes of one machine, for flags set once and read while waiting (a
    pipeline's "begun" flags). A byte seen non-zero is not asked again.

    Raises:
        RayMissingError: Ray is not installed.
    """

    def __init__(self, n: int, *, _at: tuple[Any, str] | None = None) -> None:
        self.n = n
        if _at is None:
            _at = hub(), uuid.uuid4().hex
            require_ray().get(_at[0].new_flags.remote(_at[1], n))
            weakref.finalize(self, _drop, *_at)
        self._hub, self._key = _at
        self._seen: dict[int, int] = {}

    def __reduce__(self) -> Any:
        return _rebuild_flags, (self.n, self._hub, self._key)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i in self._seen:
            return self._seen[i]
        value = require_ray().get(self._hub.flag.remote(self._key, i))
        if value:
            self._seen[i] = value
        return value

    def __setitem__(self, i: int, value: int) -> None:
        require_ray().get(self._hub.set_flag.remote(self._key, i, value))


def _rebuild_flags(n: int, hub: Any, key: str) -> RayFlags:
    return RayFlags(n, _at=(hub, key))
