"""Pictures of a pipeline: consecution's text form (``print(pipeline)``) and Graphviz plots."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from .node import Node, RouterNode, top_down_order

__all__ = ["digraph", "notes", "plot", "topology_lines"]

RULE = "-" * 68
KINDS = ("png", "pdf", "svg")


def topology_lines(top: Node) -> list[str]:
    """One ``name | downstream`` line per node that has a downstream, in top-down order.

    >>> a, b, c = Node("a"), Node("bb"), Node("c")
    >>> _ = a | [b, c]
    >>> topology_lines(a)
    [' a | [bb, c]']
    """
    width = max(len(n.name) for n in top.walk("both"))
    lines = []
    for node in top_down_order(top):
        names = sorted(n.name for n in node._downstream_nodes)
        if names:
            right = names[0] if len(names) == 1 else "[" + ", ".join(names) + "]"
            lines.append(f"{node.name:>{width}} | {right}")
    return lines


def notes(top: Node) -> list[str]:
    """chronopipe's settings that the topology lines do not show (workers, mode, sorted merges)."""
    out = []
    for node in top_down_order(top):
        said = []
        if getattr(node, "workers", 1) != 1:
            said.append(f"workers={node.workers}" + (", ordered" if node.ordered else ""))
        if getattr(node, "mode", None):
            said.append(f"mode={node.mode}")
        if node._merge is not None:
            said.append(f"merge_branches(key={node._merge.key!r}, direction={node._merge.direction!r})")
        if said:
            out.append(f"{node.name}: " + ", ".join(said))
    return out


def text(top: Node, mode: str) -> str:
    """What ``str(pipeline)`` shows."""
    head = "Pipeline" if mode == "sync" else f"Pipeline (mode={mode})"
    body = "".join(line + "\n" for line in topology_lines(top) + notes(top))
    return f"\n{head}\n{RULE}\n{body}{RULE}\n"


def digraph(top: Node) -> Any:
    """A ``graphviz.Digraph`` of the graph (needs the graphviz Python package)."""
    try:
        from graphviz import Digraph
    except ImportError as exc:
        raise ImportError("plotting a pipeline needs the graphviz Python package (pip install graphviz) and "
                          "Graphviz's programs (apt-get install graphviz, or brew install graphviz); "
                          "print(pipeline) shows the topology as text without them") from exc
    graph = Digraph(comment="pipeline")
    order = top_down_order(top)
    for node in order:
        label = node.name if getattr(node, "workers", 1) == 1 else f"{node.name} (x{node.workers})"
        graph.node(node.name, label=label, shape="oval" if isinstance(node, RouterNode) else "rectangle")
    for node in order:
        for down in node._downstream_nodes:
            graph.edge(node.name, down.name)
    return graph


def plot(build: Callable[[], Any], file_name: str = "pipeline", kind: str = "png") -> str:
    """Render the graph ``build()`` returns to ``file_name.kind``; returns that path.

    When Graphviz's programs cannot run, says how to install them (on stderr, as consecution
    does, and in the RuntimeError raised).
    """
    if kind not in KINDS:
        raise ValueError(f"plot(kind=...) must be one of {KINDS}, not {kind!r}")
    graph = build()
    graph.format = kind
    stem = file_name[: -len(kind) - 1] if file_name.endswith(f".{kind}") else file_name
    try:
        return os.fspath(graph.render(stem))
    except RuntimeError as exc:  # graphviz.ExecutableNotFound, or dot failing
        sys.stderr.write(f"\n{NO_DOT}\n")
        raise RuntimeError(f"{NO_DOT} ({exc})") from exc


NO_DOT = ("plot() could not run Graphviz (its `dot` program): install the graphviz system package "
          "(apt-get install graphviz, or brew install graphviz); print(pipeline) shows the topology as text without it")
