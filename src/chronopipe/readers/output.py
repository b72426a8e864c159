"""QueueOutput: the write side of a Channel over any object with ``put()``.

It lives in :mod:`chronopipe.channels.queues` (a channel adapter, below the multiplexers that
use it too); this name stays for the code that imports it from here.
"""

from ..channels.queues import QueueOutput, mode_of

__all__ = ["QueueOutput", "mode_of"]
