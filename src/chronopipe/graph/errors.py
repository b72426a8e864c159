"""What a failing node raises: an ActorError naming the node, that is also the original type.

In every mode a node's exception reaches the caller as an ``ActorError`` with the node's name,
the traceback and the item being processed. Its class derives from both ``ActorError`` and the
original exception's class, so code written for consecution (``except ValueError``) keeps
working: ``ActorError[ValueError]`` is caught by both.
"""

from __future__ import annotations

import threading
import traceback
from types import TracebackType
from typing import Any

from ..actors.errors import NO_RECORD as _NO_RECORD
from ..actors.errors import ActorError
from ..actors.errors import qualified_name as _qualified

__all__ = ["NO_ITEM", "find_origin", "from_actor_error", "mark", "node_error"]

NO_ITEM = _NO_RECORD
_classes: dict[type, type[ActorError]] = {}
_lock = threading.Lock()
_ORIGIN = "_chronopipe_node"
_ITEM_ARGS = ("process", "key", "_process_item")


def node_error(node: str, exc: BaseException, item: Any = NO_ITEM) -> ActorError:
    """The error to raise for ``exc`` raised by node ``node`` while handling ``item``.

    >>> err = node_error("parse", ValueError("bad row"), "1;2")
    >>> isinstance(err, ActorError), isinstance(err, ValueError), err.actor, err.record
    (True, True, 'parse', '1;2')
    """
    if isinstance(exc, ActorError):
        return exc
    # a SystemExit stops the run, reported as an ActorError that is not itself a SystemExit (as in the actor modes)
    kind = _class_for(type(exc)) if isinstance(exc, Exception) else ActorError
    return _build(kind, node, _qualified(exc), str(exc),
                  traceback="".join(traceback.format_exception(exc)),
                  record=None if item is NO_ITEM else item, cause=exc)


def from_actor_error(err: ActorError, node: str) -> ActorError:
    """``err`` (from the runtime, about one of ``node``'s actors) renamed for the node and typed
    after the original exception when that could be rebuilt here; how far each actor got and
    what was lost (``progress``, ``in_flight``, ``lost``) come along.

    >>> err = ActorError("work[1]", "ProcessKilled", "killed", exitcode=-9,
    ...                  progress={"work[1]": (5, 4)}, in_flight={"a": 3})
    >>> node_err = from_actor_error(err, "work")
    >>> node_err.actor, node_err.exitcode, node_err.progress, node_err.in_flight, node_err.lost
    ('work', -9, {'work[1]': (5, 4)}, {'a': 3}, 3)
    """
    if err.actor == node and type(err) is not ActorError:
        return err
    cause = err.cause
    cls = _class_for(type(cause)) if isinstance(cause, BaseException) else ActorError
    return _build(cls, node, err.exc_type, err.message, traceback=err.traceback, record=err.record,
                  record_repr=err.record_repr, exitcode=err.exitcode, cause=cause,
                  progress=getattr(err, "progress", None), in_flight=getattr(err, "in_flight", None))


def mark(exc: BaseException, node: str, item: Any = NO_ITEM) -> BaseException:
    """Say which node ``exc`` belongs to (when the traceback would name another one)."""
    setattr(exc, _ORIGIN, (node, item))
    return exc


def find_origin(exc: BaseException, nodes: dict[int, Any]) -> tuple[Any, Any] | None:
    """The node (one of ``nodes``, by id) whose code raised ``exc``, and the item it was given.

    The innermost frame running a method of one of the nodes names the node; the item is the
    argument of that node's ``process`` (or ``key``) frame, as it was when the error happened.
    """
    marked = getattr(exc, _ORIGIN, None)
    if marked is not None:
        name, item = marked
        return next((n for n in nodes.values() if n.name == name), None), item
    frames = []
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for depth in range(len(frames) - 1, -1, -1):
        node = nodes.get(id(frames[depth].f_locals.get("self")))
        if node is None:
            continue
        for frame in reversed(frames[: depth + 1]):
            code = frame.f_code
            if frame.f_locals.get("self") is not node:
                break
            if code.co_name in _ITEM_ARGS and code.co_argcount >= 2:
                return node, frame.f_locals.get(code.co_varnames[1], NO_ITEM)
        return node, NO_ITEM
    return None


def _class_for(exc_type: type) -> type[ActorError]:
    if issubclass(exc_type, ActorError) or not issubclass(exc_type, Exception):
        return ActorError
    with _lock:
        cls = _classes.get(exc_type)
        if cls is None:
            try:
                cls = type(f"ActorError[{exc_type.__name__}]", (ActorError, exc_type), {"__module__": __name__})
                cls("probe", "probe", "probe")  # some exception types cannot be mixed in: find out now
            except Exception:
                cls = ActorError
            _classes[exc_type] = cls
        return cls


def _build(cls: type[ActorError], node: str, exc_type: str, message: str, **kwargs: Any) -> ActorError:
    try:
        return cls(node, exc_type, message, **kwargs)
    except Exception:
        return ActorError(node, exc_type, message, **kwargs)
