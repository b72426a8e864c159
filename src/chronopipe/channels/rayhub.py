"""The hub: the Ray actor that holds what ray channels carry, and how chronopipe finds Ray.

Ray is an extra (``pip install 'chronopipe[ray]'``): :func:`require_ray` imports it when a ray
channel, ints or host is first made, never when this module is imported, and says how to
install it when it is missing; :func:`ensure_ray` connects to the Ray the caller chose (or
starts the default one).

``_Hub`` is one asyncio Ray actor per process that makes channels (the driver), taking no CPU of
Ray's scheduler: it holds each channel's bounded buffer of batches (``_Buffer``: backpressure,
END counting, the batch a redelivering reader took and its checkpoint) and arrays of ints
(``RayInts``: what shared memory is to processes of one machine). One actor for a pipeline's
many edges, not one each: a Ray actor is a process.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import uuid
import weakref
from collections import deque
from typing import Any

__all__ = ["RayInts", "RayMissingError", "ensure_ray", "hub", "require_ray"]

INSTALL = "pip install 'chronopipe[ray]'"
#: Batches a reader takes at most in one call (one round trip for several small batches).
TAKE = 8


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
        self.batches: deque[bytes] = deque()  # pickled batches
        self.reader = 0  # the number of the reader attached last
        self.turn: dict[str, int] = {}  # writer -> the number of the batch it sends next
        self.arrived = 0  # batches put so far
        self.gone = 0  # batches handed out so far
        self.ends = 0
        self.broken: str | None = None
        self.taken: list[Any] | None = None  # redeliver: handed out, not acknowledged yet
        self.checkpoint: Any = None
        self.acknowledged = 0
        self.changed = asyncio.Condition()

    async def wait(self, ready: Any, timeout: float | None) -> bool:
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
    """The Ray actor (asyncio, no CPU) holding the buffers of the ray channels, and the ints,
    that one process made: one actor for a pipeline's many edges, not one each."""

    def __init__(self) -> None:
        self.buffers: dict[str, _Buffer] = {}
        self.ints: dict[str, list[int]] = {}

    async def open(self, key: str, capacity: int, writers: int, redeliver: bool) -> None:
        self.buffers[key] = _Buffer(capacity, writers, redeliver)

    async def drop(self, key: str) -> None:
        b = self.buffers.pop(key, None)
        if b is not None:  # a put still waiting to be let in gives up
            b.broken = b.broken or "the channel was dropped"
            await b.notify()
        self.ints.pop(key, None)

    async def put(self, key: str, data: bytes, writer: str, number: int) -> str:
        """Take a batch (``data``: pickled by the writer, kept as bytes) in its writer's order
        (``number``: 0, 1, 2... for each ``writer``; Ray may start an asyncio actor's calls in
        another order), answer "ok" once fewer than ``capacity`` batches are ahead of it (the
        bound the writer waits on: backpressure), or "broken: why"."""
        b = self.buffers[key]
        await b.wait(lambda: b.turn.get(writer, 0) == number, None)
        if b.broken is not None:
            return f"broken: {b.broken}"
        b.turn[writer] = number + 1
        b.batches.append(data)
        b.arrived += 1
        place = b.arrived
        await b.notify()
        await b.wait(lambda: b.gone >= place - b.capacity, None)
        return f"broken: {b.broken}" if b.broken is not None else "ok"

    async def end(self, key: str) -> str:
        b = self.buffers[key]
        if b.broken is not None:
            return f"broken: {b.broken}"
        b.ends += 1
        await b.notify()
        return "ok"

    async def attach(self, key: str) -> int:
        """A reader starts reading (or the one that read died): the calls of any earlier reader
        that are still waiting here give up, taking nothing (a dead reader's call must not take
        what is sent to its successor). Returns the new reader's number."""
        b = self.buffers[key]
        b.reader += 1
        await b.notify()
        return b.reader

    async def get(self, key: str, timeout: float, reader: int) -> tuple[str, Any]:
        """("batch", up to TAKE pickled batches), ("end", None), ("none", None), ("broken", why),
        or ("gone", None) when another reader was attached since ``reader``."""
        b = self.buffers[key]
        if b.reader != reader:
            return "gone", None
        if b.taken is not None:  # a new reader after a death: the batch in flight again
            return "batch", b.taken
        ready = await b.wait(lambda: bool(b.batches) or b.ends >= b.writers or b.reader != reader, timeout)
        if b.broken is not None:
            return "broken", b.broken
        if b.reader != reader:
            return "gone", None
        if not ready:
            return "none", None
        if not b.batches:
            return "end", None
        records = [b.batches.popleft()]
        b.gone += 1
        while b.batches and len(records) < (1 if b.redeliver else TAKE):  # (a redelivered batch: one)
            records.append(b.batches.popleft())
            b.gone += 1
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

    async def new_ints(self, key: str, n: int) -> None:
        self.ints[key] = [0] * n

    async def read(self, key: str, i: int | slice) -> Any:
        return self.ints[key][i]

    async def write(self, key: str, i: int, value: int) -> None:
        self.ints[key][i] = value


_hub_of: dict[tuple[int, str], Any] = {}


def hub() -> Any:
    """This process's hub actor on the Ray it is connected to now (made on first use; it lives
    as long as this process's Ray job: after ``ray.shutdown()`` and a new ``ray.init()`` a new
    one is made, and the channels made before are gone with the old Ray).

    Raises:
        RayMissingError: Ray is not installed.
    """
    ray = ensure_ray()
    where = (os.getpid(), ray.get_runtime_context().gcs_address)
    if where not in _hub_of:
        _hub_of.clear()  # (a hub of a Ray this process left is unreachable)
        _hub_of[where] = ray.remote(_Hub).options(num_cpus=0, max_concurrency=10_000).remote()
    return _hub_of[where]


def drop(hub: Any, key: str) -> None:
    """Let the hub forget ``key`` (a channel or ints garbage-collected in the process that made it)."""
    try:
        if require_ray().is_initialized():  # (after ray.shutdown() there is no hub to tell)
            hub.drop.remote(key)
    except Exception:  # Ray already shut down: the hub went with it
        pass


class RayInts:
    """``n`` ints every Ray actor given this object reads and writes (the hub holds them): what
    shared memory is to processes of one machine (a pipeline's "begun" flags, the offsets its
    terminals confirmed). ``sticky``: a value seen non-zero is not asked again (flags set once).

    Raises:
        RayMissingError: Ray is not installed.
    """

    def __init__(self, n: int, *, sticky: bool = False, _at: tuple[Any, str] | None = None) -> None:
        self.n, self.sticky = n, sticky
        if _at is None:
            _at = hub(), uuid.uuid4().hex
            require_ray().get(_at[0].new_ints.remote(_at[1], n))
            weakref.finalize(self, drop, *_at)
        self._hub, self._key = _at
        self._seen: dict[int, int] = {}

    def __reduce__(self) -> Any:
        return _rebuild_ints, (self.n, self.sticky, self._hub, self._key)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, int) and i in self._seen:
            return self._seen[i]
        value = require_ray().get(self._hub.read.remote(self._key, i))
        if self.sticky and isinstance(i, int) and value:
            self._seen[i] = value
        return value

    def __setitem__(self, i: int, value: int) -> None:
        require_ray().get(self._hub.write.remote(self._key, i, value))


def _rebuild_ints(n: int, sticky: bool, hub: Any, key: str) -> RayInts:
    return RayInts(n, sticky=sticky, _at=(hub, key))
