"""One cell of tests/test_faults.py's fault matrix: run ENTRY, suffer FAULT, report, wait.

Usage: python fault_matrix.py ENTRY FAULT

ENTRY: runtime-map (Runtime().map), seed-map (MultiProcessing().GlobalProcessPool().map),
       actors (source thread -> work process -> sink process, on the Runtime),
       pipeline (a processes-mode Pipeline, the work node with workers=2).
FAULT: kill-idle (the test SIGKILLs an idle pool worker / work process, then says "go"),
       kill-busy (the test SIGKILLs the worker / work process while it runs a record),
       os-exit (the task calls os._exit(3)), unpicklable (the task raises an exception
       that cannot be unpickled in the parent).

Lines on stdout: ``ARMED kill PID go|nogo`` (the test is to SIGKILL PID, and write "go" on
stdin when asked) or ``ARMED self PID`` (the fault is self-inflicted now); then
``OUTCOME {json}`` (kind ok/error, exc_type, message); then the script waits on stdin until
the test ends it (SIGTERM).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import psutil

import chronopipe as cp

ENTRY, FAULT = sys.argv[1], sys.argv[2]
TRIGGER = 5  # the record that meets the fault
started = threading.Event()


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}{b}")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fault(x: int) -> int:
    """The task / record handler: meets FAULT on record TRIGGER (in a worker or actor process)."""
    if x == TRIGGER:
        if FAULT == "kill-busy":
            say(f"ARMED kill {os.getpid()} nogo")
            time.sleep(60)
        elif FAULT == "os-exit":
            say(f"ARMED self {os.getpid()}")
            os._exit(3)
        elif FAULT == "unpicklable":
            say(f"ARMED self {os.getpid()}")
            raise NeedsTwoArgs(x, x)
    return x * 2


def arm_idle(pid: int) -> None:
    """Say which idle process the test is to kill; wait for its "go"."""
    say(f"ARMED kill {pid} go")
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected go")


def pool_map(map_fn) -> list[int]:
    if FAULT == "kill-idle":
        assert map_fn(abs, [-1, -2, -3, -4]) == [1, 2, 3, 4]  # warm: the workers are idle now
        arm_idle(psutil.Process().children()[0].pid)
        return map_fn(abs, list(range(-20, 0)))
    return map_fn(fault, list(range(20)))


def feed():
    """What the actors / pipeline consume: records; for kill-idle, a pause (the workers idle)."""
    yield from range(20) if FAULT != "kill-idle" else range(TRIGGER)
    if FAULT == "kill-idle":
        started.wait(30)
        time.sleep(0.2)  # let them take what was sent and go idle
        work = [a for a in cp.Runtime().actors() if a.name.startswith("work")]
        arm_idle(work[-1].pid)
        yield from range(TRIGGER, 20)


def run_actors() -> None:
    a = cp.Channel(mode="process", name="a")
    b = cp.Channel(mode="process", name="b")
    cp.Actor("work", fault if FAULT != "kill-idle" else abs, inbox=a, outputs=b, mode="process").start()
    sink = cp.Actor("sink", lambda r: None, inbox=b, mode="process").start()
    cp.Actor("source", source=feed, outputs=a, mode="thread").start()
    started.set()
    sink.join(60)


def run_pipeline() -> None:
    class Work(cp.Node):
        def process(self, item):
            self.push(fault(item) if FAULT != "kill-idle" else item)

    class Sink(cp.Node):
        def process(self, item):
            pass

    pipeline = cp.Pipeline(Work("work", workers=2) | Sink("sink"), mode="processes")

    def fed():
        started.set()
        yield from feed()

    pipeline.consume(fed())


def main() -> None:
    rt = cp.Runtime(processes=2)
    start = time.monotonic()
    try:
        if ENTRY == "runtime-map":
            result = pool_map(lambda f, xs: rt.map(f, xs))
        elif ENTRY == "seed-map":
            result = pool_map(lambda f, xs: cp.MultiProcessing().GlobalProcessPool().map(f, xs))
        elif ENTRY == "actors":
            result = run_actors()
        elif ENTRY == "pipeline":
            result = run_pipeline()
        else:
            raise SystemExit(f"unknown entry {ENTRY}")
        outcome = {"kind": "ok", "result": result}
    except cp.ActorError as exc:
        outcome = {"kind": "error", "exc_type": exc.exc_type, "actor": exc.actor, "message": exc.message,
                   "text": str(exc)}
    outcome["seconds"] = time.monotonic() - start
    say("OUTCOME " + json.dumps(outcome))
    sys.stdin.readline()  # until the test ends us


if __name__ == "__main__":
    main()
