"""Child processes the runtime can end from anywhere, a signal handler included."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from multiprocess.connection import wait

__all__ = ["ForkedProcess", "kill_processes"]


class ForkedProcess:
    """A worker process forked with ``os.fork`` and a bootstrap of our own.

    Not ``multiprocess.Process``: its bootstrap closes ``sys.stdin``, which takes the stdin
    buffer's lock; a worker forked (as replacements are, from the dispatcher thread) while
    another thread was reading stdin would wait for that lock forever, before anything could
    notice its parent's death. This one runs ``target(conn, initializer)`` and ``os._exit``s.
    Same attributes as a Process where the pool uses them: pid, sentinel, exitcode, join.
    """

    def __init__(self, target: Callable[..., None], conn: Any, parent_end: Any, initializer: Any) -> None:
        r, w = os.pipe()  # the sentinel: readable (EOF) once the child has exited
        # Forked with SIGTERM blocked until init_child has reset its handler (see child.py).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                parent_end.close()
                target(conn, initializer)
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.sentinel, self.returncode = pid, r, None

    @property
    def exitcode(self) -> int | None:
        return self._reap(os.WNOHANG)

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:
                return None
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                os.close(self.sentinel)
        return self.returncode

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` for it to end, and reap it."""
        if self.returncode is None and wait([self.sentinel], timeout):
            # Its pipes close before it turns into a zombie: the blocking wait is a short one.
            self._reap(0)

    def is_alive(self) -> bool:
        return self.exitcode is None


def _pid_and_sentinel(p: Any) -> tuple[int, Any] | None:
    """(pid, sentinel) of a running multiprocess Process or ForkedProcess; None once reaped."""
    popen = p if isinstance(p, ForkedProcess) else getattr(p, "_popen", None)
    if popen is None or popen.returncode is not None:
        return None
    return p.pid, popen.sentinel


def kill_processes(procs: list[Any], timeout: float) -> None:
    """SIGTERM to each of ``procs`` (multiprocess Process or ForkedProcess objects), SIGKILL to those
    still running after ``timeout``. Takes no lock and reaps nothing (waits on the sentinels):
    signal-handler safe."""
    deadline = time.monotonic() + timeout
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = []
        for p in procs:
            handle = _pid_and_sentinel(p)
            if handle is None:
                continue
            try:
                os.kill(handle[0], sig)
                left.append(handle[1])
            except (OSError, TypeError):
                pass
        while left and time.monotonic() < deadline:
            try:
                ended = wait(left, max(0.0, deadline - time.monotonic()))
            except (OSError, ValueError):
                break
            left = [s for s in left if s not in ended]
        if not left:
            return
        deadline = time.monotonic() + 1.0
