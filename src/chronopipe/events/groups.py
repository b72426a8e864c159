"""What the ConditionIndex files entries in: one entry or a dict of them per key (``put_one``),
and the memo of a crowded group of candidates (``Memo``, see index.py)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .matchers import BOOL_TAG, Path

__all__ = ["ABSENT", "MEMO_FROM", "Memo", "drop_one", "memo_for", "put_one"]

ABSENT: Any = object()  # a field the event does not have
MEMO_FROM = 4  # candidates left to test from which a group keeps what they matched, by value


class Memo:
    """What a group's candidates matched, by the values of the fields their untested clauses read.

    Made only when every such clause is an equality (or OR-list) over hashable values: whether
    it holds depends on the field's value alone. ``values(event)`` is the key: each field's
    value in a dict event (bools tagged, as equality keys are; ``ABSENT`` when missing), or
    None when a field's value fans out (a list, or a non-dict along the path): then the
    candidates are tested as usual.
    """

    __slots__ = ("overflows", "paths", "results")

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self.paths = paths
        self.results: dict[tuple[Any, ...], list[Any]] | None = {}
        self.overflows = 0

    def values(self, event: dict[Any, Any]) -> tuple[Any, ...] | None:
        out = []
        for path in self.paths:
            obj: Any = event
            for name in path:
                if obj.__class__ is not dict:
                    return None
                obj = obj.get(name, ABSENT)
                if obj is ABSENT:
                    break
            cls = obj.__class__
            if cls is bool:
                obj = (BOOL_TAG, obj)
            elif cls is list or cls is dict or isinstance(obj, list):
                return None
            out.append(obj)
        return tuple(out)


def memo_for(candidates: list[Any]) -> Memo | None:
    """A _Memo for these candidates, if enough are left to test and all by equality clauses."""
    paths: dict[Path, None] = {}
    tested = 0
    for entry in candidates:
        if entry._sure:
            continue
        tested += 1
        i = -1
        for path, rule in entry.condition._clauses:
            i += 1
            if i == entry._skip:
                continue
            if rule.__class__ is not tuple:
                return None
            paths[path] = None
    return Memo(tuple(paths)) if tested >= MEMO_FROM else None


def put_one(table: dict[Any, Any], key: Hashable, entry: Any) -> None:
    """Keep ``entry`` under ``key``: the entry itself, or a dict seq -> entry when there are several
    (one dict less per key that has only one, which is most of them). Entries come in seq order."""
    there = table.get(key)
    if there is None:
        table[key] = entry
    elif there.__class__ is dict:
        there[entry.seq] = entry
    else:
        table[key] = {there.seq: there, entry.seq: entry}


def drop_one(table: dict[Any, Any], key: Hashable, seq: int) -> None:
    """Undo ``put_one`` for the entry ``seq``."""
    there = table[key]
    if there.__class__ is not dict:
        del table[key]
    else:
        del there[seq]
        if len(there) == 1:
            table[key] = next(iter(there.values()))
