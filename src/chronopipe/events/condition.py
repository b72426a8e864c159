"""Condition: which events a rule wants, written as a dict of field -> rule.

* Keys are ANDed. ``"name.type"`` and nested dicts (``{"name": {"type": ...}}``) address nested
  fields: dict keys, or attributes of other objects. A tuple key is a path taken literally
  (``("a.b",)`` is the key ``"a.b"``). An empty nested dict asks only that the field exists.
* A value asks for equality. A list (or set) is an OR over its items; a callable is a predicate
  on the field's value; a dict inside a list or a helper is a condition on the field's value.
* A missing field never matches. Falsy values (``0``, ``False``, ``""``, ``None``) are values.
* When the event's field is a list, the rule matches if any element matches (lists met along a
  dotted path fan out too). ``exists()`` and ``not_()`` look at the field as a whole: ``not_(r)``
  matches a present field that ``r`` does not match.
* Equality is Python's ``==`` as ``in`` uses it (``1`` matches ``1.0``; identity first, so a
  NaN object matches itself), except that bools are strict: ``True`` does not match ``1``, nor
  ``False`` ``0`` (at the top level of the value; inside tuples Python's ``==`` rules).
* A predicate (or a helper's comparison) that raises makes its rule not match this event; the
  error is counted in ``error_count``, the first ones are kept in ``errors`` and the first is
  logged as a warning (logger ``chronopipe.events``). Comparing values of types that do not
  order (``gt(3)`` on a string) is not an error: it does not match.

The rule compiler is here: ``_flatten`` (a condition dict -> clauses) and ``to_matcher`` (one
rule -> a Matcher), with the helpers that take any rule (``not_``, ``any_of``, ``all_of``).
``matchers.py`` is the leaf below: the matchers themselves, importing nothing from here.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from .matchers import (
    BOOL_TAG,
    SCALARS,
    Matcher,
    Path,
    _AllOf,
    _AnyOf,
    _Equals,
    _Fields,
    _Not,
    eq,
    equality_keys,
    exists,
    has_key,
    keys_repr,
    satisfies,
    use_compiler,
)

__all__ = ["Condition", "ConditionError", "all_of", "any_of", "not_", "resolve", "to_matcher"]

log = logging.getLogger("chronopipe.events")

ERRORS_KEPT = 100
Clause = tuple[Path, Any]  # (path, Matcher or tuple of equality keys)
_errors_lock = threading.Lock()  # errors are rare: one lock for every condition's record
MISSING: Any = object()
_NO_ATTRIBUTES = (str, bytes, int, float, complex, type(None))  # fields are never read from these


def resolve(event: Any, path: Path) -> list[Any]:
    """The field's values at ``path`` in ``event``: ``[]`` when missing; lists met along the way
    fan out (a list at the end is one value).

    >>> resolve({"a": {"b": 0}}, ("a", "b")), resolve({"a": 1}, ("b",))
    ([0], [])
    >>> resolve({"items": [{"kind": "x"}, {"kind": ["y"]}, {}]}, ("items", "kind"))
    ['x', ['y']]
    """
    if type(event) is dict:
        obj: Any = event
        for name in path:
            if type(obj) is not dict:
                break
            obj = obj.get(name, MISSING)
            if obj is MISSING:
                return []
        else:
            return [obj]
    current = [event]
    for name in path:
        found: list[Any] = []
        for obj in current:
            _collect(obj, name, found)
        if not found:
            return found
        current = found
    return current


def _collect(obj: Any, name: Hashable, out: list[Any]) -> None:
    if isinstance(obj, list):
        for item in obj:
            _collect(item, name, out)
        return
    if type(obj) is dict or isinstance(obj, Mapping):
        value = obj.get(name, MISSING)
    elif isinstance(name, str) and not isinstance(obj, _NO_ATTRIBUTES):
        try:
            value = getattr(obj, name)
        except Exception:  # AttributeError, or a property that raises: not there
            return
    else:
        return
    if value is not MISSING:
        out.append(value)


@dataclass(frozen=True)
class ConditionError:
    """A predicate or comparison that raised while an event was matched."""

    field: str
    value: str
    exc_type: str
    message: str
    traceback: str


class Condition:
    """Fields an event must have, and what their values must satisfy (see the module docs).

    >>> from chronopipe.events import regex
    >>> c = Condition({"name": {"type": ["command", "response"]}, "action": regex("^test")})
    >>> c
    Condition({'name.type': ['command', 'response'], 'action': regex('^test')})
    >>> c.matches({"name": {"type": "command"}, "action": "testCommand"})
    True
    >>> c.matches({"name": {"type": "command"}})
    False
    >>> Condition({"count": 0}).matches({"count": 0}), Condition({"flag": 1}).matches({"flag": True})
    (True, False)
    """

    # Clauses are (path, rule) pairs. An equality or OR-list over hashable values is kept as
    # the tuple of its keys (see matchers.equality_keys), not as a Matcher object: tuples of
    # strings and numbers are invisible to the garbage collector, which matters at 100k rules.
    __slots__ = ("_clauses", "_errors", "error_count")

    def __init__(self, spec: Mapping[Any, Any] | Condition | None = None) -> None:
        if isinstance(spec, Condition):
            clauses: list[Clause] = list(spec._clauses)
        elif spec.__class__ is dict or spec is None or isinstance(spec, Mapping):
            clauses = []
            if spec:
                _flatten(spec, (), clauses)
        else:
            raise TypeError(
                f"a condition is a dict of field -> rule (None matches every event), got {type(spec).__name__}: "
                f"{spec!r:.200}"
            )
        self._clauses: tuple[Clause, ...] = tuple(clauses)
        self.error_count = 0
        self._errors: list[ConditionError] | None = None

    @classmethod
    def of(cls, spec: Mapping[Any, Any] | Condition | None) -> Condition:
        """``spec`` itself if it is a Condition, else ``Condition(spec)``."""
        return spec if isinstance(spec, Condition) else cls(spec)

    @property
    def clauses(self) -> list[tuple[Path, Matcher]]:
        """The (field path, matcher) pairs this condition ANDs, in order.

        >>> Condition({"a.b": 1, "c": [2, 3]}).clauses
        [(('a', 'b'), 1), (('c',), [2, 3])]
        """
        return [(path, _Equals(rule) if rule.__class__ is tuple else rule) for path, rule in self._clauses]

    @property
    def errors(self) -> list[ConditionError]:
        """The first errors raised while matching events (``error_count`` counts them all)."""
        return list(self._errors or ())

    def matches(self, event: Any) -> bool:
        """True if every clause holds for ``event``; a clause that raises is recorded and fails."""
        return self.evaluate(event) == 1

    def evaluate(self, event: Any, skip: int = -1) -> int:
        """1 if every clause (but the ``skip``-th) holds, 0 if not, -1 if one raised (recorded)."""
        i = -1
        for path, rule in self._clauses:
            i += 1
            if i == skip:
                continue
            values = resolve(event, path)
            if not values:
                return 0
            try:
                if not (has_key(values, rule) if rule.__class__ is tuple else rule.matches(values)):
                    return 0
            except Exception as exc:
                self._record(path, values, exc)
                return -1
        return 1

    def _match(self, event: Any) -> bool:
        """Like ``matches``, but errors propagate (to the outer condition, for nested ones)."""
        for path, rule in self._clauses:
            values = resolve(event, path)
            if not values or not (has_key(values, rule) if rule.__class__ is tuple else rule.matches(values)):
                return False
        return True

    def _record(self, path: Path, values: list[Any], exc: Exception) -> None:
        with _errors_lock:
            self.error_count += 1
            count = self.error_count
            if count <= ERRORS_KEPT:
                value = values[0] if len(values) == 1 else values
                if self._errors is None:
                    self._errors = []
                self._errors.append(ConditionError(
                    field=_path_text(path), value=f"{value!r:.200}", exc_type=type(exc).__qualname__,
                    message=str(exc), traceback="".join(traceback.format_exception(exc)),
                ))
        if count == 1:
            log.warning(
                "%r: the rule on %r raised %s: %s (value %.200r); the event does not match. Later errors of this "
                "condition are counted in its error_count, the first %d kept in its errors", self,
                _path_text(path), type(exc).__qualname__, exc, values[0] if len(values) == 1 else values, ERRORS_KEPT,
            )
        else:
            log.debug("%r: the rule on %r raised %s: %s", self, _path_text(path), type(exc).__qualname__, exc)

    @property
    def paths(self) -> list[Path]:
        """The field paths this condition reads, in order."""
        return [path for path, _ in self._clauses]

    def _body(self) -> str:
        return "{" + ", ".join(f"{_path_repr(path)}: {keys_repr(rule) if rule.__class__ is tuple else repr(rule)}"
                               for path, rule in self._clauses) + "}"

    def __repr__(self) -> str:
        return f"Condition({self._body()})"

    def _canonical(self) -> tuple[Any, ...]:
        return tuple((path, frozenset(rule) if rule.__class__ is tuple else rule) for path, rule in self._clauses)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other._canonical() == self._canonical()

    def __hash__(self) -> int:
        return hash(self._canonical())


def _flatten(spec: Mapping[Any, Any], prefix: Path, out: list[Clause]) -> None:
    for name, rule in spec.items():
        path = prefix + _as_path(name)
        cls = rule.__class__
        if cls in SCALARS:
            out.append((path, (rule,) if cls is not bool else ((BOOL_TAG, rule),)))
        elif cls is list and all([item.__class__ in SCALARS for item in rule]):  # an OR-list of values
            out.append((path, equality_keys(tuple(rule))))
        elif isinstance(rule, Condition):
            out.extend((path + p, r) for p, r in rule._clauses)
        elif cls is dict or (not isinstance(rule, Matcher) and isinstance(rule, Mapping)):
            if rule:
                _flatten(rule, path, out)
            else:
                out.append((path, exists()))
        else:
            matcher = to_matcher(rule)
            out.append((path, matcher.keys if type(matcher) is _Equals else matcher))


_PATHS: dict[Any, Path] = {}  # name -> path, for the names conditions use (bounded below)


def _as_path(name: Any) -> Path:
    path = _PATHS.get(name)
    if path is None:
        if len(_PATHS) >= 10_000:
            _PATHS.clear()
        path = _PATHS[name] = _parse_path(name)
    return path


def _parse_path(name: Any) -> Path:
    if isinstance(name, str):
        parts = tuple(name.split("."))
        if not all(parts):
            raise ValueError(f"field {name!r}: empty name in a dotted path (write ('a.b',) for a key with a dot)")
        return parts
    if isinstance(name, tuple):
        if not name:
            raise ValueError("field (): a path needs at least one name")
        return name
    return (name,)


def _path_text(path: Path) -> str:
    return ".".join(map(str, path))


def _path_repr(path: Path) -> str:
    if all(isinstance(p, str) and "." not in p for p in path):
        return repr(".".join(path))  # type: ignore[arg-type]
    return repr(path[0]) if len(path) == 1 and not isinstance(path[0], (str, tuple)) else repr(path)


# -- the rule compiler: one rule as users write it -> a Matcher -------------------------
def not_(rule: Any) -> Matcher:
    """A present field that ``rule`` does not match (a missing field still never matches).

    >>> not_(["command", "response"]).matches(["event"]), ~eq("command") == not_("command")
    (True, True)
    """
    return _Not(to_matcher(rule))


def any_of(*rules: Any) -> Matcher:
    """One of ``rules`` matches (what a list says, for helpers and predicates too).

    >>> from chronopipe.events import ge, lt
    >>> any_of(lt(100), ge(500)).matches([503]), lt(100) | ge(500)
    (True, any_of(lt(100), ge(500)))
    """
    return to_matcher(list(rules))


def all_of(*rules: Any) -> Matcher:
    """Every one of ``rules`` matches (each on its own: for a list field, maybe different elements).

    >>> from chronopipe.events import gt, lt
    >>> (gt(1) & lt(5)).matches([3]), all_of(gt(1), lt(5)).matches([[0, 9]])
    (True, True)
    """
    parts = tuple(to_matcher(r) for r in rules)
    return parts[0] if len(parts) == 1 else _AllOf(parts)


def to_matcher(rule: Any) -> Matcher:
    """The Matcher a rule value stands for (see ``condition.py``)."""
    cls = rule.__class__
    if cls in SCALARS:
        return _Equals(equality_keys((rule,)))
    if isinstance(rule, Matcher):
        return rule
    if cls is list or isinstance(rule, (list, set, frozenset)):
        items = rule if isinstance(rule, list) else sorted(rule, key=repr)  # a stable repr
        equal: list[Hashable] = []
        others: list[Matcher] = []
        for item in items:
            m = to_matcher(item)
            if type(m) is _Equals:
                equal.extend(m.keys)
            elif type(m) is _AnyOf:
                others.extend(m.parts)
            else:
                others.append(m)
        parts = ([_Equals(tuple(dict.fromkeys(equal)))] if equal or not others else []) + others
        return parts[0] if len(parts) == 1 else _AnyOf(tuple(parts))
    if cls is dict or isinstance(rule, (Mapping, Condition)):
        return _Fields(Condition.of(rule))
    if isinstance(rule, type):
        raise TypeError(
            f"a class ({rule.__name__}) as a rule is ambiguous: write satisfies(lambda v: isinstance(v, "
            f"{rule.__name__})) for a type check, or eq({rule.__name__}) to compare with the class itself"
        )
    if callable(rule):
        return satisfies(rule)
    return eq(rule)


use_compiler(to_matcher)
