"""Threads that leave SIGINT and SIGTERM to the main thread (the lowest layer: no import of ours).

The kernel delivers a process's signal to any thread that does not block it; if that is not the
main thread while the main thread waits in a system call (``input()``, ``readline()``), Python's
handler runs only once that call returns: possibly never. So every thread chronopipe starts for
itself (the channels' linger thread, the runtime's supervisor and pool dispatchers) blocks both,
and the main thread gets them.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["QUIET_SIGNALS", "start_quiet"]

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
