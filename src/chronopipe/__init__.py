"""chronopipe: actor-based multiprocessing pipelines for timestamped data.

Read many files or streams at once, merge them in chronological order, decode records
and dispatch them to checks, on all cores, with clean teardown.
"""

# Layers, bottom up (each imports only those below it; .importlinter, checked by lint-imports):
# channels, either -> actors, messages -> control -> runtime -> order -> readers, multiplex
# -> sources -> events -> delivery -> graph -> scl -> capture, testing, distribute -> runs -> cli.
# Names are imported on first use (PEP 562), so ``import chronopipe`` loads none of them (no PLY,
# no capture code), the command line starts fast and a Ctrl-C during start-up is the command's to
# handle.
import importlib  # already loaded by the interpreter: costs nothing

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up

if TYPE_CHECKING:
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

_HOMES = {
    ".actors": ("Actor", "ActorError", "ActorStatistics"),
    ".channels": ("END", "Channel", "ChannelBroken", "ChannelStatistics", "ProcessChannel", "ThreadChannel", "is_end"),
    ".either": ("Either", "Left", "Pending", "Right"),
    ".events": ("Condition", "EventManager", "EventStatistics", "Subscription"),
    ".graph": ("Clock", "GlobalState", "GroupByNode", "Node", "NodeStatistics", "OutOfOrderError", "Pipeline",
               "PipelineStatistics", "RouteError"),
    ".multiplex": ("MergeReport", "QueueMultiplexer", "SortedQueueMultiplexer", "merge_sorted"),
    ".readers": ("CSVReader", "FileReader", "ReaderError", "ReaderStatistics", "ReaderSummary", "Reject"),
    ".runtime": ("MultiProcessing", "PoolTask", "Runtime"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

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



def __getattr__(name: str) -> object:
    """Import a public name from its module on first use (``chronopipe.Runtime``, ``from chronopipe import END``)."""
    if name == "scl":
        return importlib.import_module(".scl", __name__)
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

