"""A user's own pathos pool, made after the runtime started, 50 times: each must exit cleanly.

Usage: python user_pool_loop.py [ROUNDS]

Starts the runtime (its pool, an actor process), then ROUNDS times: a pathos
``ProcessPool`` (alternately ended by close/join and by terminate), whose workers must not run
the runtime's signal handlers (they report theirs), then clear(). Prints ``DONE`` and exits 0.
"""

from __future__ import annotations

import signal
import sys

from pathos.pools import ProcessPool

import chronopipe as cp


def handlers(_: int) -> tuple[bool, bool]:
    """In a user pool worker: are SIGTERM and SIGINT what they were before the runtime?"""
    return (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            signal.getsignal(signal.SIGINT) is signal.default_int_handler)


def main(rounds: int) -> None:
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
    print("DONE", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
