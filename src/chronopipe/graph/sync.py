"""The ``sync`` mode: consecution's semantics, on the caller's thread.

``push(item)`` calls the next node's ``process`` directly, so an item travels depth first
through the whole graph before the next one enters. Pushes are wired once when the pipeline
begins (a node with one downstream node pushes straight into its ``process``), the input loop
runs in C (``map``), and nothing is checked per item: when a node raises, the traceback says
which node it was and with what item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..delivery import SINK_ACTOR, DeadLetterSinkError, Delivery, Retrying, Tally, retrying
from ..delivery.acks import Ledger
from ..order.window import MergeWindow
from .errors import NO_ITEM, find_origin, mark, node_error
from .node import GroupByNode, Node, RouterNode
from .wiring import MARKED, Target, fed_in_batches, input_of, make_push, output_of, push_in_begin, route_to

__all__ = ["OutOfOrderError", "SyncRun"]

#: Items a sorted merge collects from a branch before it feeds them to the merge window.
MERGE_BATCH = 256


class OutOfOrderError(ValueError):
    """A branch of merge_sorted sent an item whose key comes before the previous one's."""


class SyncRun:
    """One run of a pipeline's nodes on this thread."""

    mode = "sync"

    def __init__(self, order: list[Node], write: Callable[[str], Any], delivery: Delivery | None = None) -> None:
        self.order = order
        self.nodes = [n for n in order if not isinstance(n, RouterNode)]
        self._by_id = {id(n): n for n in self.nodes}
        self._write = write
        self._merges: dict[Node, SortedInput] = {}
        self._ends_after: dict[Node, list[tuple[SortedInput, int]]] = {}
        self.entry: Target = self._not_begun
        self.delivery = delivery  # nodes under guarantee="replay" (chronopipe.delivery), or None
        self._retries: dict[Node, Retrying] = {}
        self._tallies: dict[str, Tally] = {}
        #: under acks: a record is done with when the call that fed it returns
        self.ledger = Ledger(1) if delivery is not None and delivery.acks else None

    def _not_begun(self, item: Any) -> None:
        raise RuntimeError("the pipeline has not begun")

    # -- begin -------------------------------------------------------------------------
    def begin(self) -> None:
        pushes = {node: self._push_of(node) for node in self.nodes}
        for node in self.nodes:
            node.push = push_in_begin(node)  # type: ignore[method-assign]
            if isinstance(node, GroupByNode):
                node._reset_batch()
        for node in self.nodes:
            try:
                node.begin()
            except Exception as exc:
                raise node_error(node.name, exc) from None
        for node, push in pushes.items():
            node.push = push  # type: ignore[method-assign]
            node._process = self._input(node)  # type: ignore[attr-defined]
            if node in self._retries:  # its pushes wait until process() returns (delivery/retry.py)
                routed = any(isinstance(d, RouterNode) for d in node._downstream_nodes)
                self._retries[node].hold(self._owned(node, push) if routed else push)
        self.entry = self.nodes[0]._process  # type: ignore[attr-defined]

    def _owned(self, node: Node, push: Target) -> Target:
        """``push``, a router's error in it being ``node``'s (as when it pushes from its process()):
        held-back pushes are sent after process() returned, so no frame of ``node`` says it."""
        nodes = self._by_id

        def push_of_node(item: Any) -> None:
            try:
                push(item)
            except Exception as exc:
                if find_origin(exc, nodes) is None:
                    mark(exc, node.name, item)
                raise

        return push_of_node

    def _input(self, node: Node) -> Target:
        """What receives the items sent to ``node``: input_of, retrying under "replay" (one per node)."""
        policy = self.delivery.policy(node.name) if self.delivery is not None else None
        if policy is None:
            return input_of(node, self._write)
        retry = self._retries.get(node)
        if retry is None:
            assert self.delivery is not None
            tally = self._tallies[node.name] = Tally()
            retry = self._retries[node] = retrying(node, input_of(node, self._write), policy,
                                                   self.delivery.write, tally, self.delivery.pipeline, count=True)
        return retry.entry

    def _push_of(self, node: Node) -> Target:
        return output_of(node, make_push([self._edge(node, d) for d in node._downstream_nodes]), self._write)

    def _edge(self, source: Node, node: Node) -> Target:
        """What receives the items ``source`` sends to ``node``."""
        if isinstance(node, RouterNode):
            return route_to(node, {d.name: self._edge(node, d) for d in node._downstream_nodes})
        if node._merge is not None:
            merge = self._merges.get(node)
            if merge is None:
                merge = self._merges[node] = SortedInput(node, self._input(node))
            return merge.port(source, self._ends_after)
        return self._input(node)

    # -- items -------------------------------------------------------------------------
    def feed(self, iterable: Iterable[Any]) -> None:
        try:
            deque(map(self.entry, iterable), maxlen=0)
        except (Exception, SystemExit) as exc:  # a node's sys.exit() too: an ActorError naming it
            raise self.error(exc) from None

    def feed_marked(self, records: Iterable[Any], offset: int, marked: Callable[[int, bool], Any]) -> None:
        """Under acks: feed ``records`` (those after ``offset``) a batch at a time, each batch
        confirmed once fed (the graph ran it through), then ``marked(offset, last)``."""
        assert self.ledger is not None
        try:
            for n in fed_in_batches(iter(records), self.entry, MARKED):
                offset += n
                for node in self.nodes:
                    node.commit()
                self.ledger.confirm(0, offset)
                marked(offset, n < MARKED)
        except (Exception, SystemExit) as exc:
            raise self.error(exc) from None

    def check(self) -> None:
        """Nothing runs beside the caller here."""

    def letters_pending(self) -> int:
        """Letters are written as the record fails, here."""
        return 0

    def push(self, item: Any) -> None:
        try:
            self.entry(item)
        except (Exception, SystemExit) as exc:
            raise self.error(exc) from None

    def replay(self) -> None:
        """Give each node the records Pipeline.replay re-injects at it (after begin, before any item)."""
        if self.delivery is None:
            return
        try:
            for node in self.nodes:
                records = self.delivery.replayed.get(node.name, ())
                if records:
                    deque(map(node._process, records), maxlen=0)  # type: ignore[attr-defined]
        except Exception as exc:
            raise self.error(exc) from None

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per node that catches failures: records received, pushes sent on, retries, dead letters
        (``"replay"``) or failures (``"confirm"``, ``"track"``)."""
        assert self.delivery is not None or not self._tallies
        return {name: {"mode": "sync", "workers": 1, "received": t.received, "sent": t.sent, "retried": t.retried,
                       _given_up(self.delivery.policies[name]): t.dead_lettered}  # type: ignore[union-attr]
                for name, t in self._tallies.items()}

    # -- end ---------------------------------------------------------------------------
    def end(self) -> None:
        for node in self.order:  # each node after all of its parents
            try:
                if node in self._retries:
                    self._retries[node].release()  # what end() pushes goes straight on
                if not isinstance(node, RouterNode):
                    node.end()
                for merge, i in self._ends_after.get(node, ()):
                    merge.end(i)
            except Exception as exc:
                raise self.error(exc, node) from None

    def error(self, exc: BaseException, default: Node | None = None) -> BaseException:
        """``exc`` as raised by the node whose code raised it (the caller's own errors unchanged)."""
        if isinstance(exc, DeadLetterSinkError):  # reported as the actor modes do
            return node_error(SINK_ACTOR, exc)
        origin = find_origin(exc, self._by_id)
        if origin is None or origin[0] is None:
            if default is None:
                return exc  # the caller's iterable raised: theirs, as it is
            origin = (default, NO_ITEM)
        node, item = origin
        return node_error(node.name, exc, item)


def _given_up(policy: Any) -> str:
    """What a node's records given up on are called in its counts."""
    return "dead_lettered" if policy.replays else "failed"


class SortedInput:
    """The input of a node that merge_sorted feeds: one port per branch, merged by key."""

    def __init__(self, node: Node, deliver: Target) -> None:
        spec = node._merge
        assert spec is not None
        self.node, self.deliver = node, deliver
        self.window = MergeWindow(spec.key, spec.direction, self._late)
        self.pending: list[list[Any]] = []
        self.branches: list[str] = []
        ranks = {b.name: i for i, b in enumerate(spec.branches)}
        self._rank = lambda n: ranks.get(n.name, len(ranks))
        self._ports: dict[Node, Target] = {}

    def port(self, source: Node, ends_after: dict[Node, list[tuple[SortedInput, int]]]) -> Target:
        if not self._ports:  # register every branch now, in merge_sorted's order: ties go to the earlier one
            for parent in sorted(self.node._upstream_nodes, key=self._rank):
                i = self.window.add()
                self.pending.append([])
                self.branches.append(parent.name)
                self._ports[parent] = self._make_port(i)
                ends_after.setdefault(parent, []).append((self, i))
        return self._ports[source]

    def _make_port(self, i: int) -> Target:
        pending, feed = self.pending[i], self._feed

        def push(item: Any) -> None:
            pending.append(item)
            if len(pending) >= MERGE_BATCH:
                feed(i)

        return push

    def _feed(self, i: int) -> None:
        batch = self.pending[i][:]
        self.pending[i].clear()
        try:
            self.window.feed(i, batch)
            records = self.window.take()
        except OutOfOrderError:
            raise
        except Exception as exc:
            raise mark(exc, self.node.name) from None
        deliver = self.deliver
        for record in records:
            deliver(record)

    def end(self, i: int) -> None:
        self._feed(i)
        self.window.end(i)
        self._feed(i)

    def _late(self, i: int, record: Any, floor: Any) -> None:
        raise mark(out_of_order(self.node.name, self.branches[i], record, floor), self.node.name, record)


def out_of_order(node: str, branch: str, record: Any, floor: Any) -> OutOfOrderError:
    return OutOfOrderError(f"merge_sorted into {node!r}: branch {branch!r} pushed {record!r:.200} after key "
                           f"{floor!r:.100}; every branch must push its items in key order")
