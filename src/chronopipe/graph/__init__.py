"""Pipelines of nodes composed with ``|`` (consecution's API), run on one thread, on threads or
on processes.

>>> from chronopipe.graph import Node, Pipeline
>>> class Upper(Node):
...     def process(self, item):
...         self.push(item.upper())
>>> class Show(Node):
...     def process(self, item):
...         print(item)
>>> Pipeline(Upper("upper") | Show("show")).consume(["a", "b"])
A
B
"""

from .clock import Clock
from .compose import MergeSorted, merge_branches, merge_sorted
from .node import GroupByNode, Node, RouteError
from .pipeline import NodeStatistics, Pipeline, PipelineStatistics
from .state import GlobalState
from .sync import OutOfOrderError
from .upsert import UpsertSink

__all__ = [
    "Clock",
    "GlobalState",
    "GroupByNode",
    "MergeSorted",
    "Node",
    "NodeStatistics",
    "OutOfOrderError",
    "Pipeline",
    "PipelineStatistics",
    "RouteError",
    "UpsertSink",
    "merge_branches",
    "merge_sorted",  # merge_branches' name before 0.2 (deprecated)
]
