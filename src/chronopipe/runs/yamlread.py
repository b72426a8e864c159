"""Reading YAML written by hand, for run configurations and profiles files.

:class:`StrictLoader` is a ``yaml.SafeLoader`` that refuses what SafeLoader lets through silently
or expensively: a key given twice in one mapping (yaml keeps the last one), and a document whose
aliases expand it by more than :data:`ALIAS_BUDGET` nodes (a "billion laughs": nine anchors of
nine aliases each are 387 million nodes to whoever walks the data). :func:`yaml_error_line` says
what yaml refused in one line without quoting the line (a profiles file's line holds a password).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

__all__ = ["ALIAS_BUDGET", "StrictLoader", "yaml_error_line"]

ALIAS_BUDGET = 100_000
"""The most nodes aliases may add to a document, counting each alias as the nodes it stands for."""


class StrictLoader(yaml.SafeLoader):
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping (keys brought in by a
    ``<<`` merge may still be overridden, as YAML intends) and, before constructing anything, a
    document that aliases expand by more than ALIAS_BUDGET nodes, at the first node too big.
    Normal anchors, aliases, merges and an alias of an enclosing node (``&a [*a]``) load."""

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None and (big := _too_big(node)) is not None:
            raise yaml.composer.ComposerError(
                None, None, f"the document expands to more than {ALIAS_BUDGET:,} nodes through aliases",
                big.start_mark)  # fmt: skip
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            first = seen.get(key) if isinstance(key, Hashable) else None  # unhashable: SafeLoader says so
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _too_big(root: yaml.Node) -> yaml.Node | None:
    """When aliases add more than ALIAS_BUDGET nodes to ``root``'s graph, its first node (innermost)
    whose size, aliases expanded, is over ALIAS_BUDGET; else None. Sizes are memoized by node,
    so this walks each node once, however many aliases there are."""
    sizes: dict[int, int] = {}  # id(node) -> its size, aliases expanded; 1 while walking it
    first: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 1  # an alias of an enclosing node (&a [*a]) counts once, as it is walked
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            else:
                children = node.value if isinstance(node, yaml.SequenceNode) else []
            sizes[id(node)] = total = 1 + sum(size(child) for child in children)
            if total > ALIAS_BUDGET and not first:
                first.append(node)
        return sizes[id(node)]

    return first[0] if size(root) - len(sizes) > ALIAS_BUDGET else None


def yaml_error_line(source: str, error: yaml.YAMLError) -> str:
    """One line ``FILE:LINE:COL: problem`` for a yaml error, at yaml's own position, without the
    snippet of the line yaml prints (it could show a password, in a profiles file)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or type(error).__name__
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context != problem and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    return f"{source}{f':{mark.line + 1}:{mark.column + 1}' if mark else ''}: {problem}"
