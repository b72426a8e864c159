"""END: the marker that finishes a stream.

A producer ends its stream by putting ``END`` (or closing the channel). The seed's
``queue.Empty`` class is accepted as an alias on input, and ``END == queue.Empty`` is
true, so the seed's loops (``if item == Queue.Empty: break``) keep working.
"""

from __future__ import annotations

import queue
from typing import Any

__all__ = ["END", "is_end"]


class _End:
    """The single END marker; survives pickling as the same object."""

    __slots__ = ()
    _instance: _End | None = None

    def __new__(cls) -> _End:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "END"

    def __reduce__(self) -> str:
        return "END"  # pickled by reference to the module-level name

    def __eq__(self, other: object) -> bool:
        return other is self or other is queue.Empty

    def __hash__(self) -> int:
        return hash(queue.Empty)


END = _End()


def is_end(item: Any) -> bool:
    """True for END and for the seed's alias ``queue.Empty``.

    >>> import queue
    >>> is_end(END), is_end(queue.Empty), is_end(None)
    (True, True, False)
    """
    return item is END or item is queue.Empty
