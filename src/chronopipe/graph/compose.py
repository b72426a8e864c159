"""The ``|`` algebra: chain, broadcast, route, merge, and the sorted merge of branches.

* ``a | b``: ``b`` gets what ``a`` pushes. ``|`` returns its left operand, so ``a | b | c``
  joins the open ends of ``a``'s graph (``b``) to ``c``.
* ``a | [b, c]``: broadcast, ``b`` and ``c`` both get everything ``a`` pushes.
* ``a | [b, c, router]``: route, each item goes to the node whose name ``router(item)`` returns.
* ``[b, c] | d``: merge, ``d`` gets what ``b`` and ``c`` push (returns ``d``).
* ``merge_branches([b, c], key="timestamp") | d``: ``d`` gets what ``b`` and ``c`` push merged in
  key order (each branch must already be in key order).

Lists may nest and hold whole branches (``a | [b | c, d]``).

``merge_branches`` was ``chronopipe.graph.merge_sorted`` before 0.2; that name still works (with a
DeprecationWarning), so it is not mistaken for ``chronopipe.merge_sorted``, which merges iterables.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..order.keys import SortKey, key_function
from ..order.window import merge_sorted as merge_iterables
from .node import Node, RouterNode

__all__ = ["MergeSorted", "MergeSpec", "merge_branches", "merge_into", "merge_sorted", "pipe"]


@dataclass(frozen=True)
class MergeSpec:
    """How a node merges its parents' streams: by ``key`` (``direction`` "min": ascending)."""

    key: SortKey
    direction: Literal["min", "max"]
    branches: tuple[Node, ...]  # registration order: ties go to the earlier branch


def pipe(left: Node, right: Any) -> Node:
    """``left | right``; returns ``left``."""
    if isinstance(right, MergeSorted):
        raise TypeError(f"{left} | merge_branches(...): merge_branches goes on the left of |, "
                        "as in merge_branches([b, c], key='timestamp') | d")
    elements, router = _split_router(right)
    _connect(_slots([left], "right"), _slots(elements, "left"), router)
    return left


def merge_into(left: Any, right: Node) -> Node:
    """``[b, c] | right``; returns ``right``."""
    elements, router = _split_router(left)
    if router is not None:
        raise ValueError(f"a router goes on the right of |, as in a | [b, c, router]; found {router!r} in "
                         f"{_show(left)} | {right}")
    _connect(_slots(elements, "right"), _slots([right], "left"), None)
    return right


class MergeSorted:
    """``merge_branches([b, c], key=...)``: put it left of ``|`` to merge the branches by key.

    Raises:
        ValueError: a router among the nodes, no node, a bad direction, a bad key.
        TypeError: a key of the wrong type.
    """

    def __init__(self, nodes: Any, key: SortKey, direction: Literal["min", "max"]) -> None:
        elements, router = _split_router(nodes)
        if router is not None:
            raise ValueError("merge_branches([...]) takes nodes (or branches), not a router")
        if not elements:
            raise ValueError("merge_branches([...]) needs at least one node")
        if direction not in ("min", "max"):
            raise ValueError(f"merge_branches: direction must be 'min' or 'max', not {direction!r}")
        key_function(key)  # a bad key fails here, not in the middle of a run
        self.nodes, self.key, self.direction = elements, key, direction

    def __or__(self, other: Any) -> Node:
        if not isinstance(other, Node):
            raise TypeError(f"merge_branches([...]) | x: x must be one node, not {_show(other)}")
        branches = tuple(_slots(self.nodes, "right"))
        merge_into(list(branches), other)
        other._merge = MergeSpec(self.key, self.direction, branches)
        return other

    def __repr__(self) -> str:
        return f"merge_branches({_show(self.nodes)}, key={self.key!r}, direction={self.direction!r})"


def merge_branches(nodes: Any, key: SortKey = "timestamp", direction: Literal["min", "max"] = "min") -> MergeSorted:
    """Merge branches into the node after ``|`` in order of ``key`` (as SortedQueueMultiplexer does).

    Each branch must push its items in key order already; ties go to the earlier branch in the
    list, so the merged order is the same in every mode and on every run. ``key`` is a field
    name, a path (``"a.b"`` or ``["a", "b"]``), a tuple of paths (a compound key) or a callable.

    >>> from chronopipe.graph import Node, Pipeline
    >>> from chronopipe.testing import ListSink
    >>> class Tag(Node):
    ...     def process(self, item):
    ...         self.push({"timestamp": item, "branch": self.name})
    >>> class Odd(Node):
    ...     def process(self, item):
    ...         if item % 2:
    ...             self.push(item)
    >>> src, a, b, out = Odd("src"), Tag("a"), Tag("b"), ListSink("out")
    >>> _ = src | [a, b]
    >>> _ = merge_branches([a, b], key="timestamp") | out
    >>> Pipeline(src).consume([1, 2, 3])
    >>> [(r["timestamp"], r["branch"]) for r in out.items]
    [(1, 'a'), (1, 'b'), (3, 'a'), (3, 'b')]

    Raises:
        ValueError: a router among ``nodes``, no node, ``direction`` not "min" or "max", a bad key.
        TypeError: a key of the wrong type; later, ``| x`` where x is not one node.
    """
    return MergeSorted(nodes, key, direction)


def merge_sorted(nodes: Any, key: SortKey = "timestamp", direction: Literal["min", "max"] = "min") -> MergeSorted:
    """The name ``merge_branches`` had before 0.2: the same, with a DeprecationWarning.

    ``chronopipe.merge_sorted`` (not this) merges iterables in the calling thread.

    Raises:
        ValueError, TypeError: as ``merge_branches``.
    """
    warnings.warn("chronopipe.graph.merge_sorted is now merge_branches (chronopipe.merge_sorted merges "
                  "iterables, not pipeline branches)", DeprecationWarning, stacklevel=2)
    return MergeSorted(nodes, key, direction)


# -- internals -------------------------------------------------------------------------------
def _split_router(obj: Any) -> tuple[list[Node], Callable[[Any], Any] | None]:
    """The nodes of ``obj`` (flattened) and the router callable among its top-level elements."""
    if isinstance(obj, Node):
        return [obj], None
    if isinstance(obj, MergeSorted):
        raise TypeError(f"{obj!r} can only be followed by | and one node")
    if inspect.isgenerator(obj) and obj.gi_code is _MERGED_CODE:
        raise TypeError("chronopipe.merge_sorted(...) merges iterables, not pipeline branches: merge branches "
                        "with chronopipe.graph.merge_branches([b, c], key=...) | d")
    if isinstance(obj, (str, bytes)) or not hasattr(obj, "__iter__"):
        raise ValueError(f"don't know what to do with {obj!r}: | joins nodes, lists of nodes (or branches), "
                         "and one router callable inside a list")
    items = list(obj)
    routers = [x for x in items if callable(x) and not isinstance(x, (Node, type))]
    if len(routers) > 1:
        raise ValueError(f"a list after | may hold one router callable, not {len(routers)}: {routers!r}")
    nodes: list[Node] = []
    for x in items:
        if routers and x is routers[0]:
            continue
        nodes.extend(_flatten(x))
    return nodes, (routers[0] if routers else None)


#: The code of the generator ``chronopipe.merge_sorted`` returns, to say what to use instead.
_MERGED_CODE = merge_iterables([]).gi_code  # type: ignore[attr-defined]


def _flatten(obj: Any) -> list[Node]:
    if isinstance(obj, Node):
        return [obj]
    if isinstance(obj, (str, bytes, MergeSorted)) or not hasattr(obj, "__iter__"):
        raise ValueError(f"don't know what to do with {obj!r} inside a list: only nodes and lists of nodes "
                         "nest (a router callable goes at the top level of the list after |)")
    return [n for x in obj for n in _flatten(x)]


def _slots(nodes: list[Node], side: Literal["left", "right"]) -> list[Node]:
    """The open ends of the graphs of ``nodes``: their top nodes (left) or bottom nodes (right)."""
    found: dict[Node, None] = {}
    for node in nodes:
        for slot in (node._initial_nodes() if side == "left" else node._terminal_nodes()):
            found[slot] = None
    return list(found)


def _connect(lefts: list[Node], rights: list[Node], router: Callable[[Any], Any] | None) -> None:
    for left in lefts:
        source = left
        if router is not None:
            source = RouterNode(f"{left.name}.{_callable_name(router)}", router)
            left.add_downstream(source)
        for right in rights:
            source.add_downstream(right)


def _callable_name(fn: Callable[[Any], Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _show(obj: Any) -> str:
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(_show(x) for x in obj) + "]"
    return str(obj) if isinstance(obj, Node) else repr(obj)
