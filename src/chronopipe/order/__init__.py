"""Order: sort keys and the sorted merge window, pure functions of records (no channel, no actor).

A leaf of the package: ``chronopipe.multiplex`` (SortedQueueMultiplexer, over channels) and
``chronopipe.graph`` (``merge_branches`` in a pipeline) both build on it; it imports nothing of
chronopipe. ``merge_sorted`` is the same window over plain iterables, in the calling thread; ``reorder``
puts a stream that is almost in order (a live source's) in order, within a bounded lateness.
"""

from .keys import Path, SortKey, fast_key_function, key_function
from .reorder import Reorder, reorder
from .window import MergeWindow, merge_sorted

__all__ = [
    "MergeWindow",
    "Path",
    "Reorder",
    "SortKey",
    "fast_key_function",
    "key_function",
    "merge_sorted",
    "reorder",
]
