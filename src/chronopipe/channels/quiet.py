"""Threads that leave SIGINT and SIGTERM to the main thread (the lowest layer: no import of ours).

The kernel delivers a process's signal to any thread that does not block it; if that is not the
main thread while the main thread waits in a system call (``input()``, ``readline()``), Python's
handler runs only once that call returns: possibly never. So every thread chronopipe starts for
itself (the channels' linger thread, the runtime's supervisor and pool dispatchers) blocks both,
and the main thread gets them.
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["QUIET_SIGNALS", "die_of_sigint", "start_quiet"]

#: The signals a chronopipe thread leaves to the main thread.
QUIET_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def start_quiet(thread: threading.Thread) -> threading.Thread:
    """Start ``thread`` with SIGINT and SIGTERM blocked in it (it inherits the mask it is made with).

    >>> import threading
    >>> start_quiet(threading.Thread(target=lambda: None)).join()
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(QUIET_SIGNALS))
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


def die_of_sigint() -> None:
    """End this process by SIGINT, as an uncaught KeyboardInterrupt does (status 130), quietly:
    for a Ctrl-C that arrives where raising it would only print a traceback (at exit)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)  # the signal is delivered at once; this is not reached
    except (ValueError, OSError):  # not the main thread, or no signals here: the usual exit then
        pass
    os._exit(130)
