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
from .graph import (
    Clock,
    GlobalState,
    GroupByNode,
    Node,
    NodeStatistics,
    OutOfOrderError,
    Pipeline,
    PipelineStatistics,
    RouteError,
)
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
    "Clock",
    "Condition",
    "Either",
    "EventManager",
    "EventStatistics",
    "FileReader",
    "GlobalState",
    "GroupByNode",
    "Left",
    "MergeReport",
    "MultiProcessing",
    "Node",
    "NodeStatistics",
    "OutOfOrderError",
    "Pending",
    "Pipeline",
    "PipelineStatistics",
    "PoolTask",
    "ProcessChannel",
    "QueueMultiplexer",
    "ReaderError",
    "ReaderStatistics",
    "ReaderSummary",
    "Reject",
    "Right",
    "RouteError",
    "Runtime",
    "SortedQueueMultiplexer",
    "Subscription",
    "ThreadChannel",
    "is_end",
    "merge_sorted",
    "scl",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
