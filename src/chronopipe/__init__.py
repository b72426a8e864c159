"""chronopipe: actor-based multiprocessing pipelines for timestamped data.

Read many files or streams at once, merge them in chronological order, decode records
and dispatch them to checks, on all cores, with clean teardown.
"""

import logging

from . import scl
from .actors import Actor, ActorError, ActorStatistics
from .channels import END, Channel, ChannelBroken, ChannelStatistics, ProcessChannel, ThreadChannel, is_end
from .either import Either, Left, Pending, Right
from .events import Condition, EventManager, EventStatistics, Subscription
from .multiplex import MergeReport, QueueMultiplexer, SortedQueueMultiplexer, merge_sorted
from .readers import CSVReader, FileReader, ReaderError, ReaderStatistics, ReaderSummary, Reject
from .runtime import MultiProcessing, PoolTask, Runtime

__version__ = "0.1.0"

__all__ = [
    "END",
    "Actor",
    "ActorError",
    "ActorStatistics",
    "CSVReader",
    "Channel",
    "ChannelBroken",
    "ChannelStatistics",
    "Condition",
    "Either",
    "EventManager",
    "EventStatistics",
    "FileReader",
    "Left",
    "MergeReport",
    "MultiProcessing",
    "Pending",
    "PoolTask",
    "ProcessChannel",
    "QueueMultiplexer",
    "ReaderError",
    "ReaderStatistics",
    "ReaderSummary",
    "Reject",
    "Right",
    "Runtime",
    "SortedQueueMultiplexer",
    "Subscription",
    "ThreadChannel",
    "is_end",
    "merge_sorted",
    "scl",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
