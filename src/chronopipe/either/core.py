"""Either: a result that is a value (Right), an error (Left), or not known yet (Pending).

``Right(value)`` and ``Left(error)`` are settled; ``Pending`` wraps a running task (a
chronopipe ``PoolTask``, a ``multiprocessing`` ``AsyncResult`` or a ``concurrent.futures``
``Future``) and settles to one of them, once, when the task ends. All three compose the same
way, so code written for settled values works unchanged on pending ones:

* ``map(f)``: ``Right(x)`` becomes ``Right(f(x))``; a Left passes through.
* ``bind(f)``: ``f`` takes a value and returns an Either (Kleisli arrow); a Left passes through.
* ``map_error(f)``: the Left side's ``map``.
* ``kleisli(f, g, h)`` composes Either-returning functions left to right (Haskell's ``>=>``).

On a Pending these build a new Pending: nothing blocks until ``wait()`` or ``unwrap()``.
Functions are applied once, by whichever thread settles the Pending first. ``map`` and ``bind``
do not catch exceptions (they would break the laws above); ``attempt(f)`` turns a function that
raises into one that returns ``Left(exception)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, NoReturn, TypeVar

__all__ = ["Either", "Left", "Pending", "Right", "attempt", "kleisli", "settle"]

T = TypeVar("T")
U = TypeVar("U")


class Either(Generic[T]):
    """Base of Right, Left and Pending (not instantiated itself)."""

    __slots__ = ()

    is_right = False
    is_left = False
    is_pending = False

    def map(self, fn: Callable[[T], U]) -> Either[U]:
        raise NotImplementedError

    def bind(self, fn: Callable[[T], Either[U]]) -> Either[U]:
        raise NotImplementedError

    def map_error(self, fn: Callable[[Any], Any]) -> Either[T]:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> Either[T]:
        """The settled Right or Left (a Right or Left is its own)."""
        return self

    def unwrap(self, timeout: float | None = None) -> T:
        """The value of a Right; raises a Left's error (a Pending is waited for first)."""
        raise NotImplementedError

    def value_or(self, default: U) -> T | U:
        """The value of a Right, else ``default`` (never blocks: a Pending gives ``default``)."""
        return default


class Right(Either[T]):
    """A value.

    >>> Right(2).map(lambda x: x + 1)
    Right(3)
    >>> Right(2).bind(lambda x: Left("odd") if x % 2 else Right(x // 2))
    Right(1)
    >>> Right(2).unwrap(), Right(2).value_or(0)
    (2, 2)
    """

    __slots__ = ("value",)
    __match_args__ = ("value",)
    is_right = True

    def __init__(self, value: T) -> None:
        self.value = value

    def map(self, fn: Callable[[T], U]) -> Either[U]:
        return Right(fn(self.value))

    def bind(self, fn: Callable[[T], Either[U]]) -> Either[U]:
        return _checked(fn(self.value), fn)

    def map_error(self, fn: Callable[[Any], Any]) -> Either[T]:
        return self

    def unwrap(self, timeout: float | None = None) -> T:
        return self.value

    def value_or(self, default: U) -> T | U:
        return self.value

    def __eq__(self, other: object) -> bool:
        return type(other) is Right and other.value == self.value

    def __hash__(self) -> int:
        return hash((Right, self.value))

    def __repr__(self) -> str:
        return f"Right({self.value!r})"


class Left(Either[Any]):
    """An error (usually an exception): ``map`` and ``bind`` pass it through untouched.

    >>> Left(ValueError("bad")).map(lambda x: x + 1)
    Left(ValueError('bad'))
    >>> Left("bad").map_error(str.upper)
    Left('BAD')
    >>> Left(KeyError("k")).value_or(0)
    0
    """

    __slots__ = ("error",)
    __match_args__ = ("error",)
    is_left = True

    def __init__(self, error: Any) -> None:
        self.error = error

    def map(self, fn: Callable[[Any], U]) -> Either[U]:
        return self

    def bind(self, fn: Callable[[Any], Either[U]]) -> Either[U]:
        return self

    def map_error(self, fn: Callable[[Any], Any]) -> Either[Any]:
        return Left(fn(self.error))

    def unwrap(self, timeout: float | None = None) -> NoReturn:
        if isinstance(self.error, BaseException):
            raise self.error
        raise ValueError(f"unwrap() of {self!r}: it holds an error, not a value")

    def __eq__(self, other: object) -> bool:
        return type(other) is Left and other.error == self.error

    def __hash__(self) -> int:
        return hash((Left, self.error))

    def __repr__(self) -> str:
        return f"Left({self.error!r})"


class Pending(Either[T]):
    """A result still being computed; ``wait()`` returns the Right or Left it settles to.

    ``task`` is anything with ``ready()`` and ``get(timeout)`` (a chronopipe ``PoolTask``, a
    ``multiprocessing`` ``AsyncResult``) or ``done()`` and ``result(timeout)`` (a
    ``concurrent.futures.Future``). The task's value becomes ``Right(value)``; the exception
    it raises becomes ``Left(exception)``. ``label`` names it in ``repr``.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(1) as pool:
    ...     halved = Pending(pool.submit(lambda: 84)).map(lambda x: x // 2)
    ...     halved.wait(timeout=10)
    Right(42)
    >>> with ThreadPoolExecutor(1) as pool:
    ...     Pending(pool.submit(int, "x")).wait(timeout=10)
    Left(ValueError("invalid literal for int() with base 10: 'x'"))
    """

    __slots__ = ("_advance", "_label", "_lock", "_settled")
    is_pending = True

    def __init__(self, task: Any, label: str | None = None) -> None:
        if callable(getattr(task, "ready", None)) and callable(getattr(task, "get", None)):
            self._advance: Callable[[float | None], Either[Any]] | None = lambda t: _from_task(task, t)
        elif callable(getattr(task, "done", None)) and callable(getattr(task, "result", None)):
            self._advance = lambda t: _from_future(task, t)
        else:
            raise TypeError(
                f"Pending needs a task with ready()/get() or done()/result() (a PoolTask, an AsyncResult, "
                f"a Future), got {type(task).__name__}"
            )
        self._label = label or type(task).__name__
        self._lock = threading.Lock()
        self._settled: Either[T] | None = None

    @classmethod
    def _derived(cls, parent: Pending[Any], step: Callable[[Either[Any]], Either[Any]], label: str) -> Pending[Any]:
        """A Pending that settles to ``step(parent's settled value)``."""
        pending = cls.__new__(cls)
        pending._advance = lambda t: step(parent.wait(t))
        pending._label = label
        pending._lock = threading.Lock()
        pending._settled = None
        return pending

    def map(self, fn: Callable[[T], U]) -> Either[U]:
        return Pending._derived(self, lambda settled: settled.map(fn), self._label)

    def bind(self, fn: Callable[[T], Either[U]]) -> Either[U]:
        return Pending._derived(self, lambda settled: settled.bind(fn), self._label)

    def map_error(self, fn: Callable[[Any], Any]) -> Either[T]:
        return Pending._derived(self, lambda settled: settled.map_error(fn), self._label)

    def wait(self, timeout: float | None = None) -> Either[T]:
        """Block until settled; the Right or Left. Raises TimeoutError after ``timeout`` seconds."""
        settled = self._settled
        if settled is not None:
            return settled
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        if not self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            raise TimeoutError(f"{self!r}: still pending after {timeout} s")
        try:
            while self._settled is None:
                assert self._advance is not None
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    step = self._advance(left)
                except TimeoutError:
                    raise TimeoutError(f"{self!r}: still pending after {timeout} s") from None
                if isinstance(step, Pending):
                    self._advance = step.wait  # a bind that returned a Pending: wait for that one
                else:
                    self._settled, self._advance = step, None
            return self._settled
        finally:
            self._lock.release()

    def poll(self) -> Either[T]:
        """The settled Right or Left if the task has ended, else this Pending (never blocks)."""
        try:
            return self.wait(0)
        except TimeoutError:
            return self

    def ready(self) -> bool:
        """True once settled (``poll()`` would return a Right or Left)."""
        return self.poll() is not self

    def unwrap(self, timeout: float | None = None) -> T:
        return self.wait(timeout).unwrap()

    def value_or(self, default: U) -> T | U:
        settled = self._settled
        return default if settled is None else settled.value_or(default)

    def __repr__(self) -> str:
        settled = self._settled
        return f"Pending({self._label})" if settled is None else f"Pending({self._label} -> {settled!r})"


def _checked(result: Any, fn: Callable[..., Any]) -> Either[Any]:
    if not isinstance(result, Either):
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(
            f"bind() needs a function that returns an Either (Right, Left or Pending); {name} returned "
            f"{type(result).__name__}: use map() for plain functions"
        )
    return result


def _from_task(task: Any, timeout: float | None) -> Either[Any]:
    try:
        return Right(task.get(timeout))
    except TimeoutError as exc:
        if not task.ready():
            raise
        return Left(exc)
    except Exception as exc:
        return Left(exc)


def _from_future(future: Any, timeout: float | None) -> Either[Any]:
    try:
        return Right(future.result(timeout))
    except TimeoutError as exc:
        if not future.done():
            raise
        return Left(exc)
    except Exception as exc:  # includes CancelledError
        return Left(exc)


def attempt(fn: Callable[..., T]) -> Callable[..., Either[T]]:
    """``fn`` as a function returning ``Right(result)``, or ``Left(exception)`` when it raises.

    >>> attempt(int)("42"), attempt(int)("x")
    (Right(42), Left(ValueError("invalid literal for int() with base 10: 'x'")))
    """

    def attempted(*args: Any, **kwargs: Any) -> Either[T]:
        try:
            return Right(fn(*args, **kwargs))
        except Exception as exc:
            return Left(exc)

    attempted.__name__ = attempted.__qualname__ = f"attempt({getattr(fn, '__qualname__', repr(fn))})"
    attempted.__doc__ = fn.__doc__
    return attempted


def kleisli(*fns: Callable[[Any], Either[Any]]) -> Callable[[Any], Either[Any]]:
    """Left-to-right composition of Either-returning functions (``f >=> g >=> h``).

    ``kleisli(f, g)(x)`` is ``f(x).bind(g)``: the first Left stops the chain; a Pending
    anywhere makes the whole result Pending. ``kleisli()`` is ``Right`` (the identity).

    >>> parse = attempt(int)
    >>> positive = lambda n: Right(n) if n > 0 else Left(f"{n} is not positive")
    >>> check = kleisli(parse, positive, lambda n: Right(n * 10))
    >>> check("4"), check("-4"), check("four")
    (Right(40), Left('-4 is not positive'), Left(ValueError("invalid literal for int() with base 10: 'four'")))
    """
    for fn in fns:
        if not callable(fn):
            raise TypeError(f"kleisli() composes functions, got {fn!r}")

    def composed(value: Any) -> Either[Any]:
        result: Either[Any] = Right(value)
        for fn in fns:
            result = result.bind(fn)
        return result

    return composed


def settle(results: Iterable[Either[T]], timeout: float | None = None) -> list[Either[T]]:
    """Every result settled (Pending ones waited for, within one shared ``timeout``).

    >>> settle([Right(1), Left("x")])
    [Right(1), Left('x')]
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    return [r.wait(None if deadline is None else max(0.0, deadline - time.monotonic())) for r in results]
