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
runs) and sends its dead letters to a thread of the caller that writes the sink (plan.py); a
replaying worker process journals each batch it takes and, when it dies, the runtime starts it
again and the new one handles that batch first (``on_death``, delivery/restart.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

from ..actors.actor import Actor
from ..actors.errors import NO_RECORD as _NO_RECORD
from ..actors.home import Token, changes, track
from ..channels import ChannelBroken
from ..delivery import Delivery, Journal, SharedTally, Tally, retrying
from ..delivery.acks import Aligner, Ledger, split
from ..delivery.restart import REPLAY_CHUNK
from ..multiplex.merge import merge_channels
from ..order.window import MergeWindow
from .errors import mark
from .marks import MarkPassing
from .node import GroupByNode, shipping
from .plan import PROGRESS, Unit
from .redelivery import Redelivered
from .restarts import Restartable
from .state import node_attribute
from .sync import out_of_order
from .wiring import push_in_begin

__all__ = ["PROGRESS", "NodeActor"]

log = logging.getLogger("chronopipe.graph")


class NodeActor(MarkPassing, Restartable, Redelivered, Actor):
    """Runs one node (or one worker copy, or an ordered node's collector) as an actor."""

    broadcast = False  # its ports route and deal: each record goes to some of its outputs

    def __init__(self, unit: Unit, flags: Any, global_state: Any, delivery: Delivery | None = None,
                 ledger: Ledger | None = None, slot: int | None = None) -> None:
        super().__init__(unit.name, mode=unit.mode)
        self.unit = unit
        self.inbox = unit.inputs[0] if len(unit.inputs) == 1 and unit.merge is None else None
        self.outputs = unit.outputs()
        self._flags = flags
        self._global_state = global_state
        self._track = unit.mode != "thread" and unit.node is not None  # (its copy's changes come home)
        self._tokens: tuple[Token, Token] | None = None  # (global_state, node) in its process
        self._pipeline = delivery.pipeline if delivery is not None else ""
        owner = delivery.policy(unit.owner.name) if delivery is not None else None
        self.policy = owner if unit.node is not None else None
        #: a merge (or an ordered node's collector) under "replay" drops what a restarted writer sends again
        self._drops_repeats = owner is not None and owner.replays and unit.merge is not None
        #: retries, dead letters or failures, repeats dropped (shared memory for a process: made before the fork)
        counted = self.policy is not None or self._drops_repeats
        self.tally = (SharedTally() if unit.mode == "process" else Tally()) if counted else None
        self._release: Any = None
        self._window: MergeWindow | None = None  # a merge node's, under replay (_late)
        self._arrived: list[int] = []  # a merge under acks: records per input, and marks waiting
        self._marks: list[deque[tuple[int, int]]] = []
        self._each: Any = None  # the retrying input, a batch at a time
        self._failing: list[Any] = [_NO_RECORD]  # the record it was on when the run stopped
        #: a replaying process worker with one inbox is restarted when its process dies (restart.py)
        replays = self.policy is not None and self.policy.replays
        restartable = replays and unit.mode == "process" and self.inbox is not None
        self.journal = Journal(self.policy.attempts, delivery.max_restarts) if restartable else None  # type: ignore
        if self.journal is not None:
            self.journal.replay_total = len(unit.replayed)
        #: under acks: the marks of its inbox, and the ledger slot it confirms in when terminal
        self._aligner = Aligner(self.inbox.writers) if ledger is not None and self.inbox is not None else None
        self._ledger, self._slot = ledger, slot
        self._max_restarts = delivery.max_restarts if delivery is not None else 0
        if unit.mode == "ray":  # (runtime/rayhost.py) a node's copies go to different machines where it can
            spread = {"scheduling_strategy": "SPREAD"} if unit.worker is not None else {}
            self.ray_options = {**spread, **(unit.owner.ray_options or {})}

    def inputs(self) -> list[Any]:
        return list(self.unit.inputs)

    def shipping(self) -> Any:
        """Pickled for a Ray worker, its nodes go alone (node.shipping)."""
        return shipping()

    # -- begin ---------------------------------------------------------------------------
    def on_start(self) -> None:
        unit, node = self.unit, self.unit.node  # (a process actor's inherited heap is frozen: runtime/child.py)
        if node is None:
            return
        restored = self.redelivered and self._restored()  # a restarted Ray actor: its checkpoint, not begin()
        if self._track and not restored:  # what the node process changes comes home (state.py, actors/home.py)
            self._tokens = (track(self._global_state, f"node {node.name!r} global_state"),
                            track(node, f"node {node.name!r}", only=node_attribute))
        if not restored:
            if isinstance(node, GroupByNode):
                node._reset_batch()
            node.push = push_in_begin(node)  # type: ignore[method-assign]
            self._wait_for_parents()
            node.begin()
        node.push = unit.push  # type: ignore[method-assign,assignment]
        if self.policy is not None:  # its pushes wait until process() returns (delivery/retry.py)
            assert unit.entry is not None
            unit.entry, self._each, hold, self._release, self._failing = retrying(
                node, unit.entry, self.policy, self._letters(), self.tally, self._pipeline)
            hold(unit.push)
        if self.journal is not None:  # journaled; a restarted worker knows which writers ended
            self.inbox.tap = self.journal.took  # type: ignore[union-attr]
            self.inbox._ends_seen = self.journal.ends  # type: ignore[union-attr]
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
        journal = self.journal
        if journal is not None and journal.ended:  # its predecessor died after reading its input's end
            return  # on_stop: end() again in this process, then the outputs close
        if self.unit.replayed and not (journal is not None and journal.replayed_count >= len(self.unit.replayed)):
            self._run_replayed()
        if journal is not None:
            self._run_journaled(journal)
        elif self.redelivered:
            self._run_acknowledged()
        elif self.unit.merge is not None:
            self._run_merged()
        else:
            self._run_single()

    def _run_single(self) -> None:
        inbox = self.inbox
        assert inbox is not None
        for batch in self._inbox_batches(inbox):
            pieces = split(batch) if self._aligner is not None else None
            if pieces is None:
                self._handle(batch)
                continue
            for records, found in pieces:  # acks: the records, each mark passed on after those before it
                if records:
                    self._handle(records)
                if found is not None:
                    self._pass(found)

    def _run_acknowledged(self) -> None:
        """A replaying node on Ray: each batch acknowledged, with a checkpoint, once handled (redelivery.py)."""
        inbox = self.inbox
        assert inbox is not None
        for batch in self._inbox_batches(inbox):
            pieces = split(batch) if self._aligner is not None else None
            if pieces is None:
                self._handle(batch, count=False)
            else:
                for records, found in pieces:
                    if records:
                        self._handle(records, count=False)
                    if found is not None:
                        self._pass(found)
            self._acknowledge_batch(len(batch) if pieces is None else sum(len(r) for r, _ in pieces))

    def _blame(self, item: Any) -> None:
        """The record the error names: ``item``, or, when a batch went to the retry wrapper
        whole, the one it was on."""
        self._failed_record = item if item is not _NO_RECORD else self._failing[0]

    def _handle(self, batch: list[Any], count: bool = True) -> None:
        """One batch of the inbox (acks: the piece of it before a mark): handled, what it gave
        sent on when due, then counted (a batch is received once handled and passed on)."""
        unit, each, item = self.unit, self._each, _NO_RECORD
        entry, current = unit.entry, unit.current
        assert entry is not None
        try:
            if current is not None:  # an ordered worker: items come numbered, what it pushes carries the number
                for current[0], item in batch:
                    entry(item)
                if batch:
                    unit.ports[0].pending.append((current[0], PROGRESS))
            elif each is not None:  # retrying (delivery): a batch per call
                each(batch)
            else:
                for item in batch:
                    entry(item)
        except BaseException:
            self._blame(item)
            raise
        self._flush_ports()
        if count:
            self.counts.received += len(batch)

    def _run_replayed(self) -> None:
        """The records re-injected at this node, before its inbox. They are numbered below 0 in
        file order, so an ordered node's collector sends on what they give first, in that order."""
        unit, records, journal = self.unit, self.unit.replayed, self.journal
        assert unit.entry is not None
        entry, current = unit.entry, unit.current
        item: Any = _NO_RECORD
        start = journal.replayed_count if journal is not None else 0  # a restarted worker goes on
        step = REPLAY_CHUNK if journal is not None else len(records) or 1
        for lo in range(start, len(records), step):
            chunk = records[lo:lo + step]
            try:
                for number, item in chunk:
                    if current is not None:
                        current[0] = number
                    entry(item)
            except BaseException:
                self._blame(item)
                raise
            if journal is not None:  # handled and sent on: a restarted worker does not do them again
                self.flush()
                journal.replayed(lo + len(chunk))
            self.counts.received += len(chunk)
        if current is not None:
            unit.ports[0].pending.append((current[0], PROGRESS))
        self._flush_ports()

    def _run_merged(self) -> None:
        """Several inputs merged by key (merge_sorted) or by sequence number (a collector).

        The loop is merge_channels' (multiplex/merge.py) with ``drain=True``: every input is
        drained as soon as it has something, so a branch that is silent for a while never blocks
        the others (what they send waits in the window meanwhile). An empty batch means it took
        records but the window waits on a branch: what we hold may still be due (_flush_ports)."""
        unit = self.unit
        assert unit.merge is not None
        window = self._window = MergeWindow(unit.merge[0], unit.merge[1], self._late)  # type: ignore[arg-type]
        deliver = self._collected if unit.node is None else unit.entry
        assert deliver is not None
        record: Any = _NO_RECORD
        sift = self._sift if self._ledger is not None else None
        self._arrived, self._marks = [0] * len(unit.inputs), [deque() for _ in unit.inputs]
        for records in merge_channels(unit.inputs, window, drain=True, stopped=lambda: self.stopping,
                                      before_wait=self.flush, counts=self.counts, sift=sift):
            try:
                for record in records:
                    deliver(record)
            except BaseException:
                self._failed_record = record
                raise
            self._flush_ports()
            if sift is not None:
                self._pass_merged(window)

    def _collected(self, record: tuple[Any, Any]) -> None:
        if record[1] is not PROGRESS:
            self.unit.push(record[1])  # type: ignore[misc]

    def _late(self, i: int, record: Any, floor: Any) -> None:
        """A record out of order: an error, unless (under "replay") it is a copy of one its
        branch (or worker) sent before, sent again by a restarted worker (no later than the
        branch's last key): then it is dropped and counted, so the merge stays in order."""
        window = self._window
        if self._drops_repeats and window is not None and window.is_repeat(i, record):
            assert self.tally is not None
            self.tally.dropped += 1
            return
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
        result: dict[str, Any] | None = None
        if self._track and self._tokens is not None:
            state, attrs = self._tokens
            result = {"state": changes(state, self._global_state), "attrs": changes(attrs, node)}
        if unit.mode == "ray" and self.tally is not None:  # its tally comes home with it
            result = {**(result or {}), "tally": (self.tally.retried, self.tally.dead_lettered, self.tally.dropped)}
        if self.journal is not None:
            self.journal.close()  # from here a death is not restarted: its outputs may have sent END
        return result
