"""What ``EventManager.register`` makes: a Subscription (a callback, its condition and options),
and the statistics snapshot the manager gives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .callbacks import callback_key, name_of
from .condition import Condition
from .index import IndexEntry
from .pools import AsyncPool

if TYPE_CHECKING:
    from .manager import EventManager

__all__ = ["OPTIONS", "EventStatistics", "OnError", "Subscription", "check_timeout", "subscribe"]

OnError = Literal["log", "raise"]
OPTIONS = ("async", "once", "name", "on_error", "timeout")
_DEFAULT: Any = object()


@dataclass(frozen=True)
class EventStatistics:
    """A snapshot of one EventManager."""

    name: str
    rules: int  #: registered now
    events: int  #: events seen (trigger() calls and records from the queue)
    dispatched: int  #: events that matched at least one rule
    callbacks: int  #: callbacks run, or submitted to the pool for async ones
    pending: int  #: async callbacks not finished yet
    errors: int  #: callbacks that raised or timed out (async ones once they have finished)
    predicate_errors: int  #: rule tests that raised (details in each Condition's errors)


class Subscription(IndexEntry):
    """A registered callback (what ``register`` returns): ``unregister()`` removes it.

    ``fast`` is the callback itself while it can be called inline with nothing else to do
    (synchronous, not ``once``, no timeout, still registered), else None: the manager's hot
    loop looks at that one attribute per callback.
    """

    __slots__ = ("_key", "_manager", "_name", "active", "callback", "fast", "mode", "on_error", "once", "timeout")

    def __init__(self, manager: EventManager, callback: Callable[[Any], Any], condition: Condition,
                 mode: str | AsyncPool | None, once: bool, name: str | None, on_error: OnError,
                 timeout: float | None = None) -> None:
        IndexEntry.__init__(self, condition)
        self._manager, self.callback = manager, callback
        self.mode, self.once, self._name, self.on_error, self.timeout = mode, once, name, on_error, timeout
        self.active = True
        self.fast = callback if mode is None and not once and timeout is None else None
        self._key = callback_key(callback)

    @property
    def name(self) -> str:
        """The ``name`` option, or the callback's name."""
        if self._name is None:
            self._name = name_of(self.callback)
        return self._name

    @property
    def label(self) -> str:
        """``manager name:callback name``, as logs and errors show it."""
        return f"{self._manager.name}:{self.name}"

    def unregister(self) -> bool:
        """Remove it; False if it was not registered any more."""
        return bool(self._manager.unregister(self))

    def __repr__(self) -> str:
        mode = "" if self.mode is None else f" async={self.mode}"
        timeout = "" if self.timeout is None else f" timeout={self.timeout:g}"
        state = "" if self.active else " (unregistered)"
        return (f"<Subscription #{self.seq} {self.label} {self.condition!r}{mode}{' once' if self.once else ''}"
                f"{timeout}{state}>")


def check_timeout(timeout: Any, where: str) -> float | None:
    """``timeout`` as seconds (None: no timeout).

    Raises:
        ValueError: not None nor a number of seconds > 0.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"{where}: timeout must be None or a number of seconds > 0, not {timeout!r}")
    return float(timeout)


def subscribe(manager: EventManager, callback: Callable[[Any], Any], condition: Mapping[Any, Any] | Condition | None,
              options: Mapping[str, Any] | None) -> Subscription:
    """A Subscription of ``callback`` to ``condition`` with ``options``, for ``manager`` (not registered yet).

    Raises:
        TypeError: the callback is not callable, or options is not a dict.
        ValueError: an unknown option, or a bad option value.
    """
    if not callable(callback):
        raise TypeError(
            f"register(): the callback must be callable, got {type(callback).__name__} {callback!r:.100} "
            "(the order is register(callback, condition, options))"
        )
    cond = condition if isinstance(condition, Condition) else Condition(condition)
    if not options:
        return Subscription(manager, callback, cond, None, False, None, manager.on_error, manager.timeout)
    if not isinstance(options, Mapping):
        raise TypeError(f"register(): options must be a dict, not {type(options).__name__}")
    unknown = sorted(set(options) - set(OPTIONS), key=str)
    if unknown:
        raise ValueError(f"register(): unknown option(s) {unknown}; the options are {list(OPTIONS)}")
    on_error = options.get("on_error", manager.on_error)
    if on_error not in ("log", "raise"):
        raise ValueError(f"register(): option on_error must be 'log' or 'raise', not {on_error!r}")
    timeout = options.get("timeout", _DEFAULT)
    timeout = manager.timeout if timeout is _DEFAULT else check_timeout(timeout, "register()")
    name = options.get("name")
    return Subscription(manager, callback, cond, _mode(manager, options.get("async", False)),
                        bool(options.get("once")), None if name is None else str(name), on_error, timeout)


def _mode(manager: EventManager, asynchronous: Any) -> str | AsyncPool | None:
    if asynchronous is False or asynchronous is None:
        return None
    if asynchronous is True:
        return manager.async_pool
    if asynchronous in ("thread", "process"):
        return str(asynchronous)
    raise ValueError(f"register(): option async must be True, False, 'thread' or 'process', not {asynchronous!r}")
