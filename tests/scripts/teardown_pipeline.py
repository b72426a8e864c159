"""Run a chronopipe pipeline for tests/test_teardown.py, then end the way the test asks.

Usage: python teardown_pipeline.py SCENARIO

Builds a pipeline whose actors keep running, prints one line ``READY {json}`` once they
are (json: ``pid``, ``actors``: {name: pid or null}, ``manager``: pid or null), then waits
for a line on stdin (or for a signal from the test) and ends as SCENARIO says:

    exit         return normally: the runtime's atexit teardown must end the actors (exit 0)
    raise        raise RuntimeError (exit 1)
    sigint       wait for SIGINT; KeyboardInterrupt propagates (Python then dies by SIGINT: status -2, 130)
    sigint-130   wait for SIGINT; catch KeyboardInterrupt and exit 130
    sigterm      wait for SIGTERM (death by SIGTERM)
    sigkill      also start the process pool (Runtime().map) and a Manager; wait for SIGKILL
    full-process a process producer blocks on a process channel nobody reads; exit normally
    full-pipe    the same, blocked in the pipe write itself (big records); exit normally
    full-thread  a thread producer blocks on a thread channel nobody reads; exit normally
"""

from __future__ import annotations

import json
import signal
import sys
import time

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # Launched with Ctrl-C ignored (e.g. by a non-interactive shell's `&`): behave like a
    # script started from a terminal, which is what the SIGINT scenarios are about.
    signal.signal(signal.SIGINT, signal.default_int_handler)

import multiprocess

import chronopipe as cp

READY_TIMEOUT = 30.0
#: A producer that has made no progress for this long is taken to be blocked.
STUCK_FOR = 0.2


def numbers(counter=None, record_size: int = 0):
    """A source: 0, 1, 2, ... (or distinct zeroed records of ``record_size`` bytes) forever,
    counting the records handed out in ``counter`` (a shared multiprocess.Value)."""

    def source():
        i = 0
        while True:
            yield bytearray(record_size) if record_size else i
            i += 1
            if counter is not None:
                counter.value = i

    return source


def flowing_pipeline() -> dict[str, cp.Actor]:
    """source (process) -> map (process) -> sink (thread, here); READY once records arrive here."""
    arrived = multiprocess.Event()
    a = cp.Channel(maxsize=10_000, mode="process", name="a")
    b = cp.Channel(maxsize=10_000, mode="process", name="b")

    def sink(record):
        arrived.set()

    actors = {
        "source": cp.Actor("source", source=numbers(), outputs=a, mode="process").start(),
        "map": cp.Actor("map", lambda r: r + 1, inbox=a, outputs=b, mode="process").start(),
        "sink": cp.Actor("sink", sink, inbox=b, mode="thread").start(),
    }
    if not arrived.wait(READY_TIMEOUT):
        raise SystemExit(f"no record reached the sink within {READY_TIMEOUT} s")
    return actors


def blocked_producer(kind: str) -> dict[str, cp.Actor]:
    """One producer writing to a channel nobody reads; READY once it has filled it and is stuck."""
    counter = multiprocess.Value("q", 0, lock=False)
    if kind == "thread":
        ch, at_least = cp.Channel(maxsize=10, mode="thread", name="unread"), 10
        src = numbers(counter)
    elif kind == "process":
        ch, at_least = cp.Channel(maxsize=1000, mode="process", name="unread"), 1000
        src = numbers(counter)
    else:  # 4 KiB records: the OS pipe (at most 1 MiB) fills long before the channel's 10_000 records
        ch, at_least = cp.Channel(maxsize=10_000, mode="process", name="unread"), 256
        src = numbers(counter, record_size=4096)
    producer = cp.Actor("producer", source=src, outputs=ch, mode="thread" if kind == "thread" else "process").start()
    deadline = time.monotonic() + READY_TIMEOUT
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n, now = counter.value, time.monotonic()
        if n != last:
            last, since = n, now
        elif n >= at_least and now - since >= STUCK_FOR:
            return {"producer": producer}
        time.sleep(0.01)
    raise SystemExit(f"the producer did not get stuck on its full channel within {READY_TIMEOUT} s (at {last})")


def wait_for_the_test(ready: dict) -> None:
    """Say READY, then wait for the test: a line on stdin, or a signal."""
    print("READY " + json.dumps(ready), flush=True)
    sys.stdin.readline()


def main(scenario: str) -> None:
    actors = blocked_producer(scenario.removeprefix("full-")) if scenario.startswith("full-") else flowing_pipeline()
    manager_pid = None
    if scenario == "sigkill":
        rt = cp.Runtime()
        if rt.map(abs, [-1, -2, -3, -4], mode="process") != [1, 2, 3, 4]:
            raise SystemExit("the process pool gave a wrong result")
        manager = rt.manager()
        manager.dict()["alive"] = True  # make sure the manager's server process answers
        manager_pid = manager._process.pid
    pids = {name: (a.pid if a.mode == "process" else None) for name, a in actors.items()}
    ready = {"pid": multiprocess.current_process().pid, "actors": pids, "manager": manager_pid}

    if scenario == "sigint-130":
        try:  # from before READY: the test may send SIGINT as soon as it reads it
            wait_for_the_test(ready)
        except KeyboardInterrupt:
            sys.exit(130)
        raise SystemExit("SIGINT was expected; stdin got a line or closed instead")
    wait_for_the_test(ready)
    if scenario in ("sigint", "sigterm", "sigkill"):
        raise SystemExit(f"{scenario} was expected; stdin got a line or closed instead")
    if scenario == "raise":
        raise RuntimeError("the script failed while its actors were running")
    # "exit" and "full-*": fall off the end with the actors still running


if __name__ == "__main__":
    main(sys.argv[1])
