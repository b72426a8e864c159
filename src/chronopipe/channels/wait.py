"""wait_any: block until one of several channels has something to get.

A loop that reads several channels (a merge) takes what each has with ``get_batch(0)`` and,
when none has anything, waits here on all of them at once instead of on one at a time or in
sleeps. How a channel is waited on is its own business, told by two hooks of Channel (base.py):

* ``wait_handle()``: a file descriptor the OS waits on (a ProcessChannel's pipe);
* ``watch(wake)``: the channel calls ``wake()`` when records or END arrive (a ThreadChannel,
  whose puts check one list, so they cost nothing more while nobody waits).

Both kinds in one set are one OS wait: the wake-ups of the watched channels go to an eventfd
waited on with the pipes. A channel with neither (a foreign queue read through ``as_input``)
is polled, every 0.5 ms at first, backing off to 10 ms: the only polling left.
"""

from __future__ import annotations

import math
import os
import queue
import time
from collections.abc import Callable, Iterable

from multiprocess.connection import wait as wait_for_handles

from .base import Channel

__all__ = ["wait_any"]

#: Polling of channels that offer no way to wait on them: the first and the longest step (seconds).
FIRST_POLL, LONGEST_POLL = 0.0005, 0.01


def wait_any(channels: Iterable[Channel], timeout: float) -> list[Channel]:
    """Wait until at least one of ``channels`` has something to get, at most ``timeout`` seconds.

    Returns the channels that have, in the order given: records, their END, or an error that
    their ``get_batch`` will raise (aborted, writers gone). ``[]`` when ``timeout`` passed first;
    ``timeout=0`` only looks. It takes nothing from them: ``get_batch(0)`` on a channel it
    returned returns at once.

    A ThreadChannel wakes the waiter as soon as a record or END arrives, a ProcessChannel's pipe
    wakes it through the OS, in any mix; a channel that offers neither (see the module's
    docstring) is polled in steps of 0.5 to 10 ms, which is then the delay it may add.

    >>> from chronopipe.channels import Channel
    >>> a, b = Channel(mode="thread", name="a"), Channel(mode="thread", name="b")
    >>> wait_any([a, b], timeout=0.01)
    []
    >>> b.put("x")
    >>> [ch.name for ch in wait_any([a, b], timeout=1.0)]
    ['b']
    >>> a.close(); [ch.name for ch in wait_any([a, b], timeout=1.0)]
    ['a', 'b']
    >>> a.get_batch(0), b.get_batch(0)
    ([END], ['x'])

    Raises:
        ValueError: no channels; ``timeout`` negative or not finite (every wait has a way out:
            a caller that waits longer loops, and checks what should end it in between).
        TypeError: something that is not a Channel (a foreign queue: read it through
            ``chronopipe.channels.queues.as_input(queue, name)``, a Channel around it); a timeout that is
            not a number.
        Exception: what receiving a batch raised, other than ChannelBroken (a pipe's batch that
            cannot be unpickled): ``ready()`` receives a pipe's next batch to know.
    """
    channels = list(channels)
    if not channels:
        raise ValueError("wait_any needs at least one channel to wait on")
    for ch in channels:
        if not isinstance(ch, Channel):
            raise TypeError(f"wait_any waits on Channels, not {type(ch).__name__}: read a queue through "
                            "chronopipe.channels.queues.as_input(queue, name), a Channel around it")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"wait_any: timeout must be a number of seconds, not {timeout!r}")
    if not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError(f"wait_any: timeout must be >= 0 seconds and finite, not {timeout!r}")
    if timeout == 0:
        return [ch for ch in channels if ch.ready()]
    deadline = time.monotonic() + timeout
    handle_of = {id(ch): ch.wait_handle() for ch in channels}
    handles = [h for h in handle_of.values() if h is not None]
    no_handle = [ch for ch in channels if handle_of[id(ch)] is None]
    waker = _Waker(with_handle=bool(handles)) if no_handle else None
    # watched before the first look, so no wake-up falls between the two
    stops = _watch(no_handle, waker) if waker is not None else []
    try:
        polled = len(stops) < len(no_handle)
        look, step = channels, FIRST_POLL
        while True:
            woken = waker is not None and waker.clear()  # before looking: a wake-up after the look is not lost
            ready = [ch for ch in look if ch.ready()]
            left = deadline - time.monotonic()
            if ready or left <= 0:
                return ready
            if woken and stops:  # a watch may end once it woke us (base.py): watch again, and look again
                assert waker is not None
                for stop in stops:
                    stop()
                stops = _watch(no_handle, waker)
                look = no_handle
                continue
            wait = min(left, step) if polled else left
            if waker is None:
                fired = set(wait_for_handles(handles, wait))
            elif handles:
                fired = set(wait_for_handles([*handles, waker.handle], wait))
            else:
                waker.wait(wait)
                fired = set()
            step = min(step * 2, LONGEST_POLL)
            # what changed: a pipe that fired, and what has no pipe (nothing else changes while we wait)
            look = [ch for ch in channels if handle_of[id(ch)] is None or handle_of[id(ch)] in fired]
    finally:
        for stop in stops:
            stop()
        if waker is not None:
            waker.close()


def _watch(channels: list[Channel], waker: _Waker) -> list[Callable[[], object]]:
    """Have each of ``channels`` that can wake ``waker``; the functions that end those watches."""
    stops = []
    for ch in channels:
        stop = ch.watch(waker.wake)
        if stop is not None:
            stops.append(stop)
    return stops


class _Waker:
    """What watched channels wake: a SimpleQueue (in C, cheap to make), or an eventfd when pipes
    are waited on with it. wake() may be called from any thread; the rest from the waiting one."""

    def __init__(self, with_handle: bool) -> None:
        self._queue: queue.SimpleQueue[None] | None = None
        self._fd = -1
        self._took = False  # wait() took a wake-up that clear() has not reported yet
        if with_handle:
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.handle = self._fd
        else:
            self._queue = queue.SimpleQueue()

    def wake(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            return
        try:
            os.eventfd_write(self._fd, 1)
        except OSError:  # closed: nobody waits any more
            pass

    def clear(self) -> bool:
        """Forget the wake-ups so far; whether there was one."""
        woken, self._took = self._took, False
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
                woken = True
            return woken
        try:
            return os.eventfd_read(self._fd) > 0 or woken
        except BlockingIOError:  # not woken since the last clear
            return woken

    def wait(self, timeout: float) -> None:
        assert self._queue is not None
        try:
            self._queue.get(timeout=timeout)
            self._took = True
        except queue.Empty:
            pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
