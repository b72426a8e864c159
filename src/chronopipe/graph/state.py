"""GlobalState, and how state changed in a node's process comes back to the pipeline.

In the ``sync`` and ``threads`` modes every node sees the same ``global_state`` object (and its
own node object). In the ``processes`` mode each node process works on a copy (forked when the
pipeline begins); when the node has ended, what it changed travels back to the parent and is
applied to the real objects, node by node in top-down order (the order of their ``end()``).
The node actor (actors.py) does it with :mod:`chronopipe.actors.home`, the one way a process
actor's state comes home: ``global_state`` (its attributes, or its items for a dict) and the
node's own public attributes (:func:`node_attribute`) are tracked when the node process starts,
and the parent applies what changed:

* an attribute or dict key set, replaced or deleted: set, replaced or deleted;
* a list that grew at its end (``append``/``extend``): the new items are appended;
* a set: the added items are added, the removed ones removed;
* a dict: merged key by key, recursively.

So the usual pattern (nodes write their results into ``global_state`` or into their own
attributes, in ``process()`` or ``end()``, and the caller reads them after ``consume()``) gives
the same result in every mode. A node with ``workers > 1`` runs as copies: what they append to
a list comes back from each (as in the threads mode, where the copies share the node's lists),
while a value several copies set ends up as one of them: keep such nodes stateless.

What a node process changes is not seen by other node processes during the run, and values
that cannot be pickled do not come back (a warning names them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GlobalState", "node_attribute"]


class GlobalState:
    """A plain object for state shared by all the nodes of a pipeline; attributes are also items.

    >>> state = GlobalState(totals={}, seen=0)
    >>> state["seen"] += 1; state.totals["a"] = 2
    >>> state.seen, state["totals"], state
    (1, {'a': 2}, GlobalState('seen', 'totals'))
    """

    # "_item_self": a keyword argument may be called "self"
    def __init__(_item_self, **kwargs: Any) -> None:  # noqa: N805
        for key, value in kwargs.items():
            _item_self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __str__(self) -> str:
        return "GlobalState({})".format(", ".join(f"'{k}'" for k in sorted(vars(self))))

    __repr__ = __str__


#: a node's wiring: set by the pipeline, never brought back from a node process
WIRING = frozenset({"pipeline", "global_state", "push", "name"})


def node_attribute(key: Any) -> bool:
    """Whether a node's attribute ``key`` is its own state, which a node process brings back:
    public, and not its wiring.

    >>> [k for k in ("total", "_seen", "push", "global_state") if node_attribute(k)]
    ['total']
    """
    return isinstance(key, str) and not key.startswith("_") and key not in WIRING
