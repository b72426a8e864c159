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


def of_ray(process: psutil.Process) -> bool:
    """Whether ``process`` is one of Ray's own, which Ray keeps for the session: its GCS, raylet,
    agents, idle workers, and the hub actor of ray channels. A chronopipe actor hosted on Ray
    (a worker titled ``ray::_Shell``) is not: it must end with its actor."""
    try:
        line = " ".join(process.cmdline())
    except psutil.Error:
        return False
    if line.startswith("ray::"):
        return not line.startswith("ray::_Shell")
    return "/ray/" in line


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
                if "postgres" not in p.name() and not of_ray(p):
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes left behind: {alive}"
        time.sleep(0.05)
