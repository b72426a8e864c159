"""The ``threads`` and ``processes`` modes: every node an actor on the Runtime (layout: plan.py).

Order of events, as in the sync mode:

* each node actor runs its node's ``begin()`` after the ``begin()`` of every node upstream, and
  the caller sends the first item only once every node has begun;
* a node's ``end()`` runs once its inbox has ended, i.e. after every parent's ``end()`` (a
  parent closes its outputs after its end(), and a node's inbox ends after all its writers);
* ``consume()`` returns once every actor has ended; then what process nodes changed in
  ``global_state`` and in their own attributes is applied here (state.py).

When a node raises, the Runtime stops every actor of the pipeline (and wakes whoever waits on
their channels) and the caller gets an ActorError naming the node, with its traceback and item.
Under ``guarantee="replay"`` it retries instead (delivery's ``retrying`` wraps its input where it
runs) and sends its dead letters to a thread of the caller that writes the sink (plan.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import multiprocess

from ..actors.actor import Actor
from ..actors.errors import NO_RECORD as _NO_RECORD
from ..actors.errors import ActorError
from ..actors.home import Token, apply, changes, track
from ..channels import ChannelBroken
from ..delivery import SINK_ACTOR, Delivery, SharedTally, Tally, retrying, to_channel
from ..multiplex.merge import merge_channels
from ..order.window import MergeWindow
from ..runtime import Runtime
from .errors import from_actor_error, mark
from .node import GroupByNode, Node
from .plan import Plan, Unit, build_plan
from .state import node_attribute
from .sync import out_of_order
from .wiring import LIMIT, lingering, push_in_begin, stdout_write

__all__ = ["PROGRESS", "ActorRun", "NodeActor"]

log = logging.getLogger("chronopipe.graph")
_ctx = multiprocess.get_context("fork")
#: How long the caller waits for actors to end once the run was cancelled (they take ~1 s at most).
CANCEL_WAIT = 5.0
_PIPELINE_MODE = {"thread": "threads", "process": "processes"}


class _Progress:
    """Marker an ordered worker sends after each batch: "I am past this sequence number"."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "PROGRESS"

    def __repr__(self) -> str:
        return "PROGRESS"


PROGRESS = _Progress()


class NodeActor(Actor):
    """Runs one node (or one worker copy, or an ordered node's collector) as an actor."""

    broadcast = False  # its ports route and deal: each record goes to some of its outputs

    def __init__(self, unit: Unit, flags: Any, global_state: Any, delivery: Delivery | None = None) -> None:
        super().__init__(unit.name, mode=unit.mode)
        self.unit = unit
        self.inbox = unit.inputs[0] if len(unit.inputs) == 1 and unit.merge is None else None
        self.outputs = unit.outputs()
        self._flags = flags
        self._global_state = global_state
        self._track = unit.mode == "process" and unit.node is not None
        self._tokens: tuple[Token, Token] | None = None  # (global_state, node) in its process
        self._pipeline = delivery.pipeline if delivery is not None else ""
        self.policy = delivery.policy(unit.owner.name) if delivery is not None and unit.node is not None else None
        #: retries and dead letters under "replay" (shared memory for a process: made before the fork)
        self.tally = (SharedTally() if unit.mode == "process" else Tally()) if self.policy is not None else None
        self._release: Any = None
        self._each: Any = None  # the retrying input, a batch at a time

    def inputs(self) -> list[Any]:
        return list(self.unit.inputs)

    # -- begin ---------------------------------------------------------------------------
    def on_start(self) -> None:
        unit, node = self.unit, self.unit.node  # (a process actor's inherited heap is frozen: runtime/child.py)
        if node is None:
            return
        if self._track:  # what the node process changes comes home (state.py, actors/home.py)
            self._tokens = (track(self._global_state, f"node {node.name!r} global_state"),
                            track(node, f"node {node.name!r}", only=node_attribute))
        if isinstance(node, GroupByNode):
            node._reset_batch()
        node.push = push_in_begin(node)  # type: ignore[method-assign]
        self._wait_for_parents()
        node.begin()
        node.push = unit.push  # type: ignore[method-assign,assignment]
        if self.policy is not None:  # its pushes wait until process() returns (delivery/retry.py)
            assert unit.entry is not None
            unit.entry, self._each, hold, self._release = retrying(
                node, unit.entry, self.policy, to_channel(unit.dead_letters), self.tally, self._pipeline)
            hold(unit.push)
        self._flags[unit.flag] = 1

    def _wait_for_parents(self) -> None:
        flags, delay = self._flags, 0.0005
        while not all(flags[i] for i in self.unit.after):
            if self._stop[0]:
                raise ChannelBroken(f"node {self.name!r} was stopped before it began")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # -- items ---------------------------------------------------------------------------
    def run(self) -> None:
        if self.unit.replayed:
            self._run_replayed()
        if self.unit.merge is not None:
            self._run_merged()
        else:
            self._run_single()

    def _run_single(self) -> None:
        inbox, unit = self.inbox, self.unit
        assert inbox is not None and unit.entry is not None
        entry, ports, current, each = unit.entry, unit.ports, unit.current, self._each
        item: Any = _NO_RECORD
        for batch in self._inbox_batches(inbox):
            try:
                if current is None and each is not None:  # retrying (delivery): a batch per call
                    each(batch)
                elif current is None:
                    for item in batch:
                        entry(item)
                else:  # an ordered worker: items come numbered, what it pushes carries the number
                    for current[0], item in batch:
                        entry(item)
                    if batch:
                        ports[0].pending.append((current[0], PROGRESS))
            except BaseException:
                self._failed_record = item
                raise
            self._flush_ports()
            self.counts.received += len(batch)  # after the send: a batch is received once handled and passed on

    def _run_replayed(self) -> None:
        """The records re-injected at this node, before its inbox. They are numbered below 0 in
        file order, so an ordered node's collector sends on what they give first, in that order."""
        unit, records = self.unit, self.unit.replayed
        assert unit.entry is not None
        entry, current = unit.entry, unit.current
        item: Any = _NO_RECORD
        try:
            for number, item in records:
                if current is not None:
                    current[0] = number
                entry(item)
        except BaseException:
            self._failed_record = item
            raise
        if current is not None:
            unit.ports[0].pending.append((current[0], PROGRESS))
        self._flush_ports()
        self.counts.received += len(records)

    def _run_merged(self) -> None:
        """Several inputs merged by key (merge_sorted) or by sequence number (a collector).

        The loop is merge_channels' (multiplex/merge.py) with ``drain=True``: every input is
        drained as soon as it has something, so a branch that is silent for a while never blocks
        the others (what they send waits in the window meanwhile). An empty batch means it took
        records but the window waits on a branch: what we hold may still be due (_flush_ports)."""
        unit = self.unit
        assert unit.merge is not None
        window = MergeWindow(unit.merge[0], unit.merge[1], self._late)  # type: ignore[arg-type]
        deliver = self._collected if unit.node is None else unit.entry
        assert deliver is not None
        record: Any = _NO_RECORD
        for records in merge_channels(unit.inputs, window, drain=True, stopped=lambda: self.stopping,
                                      before_wait=self.flush, counts=self.counts):
            try:
                for record in records:
                    deliver(record)
            except BaseException:
                self._failed_record = record
                raise
            self._flush_ports()

    def _collected(self, record: tuple[Any, Any]) -> None:
        if record[1] is not PROGRESS:
            self.unit.push(record[1])  # type: ignore[misc]

    def _late(self, i: int, record: Any, floor: Any) -> None:
        branch = self.unit.inputs[i].name.split("->")[0]
        raise mark(out_of_order(self.unit.owner.name, branch, record, floor), self.unit.owner.name, record)

    def _flush_ports(self) -> None:
        """After an input batch: send what is due (wiring.Port)."""
        now = time.monotonic()
        for port in self.unit.ports:
            port.flush_due(now)
        self.counts.emitted = sum(port.sent for port in self.unit.ports)

    def flush(self) -> None:
        """Send everything pushed so far (the actor is about to wait, or to end)."""
        for port in self.unit.ports:
            port.flush()
        self.counts.emitted = sum(port.sent for port in self.unit.ports)
        super().flush()

    # -- end -----------------------------------------------------------------------------
    def on_stop(self) -> Any:
        if self.stopping:
            return None  # cancelled: a failed pipeline does not end its nodes
        self._failed_record = _NO_RECORD
        unit, node = self.unit, self.unit.node
        if node is not None:
            if unit.current is not None:
                unit.current[0] = math.inf  # what end() pushes comes after everything else
            if self._release is not None:
                self._release()  # what end() pushes goes straight on
            node.end()
        self.flush()
        if not self._track or self._tokens is None:
            return None
        state, attrs = self._tokens
        return {"state": changes(state, self._global_state), "attrs": changes(attrs, node)}


class ActorRun:
    """One run of a pipeline's nodes as actors."""

    def __init__(self, order: list[Node], mode: str, global_state: Any, delivery: Delivery | None = None) -> None:
        self.order = order
        self.mode = mode
        self.global_state = global_state
        self.delivery = delivery
        self.actors: list[Actor] = []
        self.plan: Plan | None = None
        self._node_of: dict[str, str] = {}

    # -- begin ---------------------------------------------------------------------------
    def begin(self) -> None:
        delivery = self.delivery
        self.plan = plan = build_plan(self.order, self.mode, _flags, delivery=delivery)
        self._node_of = {u.name: u.owner.name for u in plan.units}
        self.actors = [NodeActor(u, plan.flags, self.global_state, delivery) for u in plan.units]
        if plan.log is not None:  # what node processes log is written here, to this stdout
            self.actors.append(Actor("node-log", stdout_write, inbox=plan.log, mode="thread"))
        if plan.dead_letters is not None:  # every node's dead letters reach the sink on this thread
            assert delivery is not None
            self.actors.append(Actor(SINK_ACTOR, delivery.sink.write, inbox=plan.dead_letters, mode="thread"))
        runtime = Runtime()
        log.info("pipeline %s: starting %d actors (%s)", self.order[0].name, len(self.actors),
                 ", ".join(f"{a.name}:{a.mode}" for a in self.actors))
        try:  # processes first: fork before this run's threads exist
            for actor in sorted(self.actors, key=lambda a: a.mode != "process"):
                runtime.start(actor)
            self._wait_begun()
        except BaseException as exc:
            raise self._fail(exc) from None

    def _wait_begun(self) -> None:
        assert self.plan is not None
        flags, delay = self.plan.flags, 0.0005
        node_units = [u for u in self.plan.units if u.node is not None]
        while not all(flags[u.flag] for u in node_units):
            if any(a.state != "running" for a in self.actors):
                raise ChannelBroken("an actor ended before every node began")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # -- items ---------------------------------------------------------------------------
    def feed(self, iterable: Iterable[Any]) -> None:
        plan = self.plan
        assert plan is not None
        try:
            channel = plan.feed_channel
            if channel is not None and isinstance(iterable, (list, tuple, range)):
                for start in range(0, len(iterable), LIMIT):  # whole batches, sent as they are
                    channel.put_many(list(iterable[start:start + LIMIT]))
            elif channel is not None:  # stream straight in (a live source's items go as they come)
                channel.put_many(iter(iterable))
            else:  # an iterator may pause (a live source): what came meanwhile leaves when due
                sized = isinstance(iterable, (list, tuple, range))
                with nullcontext() if sized else lingering(plan.feed_ports):
                    deque(map(plan.feed, iterable), maxlen=0)
                for port in plan.feed_ports:
                    port.flush()
        except BaseException as exc:
            raise self._fail(exc) from None

    def push(self, item: Any) -> None:
        plan = self.plan
        assert plan is not None
        try:
            if plan.feed_channel is not None:
                plan.feed_channel.put(item)
            else:
                plan.feed(item)
                for port in plan.feed_ports:
                    port.flush()
        except BaseException as exc:
            raise self._fail(exc) from None

    # -- end -----------------------------------------------------------------------------
    def end(self) -> None:
        plan = self.plan
        assert plan is not None
        try:
            for port in plan.feed_ports:
                port.flush()
            for channel in self._feed_channels():
                channel.close()
            for actor in self.actors:
                while not actor._done.wait(0.1):  # short waits: Ctrl-C is handled meanwhile
                    pass
        except BaseException as exc:
            raise self._fail(exc) from None
        if any(a.error is not None for a in self.actors):
            raise self._fail(None)
        self._apply_changes()
        log.info("pipeline %s: %d actors finished", self.order[0].name, len(self.actors))

    def _feed_channels(self) -> list[Any]:
        assert self.plan is not None
        if self.plan.feed_channel is not None:
            return [self.plan.feed_channel]
        return [ch for port in self.plan.feed_ports for ch in port.channels]

    def _apply_changes(self) -> None:
        """Bring back what node processes changed (state.py), node by node in top-down order."""
        by_unit = {id(a.unit): a for a in self.actors if isinstance(a, NodeActor)}
        assert self.plan is not None
        for node in self.order:
            for unit in self.plan.by_node.get(node.name, ()):
                result = by_unit[id(unit)].result
                if not result:
                    continue
                apply(self.global_state, result["state"])
                apply(node, result["attrs"])

    # -- failure -------------------------------------------------------------------------
    def _fail(self, exc: BaseException | None) -> BaseException:
        """Stop every actor of this run; what the caller should get."""
        reason = ActorError("pipeline", "Cancelled", "the pipeline stopped before its end "
                            f"({type(exc).__name__ if exc is not None else 'a node failed'})")
        Runtime().cancel(self.actors, reason, wait=CANCEL_WAIT)
        root = self._root_error()
        if exc is None or isinstance(exc, (ActorError, ChannelBroken)):
            return root or exc or RuntimeError("the pipeline stopped without an error")
        return exc  # the caller's iterable raised, or Ctrl-C: theirs, as it is

    def _root_error(self) -> ActorError | None:
        failed = [a for a in self.actors if a.state == "failed" and a.error is not None]
        if failed:
            first = min(failed, key=lambda a: a.ended_at or 0.0)
            assert first.error is not None
            return from_actor_error(first.error, self._node_of.get(first.error.actor, first.error.actor))
        for actor in self.actors:
            if actor.error is not None and actor.error.actor != "pipeline":
                return from_actor_error(actor.error, self._node_of.get(actor.error.actor, actor.error.actor))
        return None

    # -- statistics ----------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, Any]]:
        """Per node: how it was hosted, its workers, what they received and what the node sent on."""
        out: dict[str, dict[str, Any]] = {}
        for actor in self.actors:
            if not isinstance(actor, NodeActor):
                continue
            unit, stats = actor.unit, actor.statistics()
            c = out.setdefault(unit.owner.name, {"mode": _PIPELINE_MODE[unit.mode], "workers": 0, "received": 0,
                                                 "sent": 0, "state": stats.state, "retried": 0, "dead_lettered": 0})
            if unit.node is not None:
                c["workers"] += 1
                c["received"] += stats.received
            if actor.tally is not None:
                c["retried"] += int(actor.tally.retried)
                c["dead_lettered"] += int(actor.tally.dead_lettered)
            if unit.current is None:  # an ordered worker sends to its collector, which sends on
                c["sent"] += stats.emitted
            if stats.state != "finished":
                c["state"] = stats.state
        return out


def _flags(n: int, shared: bool) -> Any:
    """``n`` "begun" bytes: shared memory when processes take part (no lock a dying process could hold)."""
    return memoryview(_ctx.RawArray("B", max(n, 1))).cast("B") if shared else bytearray(max(n, 1))
