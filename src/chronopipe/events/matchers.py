"""Matchers: what one field of an event must satisfy, and the helpers that make them.

A Matcher gets a field's values (as ``condition.resolve`` reads them) and says whether they
match: equality and OR-lists over hashable values (``keys`` lets the index find them by
value), comparisons, ranges, regular expressions, predicates, ``exists()``, negation,
any-of / all-of (``|``, ``&`` and ``~``) and conditions on nested values.

A leaf module: it imports nothing from ``condition.py``. The rule compiler (``to_matcher``:
a value, list, dict or callable as users write it -> a Matcher) and the helpers that take any
rule (``not_``, ``any_of``, ``all_of``) live there, with Condition; it registers the compiler
here (``use_compiler``) for the operators ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Hashable
from typing import Any

__all__ = [
    "Matcher",
    "between",
    "eq",
    "equality_keys",
    "exists",
    "ge",
    "gt",
    "has_key",
    "keys_repr",
    "le",
    "lt",
    "regex",
    "satisfies",
    "use_compiler",
]

Path = tuple[Hashable, ...]
BOOL_TAG: Any = object()  # tags bools in equality keys, so True is not 1 and False is not 0
SCALARS = frozenset({str, int, float, bool, bytes, complex, type(None)})  # hashable, compared by equality
_compile: Callable[[Any], Matcher] | None = None  # condition.to_matcher, once condition.py is imported


def use_compiler(compile_rule: Callable[[Any], Matcher]) -> None:
    """Register the rule compiler the operators use (condition.py registers ``to_matcher``)."""
    global _compile
    _compile = compile_rule


def _compiled(rule: Any) -> Matcher:
    if _compile is None:  # pragma: no cover - chronopipe.events imports condition.py first
        raise RuntimeError("import chronopipe.events (condition.py registers the rule compiler)")
    return _compile(rule)


# -- matchers: what one field must satisfy ----------------------------------------------
class Matcher:
    """A rule on one field's values. Combine with ``&`` (all_of), ``|`` (any_of), ``~`` (not_).

    ``matches(values)`` gets the field's values as ``resolve`` returns them (never empty).
    """

    __slots__ = ()
    #: For pure equality over hashable values: their distinct equality keys (the index files by them).
    keys: tuple[Any, ...] | None = None

    def matches(self, values: list[Any]) -> bool:
        raise NotImplementedError

    def __and__(self, other: Any) -> Matcher:
        return _AllOf((self, _compiled(other)))

    def __rand__(self, other: Any) -> Matcher:
        return _AllOf((_compiled(other), self))

    def __or__(self, other: Any) -> Matcher:
        return _compiled([self, other])

    def __ror__(self, other: Any) -> Matcher:
        return _compiled([other, self])

    def __invert__(self) -> Matcher:
        return _Not(self)

    def _parts(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._parts() == self._parts()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._parts()))


class _Elementwise(Matcher):
    """Tests each value (each element of a list value); matches when one passes."""

    __slots__ = ()

    def test(self, value: Any) -> bool:
        raise NotImplementedError

    def matches(self, values: list[Any]) -> bool:
        test = self.test
        for value in values:
            if isinstance(value, list):
                for item in value:
                    if test(item):
                        return True
            elif test(value):
                return True
        return False


def equality_keys(values: tuple[Hashable, ...]) -> tuple[Hashable, ...]:
    """The distinct keys (as a dict tells them apart) of hashable wanted values; bools tagged."""
    if len(values) == 1:
        return values if values[0].__class__ is not bool else ((BOOL_TAG, values[0]),)
    return tuple(dict.fromkeys([(BOOL_TAG, v) if v.__class__ is bool else v for v in values]))


def has_key(values: list[Any], keys: tuple[Hashable, ...]) -> bool:
    """True if a value (an element of a list value) is one of ``keys``, as a dict lookup says."""
    for value in values:
        for item in value if isinstance(value, list) else (value,):
            k = (BOOL_TAG, item) if item.__class__ is bool else item
            try:
                hash(k)  # an unhashable value is no dict key: it equals none of them
            except TypeError:
                continue
            if k in keys:
                return True
    return False


def keys_repr(keys: tuple[Hashable, ...]) -> str:
    """How equality keys are written in a condition: a value, or a list of values."""
    shown = [k[1] if k.__class__ is tuple and len(k) == 2 and k[0] is BOOL_TAG else k for k in keys]
    return repr(shown[0]) if len(shown) == 1 else repr(shown)


class _Equals(Matcher):
    __slots__ = ("keys",)

    def __init__(self, keys: tuple[Hashable, ...]) -> None:
        self.keys = keys  # from equality_keys()

    def matches(self, values: list[Any]) -> bool:
        return has_key(values, self.keys)

    def _parts(self) -> tuple[Any, ...]:
        return (frozenset(self.keys),)

    def __repr__(self) -> str:
        return keys_repr(self.keys)


class _EqualsValue(Matcher):
    """Equality with an unhashable value (a list, a dict): compared as a whole."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def matches(self, values: list[Any]) -> bool:
        wanted = self.value
        for value in values:
            if value is wanted or value == wanted:
                return True
            if isinstance(value, list) and any(item is wanted or item == wanted for item in value):
                return True
        return False

    def _parts(self) -> tuple[Any, ...]:
        return (self.value,)

    def __hash__(self) -> int:
        return hash((type(self), repr(self.value)))

    def __repr__(self) -> str:
        return f"eq({self.value!r})"


class _Test(_Elementwise):
    """A test of each value: comparisons, ranges, regular expressions, predicates."""

    __slots__ = ("fn", "parts", "text")

    def __init__(self, fn: Callable[[Any], Any], text: str, parts: tuple[Any, ...]) -> None:
        self.fn, self.text, self.parts = fn, text, parts

    def test(self, value: Any) -> bool:
        return bool(self.fn(value))

    def _parts(self) -> tuple[Any, ...]:
        return self.parts

    def __repr__(self) -> str:
        return self.text


def _ordered(op: Callable[[Any, Any], Any], bound: Any) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        try:
            return bool(op(value, bound))
        except TypeError:  # values that do not order against the bound: no match
            return False

    return test


class _Exists(Matcher):
    __slots__ = ()

    def matches(self, values: list[Any]) -> bool:
        return True

    def _parts(self) -> tuple[Any, ...]:
        return ()

    def __repr__(self) -> str:
        return "exists()"


class _Not(Matcher):
    __slots__ = ("inner",)

    def __init__(self, inner: Matcher) -> None:
        self.inner = inner

    def matches(self, values: list[Any]) -> bool:
        return not self.inner.matches(values)

    def _parts(self) -> tuple[Any, ...]:
        return (self.inner,)

    def __repr__(self) -> str:
        return f"not_({self.inner!r})"


class _AnyOf(Matcher):
    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Matcher, ...]) -> None:
        self.parts = parts

    def matches(self, values: list[Any]) -> bool:
        return any(part.matches(values) for part in self.parts)

    def _parts(self) -> tuple[Any, ...]:
        return self.parts

    def __repr__(self) -> str:
        return f"any_of({', '.join(map(repr, self.parts))})"


class _AllOf(_AnyOf):
    __slots__ = ()

    def matches(self, values: list[Any]) -> bool:
        return all(part.matches(values) for part in self.parts)

    def __repr__(self) -> str:
        return f"all_of({', '.join(map(repr, self.parts))})"


class _Fields(_Elementwise):
    """A condition on the field's value (a dict inside a list or a helper): a Condition."""

    __slots__ = ("condition",)

    def __init__(self, condition: Any) -> None:
        self.condition = condition

    def test(self, value: Any) -> bool:
        return self.condition._match(value)

    def _parts(self) -> tuple[Any, ...]:
        return (self.condition,)

    def __repr__(self) -> str:
        return self.condition._body()


# -- helpers ----------------------------------------------------------------------------
def eq(value: Any) -> Matcher:
    """Equality with ``value`` taken literally (a list or dict is compared whole, not an OR).

    ``matches`` takes the field's values: here one value, the list ``["a", "b"]``.

    >>> eq(["a", "b"]).matches([["a", "b"]]), eq(["a", "b"]).matches([["a"]])
    (True, False)
    """
    try:
        hash(value)
    except TypeError:
        return _EqualsValue(value)
    return _Equals(equality_keys((value,)))


def gt(bound: Any) -> Matcher:
    """Greater than ``bound``. ``ge``, ``lt`` and ``le`` likewise.

    >>> gt(10).matches([11]), gt(10).matches([10]), gt(10).matches(["big"])
    (True, False, False)
    """
    return _Test(_ordered(operator.gt, bound), f"gt({bound!r})", ("gt", bound))


def ge(bound: Any) -> Matcher:
    """Greater than or equal to ``bound``."""
    return _Test(_ordered(operator.ge, bound), f"ge({bound!r})", ("ge", bound))


def lt(bound: Any) -> Matcher:
    """Less than ``bound``."""
    return _Test(_ordered(operator.lt, bound), f"lt({bound!r})", ("lt", bound))


def le(bound: Any) -> Matcher:
    """Less than or equal to ``bound``."""
    return _Test(_ordered(operator.le, bound), f"le({bound!r})", ("le", bound))


def between(low: Any, high: Any) -> Matcher:
    """``low <= value <= high`` (both ends included).

    >>> between(0, 10).matches([10]), between(0, 10).matches([11])
    (True, False)
    """
    above, below = _ordered(operator.ge, low), _ordered(operator.le, high)
    return _Test(lambda v: above(v) and below(v), f"between({low!r}, {high!r})", ("between", low, high))


def regex(pattern: str | bytes | re.Pattern[Any], flags: int = 0) -> Matcher:
    """A string (or bytes) field in which ``pattern`` is found (``re.search``; anchor with ``^``).

    >>> regex("^test").matches(["testCommand"]), regex("^test").matches([42])
    (True, False)
    """
    compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
    kind = type(compiled.pattern)
    shown = compiled.flags & ~re.UNICODE
    text = f"regex({compiled.pattern!r}" + (f", {re.RegexFlag(shown)!r})" if shown else ")")
    return _Test(lambda v: type(v) is kind and compiled.search(v) is not None, text, ("regex", compiled))


def exists() -> Matcher:
    """A field that is present, whatever its value (None, [] and {} included).

    >>> exists().matches([None]), exists().matches([[]])
    (True, True)
    """
    return _Exists()


def satisfies(fn: Callable[[Any], Any], name: str | None = None) -> Matcher:
    """A predicate (what a bare callable is), with a ``name`` for ``repr`` and logs.

    >>> satisfies(lambda s: s.isupper(), "upper case"), satisfies(str.isupper)
    (satisfies('upper case'), satisfies(str.isupper))
    """
    if not callable(fn):
        raise TypeError(f"satisfies() needs a callable, got {fn!r}")
    if name is None:
        shown = (getattr(fn, "__qualname__", None) or type(fn).__name__).rpartition("<locals>.")[2]
    else:
        shown = repr(name)
    return _Test(fn, f"satisfies({shown})", ("satisfies", fn, name))
