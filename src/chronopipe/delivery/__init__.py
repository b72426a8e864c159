"""Delivery guarantees for pipelines (issue 17): retries of a failing record, and dead letters.

``Pipeline(..., guarantee="replay", max_retries=3, dead_letter="dl.jsonl")`` retries a record
whose ``process()`` raises, then writes it to the dead-letter sink and goes on; ``"none"`` (the
default) fails the run as before. This package holds what that needs below ``chronopipe.graph``:
the checked policy (policy.py), the DeadLetter and its file format (letters.py), the sinks
(sinks.py) and the retry wrapper a node's input runs through (retry.py). docs/delivery.md says
what each guarantee promises, and what is not there yet.

>>> from chronopipe.graph import Node, Pipeline
>>> class Parse(Node):
...     def process(self, item):
...         self.push(int(item))
>>> letters = []
>>> pipeline = Pipeline(Parse("parse"), guarantee="replay", max_retries=1, dead_letter=letters.append)
>>> pipeline.consume(["1", "x", "3"])
>>> [(d.node, d.attempts, d.record, d.error_type) for d in letters]
[('parse', 2, 'x', 'ValueError')]
"""

from .acks import Aligner, Ledger, Mark, split
from .handlers import ReplayingHandler, replaying
from .letters import FORMAT_VERSION, DeadLetter, DeadLetterFileError, preview, read_dead_letters
from .policy import DEFAULT_MAX_RETRIES, GUARANTEES, Policy, policy_of
from .restart import Journal, Resume, WorkerKilledError
from .retry import Retrying, SharedTally, Tally, retrying
from .run import Delivery
from .sinks import (
    SINK_ACTOR,
    TRACK_LAST,
    CallableSink,
    DeadLetterFile,
    DeadLetterSinkError,
    FailureLog,
    Sink,
    default_path,
    open_sink,
    to_channel,
)
from .state import StateError, StateFile, source_identity
from .upsert import UpsertStatistics, UpsertStore

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "FORMAT_VERSION",
    "GUARANTEES",
    "SINK_ACTOR",
    "TRACK_LAST",
    "Aligner",
    "CallableSink",
    "DeadLetter",
    "DeadLetterFile",
    "DeadLetterFileError",
    "DeadLetterSinkError",
    "Delivery",
    "FailureLog",
    "Journal",
    "Ledger",
    "Mark",
    "Policy",
    "ReplayingHandler",
    "Resume",
    "Retrying",
    "SharedTally",
    "Sink",
    "StateError",
    "StateFile",
    "Tally",
    "UpsertStatistics",
    "UpsertStore",
    "WorkerKilledError",
    "default_path",
    "open_sink",
    "policy_of",
    "preview",
    "read_dead_letters",
    "replaying",
    "retrying",
    "source_identity",
    "split",
    "to_channel",
]
