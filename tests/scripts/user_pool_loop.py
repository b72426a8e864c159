"""A user's own pathos pool, made after the runtime started, 50 times: each must exit cleanly.

Usage: python user_pool_loop.py [ROUNDS] [--terminate-at-once]

Starts the runtime (its pool, an actor process), then ROUNDS times: a pathos
``ProcessPool`` (alternately ended by close/join and by terminate), whose workers must not run
the runtime's signal handlers (they report theirs), then clear(). With ``--terminate-at-once``,
ROUNDS times a multiprocess ``Pool(4)`` terminated as soon as it was made, while its workers are
still in their after-fork hooks (a SIGTERM then must not be lost). Prints ``DONE`` and exits 0;
a hang dumps the stacks of this process and its children to stderr and exits 86.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time

import multiprocess
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
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # inherited: the watchdog asks children for stacks
    rt = cp.Runtime(processes=2)
    assert rt.map(abs, [-1, -2]) == [1, 2]
    ch = cp.Channel(mode="process", name="ticks")
    cp.Actor("ticker", source=range(10), outputs=ch, mode="process").start()
    assert list(ch) == list(range(10))
    if "--terminate-at-once" in sys.argv:
        for _ in range(rounds):
            raw = multiprocess.get_context("fork").Pool(4)
            raw.terminate()
            raw.join()
        print("DONE", flush=True)
        return
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
        try:  # a zombie or a child gone meanwhile has nothing to tell
            print(f"child {child.pid}: {' '.join(child.cmdline()[:3])} status {child.status()}", file=sys.stderr)
            with open(f"/proc/{child.pid}/status") as status:
                print("".join(line for line in status if line.startswith(("Sig", "Shd"))), file=sys.stderr)
            sys.stderr.flush()
            os.kill(child.pid, signal.SIGUSR1)
            time.sleep(0.5)
        except (psutil.Error, OSError):
            continue
    sys.stderr.flush()
    os._exit(86)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 50)
