"""A cell of tests/test_faults_cli.py: a Manager().Queue() feeds a consumer; the test kills the Manager.

Usage: python manager_fault.py MANAGER CONSUMER

MANAGER: runtime (``Runtime().manager()``) or seed (``MultiProcessing().Manager()``).
CONSUMER: multiplexer (a SortedQueueMultiplexer reads the queue; this thread reads its output)
          or actor (a process actor reads the queue through QueueInput; this thread joins it).

A thread of this script keeps putting records on the queue. Lines on stdout: ``ARMED PID`` once
the consumer has taken records (the test is to SIGKILL the Manager's server, PID), then
``OUTCOME {json}`` (kind ok/error, actor, exc_type, message, the counts); then the script waits
on stdin until the test ends it (SIGTERM).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import chronopipe as cp
from chronopipe.channels import END
from chronopipe.multiplex.inputs import QueueInput

MANAGER, CONSUMER = sys.argv[1], sys.argv[2]
TAKEN = 100  #: records the consumer takes before the test is told to kill the Manager
consumers: list[cp.Actor] = []


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def feed(q, stop: threading.Event) -> None:
    """Timestamped records, one every millisecond, until the queue (its Manager) is gone."""
    n = 0
    try:
        while not stop.is_set():
            q.put({"timestamp": n})
            n += 1
            time.sleep(0.001)
        q.put(END)
    except Exception:  # the Manager was killed: the consumer is the one to say so
        pass


def consume_with_multiplexer(q) -> int:
    mux = cp.SortedQueueMultiplexer(sort_key="timestamp", name="merge")
    mux.input_queue(q)
    out = mux.output_queue()
    consumers.append(mux.run())
    return sum(1 for _record in out)


def consume_with_actor(q) -> int:
    actor = cp.Actor("consume", lambda r: None, inbox=QueueInput(q, name="manager-queue"), mode="process")
    consumers.append(actor.start())
    actor.join(60)
    return actor.statistics().received


def main() -> None:
    rt = cp.Runtime()
    manager = rt.manager() if MANAGER == "runtime" else cp.MultiProcessing().Manager()
    q = manager.Queue()
    stop = threading.Event()
    threading.Thread(target=feed, args=(q, stop), daemon=True).start()

    def arm() -> None:
        deadline = time.monotonic() + 30
        while not (consumers and consumers[0].statistics().received >= TAKEN) and time.monotonic() < deadline:
            time.sleep(0.01)
        say(f"ARMED {manager._process.pid}")

    threading.Thread(target=arm, daemon=True).start()
    started = time.monotonic()
    try:
        consumed = consume_with_multiplexer(q) if CONSUMER == "multiplexer" else consume_with_actor(q)
        outcome = {"kind": "ok", "consumed": consumed}
    except cp.ActorError as exc:
        outcome = {"kind": "error", "actor": exc.actor, "exc_type": exc.exc_type, "message": exc.message,
                   "progress": exc.progress, "in_flight": exc.in_flight}
    stop.set()
    outcome["seconds"] = time.monotonic() - started
    say("OUTCOME " + json.dumps(outcome))
    sys.stdin.readline()  # until the test ends us


if __name__ == "__main__":
    main()
