"""ConditionIndex: find the conditions an event satisfies without testing every one.

Each condition is filed under ONE of its clauses:

* an equality or OR-list clause over hashable values: under every ``(field, value)`` pair it
  wants. An event is a candidate only when its value (or an element of its list value) is one
  of them: one dict lookup per field of the event, whatever the number of conditions. Of
  several such clauses, the one whose values events probably carry least often is chosen,
  estimated from how often all conditions ask for each value of each field (``{"device":
  "d-17", "type": "error"}`` goes under its device: many conditions ask for ``type`` "error",
  few for that device). As the estimates improve with more conditions, everything is filed
  anew each time the number of conditions has grown 8x (amortised O(1) per condition);
* otherwise (predicates, ranges, regexes...): under the field it reads, so it is tested only
  on events that have that field;
* a condition with no clause at all: tested on every event.

Candidates are then checked against their other clauses, with the same code as
``Condition.matches``, and returned in insertion order. A condition whose filing alone proves
it (one equality clause, one ``exists()``, or none) is not tested again; and when an event hits
several groups of conditions, their merge in insertion order is kept per combination of groups
(until the next add or remove): events of the same kind, as a validation run's packets, cost a
few dict lookups each. A crowded group (4 or more candidates left to test, as when many rules
share a common value and each adds an equality clause) also keeps what its candidates matched
by the values of the fields those other clauses read (dict events only; at most ``MEMO_KEPT``
value combinations per group, then it stops keeping them): equality clauses depend on nothing
else, so an event with the same values matches the same entries. The result is therefore always
exactly what testing every condition in turn gives (tests/test_events_index.py checks this
with hypothesis). Adding and removing cost a few dict operations.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from .condition import Condition, resolve
from .groups import ABSENT as _ABSENT
from .groups import Memo, drop_one, memo_for, put_one
from .matchers import BOOL_TAG, Path, _Exists

__all__ = ["ConditionIndex", "IndexEntry", "drop_one", "put_one"]  # the last two: from groups.py

# equality key -> the entry filed there, or a dict seq -> entry (in seq order) when there are several
Buckets = dict[Hashable, Any]
REFILE_FIRST = 64  # file every condition anew at 64 conditions, then each time their number grew 8x
REFILE_GROWTH = 8
_EQ_TOP, _EQ_DEEP, _PRESENT, _ALWAYS, _NOWHERE = range(5)
PLANS_KEPT = 4096  # merges kept per combination of groups hit; forgotten all at once beyond
MEMO_KEPT = 1024  # value combinations kept per group; past that, twice, the group stops keeping them
MEMO_TOTAL = 50_000  # value combinations kept over all groups; past that, every plan is forgotten


class IndexEntry:
    """A condition and what it selects (``item``), as the index files it. Subclass it to make
    your own objects the entries (the EventManager's Subscription does): one object less each."""

    __slots__ = ("_keys", "_kind", "_skip", "_sure", "_where", "condition", "item", "seq")

    def __init__(self, condition: Condition, item: Any = None) -> None:
        self.condition, self.item, self.seq = condition, item, -1
        self._kind, self._where, self._keys, self._skip = _ALWAYS, None, (), -1
        self._sure = False  # where it is filed proves its condition: no test left to make

    def __repr__(self) -> str:
        return f"<IndexEntry #{self.seq} {self.condition!r} -> {self.item!r}>"


E = TypeVar("E", bound=IndexEntry)


class ConditionIndex(Generic[E]):
    """Entries filed by their condition; ``match(event)`` gives those whose condition it satisfies.

    Not thread-safe: the EventManager serialises calls.

    >>> index = ConditionIndex()
    >>> a = index.add(IndexEntry(Condition({"type": ["command", "response"]}), "a"))
    >>> b = index.add(IndexEntry(Condition({"type": "response", "code": 0}), "b"))
    >>> [e.item for e in index.match({"type": "response", "code": 0})], [e.item for e in index.match({"type": 0})]
    (['a', 'b'], [])
    >>> index.remove(a).item, [e.item for e in index.match({"type": "response", "code": 0})]
    ('a', ['b'])
    """

    def __init__(self) -> None:
        self._entries: dict[int, E] = {}
        self._next_seq = 0
        self._top: dict[Hashable, Buckets] = {}  # one-name fields: name -> buckets
        self._deep: dict[Path, Buckets] = {}  # dotted fields
        self._present: dict[Path, dict[int, E]] = {}  # field -> entries tested when it exists
        self._always: dict[int, E] = {}
        # Per field, how often each value is asked for over every equality clause, and the
        # total: how common a value probably is in events, to file each condition where it is
        # rarest. [total, {key: count}]
        self._asked: dict[Path, list[Any]] = {}
        self._refile_at = REFILE_FIRST
        # id of the group hit (a dict), or the ids of the groups hit (bucket entries or dicts) ->
        # (the candidates in seq order, all sure, their Memo or None); emptied by every add and
        # remove, which may change a group or free its id for another
        self._plans: dict[Any, tuple[list[E], bool, Memo | None]] = {}
        self._memo_size = 0
        #: Conditions that raised while being tested here (each is also recorded in the condition).
        self.errors = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, seq: object) -> bool:
        return seq in self._entries

    def entries(self) -> list[E]:
        """Every entry, in insertion order."""
        return list(self._entries.values())

    # -- filing ----------------------------------------------------------------------------
    def add(self, entry: E) -> int:
        """File ``entry`` under its condition; returns its sequence number (also ``entry.seq``)."""
        if entry.seq >= 0:
            raise ValueError(f"{entry!r} is filed already (as #{entry.seq}); make a new entry")
        seq = entry.seq = self._next_seq
        self._next_seq += 1
        self._entries[seq] = entry
        if self._plans:
            self._plans.clear()
        if len(self._entries) >= self._refile_at:
            self._count(entry.condition, 1)
            self._refile()  # the statistics grew 8x since the last time: file everything anew
        else:
            self._file(entry, count=True)
        return seq

    def remove(self, seq: int) -> E | None:
        """Unfile the entry added as ``seq``; returns it (None if it is not here)."""
        entry = self._entries.pop(seq, None)
        if entry is None:
            return None
        if self._plans:
            self._plans.clear()
        self._unfile(entry)
        self._count(entry.condition, -1)
        return entry

    def _count(self, condition: Condition, step: int) -> None:
        asked = self._asked
        for path, rule in condition._clauses:
            if rule.__class__ is not tuple or not rule:
                continue
            stats = asked.get(path)
            if stats is None:
                stats = asked[path] = [0, {}]
            counts = stats[1]
            for k in rule:
                n = counts.get(k, 0) + step
                if n:
                    counts[k] = n
                else:
                    del counts[k]
            stats[0] += step * len(rule)
            if not stats[0]:
                del asked[path]

    def _file(self, entry: E, count: bool = False) -> None:
        """File ``entry`` under its rarest equality clause (``count``: count its values first)."""
        clauses = entry.condition._clauses
        best, best_cost, i, never = -1, 2.0, -1, False
        asked = self._asked
        for path, rule in clauses:
            i += 1
            if rule.__class__ is not tuple:
                continue
            if not rule:  # an empty OR-list: the condition can never hold
                never = True
                continue
            stats = asked.get(path)
            if count:
                if stats is None:
                    stats = asked[path] = [0, {}]
                counts = stats[1]
                for k in rule:
                    counts[k] = counts.get(k, 0) + 1
                stats[0] += len(rule)
            else:
                counts = stats[1]  # type: ignore[index]
            # The chance that an event has one of these values, estimated from how often
            # conditions ask for them (add-one smoothing over the values seen so far).
            n = counts[rule[0]] + 1 if len(rule) == 1 else sum([counts[k] for k in rule]) + len(rule)
            cost = n / (stats[0] + len(counts) + 1)  # type: ignore[index]
            if cost < best_cost:
                best, best_cost = i, cost
        seq = entry.seq
        entry._sure = not clauses  # none: it always holds
        if never:
            entry._kind = _NOWHERE
        elif best >= 0:
            path, keys = clauses[best]
            entry._keys, entry._skip, entry._sure = keys, best, len(clauses) == 1
            if len(path) == 1:
                entry._kind, name = _EQ_TOP, path[0]
                table: dict[Any, Buckets] = self._top
            else:
                entry._kind, name = _EQ_DEEP, path
                table = self._deep  # type: ignore[assignment]
            entry._where = name
            buckets = table.get(name)
            if buckets is None:
                buckets = table[name] = {}
            for k in keys:  # put_one(), inlined: this is the hot path of registering
                there = buckets.get(k)
                if there is None:
                    buckets[k] = entry
                elif there.__class__ is dict:
                    there[seq] = entry
                else:
                    buckets[k] = {there.seq: there, seq: entry}
        elif clauses:
            path = min((p for p, _ in clauses), key=lambda p: len(self._present.get(p, ())))
            entry._kind, entry._where = _PRESENT, path
            entry._sure = len(clauses) == 1 and clauses[0][1].__class__ is _Exists  # found there: it exists
            self._present.setdefault(path, {})[seq] = entry
        else:
            entry._kind = _ALWAYS
            self._always[seq] = entry

    def _unfile(self, entry: E) -> None:
        seq, kind, where = entry.seq, entry._kind, entry._where
        if kind in (_EQ_TOP, _EQ_DEEP):
            table: dict[Any, Buckets] = self._top if kind == _EQ_TOP else self._deep  # type: ignore[assignment]
            buckets = table[where]
            for k in entry._keys:
                drop_one(buckets, k, seq)
            if not buckets:
                del table[where]
        elif kind == _PRESENT:
            entries = self._present[where]
            del entries[seq]
            if not entries:
                del self._present[where]
        elif kind == _ALWAYS:
            del self._always[seq]

    def _refile(self) -> None:
        self._top, self._deep, self._present, self._always = {}, {}, {}, {}
        for entry in self._entries.values():  # in seq order, so every bucket is in seq order
            self._file(entry)
        self._refile_at = max(REFILE_FIRST, REFILE_GROWTH * len(self._entries))

    # -- matching --------------------------------------------------------------------------
    def match(self, event: Any) -> list[E]:
        """The entries whose condition ``event`` satisfies, in insertion order."""
        return list(self.matched(event))

    def matched(self, event: Any) -> list[E]:
        """``match``, for callers that only read the list: it may be one the index keeps (faster)."""
        hits: list[Any] = []  # entries, and dicts seq -> entry
        top = self._top
        is_dict = type(event) is dict
        if top:
            if is_dict:
                if len(event) <= len(top):
                    for name, value in event.items():
                        buckets = top.get(name)
                        if buckets is not None:
                            cls = value.__class__
                            if cls is str or cls is int:  # the common case, inline
                                there = buckets.get(value)
                                if there is not None:
                                    hits.append(there)
                            else:
                                _lookup(buckets, value, hits)
                else:
                    for name, buckets in top.items():
                        value = event.get(name, _ABSENT)
                        cls = value.__class__
                        if cls is str or cls is int:
                            there = buckets.get(value)
                            if there is not None:
                                hits.append(there)
                        elif cls is bool:
                            there = buckets.get((BOOL_TAG, value))
                            if there is not None:
                                hits.append(there)
                        elif value is not _ABSENT:
                            _lookup(buckets, value, hits)
            else:
                for name, buckets in top.items():
                    for value in resolve(event, (name,)):
                        _lookup(buckets, value, hits)
        for path, buckets in self._deep.items():
            for value in resolve(event, path):
                _lookup(buckets, value, hits)
        for path, entries in self._present.items():
            if (path[0] in event) if is_dict and len(path) == 1 else resolve(event, path):
                hits.append(entries)
        if self._always:
            hits.append(self._always)
        if not hits:
            return []
        memo = None
        if len(hits) == 1 and hits[0].__class__ is not dict:
            candidates: Any = hits
            sure = hits[0]._sure
        else:
            key: Any = id(hits[0]) if len(hits) == 1 else tuple(map(id, hits))
            plan = self._plans.get(key)
            if plan is None:
                plan = self._plan(hits, key)
            candidates, sure, memo = plan
        if sure:
            return candidates  # type: ignore[no-any-return]
        values = None
        if memo is not None and is_dict and memo.results is not None:
            values = memo.values(event)
            if values is not None:
                try:
                    found = memo.results.get(values)
                except TypeError:  # a value that is no dict key: test the candidates
                    values = None
                else:
                    if found is not None:
                        return found
        errors = self.errors
        matched = []
        for entry in candidates:
            if entry._sure:
                matched.append(entry)
                continue
            outcome = entry.condition.evaluate(event, entry._skip)
            if outcome == 1:
                matched.append(entry)
            elif outcome < 0:
                self.errors += 1
        if values is not None and self.errors == errors:  # nothing raised: keep it for these values
            self._keep(memo, values, matched)  # type: ignore[arg-type]
        return matched

    def _plan(self, hits: list[Any], key: Any) -> tuple[list[E], bool, Memo | None]:
        """The entries of the groups hit, in seq order, whether all are sure, and their memo; kept."""
        if len(hits) == 1:
            candidates = list(hits[0].values())  # one dict: in seq order already
        else:
            merged: dict[int, E] = {}
            for hit in hits:
                if hit.__class__ is dict:
                    merged.update(hit)
                else:
                    merged[hit.seq] = hit
            candidates = [merged[seq] for seq in sorted(merged)]
        if len(self._plans) >= PLANS_KEPT:
            self._forget_plans()
        plan = self._plans[key] = (candidates, all([entry._sure for entry in candidates]), memo_for(candidates))
        return plan

    def _keep(self, memo: Memo, values: tuple[Any, ...], matched: list[E]) -> None:
        results = memo.results
        assert results is not None
        if len(results) >= MEMO_KEPT:  # values rarely seen twice here: keeping them costs, saves little
            self._memo_size -= len(results)
            memo.overflows += 1
            memo.results = {} if memo.overflows < 2 else None
            return
        if self._memo_size >= MEMO_TOTAL:
            self._forget_plans()
            return
        results[values] = matched
        self._memo_size += 1

    def _forget_plans(self) -> None:
        self._plans.clear()
        self._memo_size = 0


def _lookup(buckets: Buckets, value: Any, hits: list[Any]) -> None:
    """Append what is filed under ``value`` (under each element, for a list) to ``hits``."""
    for item in value if isinstance(value, list) else (value,):
        try:
            there = buckets.get((BOOL_TAG, item) if item.__class__ is bool else item)
        except Exception:  # unhashable: equal to no wanted value (Condition.matches says the same)
            continue
        if there is not None:
            hits.append(there)
