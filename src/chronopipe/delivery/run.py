"""Delivery: what one run of a pipeline needs to retry and dead-letter, handed to its executor.

The Pipeline (chronopipe.graph) resolves each node's policy when a run begins and builds one
Delivery when at least one node catches failures (``"replay"``, ``"confirm"``, ``"track"``) or
records are acknowledged; the executors (graph/sync.py, graph/actors.py) wrap those nodes' input
with :func:`~chronopipe.delivery.retry.retrying` and hand their letters to ``write``.
``replayed`` holds the records ``Pipeline.replay`` re-injects, by node name: each node gets its
own before any record from upstream. ``acks`` (``"confirm"`` or ``"track"`` anywhere, or
a ``state_dir``) has the run acknowledge records a batch at a time (acks.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .letters import DeadLetter
from .policy import Policy
from .sinks import DeadLetterFile, FailureLog, Sink

__all__ = ["Delivery"]


@dataclass
class Delivery:
    """One run's policies (of the nodes that catch failures, by name), dead-letter sink (None
    when no node replays) and failure log, records to replay, whether records are acknowledged
    (``acks``; the run's executor makes the ledger), and the restart limit of worker processes.

    >>> from chronopipe.delivery import CallableSink
    >>> d = Delivery("orders", {"parse": Policy("replay", 2)}, CallableSink(print))
    >>> d.policy("parse").attempts, d.policy("load"), d.replayed
    (3, None, {})
    """

    pipeline: str
    policies: dict[str, Policy]
    sink: Sink | None
    replayed: dict[str, list[Any]] = field(default_factory=dict)
    acks: bool = False
    max_restarts: int | None = None  # deaths in a row of a worker process before the run fails (restart.py)
    failures: FailureLog | None = None  # where the failures of "confirm" and "track" nodes go
    written: int = 0  # letters handed to a sink so far (acknowledgements wait for them: acking.py)

    def write(self, letter: DeadLetter) -> None:
        """Hand a letter to where its node's policy sends it: the dead-letter sink ("replay"),
        or the failure log ("confirm", "track")."""
        policy = self.policies.get(letter.node)
        sink = self.failures if policy is not None and not policy.replays and self.failures is not None else self.sink
        assert sink is not None
        # a record that came from a node process pickled (portable): a file writes it as it is
        sink.write(letter if isinstance(sink, DeadLetterFile) else letter.restored())
        self.written += 1

    def policy(self, node: str) -> Policy | None:
        """The policy of a replaying node; None for a node under ``"none"``."""
        return self.policies.get(node)
