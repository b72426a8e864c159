"""The seed's ``MultiProcessing`` method names, kept so its documented usage works."""

from __future__ import annotations

from typing import Any

import multiprocess

__all__ = ["SeedNames"]


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
