"""What every process the runtime starts does first: ignore Ctrl-C, watch its parent,
and close the inherited pipe ends it will not use."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Iterable

import multiprocess
from multiprocess.connection import wait

from ..channels import Channel
from ..channels.pipe import keep_only

__all__ = ["EXIT_ORPHANED", "init_child", "init_pool_worker", "stdlib_before_exit"]

#: Exit status of a child that outlived its parent and ended itself.
EXIT_ORPHANED = 70
PARENT_CHECK_INTERVAL = 0.25


def init_child(readers: Iterable[Channel] = (), writers: Iterable[Channel] = ()) -> None:
    """Prepare a freshly forked child of the runtime."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's chained teardown handler
    # actor processes start with both held back (ProcessHost.start), pool workers with SIGTERM
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _stdlib_after_fork()
    keep_only(readers, writers)
    watch_parent()
    # Everything inherited from the parent is left out of garbage collection: the collector
    # would otherwise walk (and so copy on write) the parent's whole heap again and again.
    gc.freeze()


def _stdlib_after_fork() -> None:
    """Do for the standard library's multiprocessing what its own Process start does.

    Our children are started by ``multiprocess`` (the dill fork), which runs only its own
    hooks; without this, a stdlib ``multiprocessing.Queue`` or Manager proxy inherited from
    the parent would lose or never deliver what the child puts.
    """
    std_process = sys.modules.get("multiprocessing.process")
    if std_process is not None:
        std_process._children = set()
    std_util = sys.modules.get("multiprocessing.util")
    if std_util is not None:
        std_util._finalizer_registry.clear()
        std_util._run_after_forkers()


def stdlib_before_exit() -> None:
    """Run the stdlib's exit finalizers (e.g. flush a multiprocessing.Queue's feeder thread)."""
    std_util = sys.modules.get("multiprocessing.util")
    if std_util is not None:
        std_util._run_finalizers(0)
        std_util._run_finalizers()


def init_pool_worker() -> None:
    """pathos pool initializer: a pool worker uses no channel."""
    init_child()


def watch_parent() -> None:
    """Exit this process soon after the parent dies, even by SIGKILL.

    Two signals, either suffices: the parent's sentinel pipe reaches EOF, or getppid()
    changes (re-parenting). The second also covers sentinels kept open by siblings that
    inherited them, and does not depend on which thread forked us (unlike PR_SET_PDEATHSIG).
    """
    parent = multiprocess.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    threading.Thread(
        target=_watch, args=(os.getppid(), sentinel), name="chronopipe-parent-watch", daemon=True
    ).start()


def _watch(ppid: int, sentinel: int | None) -> None:
    while True:
        if sentinel is not None:
            try:
                if wait([sentinel], timeout=PARENT_CHECK_INTERVAL):
                    os._exit(EXIT_ORPHANED)
            except OSError:
                sentinel = None
        else:
            threading.Event().wait(PARENT_CHECK_INTERVAL)
        if os.getppid() != ppid:
            os._exit(EXIT_ORPHANED)
