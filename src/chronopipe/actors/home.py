"""Bringing a process actor's state home: what it changed on its copy, applied to the parent's object.

A process actor is forked: it works on copies of the parent's objects (a pipeline node and its
``global_state``, a validation run's checks), and what it changes there stays there unless it
is brought back. The one way to do that, in three calls:

1. ``token = track(obj, name)`` in the actor's process, before it changes anything (in
   ``on_start``): pickled copies of ``obj``'s attributes (of its items, for a dict);
2. ``patch = changes(token, obj)`` in the same process, when it is done (in ``on_stop``, whose
   value the host brings back): what changed since, pickled once (by pickle, else dill);
3. ``apply(parent_obj, patch)`` in the parent (in ``on_result``, or once every actor has ended
   when the order matters, as a pipeline's nodes do): the changes made to the parent's object.

How a change is applied:

* an attribute (key) set, replaced or deleted: set, replaced or deleted;
* a list that grew at its end (``append``/``extend``): the new items are appended;
* a set: the added items are added, the removed ones removed;
* a dict: merged key by key, recursively;
* any other change of a value (a list changed otherwise, a number, an object): the child's value.

So the parent's lists, sets and dicts stay the same objects, and patches from several copies of
one object (a node's ``workers > 1``) applied in turn keep what each appended, while a value
several of them set ends up as the last one applied. A value that cannot be pickled, not even
by dill, does not come back: a warning names it (not for a callable that was not tracked, e.g.
a method of an unpicklable object cached on ``obj``) and the rest comes back.

Only the attributes in ``vars(obj)`` (a dict's items) are tracked: an object without
``__dict__`` (slots only) tracks nothing. ``apply`` in the process that made the patch, on the
object it was made from, would apply it twice (lists extended again): an actor that may run in
its caller's process (a thread) tracks nothing there.

>>> from types import SimpleNamespace
>>> parent = SimpleNamespace(seen=[1], totals={"a": {"n": 1}}, tags={"x", "y"}, done=False)
>>> child = pickle.loads(pickle.dumps(parent))           # what the fork gives the actor
>>> token = track(child, "tally")                        # child, on_start
>>> child.seen.append(2); child.totals["a"]["m"] = 2; child.tags.discard("x"); child.done = True
>>> patch = changes(token, child)                        # child, on_stop
>>> patch
Patch('done', 'seen', 'tags', 'totals')
>>> parent.seen.append(9)                                # the parent's own change meanwhile
>>> apply(parent, patch)                                 # parent, on_result
>>> parent.seen, parent.totals, sorted(parent.tags), parent.done
([1, 9, 2], {'a': {'n': 1, 'm': 2}}, ['y'], True)
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any

import dill

__all__ = ["Patch", "Token", "apply", "changes", "track"]

log = logging.getLogger("chronopipe.actor")

_MISSING = object()
#: one change: ("set", value), ("del",), ("extend", items), ("sets", added, removed) or ("dict", {key: change})
Change = tuple[Any, ...]


class Token:
    """What :func:`track` took of one object: its name, which keys it tracks and their pickled
    values then. It stays in the process that made it (give it to :func:`changes` there)."""

    __slots__ = ("before", "name", "only")

    def __init__(self, name: str, only: Callable[[Any], bool] | None, before: dict[Any, bytes]) -> None:
        self.name = name
        self.only = only
        self.before = before

    def __repr__(self) -> str:
        return f"Token({self.name!r}, {len(self.before)} values)"


class Patch:
    """What changed in one tracked object: ``names``, the attributes (keys) it changes, and
    ``data``, the changes pickled once where :func:`changes` made them (so sending a patch
    costs a copy of bytes). A patch without change is false.

    >>> Patch({}), bool(Patch({})), bool(Patch({"n": ("set", 1)}))
    (Patch(), False, True)
    """

    __slots__ = ("data", "names")

    def __init__(self, changed: dict[Any, Change]) -> None:
        self.names: tuple[Any, ...] = tuple(sorted(changed, key=repr))
        self.data: bytes = _dumps(changed) if changed else b""

    def changes(self) -> dict[Any, Change]:
        """The changes, unpickled (a fresh copy at each call)."""
        return _loads(self.data) if self.data else {}

    def __bool__(self) -> bool:
        return bool(self.names)

    def __repr__(self) -> str:
        return "Patch({})".format(", ".join(map(repr, self.names)))


def track(obj: Any, name: str, *, only: Callable[[Any], bool] | None = None) -> Token:
    """Start tracking ``obj``'s attributes (a dict's items), those whose name ``only`` accepts
    (default: all). Call it in the actor's process, before the changes to bring back.

    ``name`` names ``obj`` in the warnings (``"node 'sum'"``). A value that cannot be pickled is
    not tracked (a debug message says so); if it can be at the end, it comes back as set.
    """
    taken: dict[Any, bytes] = {}
    for key, value in _view(obj, only).items():
        try:
            taken[key] = _dumps(value)
        except Exception as exc:
            log.debug("%s: %r cannot be pickled (%s); its changes stay in this process", name, key, exc)
    return Token(name, only, taken)


def changes(token: Token, obj: Any) -> Patch:
    """What changed in ``obj`` since :func:`track` gave ``token``, in the same process.

    A value that cannot be pickled now is left out, with a warning naming it (none for a
    callable that was not tracked: it could not be pickled at ``track`` either, or came since).
    The patch is pickled here, by pickle (dill if pickle cannot), so that the host sends bytes.
    """
    before, changed = token.before, {}
    after = _view(obj, token.only)
    for key, value in after.items():
        old = before.get(key, _MISSING)
        try:
            data = _dumps(value)
        except Exception as exc:
            if old is not _MISSING or not callable(value):
                log.warning("%s: %r cannot be pickled (%s); its change does not come back from the process",
                            token.name, key, exc)
            continue
        if old is _MISSING:
            changed[key] = ("set", value)
        elif data != old:
            change = _diff(_loads(old), value)
            if change is not None:
                changed[key] = change
    for key in before.keys() - after.keys():
        changed[key] = ("del",)
    return Patch(changed)


def apply(obj: Any, patch: Patch) -> None:
    """Apply ``patch`` (from :func:`changes`, in another process) to ``obj``, the parent's
    object: to its attributes, or to its items for a dict. Raises what setting one raises."""
    if patch:
        _apply_all(obj, patch.changes())


# -- the diff ------------------------------------------------------------------------------------
def _view(obj: Any, only: Callable[[Any], bool] | None) -> dict[Any, Any]:
    """The tracked mapping: a dict itself, else the attributes; those ``only`` accepts."""
    values = obj if isinstance(obj, dict) else vars(obj) if hasattr(obj, "__dict__") else {}
    return dict(values) if only is None else {k: v for k, v in values.items() if only(k)}


def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        return dill.dumps(value)


def _loads(data: bytes) -> Any:
    return dill.loads(data)  # reads plain pickle too


def _diff(old: Any, new: Any) -> Change | None:
    if isinstance(old, dict) and type(old) is type(new):
        changed: dict[Any, Change] = {}
        for k, v in new.items():
            if k not in old:
                changed[k] = ("set", v)
            else:
                c = _diff(old[k], v)
                if c is not None:
                    changed[k] = c
        for k in old.keys() - new.keys():
            changed[k] = ("del",)
        return ("dict", changed) if changed else None
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


# -- applying ------------------------------------------------------------------------------------
def _apply_all(target: Any, changed: dict[Any, Change]) -> None:
    for key, change in changed.items():
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
        _apply_all(current, change[1])
        return current
    raise ValueError(f"unknown state change {kind!r}")
