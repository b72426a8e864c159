"""Helpers for testing pipelines (in the style of ``bytewax.testing``): a list source, a list
sink and nodes made from plain functions. They behave the same in every pipeline mode.

>>> from chronopipe.graph import Pipeline
>>> out = []
>>> Pipeline(MapNode("double", lambda x: 2 * x) | ListSink("out", out), mode="processes").consume(ListSource([1, 2]))
>>> out
[2, 4]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .graph.node import Node

__all__ = ["FilterNode", "ListSink", "ListSource", "MapNode"]


class ListSource:
    """The items of a list, to give to ``Pipeline.consume``; ``taken`` counts those handed out.

    ``raise_at=i`` raises ``error`` (a RuntimeError by default) instead of handing out item ``i``,
    to test what a pipeline does when its input fails.

    >>> source = ListSource("abc", raise_at=2)
    >>> it = iter(source); next(it), next(it), source.taken
    ('a', 'b', 2)
    >>> next(it)
    Traceback (most recent call last):
    ...
    RuntimeError: ListSource: failing at item 2 as asked (raise_at=2)
    """

    def __init__(self, items: Iterable[Any], *, raise_at: int | None = None,
                 error: BaseException | None = None) -> None:
        self.items = list(items)
        self.raise_at = raise_at
        self.error = error
        self.taken = 0

    def __iter__(self) -> Iterator[Any]:
        for i, item in enumerate(self.items):
            if i == self.raise_at:
                raise self.error or RuntimeError(f"ListSource: failing at item {i} as asked (raise_at={i})")
            self.taken += 1
            yield item

    def __len__(self) -> int:
        return len(self.items)


class ListSink(Node):
    """A node that appends every item it receives to ``items`` (a new list, or the one given)
    and pushes it on unchanged. In the processes mode the list is filled back here at the end.

    >>> from chronopipe.graph import Pipeline
    >>> sink = ListSink("sink")
    >>> Pipeline(sink).consume("xy")
    >>> sink.items
    ['x', 'y']
    """

    def __init__(self, name: str, items: list[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.items = [] if items is None else items

    def process(self, item: Any) -> None:
        self.items.append(item)
        self.push(item)


class MapNode(Node):
    """A node that pushes ``fn(item)`` for every item.

    >>> from chronopipe.graph import Pipeline
    >>> sink = ListSink("sink")
    >>> Pipeline(MapNode("inc", lambda x: x + 1) | sink).consume([1, 2])
    >>> sink.items
    [2, 3]
    """

    def __init__(self, name: str, fn: Callable[[Any], Any], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.fn = fn

    def process(self, item: Any) -> None:
        self.push(self.fn(item))


class FilterNode(Node):
    """A node that pushes the items for which ``predicate(item)`` is true.

    >>> from chronopipe.graph import Pipeline
    >>> sink = ListSink("sink")
    >>> Pipeline(FilterNode("even", lambda x: x % 2 == 0) | sink).consume(range(5))
    >>> sink.items
    [0, 2, 4]
    """

    def __init__(self, name: str, predicate: Callable[[Any], bool], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.predicate = predicate

    def process(self, item: Any) -> None:
        if self.predicate(item):
            self.push(item)
