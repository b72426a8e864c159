"""What the sources' tests share: reading a hosted source's queue with a deadline, waiting for
a condition, free ports and the test process's own sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import psutil

from chronopipe.channels import END


def take(queue: Any, count: int, timeout: float = 10.0) -> list:
    """``count`` records from a hosted source's ``queue``, or fail after ``timeout`` seconds (or
    at its END, before ``count``)."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(got)} of {count} records after {timeout} s; the last: {got[-3:]}"
        try:
            record = queue.get(timeout=min(left, 0.2))
        except TimeoutError:
            continue
        assert record is not END, f"the source ended after {len(got)} of {count} records"
        got.append(record)
    return got


def drain(queue: Any, timeout: float = 10.0) -> list:
    """Every record left in a hosted source's ``queue``, up to its END (fail after ``timeout`` seconds)."""
    got: list = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no END after {timeout} s ({len(got)} records)"
        try:
            batch = queue.get_batch(min(left, 0.2))
        except TimeoutError:
            continue
        if batch and batch[-1] is END:
            return got + batch[:-1]
        got += batch


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met after {timeout} s"
        time.sleep(0.01)


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client_sockets(port: int) -> list:
    """This process's TCP connections to ``port`` (a server of the test holds the other ends)."""
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]
