"""QueueInput: read any queue with ``get()`` as if it were a Channel (get_batch, END).

It lives in :mod:`chronopipe.channels.queues`, beside its write side QueueOutput; this name
stays for the code that imports it from here.
"""

from ..channels.queues import DRAIN, QueueInput, as_input

__all__ = ["DRAIN", "QueueInput", "as_input"]
