"""The EventManager's own callback threads: daemon threads that nothing ever joins forever.

They run the async callbacks of ``"thread"`` mode (the default pool) and the synchronous
callbacks that have a ``timeout`` (so that the dispatching thread can stop waiting for one
and move on: a thread cannot be killed, so a callback that hangs is *abandoned*, its thread
left running). A thread is started when no idle one is there, and ends after ``IDLE_EXIT``
seconds without work.

At interpreter exit (``atexit``) the callbacks still running get ``EXIT_WAIT`` seconds in all
to finish; those still running then are abandoned with a warning (logger
``chronopipe.events``) naming them: the threads are daemons, so Python exits without them.
Ctrl-C during that wait ends the process by SIGINT (exit status 130), without a traceback.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..actors.errors import ActorError
from ..channels.quiet import die_of_sigint

__all__ = ["EXIT_WAIT", "IDLE_EXIT", "Call", "CallbackThreads", "Deadline", "Lend", "callback_threads", "lent_call",
           "timeout_error"]

log = logging.getLogger("chronopipe.events")

#: Seconds an idle callback thread waits for work before it ends.
IDLE_EXIT = 0.5
#: Seconds, at interpreter exit, that the callbacks still running get in all before they are abandoned.
EXIT_WAIT = 1.0


class Call:
    """One callback call on a callback thread: ``done()`` and ``result(timeout)`` as a Future's
    (so ``Pending`` can wait on it); ``wait(timeout)`` says whether it has finished."""

    __slots__ = ("_done", "args", "error", "fn", "label", "started", "thread", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], label: str) -> None:
        self.fn, self.args, self.label = fn, args, label
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.started = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        """Run it in this thread; its value or exception is kept for ``result``."""
        self.thread, self.started = threading.current_thread(), time.monotonic()
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # kept for the thread waiting on result(): it re-raises it
            self.error = exc
        finally:
            self.fn = self.args = None  # type: ignore[assignment]  # nothing kept alive once done
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once it has finished (waiting at most ``timeout`` seconds)."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """Its value.

        Raises:
            TimeoutError: still running after ``timeout`` seconds.
            BaseException: what the callback raised.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.label}: still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


class CallbackThreads:
    """Daemon threads for callbacks (module docs): ``submit`` never blocks and never waits for a
    thread; a hung callback holds its thread only."""

    def __init__(self, name: str = "chronopipe-events") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for work and not yet promised a submitted call
        self._running: dict[Call, None] = {}
        self._numbers = itertools.count(1)
        self._hooked = False
        self._pid = os.getpid()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], label: str) -> Call:
        """Run ``fn(*args)`` on a callback thread (an idle one, or a new one)."""
        call = Call(fn, args, label)
        with self._lock:
            self._queue.put(call)
            if self._idle:
                self._idle -= 1  # that thread takes it (or another idle one: it comes to the same)
                return call
            if not self._hooked:
                atexit.register(self.at_exit)
                self._hooked = True
        threading.Thread(target=self._work, name=f"{self.name}-{next(self._numbers)}", daemon=True).start()
        return call

    def _work(self) -> None:
        """A callback thread's loop: calls until ``IDLE_EXIT`` seconds pass without one."""
        get, running = self._queue.get, self._running
        while True:
            try:
                call = get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # nothing was promised to this thread: end it
                        self._idle -= 1
                        return
                continue  # a call was queued (and this thread promised) as the wait ran out
            running[call] = None
            try:
                call.run()
            finally:
                running.pop(call, None)
                with self._lock:
                    self._idle += 1

    def running(self) -> list[Call]:
        """The calls running now, oldest first."""
        return list(self._running)

    def at_exit(self) -> None:
        """At interpreter exit (main thread): give the running calls ``EXIT_WAIT`` seconds in all,
        then abandon those still running, with a warning. Ctrl-C meanwhile: exit status 130."""
        if os.getpid() != self._pid:  # a forked child inherited the hook: these are not its threads
            return
        deadline = time.monotonic() + EXIT_WAIT
        try:
            for call in self.running():
                call.wait(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            still = [c for c in self.running() if not c.done()]
            _warn(f"interrupted at exit while waiting for {len(still)} event callback(s): {_describe(still)}; "
                  "abandoned")
            die_of_sigint()
            return
        still = [c for c in self.running() if not c.done()]
        if still:
            _warn(f"{len(still)} event callback(s) still running at exit, abandoned after {EXIT_WAIT:g} s (their "
                  f"daemon threads end with the interpreter): {_describe(still)}")


def _warn(message: str) -> None:
    """A warning at exit: logged, and written to stderr as well when no handler would show it
    (the package's logger has only a NullHandler unless the program configures logging)."""
    log.warning("%s", message)
    logger: logging.Logger | None = log
    while logger is not None:
        if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
            return
        logger = logger.parent if logger.propagate else None
    try:
        sys.stderr.write(f"chronopipe.events: warning: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed
        pass


def _describe(calls: list[Call], shown: int = 3) -> str:
    """The first ``shown`` calls (label, thread, how long), then how many more: one short line."""
    now = time.monotonic()
    text = "; ".join(f"{c.label} on {c.thread.name if c.thread else '?'}, running for {now - c.started:.1f} s"
                     for c in calls[:shown])
    return text + (f"; and {len(calls) - shown} more" if len(calls) > shown else "")


class Lend:
    """A dispatching thread's turn, lent to the thread of a timed callback while it waits for
    it (so that the callback may trigger events itself); ``alive`` is False once taken back."""

    __slots__ = ("alive",)

    def __init__(self) -> None:
        self.alive = True


def lent_call(local: threading.local, callback: Callable[[Any], Any], event: Any, token: Lend) -> Any:
    """On a callback thread: ``callback(event)``, with the dispatching thread's turn lent to it
    (``local.token``: the EventManager's thread-local, which its ``trigger`` looks at)."""
    local.token = token
    try:
        return callback(event)
    finally:
        local.token = None


class Deadline:
    """A task (``ready``/``get`` or ``done``/``result``) that gives up at ``timeout`` seconds from now:
    then ``result`` raises an ActorError ``TimeoutError`` (so its Pending settles to a Left).
    The task itself runs on, abandoned."""

    __slots__ = ("_deadline", "_done", "_get", "label", "record", "timeout")

    def __init__(self, task: Any, timeout: float, label: str, record: Any = None) -> None:
        if callable(getattr(task, "ready", None)):
            self._done, self._get = task.ready, task.get
        else:
            self._done, self._get = task.done, task.result
        self._deadline = time.monotonic() + timeout
        self.timeout, self.label, self.record = timeout, label, record

    def done(self) -> bool:
        return bool(self._done()) or time.monotonic() >= self._deadline

    def result(self, timeout: float | None = None) -> Any:
        """The task's value.

        Raises:
            ActorError: ``TimeoutError``, once the deadline has passed; or the task's own error.
            TimeoutError: neither within ``timeout`` seconds (still pending).
        """
        left = max(0.0, self._deadline - time.monotonic())
        try:
            return self._get(left if timeout is None else min(timeout, left))
        except TimeoutError:
            if self._done():
                raise  # the task's own TimeoutError: it finished with it
            if time.monotonic() >= self._deadline:
                raise timeout_error(self.label, self.timeout, self.record) from None
            raise


def timeout_error(label: str, timeout: float, record: Any, thread: str | None = None) -> ActorError:
    """The error of a callback that ran past its ``timeout``."""
    where = f" (its thread {thread} runs on)" if thread else ""
    return ActorError(label, "TimeoutError", f"no result within its timeout of {timeout:g} s: abandoned{where}",
                      record=record)


_THREADS: CallbackThreads | None = None
_THREADS_LOCK = threading.Lock()


def callback_threads() -> CallbackThreads:
    """The process's CallbackThreads (made on first use; a forked child makes its own)."""
    global _THREADS
    threads = _THREADS
    if threads is None:
        with _THREADS_LOCK:
            if _THREADS is None:
                _THREADS = CallbackThreads()
            threads = _THREADS
    return threads


def _forget_in_child() -> None:
    global _THREADS, _THREADS_LOCK
    _THREADS, _THREADS_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
