"""The runtime's SIGINT / SIGTERM handlers: they never block, and act only in their own process.

A Python signal handler runs in the main thread, between two bytecodes of whatever it was
doing, possibly inside a ``with lock:``. So the handler takes no lock at all: it tells the
runtime's child processes to end by pid (SIGTERM, then SIGKILL to those left after
``HANDLER_DEADLINE`` / 2), waits on their sentinels (it reaps nothing), and then lets the
signal do what it did before: SIGINT raises KeyboardInterrupt (an uncaught one ends Python by
SIGINT: status 130), SIGTERM ends the process by SIGTERM (status 143). The orderly teardown
(channels broken, threads joined) is left to ``Runtime.shutdown``, which atexit runs.

A process forked by someone else (a user's own pool, a Manager's server) inherits the
handlers: there they are reset right after the fork (``os.register_at_fork``), and should one
still run there, it restores the previous handler and re-delivers the signal, untouched. Every
fork of the process holds the signals back (``hold_for_fork``) until the child has reset them:
a SIGTERM sent to a child that has not yet run its after-fork hooks would otherwise only trip
the inherited Python handler, and CPython drops a tripped signal whose handler was meanwhile
reset to SIG_DFL ("ignored due to race condition"): a user's ``pool.terminate()`` right after
starting its pool then waited forever on a worker that never got its SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..channels.quiet import QUIET_SIGNALS, start_quiet

__all__ = ["HANDLED_SIGNALS", "HANDLER_DEADLINE", "SignalHandlers", "redeliver_when_swallowed", "start_quiet"]

log = logging.getLogger("chronopipe.runtime")
HANDLED_SIGNALS = QUIET_SIGNALS  # the runtime's own threads block them (channels.quiet.start_quiet)
#: Longest a handler spends ending child processes before the signal takes its course.
HANDLER_DEADLINE = 2.0


class SignalHandlers:
    """SIGINT/SIGTERM handlers for the process ``pid``, calling ``teardown(deadline)`` first.

    ``teardown`` runs in the main thread, inside the handler: it must take no lock and return
    within ``deadline`` seconds; if it raises, the error is logged and the signal still takes
    its course.
    """

    def __init__(self, pid: int, teardown: Callable[[float], None]) -> None:
        self.pid = pid
        self._teardown = teardown
        self.previous: dict[int, Any] = {}
        self._held: dict[int, Any] = {}  # thread id -> its signal mask before a fork held ours back

    def install(self) -> None:
        """Install the handlers (main thread only; a signal ignored by the program stays ignored)."""
        if threading.current_thread() is not threading.main_thread():
            log.debug("runtime created off the main thread: teardown relies on atexit only")
            return
        for signum in HANDLED_SIGNALS:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN or current is self:
                continue  # the program chose to ignore it (nohup, `cmd &`): so do we
            self.previous[signum] = current
            signal.signal(signum, self)
        redeliver_when_swallowed(KeyboardInterrupt, signal.SIGINT)

    def reset(self) -> None:
        """Put the previous handlers back where ours are installed (e.g. in a forked child)."""
        for signum, previous in self.previous.items():
            try:
                if signal.getsignal(signum) is self:
                    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, OSError):  # not the main thread: __call__ still checks the pid
                pass

    # -- around every fork of this process (os.register_at_fork) --------------------------
    def hold_for_fork(self) -> None:
        """Before a fork, in the forking thread: block our signals (a child gets them once reset)."""
        if self.previous and os.getpid() == self.pid:
            self._held[threading.get_ident()] = signal.pthread_sigmask(signal.SIG_BLOCK, set(self.previous))

    def release_in_parent(self) -> None:
        """After a fork, in the parent's forking thread: the mask as it was (pending signals arrive)."""
        mask = self._held.pop(threading.get_ident(), None)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def release_in_child(self) -> None:
        """After a fork, in the child: the previous handlers back, then the mask as it was, so a
        signal sent meanwhile (held pending by the kernel) meets the handler the child should have."""
        self.reset()
        mask = self._held.pop(threading.get_ident(), None)
        self._held.clear()
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def __call__(self, signum: int, frame: Any) -> None:
        """The handler. Runs in the main thread of the process that received the signal."""
        if os.getpid() != self.pid:  # inherited by a fork we did not make: not ours to handle
            self.reset()
            self._chain(signum, frame, self.previous.get(signum, signal.SIG_DFL))
            return
        try:
            self._teardown(HANDLER_DEADLINE)
        except BaseException:
            log.exception("signal %s: the runtime's teardown failed", signal.Signals(signum).name)
        self._chain(signum, frame, self.previous.get(signum, signal.SIG_DFL))

    @staticmethod
    def _chain(signum: int, frame: Any, previous: Any) -> None:
        """Let the signal do what it did before us (chained, not swallowed)."""
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL or previous is None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
            os.kill(os.getpid(), signum)  # die of the signal: exit status 128 + signum


_redelivered: dict[type[BaseException], int] = {}
#: Seconds after a swallowed signal exception before the signal is delivered again.
REDELIVER_AFTER = 0.01


def redeliver_when_swallowed(kind: type[BaseException], signum: int) -> None:
    """Deliver ``signum`` again when the exception its handler raised (``kind``) was swallowed.

    A signal handler runs wherever the main thread is, and an exception raised inside a weakref
    callback, a ``__del__`` or an after-fork hook is only printed ("Exception ignored in ...") and
    dropped: the Ctrl-C would be lost while the runtime has already ended the children. This
    ``sys.unraisablehook`` says nothing of such a ``kind`` and sends the signal to the main thread
    again a moment later (``signal.pthread_kill``, which also wakes a sleep), and the handler
    raises it again where it can propagate.
    Other unraisable exceptions go to the hook that was there before. Idempotent per ``kind``.
    """
    if kind in _redelivered:
        return
    _redelivered[kind] = signum
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        signum = _redelivered.get(unraisable.exc_type) if unraisable.exc_type is not None else None
        if signum is not None and threading.current_thread() is threading.main_thread():
            # From another thread, a moment later: raised from here, it would be swallowed again.
            again = threading.Timer(REDELIVER_AFTER, signal.pthread_kill, (threading.main_thread().ident, signum))
            again.daemon = True
            again.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook
