"""Order: sort keys and the sorted merge window, pure functions of records (no channel, no actor).

A leaf of the package: ``chronopipe.multiplex`` (SortedQueueMultiplexer, over channels) and
``chronopipe.graph`` (``merge_branches`` in a pipeline) both build on it; it imports nothing of
chronopipe. ``merge_sorted`` is the same window over plain iterables, in the calling thread.
"""

from .keys import Path, SortKey, fast_key_function, key_function
from .window import MergeWindow, merge_sorted

__all__ = ["MergeWindow", "Path", "SortKey", "fast_key_function", "key_function", "merge_sorted"]
