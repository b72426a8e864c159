"""Multiplexers: join channels first come first out, or merged in order of a key."""

from .fifo import QueueMultiplexer
from .inputs import QueueInput
from .keys import SortKey, key_function
from .sorted import MergeReport, SortedQueueMultiplexer

__all__ = ["MergeReport", "QueueInput", "QueueMultiplexer", "SortKey", "SortedQueueMultiplexer", "key_function"]
