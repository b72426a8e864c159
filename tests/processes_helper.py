"""Process checks the fault and teardown tests share (psutil)."""

from __future__ import annotations

import subprocess
import time

import psutil


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running (a zombie or a reused pid does not count)."""
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def children() -> list[psutil.Process]:
    """This process's descendants still running (zombies not counted)."""
    return running(psutil.Process().children(recursive=True))


def kill_all(proc: subprocess.Popen, seen: list[psutil.Process]) -> None:  # type: ignore[type-arg]
    """End a test's script and every process it was seen to start (a failed test leaves none)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for p in running(seen):
        try:
            p.kill()
        except psutil.Error:
            pass


def no_children_left(timeout: float = 5.0) -> None:
    """Fail unless every process this test started has ended within ``timeout`` seconds
    (zombies, and the session's PostgreSQL server, aside)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in children():
            try:
                if "postgres" not in p.name():
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes left behind: {alive}"
        time.sleep(0.05)
