"""How the threads and processes modes lay a graph out as actors and channels.

* Each node is one actor (``workers=N``: N actors named ``name[i]``, each with a copy of the
  node); a router runs inside the actor of the node before it.
* A node's inbox is one channel per actor of that node; every actor writing to it is one of
  its writers, so the node sees END once all of its parents (and their workers) have ended.
  Several writers to a node with workers send whole batches round robin over its inboxes.
* ``ordered=True`` (with workers): the writer numbers the items, the workers tag what they push
  with the number of the item they got, and a collector actor ``name.ordered`` merges the
  workers' outputs by number (the SortedQueueMultiplexer's merge window), then pushes them on.
* ``merge_sorted([b, c]) | d``: ``d`` gets one channel per branch and merges them by key with
  the same merge window, in its own actor.
* A channel is a process channel when an actor at either end runs in a process, a ray channel
  when one runs on Ray (a pipeline does not mix the two: a forked process cannot use Ray).
* Nodes under ``guarantee="replay"`` (``delivery.policies``) send their dead letters into one
  more channel, ``dead-letters``, which a thread of the caller's process reads into the sink;
  records ``Pipeline.replay`` re-injects at a node are dealt over its actors (``Unit.replayed``,
  numbered below 0 in file order), which handle them before their inbox.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..channels import Channel
from ..delivery import Delivery
from .node import Node, RouterNode
from .wiring import Port, Target, input_of, make_push, output_of, route_to, stdout_write, to_port

__all__ = ["PROGRESS", "Plan", "Unit", "build_plan", "settings_of"]

ActorMode = Literal["thread", "process", "ray"]
_SEQ = operator.itemgetter(0)  # what a collector merges its workers' outputs by
_MODE_NAMES = {"threads": "thread", "thread": "thread", "processes": "process", "process": "process", "ray": "ray"}


class _Progress:
    """Marker an ordered worker sends after each batch: "I am past this sequence number"."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "PROGRESS"

    def __repr__(self) -> str:
        return "PROGRESS"


PROGRESS = _Progress()


@dataclass
class Unit:
    """One actor to start: what it runs, what it reads and where it pushes."""

    name: str
    owner: Node  # the pipeline's node
    node: Node | None  # what the actor runs (a copy for workers); None for a collector
    mode: ActorMode
    worker: int | None = None
    inputs: list[Channel] = field(default_factory=list)
    merge: tuple[Any, str] | None = None  # merge the inputs by (key, direction)
    tagged_in: bool = False  # items arrive as (seq, item)
    current: list[Any] | None = None  # the seq of the item being processed (ordered workers)
    ports: list[Port] = field(default_factory=list)
    push: Target | None = None
    entry: Target | None = None
    flag: int = -1  # its "begun" flag
    after: list[int] = field(default_factory=list)  # flags of the node actors upstream
    log: Channel | None = None
    dead_letters: Channel | None = None  # where its dead letters go (guarantee="replay")
    replayed: list[tuple[int, Any]] = field(default_factory=list)  # (number, record) to handle first

    def outputs(self) -> list[Channel]:
        seen = {id(ch): ch for port in self.ports for ch in port.channels}
        for extra in (self.log, self.dead_letters):
            if extra is not None:
                seen[id(extra)] = extra
        return list(seen.values())


@dataclass
class Plan:
    units: list[Unit]
    feed: Target  # how the caller pushes into the top node
    feed_ports: list[Port]
    feed_channel: Channel | None  # the top node's one inbox, when the caller can stream into it
    log: Channel | None
    by_node: dict[str, list[Unit]]
    flags: Any  # one "begun" byte per node actor, shared with processes
    dead_letters: Channel | None = None  # read by the caller's dead-letter thread


def settings_of(node: Node, pipeline_mode: str) -> tuple[int, bool, ActorMode]:
    """A node's (workers, ordered, actor mode), checked."""
    workers, ordered, mode = node.workers, bool(node.ordered), node.mode
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"node {node.name!r}: workers must be an int >= 1, not {workers!r}")
    if mode is not None and mode not in _MODE_NAMES:
        raise ValueError(f"node {node.name!r}: mode must be 'threads', 'processes' or 'ray' (or None), not {mode!r}")
    if workers > 1 and _is_groupby(node):
        raise ValueError(f"node {node.name!r} is a GroupByNode: its batches need every item, so it cannot have "
                         f"workers={workers}")
    return workers, ordered and workers > 1, _MODE_NAMES[mode or pipeline_mode]


def _replays(node: Node, delivery: Delivery | None) -> bool:
    """Whether ``node`` is under guarantee="replay" (its ray inbox then keeps what it took until acknowledged)."""
    policy = delivery.policies.get(node.name) if delivery is not None else None
    return policy is not None and policy.replays


def _is_groupby(node: Node) -> bool:
    from .node import GroupByNode

    return isinstance(node, GroupByNode)


def real_parents(node: Node) -> list[Node]:
    """The nodes whose actors write to ``node`` (looking through routers)."""
    found: dict[Node, None] = {}
    for up in node._upstream_nodes:
        for p in (real_parents(up) if isinstance(up, RouterNode) else [up]):
            found[p] = None
    return list(found)


def build_plan(order: list[Node], pipeline_mode: str, make_flags: Callable[[int, str], Any],
               maxsize: int = 10_000, delivery: Delivery | None = None) -> Plan:
    nodes = [n for n in order if not isinstance(n, RouterNode)]
    top = nodes[0]
    conf = {n: settings_of(n, pipeline_mode) for n in nodes}
    units: dict[Node, list[Unit]] = {}
    collectors: dict[Node, Unit] = {}
    for n in nodes:
        workers, ordered, mode = conf[n]
        copies = [(n, None)] if workers == 1 else [(copy.copy(n), i) for i in range(workers)]
        units[n] = [Unit(n.name if i is None else f"{n.name}[{i}]", n, c, mode, i) for c, i in copies]
        if ordered:
            collectors[n] = Unit(f"{n.name}.ordered", n, None, mode, merge=(_SEQ, "min"), tagged_in=True)

    def emitters(n: Node) -> list[Unit]:
        return [collectors[n]] if n in collectors else units[n]

    # -- inboxes ---------------------------------------------------------------------------
    modes_used = {u.mode for us in units.values() for u in us} | {u.mode for u in collectors.values()}
    if {"process", "ray"} <= modes_used:
        raise ValueError("a pipeline cannot run nodes both in processes and on Ray (a forked process cannot use "
                         "Ray): give the processes nodes mode='ray', or the pipeline mode='processes'")
    crossing = "ray" if "ray" in modes_used else "process"  # the mode of a channel that leaves this process
    parents = {n: real_parents(n) for n in nodes}
    inbox: dict[Node, Any] = {}  # node -> [channels per worker] or {parent: channel} for a sorted merge
    for n in nodes:
        workers, ordered, mode = conf[n]
        writers = [e for p in parents[n] for e in emitters(p)]
        modes = {u.mode for u in writers} | {u.mode for u in units[n]}
        channel_mode = crossing if modes - {"thread"} else "thread"
        extra = {"redeliver": True} if channel_mode == "ray" and _replays(n, delivery) else {}
        if n._merge is not None:
            if workers > 1:
                raise ValueError(f"node {n.name!r} merges its branches with merge_sorted, so it cannot have workers")
            for p in parents[n]:
                if len(emitters(p)) > 1:
                    raise ValueError(f"merge_sorted into {n.name!r}: branch {p.name!r} has workers={conf[p][0]} "
                                     "without ordered=True, so it pushes in no defined order; set ordered=True")
            ranks = {b.name: i for i, b in enumerate(n._merge.branches)}
            inbox[n] = {p: Channel(maxsize, mode=channel_mode, name=f"{p.name}->{n.name}")
                        for p in sorted(parents[n], key=lambda p: ranks.get(p.name, len(ranks)))}
            units[n][0].inputs = list(inbox[n].values())
            units[n][0].merge = (n._merge.key, n._merge.direction)
            continue
        count = len(writers) + (n is top)
        if ordered and count != 1:
            raise ValueError(f"node {n.name!r} has ordered=True, so its items must come from one node in one order; "
                             f"it gets them from {sorted(p.name for p in parents[n])}: put one node before it")
        inbox[n] = [Channel(maxsize, mode=channel_mode, name=u.name, writers=count, **extra) for u in units[n]]
        for u, ch in zip(units[n], inbox[n], strict=True):
            u.inputs, u.tagged_in = [ch], ordered
        if ordered:
            col = collectors[n]
            col.inputs = [Channel(maxsize, mode=channel_mode, name=f"{u.name}->{col.name}") for u in units[n]]

    # -- flags and logs --------------------------------------------------------------------
    node_units = [u for n in nodes for u in units[n]]
    for i, u in enumerate(node_units):
        u.flag = i
    for n in nodes:
        for u in units[n]:
            u.after = [p.flag for parent in parents[n] for p in units[parent]]
    logging_procs = [u for u in node_units if u.owner._logging and u.mode != "thread"]
    log = Channel(maxsize, mode=crossing, name="node-log", writers=len(logging_procs)) if logging_procs else None
    for u in logging_procs:
        u.log = log
    replaying = [u for u in node_units if delivery is not None and u.owner.name in delivery.policies]
    dead_letters = None
    if replaying:
        dl_mode = crossing if any(u.mode != "thread" for u in replaying) else "thread"
        dead_letters = Channel(maxsize, mode=dl_mode, name="dead-letters", writers=len(replaying))
        for u in replaying:
            u.dead_letters = dead_letters
    for n in nodes:  # records to replay: round robin over the node's actors
        records = delivery.replayed.get(n.name, []) if delivery is not None else []
        for i, record in enumerate(records):
            units[n][i % len(units[n])].replayed.append((i - len(records), record))
    flags = make_flags(len(node_units), crossing if modes_used - {"thread"} else "thread")

    # -- pushes ----------------------------------------------------------------------------
    def port_for(ports: dict[Node, Port], target: Node, source: Node) -> Target:
        if target not in ports:
            channels = [inbox[target][source]] if isinstance(inbox[target], dict) else inbox[target]
            ports[target] = Port(channels)
        return to_port(ports[target], "new" if conf[target][1] else None)

    def edge(ports: dict[Node, Port], source: Node, target: Node) -> Target:
        if isinstance(target, RouterNode):
            return route_to(target, {d.name: edge(ports, source, d) for d in target._downstream_nodes})
        return port_for(ports, target, source)

    def wire(u: Unit, n: Node) -> None:
        ports: dict[Node, Port] = {}
        u.push = make_push([edge(ports, n, d) for d in n._downstream_nodes])
        u.ports = list(ports.values())

    for n in nodes:
        for u in units[n]:
            assert u.node is not None
            write = u.log.put if u.log is not None else stdout_write
            u.entry = input_of(u.node, write)
            if n in collectors:
                u.current = [0]
                port = Port([collectors[n].inputs[u.worker or 0]])
                u.ports, u.push = [port], output_of(n, to_port(port, "current", u.current), write)
            else:
                wire(u, n)
                u.push = output_of(u.node, u.push, write)  # type: ignore[arg-type]
        if n in collectors:
            wire(collectors[n], n)
    feed_ports: dict[Node, Port] = {}
    feed = port_for(feed_ports, top, top)
    single = inbox[top] if isinstance(inbox[top], list) and len(inbox[top]) == 1 and not conf[top][1] else None
    all_units = [u for n in nodes for u in [*units[n], *([collectors[n]] if n in collectors else [])]]
    return Plan(all_units, feed, list(feed_ports.values()), single[0] if single else None, log,
                {n.name: units[n] + ([collectors[n]] if n in collectors else []) for n in nodes}, flags, dead_letters)
