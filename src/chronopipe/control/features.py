"""Features: which fields the records of an input have, and the types of their values.

A pipeline under control samples one record per chunk it feeds (never every record) and the
control API's ``GET /features`` shows what was seen, per input:

>>> features = Features()
>>> features.see({"id": 1, "price": 9.5})
>>> features.see({"id": 2, "price": None, "note": "late"})
>>> features.snapshot()
{'id': ['int'], 'note': ['str'], 'price': ['NoneType', 'float']}

What is a field: a mapping's keys; a named tuple's or a dataclass's fields; an object's
attributes (``__dict__`` or ``__slots__``); anything else is one field, ``"value"``. What is kept
is bounded: at most ``max_fields`` fields per input (those seen first; the others are counted in
``dropped``) and, per field, the ``max_types`` type names seen last. A name that is not Unicode
text (a lone surrogate, which no UTF-8 answer could carry) is kept with it escaped (``\\ud800``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_FIELDS", "MAX_TYPES", "Features", "fields_of"]

#: Fields kept per input (the first seen).
MAX_FIELDS = 256
#: Type names kept per field (the last seen).
MAX_TYPES = 8


def fields_of(record: Any) -> dict[str, str]:
    """The record's field names and the names of their values' types.

    >>> from collections import namedtuple
    >>> fields_of(namedtuple("Row", "a b")(1, "x"))
    {'a': 'int', 'b': 'str'}
    >>> fields_of(3.5)
    {'value': 'float'}
    """
    if isinstance(record, Mapping):
        items: Any = record.items()
    elif isinstance(record, tuple) and hasattr(record, "_fields"):
        items = zip(record._fields, record, strict=False)
    elif dataclasses.is_dataclass(record) and not isinstance(record, type):
        items = ((f.name, getattr(record, f.name, None)) for f in dataclasses.fields(record))
    elif isinstance(getattr(record, "__dict__", None), dict) and not isinstance(record, type) and vars(record):
        items = vars(record).items()
    elif _slots(record):
        items = ((name, getattr(record, name)) for name in _slots(record) if hasattr(record, name))
    else:
        return {"value": type(record).__name__}
    return {str(name): type(value).__name__ for name, value in items}


def _text(name: str) -> str:
    """``name``, its lone surrogates (not Unicode text) escaped as ``\\udXXX``."""
    if name.isascii():
        return name
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _slots(record: Any) -> list[str]:
    names: list[str] = []
    for klass in type(record).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else [s for s in slots if s not in ("__dict__", "__weakref__")])
    return names


class Features:
    """Field names -> type names seen in the records of one input (thread-safe; bounded).

    Raises:
        ValueError: ``max_fields`` or ``max_types`` is below 1.
    """

    def __init__(self, max_fields: int = MAX_FIELDS, max_types: int = MAX_TYPES) -> None:
        if max_fields < 1 or max_types < 1:
            raise ValueError(f"Features needs max_fields and max_types >= 1, not {max_fields!r}, {max_types!r}")
        self.max_fields, self.max_types = max_fields, max_types
        self.seen = 0  # records looked at
        self.dropped = 0  # fields of records seen that were not kept (beyond max_fields)
        self._types: dict[str, dict[str, None]] = {}  # field -> type names, oldest first
        self._lock = threading.Lock()

    def see(self, record: Any) -> None:
        """Note the fields of ``record`` and the types of their values (never raises for a record)."""
        try:
            found = fields_of(record)
        except Exception:  # a record whose attributes raise: seen as one value
            found = {"value": type(record).__name__}
        with self._lock:
            self.seen += 1
            types = self._types
            for name, kind in ((_text(n), _text(k)) for n, k in found.items()):
                kinds = types.get(name)
                if kinds is None:
                    if len(types) >= self.max_fields:
                        self.dropped += 1
                        continue
                    kinds = types[name] = {}
                elif kind in kinds:
                    if next(reversed(kinds)) != kind:
                        del kinds[kind]  # the newest last
                    else:
                        continue
                kinds[kind] = None
                if len(kinds) > self.max_types:
                    del kinds[next(iter(kinds))]

    def snapshot(self) -> dict[str, list[str]]:
        """``{field: [type names, sorted]}``, fields sorted: a copy (JSON-able)."""
        with self._lock:
            return {name: sorted(self._types[name]) for name in sorted(self._types)}

    def __repr__(self) -> str:
        return f"Features({len(self._types)} fields from {self.seen} records)"
