"""``Runtime(control="127.0.0.1:0")``: the control API (chronopipe.control) over the runtime's actors.

The server is started once per process (a second ``Runtime(control=...)`` with the same address
keeps it) and closed by ``Runtime.shutdown()`` (at exit too). ``GET /actors`` lists
``Runtime().actors()``: the running actors and the last ones that ended; ``POST /stop`` asks them
all to stop and waits for them.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["RuntimeControl"]


class RuntimeControl:
    """The runtime's control server: started by :meth:`serve`, closed by :meth:`close`."""

    def __init__(self) -> None:
        self.server: Any = None  # a chronopipe.control.ControlServer while it serves
        self.address: str | None = None
        self._lock = threading.Lock()

    def serve(self, runtime: Any, address: str) -> Any:
        """Start serving ``runtime``'s actors on ``address`` unless it does already; the server.

        Raises:
            ControlError: the address cannot be served (not HOST:PORT, taken, not loopback
                without a token, aiohttp missing).
            RuntimeError: the runtime serves its control API on another address already.
        """
        from ..control import ActorsTarget, open_control

        with self._lock:
            if self.server is not None:
                if address != self.address:
                    raise RuntimeError(f"the runtime serves its control API on {self.server.url} already "
                                       f"(asked for {address}); shut it down first")
                return self.server
            self.server = open_control(ActorsTarget("runtime", runtime.actors, kind="runtime"), address)
            self.address = address
            return self.server

    def close(self) -> None:
        """Stop serving (idempotent; raises nothing)."""
        with self._lock:
            server, self.server, self.address = self.server, None, None
        if server is not None:
            server.close()
