"""Channel: a bounded, ordered, closable stream of records between actors.

``Channel(mode="thread")`` connects actors that live in one process;
``Channel(mode="process")`` crosses process boundaries through a pipe carrying pickled
batches. Both keep order, block the producer when full (backpressure), end with END,
and can be iterated. A channel has one reader; ``writers=N`` lets N producers share it,
and the reader sees END after all N have closed.

This module knows no implementation. A subclass names the mode it implements in its class
statement (``class ThreadChannel(Channel, mode="thread")``), which registers it; the factory
:func:`open_channel` (as trio's ``open_memory_channel``) looks the mode up in that registry, and
``Channel(mode=...)`` is the same factory spelt as the class, so ``Channel(mode="process")``
gives a ProcessChannel. The package ``chronopipe.channels`` imports both implementations, so
they are registered before anything here can be called.
"""

from __future__ import annotations

import queue
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .end import END, is_end

__all__ = ["Channel", "ChannelBroken", "ChannelStatistics", "Mode", "channel_class", "mode_of", "open_channel"]

#: Where the ends of a channel (or an actor) live: one process's threads, several processes of
#: this machine, or actors on Ray (any machine of a cluster).
Mode = Literal["thread", "process", "ray"]

#: How often a blocked put/get wakes to check for cancellation (seconds).
POLL_INTERVAL = 0.05


class ChannelBroken(RuntimeError):  # noqa: N818 (trio-style name: BrokenResourceError)
    """The channel was aborted (an actor on it failed, or the runtime shut down)."""


class NotPicklable(TypeError):  # noqa: N818 (says what the record is)
    """A record put into a process channel cannot be pickled (raised when its batch is sent,
    which may be while a later record is being handled: no input record is to blame), or a
    batch that came through one cannot be unpickled (raised where it is received)."""


@dataclass(frozen=True)
class ChannelStatistics:
    """A snapshot of one channel as seen from the calling process."""

    name: str
    mode: str
    maxsize: int
    buffered: int
    items_put: int
    items_got: int
    batches_sent: int
    batches_received: int
    writers: int
    ends_seen: int
    ended: bool
    broken: bool


class Channel:
    """A bounded, ordered, closable connection between actors.

    >>> ch = Channel(maxsize=10, name="numbers")
    >>> for i in range(3):
    ...     ch.put(i)
    >>> ch.close()
    >>> list(ch)
    [0, 1, 2]
    >>> ch.get()
    END
    """

    mode: ClassVar[str]

    def __init_subclass__(cls, mode: str | None = None, **kwargs: Any) -> None:
        """``class XChannel(Channel, mode="x")`` registers XChannel as what ``Channel(mode="x")`` makes.

        Raises:
            ValueError: another class already implements that mode.
        """
        super().__init_subclass__(**kwargs)
        if mode is None:
            return  # an adapter (QueueInput, QueueOutput) or a helper: not made by mode
        registered = _MODES.get(mode)
        if registered is not None and registered.__qualname__ != cls.__qualname__:
            raise ValueError(f"channel mode {mode!r} is already implemented by {registered.__qualname__}")
        cls.mode = mode
        _MODES[mode] = cls

    def __new__(cls, *args: Any, mode: Mode = "thread", kind: Mode | None = None, **kwargs: Any) -> Channel:
        """``Channel(...)`` is the factory: it makes the class registered for ``mode``.

        ``kind=`` is the older name of ``mode=`` (deprecated: a DeprecationWarning says so).

        Raises:
            ValueError: no channel class implements ``mode``.
        """
        if cls is Channel:
            cls = channel_class(renamed_mode(mode, kind, warn=True))
        return super().__new__(cls)

    def __init__(
        self, maxsize: int = 10_000, *, name: str = "channel", mode: Mode = "thread", kind: Mode | None = None,
        writers: int = 1,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"channel {name!r}: maxsize must be >= 1 (channels are bounded), got {maxsize}")
        if writers < 1:
            raise ValueError(f"channel {name!r}: writers must be >= 1, got {writers}")
        self.name = name
        self.maxsize = maxsize
        self.writers = writers
        self._broken: BaseException | None = None
        self._ended = False  # reader side: the final END was delivered
        self._ends_seen = 0
        self._items_put = 0
        self._items_got = 0
        self._batches_sent = 0
        self._batches_received = 0
        self._rbatch: list[Any] = []  # reader side: the batch being handed out by get()
        self._ridx = 0

    # -- writer side -------------------------------------------------------------------
    def put(self, item: Any, timeout: float | None = None) -> None:
        """Append one record, blocking while the channel is full. END closes it."""
        if is_end(item):
            self.close()
        else:
            self.put_many((item,), timeout)

    def put_many(self, items: Iterable[Any], timeout: float | None = None) -> int:
        """Append records in order (cheaper per record than ``put``); returns how many.

        An iterator is taken record by record as it yields, so it may be endless or pause.

        Raises:
            TimeoutError: the channel stayed full for ``timeout`` seconds. A thread channel's
                error says in ``taken`` how many of a list it took before (the rest is the
                caller's to put again or to count); for other channels ``taken`` is None.
            ChannelBroken: the channel was broken (its reader failed or was cancelled).
            ValueError: every writer has closed the channel.
        """
        raise NotImplementedError

    def close(self) -> None:
        """This writer is done: flush what it buffered and send its END."""
        raise NotImplementedError

    def flush(self) -> None:
        """Send any records this process holds in a partial batch (no-op for threads)."""

    # -- reader side -------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """Next record, or END once every writer has closed. Raises TimeoutError."""
        batch = self._rbatch
        if self._ridx < len(batch):
            item = batch[self._ridx]
            self._ridx += 1
            return item
        batch = self.get_batch(timeout)
        self._rbatch, self._ridx = batch, 1
        return batch[0]

    def get_batch(self, timeout: float | None = None) -> list[Any]:
        """Every record available now (at least one), in order; ``[END]`` at the end.

        Blocks until something is available; raises TimeoutError after ``timeout``.
        """
        if self._ridx < len(self._rbatch):
            rest = self._rbatch[self._ridx :] if self._ridx else self._rbatch  # ready() put back a whole batch
            self._rbatch, self._ridx = [], 0
            return rest
        if self._ended:
            return [END]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_broken()
            wait = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - time.monotonic())
            batch = self._receive(max(wait, 0.0))
            if batch:
                self._batches_received += 1
                self._items_got += len(batch) - (batch[-1] is END)
                if batch[-1] is END:
                    self._ended = True
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"channel {self.name!r}: nothing to get within {timeout} s")

    def _receive(self, timeout: float) -> list[Any] | None:
        """Wait up to ``timeout`` for records; a batch (ending in END when done) or None."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        """Yield records until END."""
        while True:
            batch = self.get_batch()
            if batch[-1] is END:
                yield from batch[:-1]
                return
            yield from batch

    # -- waiting on several channels: the hooks of wait.py's wait_any --------------------
    def ready(self) -> bool:
        """Whether ``get_batch(0)`` would return now: records, END, or the error it would raise.

        It takes nothing: a batch it had to receive to find out (a pipe's, a foreign queue's)
        is kept for the next ``get``/``get_batch``. Subclasses that can tell without receiving
        (ThreadChannel) override it.

        >>> ch = Channel(mode="thread")
        >>> ch.ready()
        False
        >>> ch.put("a"); ch.ready(), ch.get_batch(0)
        (True, ['a'])
        """
        if self._ridx < len(self._rbatch) or self._ended or self._broken is not None:
            return True
        try:
            batch = self.get_batch(0)
        except TimeoutError:
            return False
        except ChannelBroken:
            return True  # get_batch raises it again: that is the caller's to see
        self._rbatch, self._ridx = batch, 0
        return True

    def wait_handle(self) -> int | None:
        """For implementors: a file descriptor that becomes readable whenever this channel may
        have something to get, which ``wait_any`` passes to the OS with the others; None (the
        default) when there is none.

        It may be readable with nothing to get yet (``wait_any`` checks ``ready()`` after each
        wake-up), never unreadable while something is there, except what ``ready()`` sees itself.
        """
        return None

    def watch(self, wake: Callable[[], object]) -> Callable[[], object] | None:
        """For implementors: call ``wake()`` when records or END next arrive or the channel is
        aborted; returns the function that ends the watch, or None (the default): this channel
        cannot be watched.

        ``wake`` is called at least once, and may then be dropped (``wait_any`` watches again if
        it has to wait on), in the writer's thread, maybe with the channel's lock held: it must
        return at once and must not use the channel. A channel with neither ``wait_handle()``
        nor ``watch()`` (a foreign queue read through ``as_input``) is polled by ``wait_any``.
        """
        return None

    # -- cancellation ------------------------------------------------------------------
    def abort(self, reason: BaseException | None = None) -> None:
        """Break the channel: every blocked or later put/get raises ChannelBroken."""
        if self._broken is None:
            self._broken = reason or ChannelBroken(f"channel {self.name!r} was aborted")

    def _check_broken(self) -> None:
        if self._broken is not None:
            if isinstance(self._broken, ChannelBroken) or getattr(self._broken, "actor", None):
                raise self._broken  # an ActorError: the caller sees the root failure itself
            raise ChannelBroken(f"channel {self.name!r} was aborted: {self._broken}") from self._broken

    @property
    def broken(self) -> bool:
        return self._broken is not None

    # -- introspection -----------------------------------------------------------------
    def qsize(self) -> int:
        """Records buffered on this process's side of the channel (approximate)."""
        return len(self._rbatch) - self._ridx

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            name=self.name,
            mode=self.mode,
            maxsize=self.maxsize,
            buffered=self.qsize(),
            items_put=self._items_put,
            items_got=self._items_got,
            batches_sent=self._batches_sent,
            batches_received=self._batches_received,
            writers=self.writers,
            ends_seen=self._ends_seen,
            ended=self._ended,
            broken=self.broken,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} maxsize={self.maxsize}>"


#: mode -> the Channel subclass that implements it, filled by their class statements.
_MODES: dict[str, type[Channel]] = {}


def channel_class(mode: str) -> type[Channel]:
    """The class registered for ``mode``.

    >>> channel_class("thread").__name__, channel_class("process").__name__
    ('ThreadChannel', 'ProcessChannel')

    Raises:
        ValueError: no channel class implements ``mode``.
    """
    try:
        return _MODES[mode]
    except (KeyError, TypeError):
        names = [repr(k) for k in sorted(_MODES, key=lambda k: (k != "thread", k))]  # the default first
        known = " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"Channel mode must be {known}, not {mode!r}") from None


def renamed_mode(mode: Any, kind: Any, *, warn: bool = False) -> Any:
    """``mode``, or ``kind`` (the older name of the same argument) when that was given."""
    if kind is None:
        return mode
    if warn:
        warnings.warn("kind= is deprecated: a Channel takes mode=, a multiplexer channel_mode= (the package's "
                      "one word for thread or process)", DeprecationWarning, stacklevel=3)
    return kind


def open_channel(maxsize: int = 10_000, *, mode: Mode = "thread", name: str = "channel", writers: int = 1,
                 **options: Any) -> Channel:
    """A new channel of ``mode``: what ``Channel(maxsize, mode=..., name=...)`` gives, as a function.

    ``options`` go to that mode's class (a process channel takes ``batch_size`` and ``linger``).

    >>> ch = open_channel(4, mode="thread", name="numbers")
    >>> ch.put_many([1, 2]); ch.close(); list(ch)
    2
    [1, 2]

    Raises:
        ValueError: no channel class implements ``mode``; ``maxsize`` or ``writers`` below 1.
        TypeError: an option that mode does not take.
    """
    return channel_class(mode)(maxsize, name=name, mode=mode, writers=writers, **options)


def remaining(deadline: float | None, what: str) -> float:
    """Seconds for one blocking step; raises TimeoutError(what) once ``deadline`` passed."""
    if deadline is None:
        return POLL_INTERVAL
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(what)
    return min(left, POLL_INTERVAL)


def mode_of(target: Any) -> Mode:
    """Which actors can write to ``target``: "thread" for in-process queues, else "process".

    >>> import queue
    >>> mode_of(queue.Queue()), mode_of(Channel(mode="thread"))
    ('thread', 'thread')
    """
    if isinstance(target, Channel):
        return target.mode  # type: ignore[return-value]
    if isinstance(target, (queue.Queue, queue.SimpleQueue)):
        return "thread"
    return "process"
