"""ActorRun: one run of a pipeline's nodes as actors on the Runtime (the threads and processes
modes; the node actors are in actors.py, the layout in plan.py)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import multiprocess

from ..actors.actor import Actor
from ..actors.errors import ActorError
from ..actors.home import apply
from ..channels import ChannelBroken
from ..channels.quiet import start_quiet
from ..channels.rayhub import RayInts
from ..delivery import SINK_ACTOR, Delivery
from ..delivery.acks import Ledger, Mark
from ..runtime import Runtime
from ..sources import Source
from .actors import NodeActor
from .errors import from_actor_error
from .feeding import ControlledFeed
from .node import Node
from .plan import Plan, build_plan
from .wiring import LIMIT, MARKED, fed_in_batches, fed_in_chunks, lingering, put_all, send_mark, stdout_write

__all__ = ["ActorRun"]

log = logging.getLogger("chronopipe.graph")
_ctx = multiprocess.get_context("fork")
#: How long the caller waits for actors to end once the run was cancelled (they take ~1 s at most).
CANCEL_WAIT = 5.0
#: Seconds between two looks of the feed's watcher at the run's actors (a source of ours, quiet).
WATCH = 0.05
_PIPELINE_MODE = {"thread": "threads", "process": "processes", "ray": "ray"}


class ActorRun:
    """One run of a pipeline's nodes as actors."""

    def __init__(self, order: list[Node], mode: str, global_state: Any, delivery: Delivery | None = None) -> None:
        self.order = order
        self.mode = mode
        self.global_state = global_state
        self.delivery = delivery
        self.actors: list[Actor] = []
        self.plan: Plan | None = None
        self.ledger: Ledger | None = None  # under acks
        self._node_of: dict[str, str] = {}

    # -- begin ---------------------------------------------------------------------------
    def begin(self) -> None:
        delivery = self.delivery
        self.plan = plan = build_plan(self.order, self.mode, _flags, delivery=delivery)
        self._node_of = {u.name: u.owner.name for u in plan.units}
        slots = self._ledger_slots(plan)
        shared = RayInts(len(slots)) if slots and self.mode == "ray" else None  # (else shared memory)
        ledger = self.ledger = Ledger(len(slots), shared) if slots else None
        self.actors = [NodeActor(u, plan.flags, self.global_state, delivery, ledger, slots.get(id(u)))
                       for u in plan.units]
        if plan.log is not None:  # what node processes log is written here, to this stdout
            self.actors.append(Actor("node-log", stdout_write, inbox=plan.log, mode="thread"))
        if plan.dead_letters is not None:  # every node's dead letters reach the sink on this thread
            assert delivery is not None
            self.actors.append(Actor(SINK_ACTOR, delivery.write, inbox=plan.dead_letters, mode="thread"))
        runtime = Runtime()
        log.info("pipeline %s: starting %d actors (%s)", self.order[0].name, len(self.actors),
                 ", ".join(f"{a.name}:{a.mode}" for a in self.actors))
        try:  # processes first: fork before this run's threads exist
            for actor in sorted(self.actors, key=lambda a: a.mode != "process"):
                runtime.start(actor)
            self._wait_begun()
        except BaseException as exc:
            raise self._fail(exc) from None

    def _ledger_slots(self, plan: Plan) -> dict[int, int]:
        """Under acks, a ledger slot per terminal node actor (nothing downstream), by id of its unit."""
        if self.delivery is None or not self.delivery.acks:
            return {}
        terminals = [u for u in plan.units if not any(port.channels for port in u.ports)]
        return {id(u): i for i, u in enumerate(terminals)}

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
            sized = isinstance(iterable, (list, tuple, range))
            if isinstance(iterable, ControlledFeed) and iterable.sized:  # under control: slices, a stop between
                put_part = channel.put_many if channel is not None else put_all(plan.feed)
                for part in iterable.parts(LIMIT):
                    put_part(list(part))
            elif channel is not None and sized:
                for start in range(0, len(iterable), LIMIT):  # whole batches, sent as they are
                    channel.put_many(list(iterable[start:start + LIMIT]))
            elif sized:
                deque(map(plan.feed, iterable), maxlen=0)
            else:  # an iterator may pause (a live source): records go in as they come, what came
                # meanwhile leaves when due, and a node failing is noticed between chunks (or, for a
                # source of ours waiting for data, stops it)
                put_chunk, put = (channel.put_many, channel.put) if channel is not None else (
                    put_all(plan.feed), plan.feed)
                records, stop = iterable, self._an_actor_failed
                if isinstance(iterable, ControlledFeed):  # under control: its stop flag between chunks too
                    records, (stop, put) = iterable.records, iterable.watching(stop, put)
                with self._stopping(iterable), lingering(plan.feed_ports):
                    fed_in_chunks(iter(records), put_chunk, put, stop)
            for port in plan.feed_ports:
                port.flush()
        except BaseException as exc:
            raise self._fail(exc) from None

    def _an_actor_failed(self) -> bool:
        """Whether an actor of this run has failed (its component is being torn down)."""
        return any(a.state == "failed" for a in self.actors)

    @contextmanager
    def _stopping(self, iterable: Iterable[Any]) -> Iterator[None]:
        """While feeding from one of chronopipe's sources: a watcher that stops it once an actor
        of this run failed, so a source waiting for data (quiet) does not hold the failure back."""
        iterable = iterable.fed_from if isinstance(iterable, ControlledFeed) else iterable
        if not isinstance(iterable, Source):
            yield
            return
        done = threading.Event()

        def watch() -> None:
            while not done.wait(WATCH):
                if self._an_actor_failed():
                    iterable.stop()
                    return

        watcher = start_quiet(threading.Thread(target=watch, name="chronopipe-feed-watch", daemon=True))
        try:
            yield
        finally:
            done.set()
            watcher.join()

    def feed_marked(self, records: Iterable[Any], offset: int, marked: Callable[[int, bool], Any]) -> None:
        """Under acks: feed ``records`` (those of the source after ``offset``), a mark after every
        MARKED records and after the last; ``marked(offset, last)`` follows each mark. Records go
        in as they come (a source that pauses: the lingering timer sends what waits)."""
        plan = self.plan
        assert plan is not None
        channel, it = plan.feed_channel, iter(records)
        try:
            if channel is not None and channel.mode == "process":  # streamed in by the channel, in C
                while True:
                    n = channel.put_many(itertools.islice(it, MARKED))
                    offset += n
                    self.mark(offset)
                    marked(offset, n < MARKED)
                    if n < MARKED:
                        return
            with lingering(plan.feed_ports):
                for n in fed_in_batches(it, plan.feed, MARKED):
                    offset += n
                    self.mark(offset)
                    marked(offset, n < MARKED)
        except BaseException as exc:
            raise self._fail(exc) from None

    def mark(self, offset: int) -> None:
        """Send what the feed holds, then a mark of ``offset`` into every channel it feeds."""
        assert self.plan is not None
        for channel in send_mark(self.plan.feed_ports, [], Mark(offset, -1)):
            channel.not_records = getattr(channel, "not_records", 0) + 1  # not lost when in flight (counts.py)

    def letters_pending(self) -> int:
        """Letters (dead letters, failures) the nodes sent and the sink has not written yet: a
        confirmation read before this is 0 or less covers the letters of the records it confirms
        (less: a worker killed between sending a letter and counting it)."""
        assert self.delivery is not None
        sent = sum(int(a.tally.dead_lettered) for a in self.actors if isinstance(a, NodeActor) and a.tally is not None)
        return sent - self.delivery.written

    def check(self) -> None:
        """Raise (having stopped the run) when an actor ended early or failed: for the caller's waits."""
        if any(a.state != "running" for a in self.actors):
            raise self._fail(ChannelBroken("an actor of the pipeline ended before its input did"))

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
                if not result or "state" not in result:
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
        unsent = self._unsent()
        if root is not None and root.in_flight is not None and unsent:  # lost too: count them
            root.in_flight["(the caller's feed, not sent)"] = unsent
            root.message += f"; and {unsent} records taken from the source and not sent yet"
        if exc is None or isinstance(exc, (ActorError, ChannelBroken)):
            return root or exc or RuntimeError("the pipeline stopped without an error")
        return exc  # the caller's iterable raised, or Ctrl-C: theirs, as it is

    def _unsent(self) -> int:
        """Records the caller took from its source that wait in its ports or channels' batches."""
        if self.plan is None:
            return 0
        ports = sum(len(port.pending) for port in self.plan.feed_ports)
        return ports + sum(ch.qsize() for ch in self._feed_channels() if ch.mode != "thread")

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
                                                 "sent": 0, "state": stats.state, "retried": 0, "dead_lettered": 0,
                                                 "restarts": 0, "duplicates_possible": 0})
            if unit.node is not None:
                c["workers"] += 1
                c["received"] += stats.received
            if actor.tally is not None:  # (a collector's has only repeats dropped)
                c["retried"] += int(actor.tally.retried)
                given_up = "failed" if actor.policy is not None and not actor.policy.replays else "dead_lettered"
                c[given_up] = c.get(given_up, 0) + int(actor.tally.dead_lettered)
                c["dropped"] = c.get("dropped", 0) + int(actor.tally.dropped)
            if actor.journal is not None:  # restarts of its process (delivery/restart.py)
                c["restarts"] += actor.journal.restarts
                c["duplicates_possible"] += actor.journal.duplicates
            c["restarts"] += actor.restarts  # of its Ray actor (redelivery.py)
            if unit.current is None:  # an ordered worker sends to its collector, which sends on
                c["sent"] += stats.emitted
            if stats.state != "finished":
                c["state"] = stats.state
        return out


def _flags(n: int, mode: str) -> Any:
    """``n`` "begun" bytes, where every node actor sees them: shared memory when processes take
    part (no lock a dying process could hold), a Ray actor's when Ray actors do."""
    if mode == "ray":
        return RayInts(max(n, 1), sticky=True)
    return memoryview(_ctx.RawArray("B", max(n, 1))).cast("B") if mode == "process" else bytearray(max(n, 1))
