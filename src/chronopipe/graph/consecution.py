"""consecution's extras on Node: walks, slots, plots and top-down calls, kept for its users.

chronopipe's pipelines grew from consecution (a small library of nodes composed with ``|``,
run depth first on one thread). Code written for it calls more of a node than a pipeline
needs: ``depth_first_walk``, ``breadth_first_walk``, ``all_nodes``, ``root_nodes``,
``initial_node_set``, ``terminal_node_set``, ``top_down_call``, ``top_down_make_repr``,
``plot`` and the helpers its tests patch (``_build_pydot_graph``, ``_get_exposed_slots``).
They stay, with consecution's names and signatures (tests/test_graph_consecution.py), in this
one mixin that ``Node`` inherits. Two differences: the walks visit the same nodes, but a node
with several parents may come in another order in ``as_ordered_list=True``; ``plot`` also
writes pdf and svg, where consecution drew png only. chronopipe's own code uses none of them but ``plot``
(``Pipeline.plot`` draws through its top node, so a patched ``_build_pydot_graph`` is used).
New code walks with ``Node.walk`` and draws with ``Pipeline.plot``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .node import Node

__all__ = ["ConsecutionExtras"]


class ConsecutionExtras:
    """consecution's surface of a node, on top of ``Node.walk``, ``Node.top_node`` and the wiring."""

    # Provided by Node.
    _upstream_nodes: list[Node]
    _downstream_nodes: list[Node]
    top_node: Node

    def walk(self, direction: str = "both", how: str = "breadth_first",
             as_ordered_list: bool = False) -> list[Node] | set[Node]:
        raise NotImplementedError  # Node.walk

    def _initial_nodes(self) -> list[Node]:
        raise NotImplementedError  # Node._initial_nodes

    def _terminal_nodes(self) -> list[Node]:
        raise NotImplementedError  # Node._terminal_nodes

    def depth_first_walk(self, direction: str = "both", as_ordered_list: bool = False) -> list[Node] | set[Node]:
        """``walk(direction, "depth_first", as_ordered_list)``."""
        return self.walk(direction, "depth_first", as_ordered_list)

    def breadth_first_walk(self, direction: str = "both", as_ordered_list: bool = False) -> list[Node] | set[Node]:
        """``walk(direction, "breadth_first", as_ordered_list)``."""
        return self.walk(direction, "breadth_first", as_ordered_list)

    @property
    def all_nodes(self) -> set[Node]:
        """Every node connected to this one, this one included."""
        return self.walk("both")  # type: ignore[return-value]

    @property
    def root_nodes(self) -> list[Node]:
        """The connected nodes that have nothing upstream."""
        return [n for n in self.walk("both", as_ordered_list=True) if not n._upstream_nodes]

    @property
    def initial_node_set(self) -> set[Node]:
        """The nodes at the top of the graph above this node (its open slots on the left)."""
        return set(self._initial_nodes())

    @property
    def terminal_node_set(self) -> set[Node]:
        """The nodes at the bottom of the graph below this node (its open slots on the right)."""
        return set(self._terminal_nodes())

    def top_down_call(self, method_name: str) -> None:
        """Call ``method_name`` on this node and those below it, each after all its parents."""
        from .node import top_down_order

        for node in top_down_order(self):  # type: ignore[arg-type]
            getattr(node, method_name)()

    def top_down_make_repr(self) -> None:
        """Store the text picture of the pipeline in ``self.pipeline._node_repr`` (consecution)."""
        if not hasattr(self, "pipeline"):
            raise ValueError(f"{self}: top_down_make_repr() works only on nodes placed in a Pipeline")
        from .render import topology_lines

        self.pipeline._node_repr = "".join(line + "\n" for line in topology_lines(self.top_node))

    def plot(self, file_name: str = "pipeline", kind: str = "png") -> None:
        """Draw the graph this node belongs to into ``file_name.kind`` (needs Graphviz)."""
        from .render import plot

        plot(self._build_pydot_graph, file_name, kind)

    def _build_pydot_graph(self) -> Any:  # consecution's name: tests patch it
        from .render import digraph

        return digraph(self.top_node)

    def _get_exposed_slots(self, obj: Any, pointing: str) -> set[Node]:  # consecution's helper
        from .compose import _slots, _split_router

        if pointing not in ("left", "right"):
            raise ValueError(f"pointing must be 'left' or 'right', not {pointing!r}")
        return set(_slots(_split_router(obj)[0], "right" if pointing == "right" else "left"))
