"""Node and GroupByNode: the processing units of a pipeline, with consecution's API.

A node's ``process(item)`` handles one item and ``push(item)`` sends an item to the nodes
downstream. ``begin()`` runs before the first item, ``end()`` after the last one (and after
the ``end()`` of every node upstream). Nodes are wired with ``|`` (see compose.py) or with
``add_downstream``; a Pipeline runs them.

Four class attributes (or keyword arguments) are chronopipe's own and matter only in the
``threads``, ``processes`` and ``ray`` modes: ``workers`` (copies of a stateless node),
``ordered`` (keep the input order after those copies), ``mode`` (host this node on
``"threads"``, ``"processes"`` or ``"ray"`` whatever the pipeline's mode) and ``ray_options``
(where Ray puts it). Two more, in every mode, override the pipeline's delivery settings for
this node: ``guarantee`` and ``max_retries`` (chronopipe.delivery).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from .clock import Clock
from .consecution import ConsecutionExtras

if TYPE_CHECKING:
    from .compose import MergeSpec

__all__ = ["GroupByNode", "Node", "RouterNode", "shipping", "top_down_order"]

#: True while a node actor is pickled for a Ray worker (``shipping()``).
_SHIPPING = contextvars.ContextVar("chronopipe_shipping", default=False)


@contextlib.contextmanager
def shipping() -> Iterator[None]:
    """While pickling a node actor for another machine: each node pickles alone, without the
    pipeline and the nodes around it (their state, their wiring in this process: locks, thread
    channels), and with its class's ``push`` (its actor wires its own where it runs)."""
    token = _SHIPPING.set(True)
    try:
        yield
    finally:
        _SHIPPING.reset(token)

_NO_KEY = object()


class Node(ConsecutionExtras):
    """A named processing unit: override ``process``; call ``push`` to send items on.

    Keyword arguments become attributes. The name must be unique in its pipeline: it shows in
    printing, plots, logs, statistics and errors.

    >>> from chronopipe.graph import Pipeline
    >>> from chronopipe.testing import ListSink
    >>> class Double(Node):
    ...     def process(self, item):
    ...         self.push(self.factor * item)
    >>> sink = ListSink("sink")
    >>> Pipeline(Double("double", factor=2) | sink).consume(range(4))
    >>> sink.items
    [0, 2, 4, 6]
    """

    #: chronopipe: copies of this node in the threads/processes modes (it must then be stateless).
    workers: int = 1
    #: chronopipe: with workers > 1, restore the input order of what the copies push.
    ordered: bool = False
    #: chronopipe: "threads", "processes" or "ray" to host this node so whatever the pipeline's mode.
    mode: str | None = None
    #: chronopipe, on Ray: options of its Ray actors (``.options()``: num_cpus, resources,
    #: scheduling_strategy...). Workers are spread over the cluster's nodes unless this says otherwise.
    ray_options: dict[str, Any] | None = None
    #: chronopipe: "none" or "replay" for this node (None: the pipeline's); see docs/delivery.md.
    guarantee: str | None = None
    #: chronopipe: under "replay", attempts after the first before a dead letter (None: the pipeline's).
    max_retries: int | None = None

    def __init__(self, name: str, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a node needs a non-empty string name (got {name!r}): it shows in printing, "
                             "logs, statistics and errors")
        self.name = name
        self._upstream_nodes: list[Node] = []
        self._downstream_nodes: list[Node] = []
        self._logging: str | None = None
        self._merge: MergeSpec | None = None  # set by merge_sorted([...]) | self
        self.clock = Clock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if _SHIPPING.get():  # to a Ray worker: this node alone (see shipping())
            state.pop("pipeline", None)
            state.pop("push", None)
            state["_upstream_nodes"], state["_downstream_nodes"] = [], []
        return state

    # -- what users override -------------------------------------------------------------
    def begin(self) -> None:
        """Runs before the first item (push() is not allowed here)."""

    def process(self, item: Any) -> None:
        """Handle one item; call ``self.push(x)`` to send ``x`` downstream."""
        raise NotImplementedError(f"node {self.name!r}: define a process(self, item) method on every node")

    def end(self) -> None:
        """Runs after the last item, once every node upstream has ended; may push."""

    def reset(self) -> None:
        """Called by Pipeline.reset(); put the node back to its initial state if it needs one."""

    def commit(self) -> None:
        """Make durable what ``process()`` did with the records so far (flush a file, commit a
        transaction): they count as done with once this returns. Called under acknowledgements
        (``guarantee="confirm"`` / ``"track"``, or a ``state_dir``) after every batch of the
        source has passed the node (about every 1,000 records), and in a worker process that
        ``"replay"`` restarts when it dies, after every batch it takes from its inbox (before the
        batch is acknowledged: it is not replayed after that). Where ``process()`` runs (its
        thread, its process), never at the same time as it; may push. If it raises, the run
        fails as if ``process()`` had raised.
        """

    def push(self, item: Any) -> None:
        """Send ``item`` to the nodes downstream (wired when the pipeline begins)."""
        raise RuntimeError(f"node {self.name!r} is not running in a pipeline: wrap it in Pipeline(...) and "
                           "call consume() or push() on the pipeline")

    # -- logging -------------------------------------------------------------------------
    def log(self, what: Literal["input", "output"] | None) -> None:
        """Print every item this node receives (``"input"``) or pushes (``"output"``) to stdout,
        as ``node_log,<what>,<name>,<item>`` lines; ``None`` turns it off."""
        if what not in ("input", "output", None):
            raise ValueError(f"node {self.name!r}: log() takes 'input' or 'output' (or None to stop), not {what!r}")
        self._logging = what

    # -- wiring --------------------------------------------------------------------------
    def __or__(self, other: Any) -> Node:
        from .compose import pipe

        return pipe(self, other)

    def __ror__(self, other: Any) -> Node:
        from .compose import merge_into

        return merge_into(other, self)

    def add_downstream(self, other: Node) -> None:
        """Connect ``other`` below this node (what ``|`` does for each pair it joins)."""
        if not isinstance(other, Node):
            raise ValueError(f"node {self.name!r}: can only connect to a Node, not {other!r}")
        if other is self:
            raise ValueError(f"{self} can't be downstream of itself")
        if other in self._downstream_nodes:
            raise ValueError(f"{self} is already connected to {other}")
        if self in other.walk("down"):
            raise ValueError(f"connecting {self} -> {other} would make a loop: a pipeline must be acyclic")
        names: dict[str, Node] = {}
        for node in (*self.walk("both"), *other.walk("both")):
            if names.setdefault(node.name, node) is not node:
                raise ValueError(f"node names must be unique in a pipeline: two different nodes are named "
                                 f"{node.name!r}; rename one of them")
        self._downstream_nodes.append(other)
        other._upstream_nodes.append(self)

    def remove_downstream(self, other: Node) -> None:
        """Disconnect ``other`` from below this node (nothing happens if they are not connected)."""
        self._downstream_nodes = [n for n in self._downstream_nodes if n is not other]
        other._upstream_nodes = [n for n in other._upstream_nodes if n is not self]

    # -- the graph around this node ------------------------------------------------------
    def walk(self, direction: str = "both", how: str = "breadth_first",
             as_ordered_list: bool = False) -> list[Node] | set[Node]:
        """Every node reachable from this one going ``"up"``, ``"down"`` or ``"both"`` ways,
        visited ``"breadth_first"`` or ``"depth_first"`` (a list in visiting order, or a set)."""
        if how not in ("breadth_first", "depth_first"):
            raise ValueError(f"how must be 'breadth_first' or 'depth_first', not {how!r}")
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be 'up', 'down' or 'both', not {direction!r}")
        seen: dict[Node, None] = {}
        todo: deque[Node] = deque([self])
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen[node] = None
            near = (node._upstream_nodes if direction != "down" else []) + (
                node._downstream_nodes if direction != "up" else [])
            for other in near:
                if other not in seen:
                    todo.appendleft(other) if how == "breadth_first" else todo.append(other)
        return list(seen) if as_ordered_list else set(seen)

    @property
    def top_node(self) -> Node:
        """The single node at the top of the graph (a pipeline has exactly one)."""
        roots = [n for n in self.walk("both", as_ordered_list=True) if not n._upstream_nodes]
        if len(roots) != 1:
            raise ValueError(f"a pipeline needs exactly one top node; this graph has {len(roots)}: "
                             f"{sorted(n.name for n in roots)}. Remove the extra input nodes (or merge them)")
        return roots[0]

    def _initial_nodes(self) -> list[Node]:
        return [n for n in self._preorder("up") if not n._upstream_nodes]

    def _terminal_nodes(self) -> list[Node]:
        return [n for n in self._preorder("down") if not n._downstream_nodes]

    def _preorder(self, direction: str) -> list[Node]:
        """Nodes reachable going up or down, depth first, neighbours in the order they were connected."""
        seen: dict[Node, None] = {}
        stack = [self]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen[node] = None
                stack.extend(reversed(node._upstream_nodes if direction == "up" else node._downstream_nodes))
        return list(seen)

    # -- identity ------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        raise ValueError(f"nodes cannot be indexed: you wrote {self}[{key!r}]; did you mean {self} | [{key!r}]?")

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __lt__(self, other: Node) -> bool:
        return self.name < other.name

    def __str__(self) -> str:
        return f"N({self.name})"

    __repr__ = __str__


class RouterNode(Node):
    """What ``a | [b, c, router]`` puts between ``a`` and ``b``, ``c``: it sends each item to
    the downstream node whose name ``router(item)`` returns. It runs where ``a`` runs."""

    def __init__(self, name: str, route: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.route = route

    def process(self, item: Any) -> None:  # the executors inline routing; this is for direct use
        target = {n.name: n for n in self._downstream_nodes}.get(self.route(item))
        if target is None:
            raise bad_route(self, self.route(item))
        target.process(item)


class RouteError(ValueError):
    """A router returned a name that is not one of its downstream nodes."""


def bad_route(router: Node, got: Any, names: Iterable[str] | None = None) -> RouteError:
    """The error of a router that named no node it routes to (``names``: those it does, by
    default its downstream nodes')."""
    names = sorted(n.name for n in router._downstream_nodes) if names is None else sorted(names)
    return RouteError(f"router {router.name!r} returned {got!r}, which names none of the nodes it routes to; "
                      f"it must return one of {names}")


class GroupByNode(Node):
    """Batches consecutive items: ``process(batch)`` gets a list of items with equal ``key(item)``
    (a new batch starts whenever the key changes), and the last batch when the input ends.

    ``batch_size`` (chronopipe) also closes a batch once it holds that many items; with it,
    ``key`` is optional (batches by size only).

    >>> from chronopipe.graph import Pipeline
    >>> class Tens(GroupByNode):
    ...     def key(self, item):
    ...         return item // 10
    ...     def process(self, batch):
    ...         print(batch)
    >>> Pipeline(Tens("tens")).consume([1, 2, 11, 12, 25])
    [1, 2]
    [11, 12]
    [25]
    >>> class Pairs(GroupByNode):
    ...     batch_size = 2
    ...     def process(self, batch):
    ...         print(batch)
    >>> Pipeline(Pairs("pairs")).consume(range(5))
    [0, 1]
    [2, 3]
    [4]
    """

    batch_size: int | None = None

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._reset_batch()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        user_end = cls.__dict__.get("end")
        if user_end is not None and not getattr(user_end, "_flushes_batch", False):

            @functools.wraps(user_end)
            def end(self: GroupByNode) -> Any:
                self._flush_batch()  # the last batch is processed before the user's end()
                return user_end(self)

            end._flushes_batch = True  # type: ignore[attr-defined]
            cls.end = end  # type: ignore[method-assign]

    def key(self, item: Any) -> Any:
        """The group an item belongs to (consecutive items with equal keys form a batch)."""
        if self.batch_size:
            return None
        raise NotImplementedError(f"GroupByNode {self.name!r}: define key(self, item) (or set batch_size)")

    def process(self, batch: list[Any]) -> None:  # type: ignore[override]
        """Handle one batch (a list of items)."""
        raise NotImplementedError(f"GroupByNode {self.name!r}: define process(self, batch)")

    def end(self) -> None:
        self._flush_batch()

    def _reset_batch(self) -> None:
        self._batch: list[Any] = []
        self._previous_key: Any = _NO_KEY

    def _process_item(self, item: Any) -> None:
        key = self.key(item)
        batch = self._batch
        if batch and (key != self._previous_key or len(batch) == self.batch_size):
            self._batch, self._previous_key = [item], key
            self.process(batch)
        else:
            batch.append(item)
            self._previous_key = key

    def _flush_batch(self) -> None:
        batch = self._batch
        if batch:
            self._batch, self._previous_key = [], _NO_KEY
            self.process(batch)


GroupByNode.end._flushes_batch = True  # type: ignore[attr-defined]


def top_down_order(start: Node) -> list[Node]:
    """``start`` and the nodes below it, each after all of its parents (consecution's order:
    depth first, a node with several parents is reached through the last of them).

    >>> a, b, c, d = Node("a"), Node("b"), Node("c"), Node("d")
    >>> _ = a | [b, c] | d
    >>> [n.name for n in top_down_order(a)]
    ['a', 'b', 'c', 'd']
    """
    calls: dict[Node, int] = {}
    order: list[Node] = []
    stack: list[Iterable[Node]] = [iter([start])]
    while stack:
        node = next(stack[-1], None)  # type: ignore[call-overload]
        if node is None:
            stack.pop()
            continue
        seen, parents = calls.get(node, 0), len(node._upstream_nodes)
        if parents <= 1 or seen == parents - 1:
            calls[node] = 0
            order.append(node)
            stack.append(iter(node._downstream_nodes))
        else:
            calls[node] = seen + 1
    return order
