"""Sort keys: what SortedQueueMultiplexer orders records by."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SortKey", "fast_key_function", "key_function"]

SortKey = str | Sequence[str] | Callable[[Any], Any]


def key_function(sort_key: SortKey) -> Callable[[Any], Any]:
    """Compile ``sort_key`` into a function of a record.

    A name reads a dict key or, failing that, an attribute; ``"a.b"`` walks nested fields;
    a list of names gives a tuple; a callable is used as it is.

    >>> key_function("timestamp")({"timestamp": 3})
    3
    >>> key_function("name.type")({"name": {"type": "command"}})
    'command'
    >>> key_function(["day", "seq"])({"day": 2, "seq": 7})
    (2, 7)
    >>> key_function(len)([1, 2])
    2
    """
    if callable(sort_key):
        return sort_key
    if isinstance(sort_key, str):
        if not sort_key:
            raise ValueError("sort_key must not be empty")
        parts = sort_key.split(".")
        if len(parts) == 1:
            return _field(sort_key)
        getters = [_field(p) for p in parts]

        def nested(record: Any) -> Any:
            for get in getters:
                record = get(record)
            return record

        return nested
    if isinstance(sort_key, Sequence) and sort_key and all(isinstance(k, str) for k in sort_key):
        getters = [key_function(k) for k in sort_key]
        return lambda record: tuple(get(record) for get in getters)
    raise TypeError(f"sort_key must be a field name, a dotted path, a list of names or a callable, not {sort_key!r}")


def fast_key_function(sort_key: SortKey) -> Callable[[Any], Any]:
    """Like key_function, but a plain name gives a bare itemgetter: callers fall back to
    ``key_function`` when it raises (attributes, missing fields).

    >>> fast_key_function("ts")({"ts": 1})
    1
    """
    if isinstance(sort_key, str) and "." not in sort_key:
        return operator.itemgetter(sort_key)
    return key_function(sort_key)


def _field(name: str) -> Callable[[Any], Any]:
    item, attr = operator.itemgetter(name), operator.attrgetter(name)

    def get(record: Any) -> Any:
        try:
            return item(record)
        except (KeyError, TypeError, IndexError):
            try:
                return attr(record)
            except AttributeError:
                raise KeyError(f"record has no field {name!r}: {record!r:.200}") from None

    return get
