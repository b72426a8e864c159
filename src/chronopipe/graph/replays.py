"""The Pipeline's side of chronopipe.delivery: which nodes replay, the run's sink, ``replay(path)``.

:class:`Deliveries` is a mixin of Pipeline (pipeline.py), as ConsecutionExtras is of Node: when
a run begins, ``_delivery`` resolves every node's policy (its own ``guarantee`` / ``max_retries``
over the pipeline's) and opens the run's sink when a node replays; the executors (sync.py,
actors.py) take it from there. ``replay`` reads a dead-letter file and hands its records to the
nodes that failed them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..delivery import (
    TRACK_LAST,
    DeadLetterFile,
    Delivery,
    FailureLog,
    Policy,
    Sink,
    open_sink,
    policy_of,
    read_dead_letters,
)
from ..delivery.state import file_of
from .node import GroupByNode, Node, RouterNode, top_down_order

__all__ = ["SAME", "Deliveries"]

#: ``replay(dead_letter=...)`` not given: the pipeline's own sink.
SAME: Any = object()


class Deliveries:
    """What Pipeline does for delivery guarantees (its attributes are set by Pipeline.__init__)."""

    policy: Policy
    dead_letter: Any
    mode: str
    top_node: Node
    _sink: Sink | None
    _failures: FailureLog | None
    _replaying: dict[str, list[Any]]
    _replay_sink: Any
    _node_lookup: dict[str, Node]
    _is_running: bool
    _run: Any
    state_dir: Any
    max_restarts: int

    if TYPE_CHECKING:  # Pipeline's
        name: str

        def initialize(self) -> None: ...

        def begin(self) -> None: ...

        def end(self) -> Any: ...

        def _finish_stats(self, state: str) -> None: ...

    def replay(self, path: str | os.PathLike[str], *, dead_letter: Any = SAME) -> Any:
        """Run the pipeline once over the dead-letter file ``path``: each record is given again
        to the node that failed it (not to the top node), before anything from upstream, and goes
        on downstream from there; nothing else is fed. Returns what end() returns.

        Records that fail again are dead-lettered (or fail the run) as the nodes' guarantees say,
        into ``dead_letter`` if given (a path or a callable), else the pipeline's own sink, which
        must then not be ``path`` itself.

        Raises:
            OSError: ``path`` cannot be read; DeadLetterFileError: a line that is not a dead letter.
            ValueError: a letter names a node this pipeline does not have, or has no pickled record,
                or the dead letters would be written onto ``path``.
            RuntimeError: the pipeline is running (call end() first).
        """
        if self._is_running:
            raise RuntimeError("cannot replay dead letters while the pipeline runs; call end() first")
        letters = read_dead_letters(path)
        self.initialize()
        unknown = sorted({letter.node for letter in letters} - set(self._node_lookup))
        if unknown:
            raise ValueError(f"{os.fspath(path)}: dead letters of nodes this pipeline does not have: {unknown}; "
                             f"its nodes are {sorted(self._node_lookup)}")
        inexact = [letter.node for letter in letters if not letter.exact]
        if inexact:
            raise ValueError(f"{os.fspath(path)}: {len(inexact)} dead letters (nodes {sorted(set(inexact))}) have no "
                             "pickled record (it could not be pickled), so they cannot be replayed")
        target = self.dead_letter if dead_letter is SAME else dead_letter
        sink = open_sink(target, self.name)
        if isinstance(sink, DeadLetterFile):
            try:
                sink.check_not_input([path])
            except ValueError:
                raise ValueError(f"replay({os.fspath(path)!r}) would write its dead letters onto the file it "
                                 "replays: give replay(path, dead_letter=OTHER_FILE_OR_CALLABLE)") from None
        self._replaying = {}
        for letter in letters:
            self._replaying.setdefault(letter.node, []).append(letter.record)
        self._replay_sink = target
        try:
            self.begin()
        finally:
            self._replaying, self._replay_sink = {}, SAME
        try:
            if self.mode == "sync":  # an actor takes its node's records itself, first thing
                self._run.replay()
        except BaseException:
            self._is_running = False
            self._finish_stats("failed")
            raise
        return self.end()

    def _delivery(self, order: list[Node]) -> Delivery | None:
        """This run's policies, sinks and acks (None when no node catches failures, nothing is
        replayed and nothing is acknowledged)."""
        policies = {}
        nodes = [n for n in order if not isinstance(n, RouterNode)]
        acks = self._wants_acks()
        for node in nodes:
            policy = policy_of(node.name, node.guarantee, node.max_retries, self.policy)
            if policy.catches and isinstance(node, GroupByNode):
                raise ValueError(f"GroupByNode {node.name!r} cannot have guarantee={policy.guarantee!r} yet (its "
                                 "process() gets batches, not records): give it guarantee='none'")
            if policy.catches:
                policies[node.name] = policy
        if acks:
            _check_ackable(nodes, self.mode)
        if not policies and not self._replaying and not acks:
            return None
        if any(p.replays for p in policies.values()) or self._replaying:
            self._sink = open_sink(self.dead_letter if self._replay_sink is SAME else self._replay_sink, self.name)
        kept = [p for p in policies.values() if not p.replays]
        failures = FailureLog(TRACK_LAST if any(p.guarantee == "track" for p in kept) else 0) if kept else None
        self._failures = failures
        return Delivery(self.name, policies, self._sink, dict(self._replaying), acks=acks,
                        max_restarts=self.max_restarts, failures=failures)

    def _wants_acks(self) -> bool:
        """Whether runs acknowledge records: a state_dir, or "confirm" / "track" for the pipeline
        or any node."""
        if self.state_dir is not None or self.policy.acks:
            return True
        self.initialize()
        return any(policy_of(n.name, n.guarantee, n.max_retries, self.policy).acks
                   for n in self._node_lookup.values() if not isinstance(n, RouterNode))

    def _check_not_input(self, iterable: Any) -> None:
        paths = [p for p in (getattr(iterable, a, None) for a in ("name", "filename", "path"))
                 if isinstance(p, (str, os.PathLike))]
        behind = file_of(iterable)  # an open file, however it was opened (by descriptor, stdin)
        if behind is not None:
            paths.append(behind)
        if not paths:
            return
        sink = open_sink(self.dead_letter, self.name)
        order = [n for n in top_down_order(self.top_node.top_node) if not isinstance(n, RouterNode)]
        if isinstance(sink, DeadLetterFile) and any(
                policy_of(n.name, n.guarantee, n.max_retries, self.policy).replays for n in order):
            sink.check_not_input(paths)


def _check_ackable(nodes: list[Node], mode: str) -> None:
    """Acknowledgements pass every node kind but a GroupByNode (it holds records across
    batches, in groups a mark would cut), and, in the sync mode, merges (a feed that waits for
    their held records would wait on itself).

    Raises:
        ValueError: naming the node.
    """
    for node in nodes:
        what = ("is a GroupByNode (it holds records across batches)" if isinstance(node, GroupByNode) else
                "merges its branches with merge_sorted, in the sync mode" if node._merge is not None and mode == "sync"
                else None)
        if what:
            raise ValueError(f"node {node.name!r} {what}: records cannot be acknowledged through it yet (guarantee "
                             "'confirm' or 'track', or a state_dir); run this pipeline without them"
                             + (", or in the threads or processes mode" if mode == "sync" else ""))
