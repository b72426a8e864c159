"""Multiplexers: join channels first come first out, or merged in order of a key."""

from .fifo import QueueMultiplexer
from .inputs import QueueInput
from .keys import SortKey, key_function
from .sorted import MergeReport, SortedQueueMultiplexer
from .window import MergeWindow, merge_sorted

__all__ = [
    "MergeReport",
    "MergeWindow",
    "QueueInput",
    "QueueMultiplexer",
    "SortKey",
    "SortedQueueMultiplexer",
    "key_function",
    "merge_sorted",
]
