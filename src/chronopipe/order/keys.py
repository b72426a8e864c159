"""Sort keys: what SortedQueueMultiplexer, merge_sorted and a pipeline's merge_branches order records by.

A key is spelt as the seed spelt it (it used ``pydash.result``): a *path* to one field, as a
dotted string (``"a.b.c"``) or as a list (``["a", "b", "c"]``); both reach
``record["a"]["b"]["c"]``. A list is always one path, never several fields: its items are
taken as they are (``["a.b"]`` reads the field named ``"a.b"``; an int indexes a sequence).
A *compound* key is a tuple of paths (each a dotted string or a list), which orders by a
tuple of their values, or a callable, used as it is.

>>> record = {"meta": {"ts": 7, "seq": 2}, "day": 3}
>>> key_function("meta.ts")(record), key_function(["meta", "ts"])(record)
(7, 7)
>>> key_function(("day", ["meta", "seq"]))(record)
(3, 2)
>>> key_function(lambda r: (r["day"], r["meta"]["ts"]))(record)
(3, 7)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

__all__ = ["Path", "SortKey", "fast_key_function", "key_function"]

Path = str | list[str | int]
SortKey = Path | tuple[Path, ...] | Callable[[Any], Any]

_SPELLINGS = ("a field name, a dotted path ('a.b'), a list path (['a', 'b']), a tuple of paths "
              "(a compound key) or a callable")


def key_function(sort_key: SortKey) -> Callable[[Any], Any]:
    """Compile ``sort_key`` into a function of a record.

    A name reads a dict key or, failing that, an attribute; ``"a.b"`` and ``["a", "b"]`` walk
    nested fields (a path); a tuple of paths gives a tuple (a compound key); a callable is used
    as it is.

    >>> key_function("timestamp")({"timestamp": 3})
    3
    >>> key_function("name.type")({"name": {"type": "command"}})
    'command'
    >>> key_function(["name", "type"])({"name": {"type": "command"}})
    'command'
    >>> key_function(["hops", 0, "ip"])({"hops": [{"ip": "10.0.0.1"}]})
    '10.0.0.1'
    >>> key_function(("day", "seq"))({"day": 2, "seq": 7})
    (2, 7)
    >>> key_function(len)([1, 2])
    2
    >>> key_function(["meta", "ts"])({"ts": 1})
    Traceback (most recent call last):
    ...
    KeyError: "record has no field 'meta': {'ts': 1}"

    Raises:
        ValueError: an empty name, path or tuple.
        TypeError: anything else than the spellings above.
    """
    if callable(sort_key):
        return sort_key
    if isinstance(sort_key, tuple):
        if not sort_key:
            raise ValueError("sort_key: a compound key (a tuple of paths) needs at least one path")
        getters = [_path(k, sort_key) for k in sort_key]
        return lambda record: tuple(get(record) for get in getters)
    return _path(sort_key, sort_key)


def fast_key_function(sort_key: SortKey) -> Callable[[Any], Any]:
    """Like key_function, but plain names give a bare ``operator.itemgetter`` (a name, or a
    tuple of two or more names): callers fall back to ``key_function`` when it raises
    (attributes, missing fields). Both give equal keys for records they both read.

    >>> fast_key_function("ts")({"ts": 1})
    1
    >>> fast_key_function(("day", "seq"))({"day": 2, "seq": 7})
    (2, 7)
    """
    if isinstance(sort_key, str) and sort_key and "." not in sort_key:
        return operator.itemgetter(sort_key)
    if (isinstance(sort_key, tuple) and len(sort_key) > 1
            and all(isinstance(k, str) and k and "." not in k for k in sort_key)):
        return operator.itemgetter(*sort_key)  # a tuple, like key_function's
    return key_function(sort_key)


def _path(path: Any, sort_key: Any) -> Callable[[Any], Any]:
    """One path (a dotted string or a list of names and indexes) as a function of a record."""
    if isinstance(path, str):
        parts: list[Any] = path.split(".")
        if not all(parts):
            raise ValueError(f"sort_key: empty field name in {path!r}")
    elif isinstance(path, list):
        parts = path
        if not parts:
            raise ValueError("sort_key: a list path needs at least one name, as in ['meta', 'ts']")
        if not all(isinstance(p, str | int) and not isinstance(p, bool) for p in parts):
            raise TypeError(f"sort_key: a list path holds field names (str) or indexes (int), not {path!r}")
    else:
        raise TypeError(f"sort_key must be {_SPELLINGS}, not {sort_key!r}")
    getters = [_field(p) for p in parts]
    if len(getters) == 1:
        return getters[0]

    def nested(record: Any) -> Any:
        for get in getters:
            record = get(record)
        return record

    return nested


def _field(name: str | int) -> Callable[[Any], Any]:
    item = operator.itemgetter(name)
    attr = operator.attrgetter(name) if isinstance(name, str) and name.isidentifier() else None

    def get(record: Any) -> Any:
        try:
            return item(record)
        except (KeyError, TypeError, IndexError):
            try:
                if attr is None:
                    raise AttributeError(name)
                return attr(record)
            except AttributeError:
                raise KeyError(f"record has no field {name!r}: {record!r:.200}") from None

    return get
