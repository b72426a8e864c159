"""A user's own pathos pool, made after the runtime started, 50 times: each must exit cleanly.

Usage: python user_pool_loop.py [ROUNDS]

Starts the runtime (its pool, an actor process), then ROUNDS times: a pathos
``ProcessPool`` (alternately ended by close/join and by terminate), whose workers must not run
the runtime's signal handlers (they report theirs), then clear(). Prints ``DONE`` and exits 0.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time

import psutil
from pathos.pools import ProcessPool

import chronopipe as cp


def handlers(_: int) -> tuple[bool, bool]:
    """In a user pool worker: are SIGTERM and SIGINT what they were before the runtime?"""
    return (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            signal.getsignal(signal.SIGINT) is signal.default_int_handler)


def main(rounds: int) -> None:
    # A hang dumps every thread's stack to stderr and exits with status 86 (the test tells it apart).
    threading.Thread(target=_watchdog, args=(HANG_AFTER,), daemon=True).start()
    rt = cp.Runtime(processes=2)
    assert rt.map(abs, [-1, -2]) == [1, 2]
    ch = cp.Channel(kind="process", name="ticks")
    cp.Actor("ticker", source=range(10), outputs=ch, mode="process").start()
    assert list(ch) == list(range(10))
    for i in range(rounds):
        pool = ProcessPool(nodes=2, id=f"user-{i}")
        seen = pool.map(handlers, range(4))
        if not all(term and intr for term, intr in seen):
            raise SystemExit(f"round {i}: a user pool worker runs the runtime's signal handlers: {seen}")
        if i % 2:
            pool.terminate()
        else:
            pool.close()
        pool.join()
        pool.clear()
        print(f"round {i} done", file=sys.stderr, flush=True)
    print("DONE", flush=True)


HANG_AFTER = 40.0  #: seconds; the loop takes about 1 s


def _watchdog(seconds: float) -> None:
    time.sleep(seconds)
    faulthandler.dump_traceback(all_threads=True)
    for child in psutil.Process().children(recursive=True):
        print(f"child {child.pid}: {' '.join(child.cmdline()[:3])} status {child.status()}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(86)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
