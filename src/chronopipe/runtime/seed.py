"""The seed's names for the runtime, in one place, kept so that the seed's documented usage works.

The seed (a Python 2 proof of concept of timeseries data pipelines for network-capture
validation) had ``src/util/MultiProcessing.py``: a "Singleton class wrapper around
``pathos.multiprocessing`` allowing for reuse of a global thread/process pool as well as clean
termination of threads/processes atexit and onKeyboardInterupt". Its users wrote
``MultiProcessing().GlobalProcessPool()``, ``.GlobalThreadPool()``, ``.onExit()``. Those names
stay, as aliases of the Runtime's own API and nothing more, because code and notes written
against the seed use them (tests/test_seed_usages.py): ``MultiProcessing`` is ``Runtime``
(the same singleton), and the methods below are what ``Runtime`` inherits from ``SeedNames``.
New code uses ``Runtime``, ``process_pool()``, ``thread_pool()``, ``manager()``, ``shutdown()``.

The seed's other names live where their objects do, each pointing here: ``END == queue.Empty``
(the seed ended a queue by putting the ``queue.Empty`` class: channels/end.py accepts it and
compares equal), and ``run()`` that starts and returns self (``QueueMultiplexer().run()``,
``EventManager(queue).run()``), which is ``SeedStart`` below: the package's word for that is
``start()``, and an Actor's ``run()`` is its loop, as a Thread's is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import multiprocess

__all__ = ["MultiProcessing", "SeedNames", "SeedStart"]  # noqa: F822 (MultiProcessing: module __getattr__)


class SeedNames:
    """``MultiProcessing().GlobalProcessPool()`` and friends, on top of the Runtime's own API."""

    # Provided by Runtime: process_pool(), thread_pool(), manager(), shutdown(), _lock, _shared_lock.
    _lock: Any
    _shared_lock: Any

    def GlobalProcessPool(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.process_pool()

    def GlobalThreadPool(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.thread_pool()

    ProcessPool = GlobalProcessPool
    ThreadPool = GlobalThreadPool

    def Manager(self) -> Any:  # noqa: N802
        return self.manager()

    def Lock(self) -> Any:  # noqa: N802
        """One process-shared lock, made before the actors that use it are started."""
        with self._lock:
            if self._shared_lock is None:
                self._shared_lock = multiprocess.get_context("fork").Lock()
            return self._shared_lock

    def onExit(self) -> None:  # noqa: N802
        self.shutdown()

    onKeyboardInterupt = onExit  # noqa: N815 (the seed's spelling)


class SeedStart:
    """The seed's ``run()``: start (once; later calls do nothing) and return self, so it chains.

    For classes whose own word is ``start()`` and that say whether they were ``started``.
    """

    if TYPE_CHECKING:  # provided by the class (a stub here would shadow Actor.start)
        started: bool

        def start(self) -> Any: ...

    def run(self) -> Self:
        """The seed's name for ``start()``: starts once, returns self (``X().run()`` chains)."""
        if not self.started:
            self.start()
        return self


def __getattr__(name: str) -> Any:
    """``MultiProcessing``: the seed's name for ``Runtime`` (looked up here on first use:
    runtime.py builds Runtime on SeedNames, so this module cannot import it at its top)."""
    if name == "MultiProcessing":
        from .runtime import Runtime

        return Runtime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
