"""Multiplexers: join channels first come first out, or merged in order of a key."""

from ..channels.queues import QueueInput
from ..order import MergeWindow, SortKey, key_function, merge_sorted
from .fifo import QueueMultiplexer
from .sorted import MergeReport, SortedQueueMultiplexer

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
