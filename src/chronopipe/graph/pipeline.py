"""Pipeline: runs a graph of nodes (consecution's API) in one of four modes.

* ``mode="sync"`` (default): consecution's semantics on the caller's thread (sync.py).
* ``mode="threads"``: each node is an actor on a thread of this process (actors.py).
* ``mode="processes"``: each node is an actor in its own process; records travel in batches.
* ``mode="ray"``: each node is an actor on Ray (a process on any node of the cluster; docs/ray.md);
  records travel in batches through ray channels. Ray is the extra ``chronopipe[ray]``.

The same pipeline gives the same results in every mode: the same multiset of items reaching
each node, in the same order along a chain (and after ``ordered=True`` workers and
``merge_sorted``); what nodes leave in ``global_state`` and in their own attributes (see
state.py for how that comes back from processes). Across a broadcast or a plain merge, how the
items of different branches interleave is up to the threads and processes.

``guarantee="replay"`` (per pipeline or per node) retries a record whose ``process()`` raises and
then dead-letters it instead of failing the run; ``replay(path)`` gives a dead-letter file's
records back to the nodes that failed them (chronopipe.delivery, docs/delivery.md).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable
from typing import Any, Literal

from ..delivery import DEFAULT_MAX_RETRIES, FailureLog, Policy, Sink, open_sink, policy_of
from ..delivery.restart import MAX_RESTARTS
from .acking import Acking
from .node import Node, RouterNode, top_down_order
from .render import digraph, text
from .replays import SAME, Deliveries
from .state import GlobalState
from .stats import NodeStatistics, PipelineStatistics
from .sync import SyncRun
from .wiring import stdout_write

__all__ = ["MODES", "NodeStatistics", "Pipeline", "PipelineStatistics"]

Mode = Literal["sync", "threads", "processes", "ray"]
MODES = ("sync", "threads", "processes", "ray")
LOG_HEADER = "node_log,what,node_name,item\n"
log = logging.getLogger("chronopipe.graph")


class Pipeline(Deliveries):
    """The nodes connected to ``node``, ready to consume items.

    ``global_state`` (a GlobalState by default) is shared by every node as ``.global_state``.
    Subclasses may override ``begin()``, ``end()`` and ``reset()`` (no need to call super):
    begin runs before the nodes' begin, end after the nodes' end, and ``consume()`` returns
    what ``end()`` returns.

    >>> from chronopipe.testing import ListSink
    >>> class Square(Node):
    ...     def process(self, item):
    ...         self.push(item * item)
    >>> pipeline = Pipeline(Square("square") | ListSink("squares"), mode="threads")
    >>> pipeline.consume(range(4))
    >>> pipeline["squares"].items
    [0, 1, 4, 9]
    >>> print(pipeline)
    <BLANKLINE>
    Pipeline (mode=threads)
    --------------------------------------------------------------------
     square | squares
    --------------------------------------------------------------------
    <BLANKLINE>
    """

    def __init__(self, node: Node, global_state: Any = None, *, mode: Mode = "sync", name: str | None = None,
                 guarantee: str = "none", max_retries: int = DEFAULT_MAX_RETRIES, dead_letter: Any = None,
                 state_dir: str | os.PathLike[str] | None = None, max_restarts: int = MAX_RESTARTS,
                 control: str | None = None) -> None:
        """``guarantee``, ``max_retries`` and ``dead_letter`` (a file path, default
        ``<name>.dead-letters.jsonl``, or a callable taking a DeadLetter) say what happens to a
        record whose ``process()`` raises, and whether records are acknowledged
        (docs/delivery.md); ``name`` (default: the top node's) names the pipeline in dead letters
        and in its state file. ``state_dir``: where ``consume()`` keeps how far its source got,
        so that a rerun after a kill goes on from there (records are then acknowledged).
        ``max_restarts``: deaths in a row of a replaying worker process after which the run fails.
        ``control``: ``"HOST:PORT"`` to serve the control API (docs/control.md) while a run goes on.

        Raises:
            TypeError: ``node`` is not a Node, ``dead_letter`` is neither a path nor a callable, or
                ``state_dir`` is not a path.
            ValueError: an unknown mode or guarantee, a bad max_retries or control address, an empty name.
        """
        if not isinstance(node, Node):
            raise TypeError(f"Pipeline(node): give it a Node (any node of a connected graph), not {node!r}")
        if mode not in MODES:
            raise ValueError(f"Pipeline mode must be one of {MODES}, not {mode!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Pipeline name must be a non-empty string (or None), not {name!r}")
        self.policy = Policy(guarantee, max_retries)
        if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, not {max_restarts!r}")
        self.max_restarts = max_restarts
        open_sink(dead_letter, "check")  # a TypeError now rather than when the first record fails
        self.dead_letter = dead_letter
        if state_dir is not None and (not isinstance(state_dir, (str, os.PathLike)) or not os.fspath(state_dir)):
            raise TypeError(f"Pipeline state_dir must be a folder's path (or None), not {state_dir!r}")
        self.state_dir = state_dir
        self._acking: Acking | None = None
        self._name = name
        self._sink: Sink | None = None
        self._failures: FailureLog | None = None
        self._replaying: dict[str, list[Any]] = {}
        self._replay_sink: Any = SAME
        self.top_node = node.top_node
        self.global_state = GlobalState() if global_state is None else global_state
        self.mode: Mode = mode
        self._run: Any = None
        self._is_running = False
        self._stats: PipelineStatistics | None = None
        self._started = 0.0
        self._node_lookup: dict[str, Node] = {}
        self._node_repr = ""
        self._control: Any = None
        if control is not None:  # (imported here: the control plane is loaded by those who use it)
            from .control import PipelineControl

            self._control = PipelineControl(self, control)
        self.initialize()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's begin/end/reset run around the nodes' own, without calling super()."""
        super().__init_subclass__(**kwargs)
        for name, wrap in (("begin", _around_begin), ("end", _around_end), ("reset", _around_reset)):
            hook = cls.__dict__.get(name)
            if hook is not None and not getattr(hook, "_wrapped", False):
                setattr(cls, name, wrap(hook))

    @property
    def name(self) -> str:
        """The pipeline's name: given to the constructor (or set), else its top node's."""
        return self._name or self.top_node.name

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value

    @property
    def control(self) -> Any:
        """The ControlServer of the current (or last) run (``.url``, ``.token``); None before it."""
        return self._control.server if self._control is not None else None

    # -- the graph ---------------------------------------------------------------------
    def initialize(self) -> None:
        """Look at the graph again (nodes may have been connected since construction)."""
        self.top_node = self.top_node.top_node
        self._node_lookup = {}
        for node in top_down_order(self.top_node):
            node.pipeline = self  # type: ignore[attr-defined]
            node.global_state = self.global_state  # type: ignore[attr-defined]
            self._node_lookup[node.name] = node

    def __getitem__(self, name: str) -> Node:
        node = self._node_lookup.get(name)
        if node is None:
            self.initialize()
            node = self._node_lookup.get(name)
        if node is None:
            raise KeyError(f"no node named {name!r} in this pipeline; its nodes are {sorted(self._node_lookup)}")
        return node

    def __setitem__(self, name: str, replacement: Node) -> None:
        """Put ``replacement`` (a node of the same name) in place of the node ``name``."""
        if not isinstance(replacement, Node) or replacement.name != name:
            raise ValueError(f"a replacement for node {name!r} must be a Node named {name!r}, not {replacement!r}")
        if self._is_running:
            raise RuntimeError(f"cannot replace node {name!r} while the pipeline runs; call end() first")
        old = self[name]
        ups, downs = list(old._upstream_nodes), list(old._downstream_nodes)
        for up in ups:
            up.remove_downstream(old)
        for down in downs:
            old.remove_downstream(down)
        for up in ups:
            up.add_downstream(replacement)
        for down in downs:
            replacement.add_downstream(down)
        replacement._merge = replacement._merge or old._merge
        if old is self.top_node:
            self.top_node = replacement
        self.initialize()

    # -- running -----------------------------------------------------------------------
    def begin(self) -> None:
        """Start a run: every node's begin(), parents first, before any item (consume() calls it)."""
        self._begin_nodes()

    def end(self) -> Any:
        """Finish the run: every node's end(), each after its parents' (consume() calls it)."""
        self._end_nodes()

    def reset(self) -> None:
        """Call every node's reset(), parents first."""
        self._reset_nodes()

    def consume(self, iterable: Iterable[Any]) -> Any:
        """Begin, send every item of ``iterable`` to the top node, end; returns what end() returns.

        A node's exception stops the run (in every mode) and raises an ActorError naming the node,
        with its traceback and the item; its class also derives from the original exception's.
        Under ``guarantee="replay"`` such a record is retried, then dead-lettered, and the run goes on.

        Under acknowledgements (``guarantee="confirm"`` or ``"track"``, or a ``state_dir``) records
        are confirmed a batch at a time: ``iterable.confirm(n)`` is called if it exists, and a
        ``state_dir`` makes a rerun start after what the last run confirmed (docs/delivery.md).

        Raises:
            ValueError: the dead-letter file is ``iterable`` itself (an open file of that path).
            StateError: with a ``state_dir``, a source that cannot be resumed, or a saved state of
                another source or of a file that changed since.
        """
        self._check_not_input(iterable)
        acking = self._acking = Acking(self.name, iterable, self.state_dir) if self._wants_acks() else None
        records = acking.prepare(iterable) if acking is not None else iterable  # refusals: before anything runs
        records = self._control.feeding(iterable, records) if self._control is not None else records
        try:
            self.begin()
            if acking is not None:
                acking.feed(self._run, records)
            else:
                self._run.feed(records)
        except BaseException as exc:
            self._is_running = False
            if acking is not None:
                acking.fail(exc)
            self._finish_stats("failed")
            raise
        try:
            result = self.end()
            if acking is not None:
                acking.finish()
        except BaseException as exc:
            if acking is not None:
                if not acking.finished:
                    acking.fail(exc)
                self._stats = self._make_stats("failed")
            raise
        if acking is not None:
            self._stats = self._make_stats("finished")
        return result

    def push(self, item: Any) -> None:
        """Send one item to the top node (beginning the run first if needed); call end() when done.

        Raises:
            ValueError: the pipeline has a ``state_dir`` (a resumable run is ``consume(source)``).
        """
        if self.state_dir is not None:
            raise ValueError("a pipeline with a state_dir resumes its source: feed it with consume(source), not push()")
        if not self._is_running:
            self._acking = None
            self.begin()
        try:
            self._run.push(item)
        except BaseException:
            self._is_running = False
            self._finish_stats("failed")
            raise

    def _begin_nodes(self) -> None:
        if self._is_running:
            return
        self.initialize()
        order = top_down_order(self.top_node)
        self._sink = self._failures = None
        delivery = self._delivery(order)
        if any(n._logging for n in order):
            stdout_write(LOG_HEADER)
        if self.mode == "sync":
            self._run = SyncRun(order, stdout_write, delivery)
        else:
            from .actor_run import ActorRun

            self._run = ActorRun(order, self.mode, self.global_state, delivery)
        self._started, self._stats = time.perf_counter(), None
        self._run.begin()
        if self._control is not None:  # after the forks; a ControlError stops the run
            self._control.begin(self._run)
        self._is_running = True

    def _end_nodes(self) -> None:
        if not self._is_running:
            return
        self._is_running = False
        try:
            self._run.end()
            if self._sink is not None:
                self._sink.close()  # the letters are durable before end() returns
        except BaseException:
            self._finish_stats("failed")
            raise
        self._finish_stats("finished")

    def _reset_nodes(self) -> None:
        self.initialize()
        for node in top_down_order(self.top_node):
            node.reset()

    # -- looking at it -----------------------------------------------------------------
    def statistics(self) -> PipelineStatistics:
        """The last (or current) run: per node, what it received and sent (actor modes)."""
        if self._stats is not None:
            return self._stats
        return self._make_stats("running" if self._is_running else "new")

    def _finish_stats(self, state: str) -> None:
        self._stats = stats = self._make_stats(state)
        if state == "failed" and self._sink is not None:
            try:  # keep what was written; the run's own error is the one to raise
                self._sink.close()
            except Exception as exc:
                log.error("pipeline %r: closing the dead-letter sink failed too: %s", self.name, exc)
        if stats.dead_lettered or stats.failed:
            log.warning("pipeline %r: %s", self.name, stats.summary)
        if self._control is not None:  # a pending /stop answered, the server closed
            self._control.ended(stats)

    def _make_stats(self, state: str) -> PipelineStatistics:
        acking = self._acking
        seconds = time.perf_counter() - self._started if self._started else None
        counts = self._run.counts() if self._run is not None and hasattr(self._run, "counts") else {}
        nodes = []
        for node in top_down_order(self.top_node):
            if isinstance(node, RouterNode):
                continue
            c = counts.get(node.name)
            nodes.append(NodeStatistics(
                name=node.name, mode=c["mode"] if c else "sync", workers=c["workers"] if c else 1,
                received=c["received"] if c else None, sent=c["sent"] if c else None,
                state=c.get("state", state) if c else state, retried=c.get("retried", 0) if c else 0,
                dead_lettered=c.get("dead_lettered", 0) if c else 0, restarts=c.get("restarts", 0) if c else 0,
                dropped=c.get("dropped", 0) if c else 0, failed=c.get("failed", 0) if c else 0,
                guarantee=policy_of(node.name, node.guarantee, node.max_retries, self.policy).guarantee,
                duplicates_possible=c.get("duplicates_possible", 0) if c else 0))
        return PipelineStatistics(mode=self.mode, state=state, seconds=seconds, nodes=tuple(nodes),
                                  retried=sum(n.retried for n in nodes),
                                  dead_lettered=sum(n.dead_lettered for n in nodes),
                                  failed=sum(n.failed for n in nodes),
                                  failures=tuple(self._failures.last) if self._failures is not None else (),
                                  dead_letters=self._sink.name if self._sink is not None else None,
                                  restarts=sum(n.restarts for n in nodes),
                                  duplicates_possible=sum(n.duplicates_possible for n in nodes) + (
                                      acking.duplicates_possible if acking is not None else 0),
                                  **(acking.counts() if acking is not None else {}))

    def plot(self, file_name: str = "pipeline", kind: str = "png") -> Pipeline:
        """Draw the pipeline into ``file_name.kind`` (png, pdf or svg) with Graphviz; returns self."""
        self.top_node.plot(file_name, kind)
        return self

    def __str__(self) -> str:
        return text(self.top_node, self.mode)

    __repr__ = __str__

    def _repr_svg_(self) -> str | None:  # Jupyter shows a pipeline as its plot
        try:
            return digraph(self.top_node).pipe(format="svg").decode()
        except Exception:
            return None


def _around_begin(hook: Any) -> Any:
    @functools.wraps(hook)
    def begin(self: Pipeline) -> None:
        if not self._is_running:
            hook(self)
        self._begin_nodes()

    begin._wrapped = True  # type: ignore[attr-defined]
    return begin


def _around_end(hook: Any) -> Any:
    @functools.wraps(hook)
    def end(self: Pipeline) -> Any:
        self._end_nodes()
        return hook(self)

    end._wrapped = True  # type: ignore[attr-defined]
    return end


def _around_reset(hook: Any) -> Any:
    @functools.wraps(hook)
    def reset(self: Pipeline) -> Any:
        self._reset_nodes()
        return hook(self)

    reset._wrapped = True  # type: ignore[attr-defined]
    return reset
