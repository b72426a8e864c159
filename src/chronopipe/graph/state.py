"""GlobalState, and how state changed in a node's process comes back to the pipeline.

In the ``sync`` and ``threads`` modes every node sees the same ``global_state`` object (and its
own node object). In the ``processes`` mode each node process works on a copy (forked when the
pipeline begins); when the node has ended, what it changed travels back to the parent and is
applied to the real objects, node by node in top-down order (the order of their ``end()``):

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

import logging
import pickle
from typing import Any

import dill

__all__ = ["GlobalState", "Patch", "apply_patch", "diff_state", "node_attributes", "snapshot", "state_view"]

log = logging.getLogger("chronopipe.graph")

_MISSING = object()
Change = tuple[Any, ...]
Patch = dict[str, Change]


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


# -- what is tracked ---------------------------------------------------------------------------
_NOT_SYNCED = frozenset({"pipeline", "global_state", "push", "name"})


def state_view(state: Any) -> dict[str, Any] | None:
    """The mapping whose changes are tracked: a dict global state itself, else its attributes."""
    if isinstance(state, dict):
        return state
    return vars(state) if hasattr(state, "__dict__") else None


def node_attributes(node: Any) -> dict[str, Any]:
    """A node's own public attributes (not its wiring)."""
    return {k: v for k, v in vars(node).items() if not k.startswith("_") and k not in _NOT_SYNCED}


# -- snapshots and patches ---------------------------------------------------------------------
def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        return dill.dumps(value)


def _loads(data: bytes) -> Any:
    return dill.loads(data)  # reads plain pickle too


def snapshot(values: dict[str, Any], owner: str) -> dict[str, bytes]:
    """Pickled copies of ``values`` (those that cannot be pickled are not tracked)."""
    taken: dict[str, bytes] = {}
    for key, value in values.items():
        try:
            taken[key] = _dumps(value)
        except Exception as exc:
            log.debug("%s: %r cannot be pickled (%s); its changes stay in the node process", owner, key, exc)
    return taken


def diff_state(before: dict[str, bytes], after: dict[str, Any], owner: str) -> Patch:
    """What changed from the snapshot ``before`` to ``after``, as a picklable patch."""
    patch: Patch = {}
    for key, value in after.items():
        old = before.get(key, _MISSING)
        try:
            data = _dumps(value)
        except Exception as exc:
            if old is not _MISSING or not callable(value):
                log.warning("%s: %r cannot be pickled (%s); its change does not come back from the node process",
                            owner, key, exc)
            continue
        if old is _MISSING:
            patch[key] = ("set", value)
        elif data != old:
            change = _diff(_loads(old), value)
            if change is not None:
                patch[key] = change
    for key in before.keys() - after.keys():
        patch[key] = ("del",)
    return patch


def _diff(old: Any, new: Any) -> Change | None:
    if isinstance(old, dict) and type(old) is type(new):
        changes: dict[Any, Change] = {}
        for k, v in new.items():
            if k not in old:
                changes[k] = ("set", v)
            else:
                c = _diff(old[k], v)
                if c is not None:
                    changes[k] = c
        for k in old.keys() - new.keys():
            changes[k] = ("del",)
        return ("dict", changes) if changes else None
    if isinstance(old, list) and type(old) is type(new):
        n = len(old)
        if len(new) >= n and _same(new[:n], old):
            return ("extend", new[n:]) if len(new) > n else None
        return ("set", new)
    if isinstance(old, (set, frozenset)) and type(old) is type(new) and isinstance(new, set):
        added, removed = new - old, old - new
        return ("sets", added, removed) if added or removed else None
    return None if _same(old, new) else ("set", new)


def _same(a: Any, b: Any) -> bool:
    try:
        if type(a).__eq__ is not object.__eq__:
            return bool(a == b)
    except Exception:
        pass
    try:
        return _dumps(a) == _dumps(b)
    except Exception:
        return False


def apply_patch(target: Any, patch: Patch) -> None:
    """Apply ``patch`` to the attributes of ``target`` (or to its items, for a dict)."""
    for key, change in patch.items():
        if isinstance(target, dict):
            if change[0] == "del":
                target.pop(key, None)
            else:
                target[key] = _apply(target.get(key, _MISSING), change)
        elif change[0] == "del":
            if hasattr(target, key):
                delattr(target, key)
        else:
            setattr(target, key, _apply(getattr(target, key, _MISSING), change))


def _apply(current: Any, change: Change) -> Any:
    kind = change[0]
    if kind == "set":
        return change[1]
    if kind == "extend":
        if isinstance(current, list):
            current.extend(change[1])
            return current
        return list(change[1]) if current is _MISSING else current
    if kind == "sets":
        if isinstance(current, set):
            current |= change[1]
            current -= change[2]
            return current
        return set(change[1]) if current is _MISSING else current
    if kind == "dict":
        if not isinstance(current, dict):
            current = {}
        apply_patch(current, change[1])
        return current
    raise ValueError(f"unknown state change {kind!r}")
