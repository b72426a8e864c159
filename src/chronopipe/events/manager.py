"""EventManager: run the callbacks whose condition an event satisfies.

``register(callback, condition, options)`` files a callback under a Condition (a dict of field
-> rule, see ``condition.py``); ``trigger(event)`` runs the callbacks of every condition the
event satisfies, in registration order, and returns their results; ``run()`` does the same for
every record of a queue, in arrival order, on a runtime thread, until END; ``dispatch(events)``
runs the callbacks of many events without keeping their results. Conditions are
indexed (``index.py``): dispatch costs about the same with 100 or 100,000 selective rules.

Results are Either values: ``Right(return value)``, ``Left(ActorError)`` when the callback
raised (the error carries the exception type, message, traceback text and the event), or, for
``options={"async": True}``, a ``Pending`` that settles to one of those when the pool is done.

Async callbacks run on a pool: the Runtime's thread pool by default, or ``async_pool``:
``"thread"``, ``"process"``, the Runtime's pools, or the user's own pathos ProcessPool or
ThreadPool (the seed's ``ProcessPool()``), multiprocessing Pool or ``concurrent.futures``
executor. A worker that dies settles the Pending to a Left (ActorError ``BrokenProcessPool``),
never a hang; pools.py says how, and where that has limits. **A callback on a process pool
runs in another process, on a copy of the event and of everything it refers to: it cannot
change the parent's objects** (``commands.append(event)`` appends to the worker's copy of
``commands``). Return what you need instead: it comes back as ``Right(value)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

from ..actors.actor import Actor
from ..actors.errors import from_exception
from ..channels import END, Channel
from ..channels.base import POLL_INTERVAL
from ..either import Either, Left, Pending, Right
from ..multiplex.inputs import as_input
from ..runtime import Runtime
from .callbacks import NamedCall, callback_key, name_of, pool_mode
from .condition import Condition
from .index import ConditionIndex, IndexEntry, drop_one, put_one
from .pools import AsyncPool

__all__ = ["EventManager", "EventStatistics", "Subscription"]

log = logging.getLogger("chronopipe.events")

OnError = Literal["log", "raise"]
OPTIONS = ("async", "once", "name", "on_error")


@dataclass(frozen=True)
class EventStatistics:
    """A snapshot of one EventManager."""

    name: str
    rules: int  #: registered now
    events: int  #: events seen (trigger() calls and records from the queue)
    dispatched: int  #: events that matched at least one rule
    callbacks: int  #: callbacks run, or submitted to the pool for async ones
    pending: int  #: async callbacks not finished yet
    errors: int  #: callbacks that raised (async ones once they have finished)
    predicate_errors: int  #: rule tests that raised (details in each Condition's errors)


class Subscription(IndexEntry):
    """A registered callback (what ``register`` returns): ``unregister()`` removes it."""

    __slots__ = ("_key", "_manager", "_name", "active", "callback", "mode", "on_error", "once")

    def __init__(self, manager: EventManager, callback: Callable[[Any], Any], condition: Condition,
                 mode: str | AsyncPool | None, once: bool, name: str | None, on_error: OnError) -> None:
        IndexEntry.__init__(self, condition)
        self._manager, self.callback = manager, callback
        self.mode, self.once, self._name, self.on_error = mode, once, name, on_error
        self.active = True
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
        state = "" if self.active else " (unregistered)"
        return f"<Subscription #{self.seq} {self.label} {self.condition!r}{mode}{' once' if self.once else ''}{state}>"


class EventManager:
    """Indexed dispatch of events (records) to the callbacks registered for them.

    >>> manager = EventManager()
    >>> responses = []
    >>> handle = manager.register(responses.append, {"type": "response"})
    >>> manager.trigger({"type": "response", "value": "complete"})
    [Right(None)]
    >>> manager.trigger({"type": "command"}), responses
    ([], [{'type': 'response', 'value': 'complete'}])
    >>> manager.register_once(lambda event: event["value"] * 2, {"value": [0, 1]}).once
    True
    >>> manager.trigger({"value": 0}), manager.trigger({"value": 0})
    ([Right(0)], [])

    ``queue`` (for ``run()``) is a Channel or any queue with ``get()`` (``queue.Queue``, a
    ``multiprocessing`` Queue, a ``Manager().Queue()``); without one, ``run()`` makes a thread
    Channel, ``manager.queue``. ``on_error="raise"`` makes a synchronous callback's exception
    propagate from ``trigger`` (as an ActorError) instead of becoming a logged ``Left``.

    Events are handled one at a time (``trigger`` from several threads is serialised); within
    an event, callbacks run in registration order. A callback may register or unregister
    callbacks: one unregistered before its turn does not run, one registered runs from the
    next event on.
    """

    def __init__(self, queue: Any = None, async_pool: Any = None, *, name: str = "events",
                 on_error: OnError = "log") -> None:
        if on_error not in ("log", "raise"):
            raise ValueError(f"EventManager {name!r}: on_error must be 'log' or 'raise', not {on_error!r}")
        if queue is not None and not isinstance(queue, Channel) and not callable(getattr(queue, "get", None)):
            raise TypeError(f"EventManager {name!r}: queue must be a Channel or have get(), not {type(queue).__name__}")
        self.queue = queue
        self.name = name
        self.on_error: OnError = on_error
        self.async_pool = pool_mode(async_pool)
        self._index: ConditionIndex[Subscription] = ConditionIndex()
        self._by_callback: dict[Any, Any] = {}  # callback -> its Subscription, or a dict seq -> Subscription
        self._lock = threading.RLock()
        self._outstanding: deque[tuple[Subscription, Pending[Any]]] = deque()
        self._events = self._dispatched = self._callbacks = self._errors = 0
        self._actor: _Dispatcher | None = None

    # -- registration ----------------------------------------------------------------------
    def register(self, callback: Callable[[Any], Any], condition: Mapping[Any, Any] | Condition | None = None,
                 options: Mapping[str, Any] | None = None) -> Subscription:
        """Run ``callback(event)`` for every event that satisfies ``condition`` (None: every event).

        ``options``: ``"async"``: True (the manager's pool), ``"thread"`` or ``"process"``;
        ``"once"``: unregister after the first match; ``"name"``: for logs and errors (default:
        the callback's name); ``"on_error"``: ``"log"`` or ``"raise"`` for this callback.
        """
        if not callable(callback):
            raise TypeError(
                f"register(): the callback must be callable, got {type(callback).__name__} {callback!r:.100} "
                "(the order is register(callback, condition, options))"
            )
        cond = condition if isinstance(condition, Condition) else Condition(condition)
        if options:
            if not isinstance(options, Mapping):
                raise TypeError(f"register(): options must be a dict, not {type(options).__name__}")
            unknown = sorted(set(options) - set(OPTIONS), key=str)
            if unknown:
                raise ValueError(f"register(): unknown option(s) {unknown}; the options are {list(OPTIONS)}")
            on_error = options.get("on_error", self.on_error)
            if on_error not in ("log", "raise"):
                raise ValueError(f"register(): option on_error must be 'log' or 'raise', not {on_error!r}")
            name = options.get("name")
            sub = Subscription(self, callback, cond, self._mode(options.get("async", False)),
                               bool(options.get("once")), None if name is None else str(name), on_error)
        else:
            sub = Subscription(self, callback, cond, None, False, None, self.on_error)
        with self._lock:
            self._index.add(sub)
            put_one(self._by_callback, sub._key, sub)
        return sub

    def register_once(self, callback: Callable[[Any], Any], condition: Mapping[Any, Any] | Condition | None = None,
                      options: Mapping[str, Any] | None = None) -> Subscription:
        """``register`` for the first matching event only."""
        return self.register(callback, condition, {**(options or {}), "once": True})

    def unregister(self, target: Subscription | Callable[[Any], Any],
                   condition: Mapping[Any, Any] | Condition | None = None) -> int:
        """Remove a Subscription, or every registration of a callback (with an equal
        ``condition`` only, if given); returns how many were removed."""
        with self._lock:
            if isinstance(target, Subscription):
                if target._manager is not self:
                    raise ValueError(f"{target!r} belongs to another EventManager, not {self.name!r}")
                if condition is not None:
                    raise TypeError("unregister(subscription) takes no condition: the subscription has one")
                return int(self._remove(target))
            there = self._by_callback.get(callback_key(target))
            if there is None:
                return 0
            subs = list(there.values()) if there.__class__ is dict else [there]
            wanted = None if condition is None else Condition.of(condition)
            return sum(self._remove(sub) for sub in subs if wanted is None or sub.condition == wanted)

    def _remove(self, sub: Subscription) -> bool:
        if not sub.active:
            return False
        sub.active = False
        self._index.remove(sub.seq)
        drop_one(self._by_callback, sub._key, sub.seq)
        return True

    def subscriptions(self) -> list[Subscription]:
        """Every registered callback, in registration order."""
        with self._lock:
            return self._index.entries()

    def _mode(self, asynchronous: Any) -> str | AsyncPool | None:
        if asynchronous is False or asynchronous is None:
            return None
        if asynchronous is True:
            return self.async_pool
        if asynchronous in ("thread", "process"):
            return asynchronous
        raise ValueError(f"register(): option async must be True, False, 'thread' or 'process', not {asynchronous!r}")

    # -- dispatch --------------------------------------------------------------------------
    def matching(self, event: Any) -> list[Subscription]:
        """The subscriptions ``event`` would trigger, in order (nothing is run)."""
        with self._lock:
            return self._index.match(event)

    def trigger(self, event: Any) -> list[Either[Any]]:
        """Run the callbacks ``event`` matches, in registration order; their results."""
        with self._lock:
            self._events += 1
            subs = self._index.matched(event)
            results: list[Either[Any]] = []
            if subs:
                self._dispatched += 1
                # active: checked at each one's turn, as a callback may unregister a later one
                results = [self._invoke(sub, event) for sub in subs if sub.active]
            if self._outstanding:
                self._reap(full=False)
            return results

    def dispatch(self, events: Iterable[Any]) -> int:
        """``trigger`` each of ``events`` in turn, keeping no results; how many callbacks ran.

        For callers that would throw the results away (the end of a pipeline, a validation
        run): the same callbacks run in the same order, with the same statistics, errors and
        ``on_error`` handling, at a lower cost per event. ``events`` may be a generator (it is
        consumed while the manager's lock is held).

        >>> manager, ticks = EventManager(), []
        >>> _ = manager.register(ticks.append, {"kind": "tick"})
        >>> manager.dispatch([{"kind": "tick", "n": 1}, {"kind": "tock"}, {"kind": "tick", "n": 2}]), len(ticks)
        (2, 2)
        """
        match, outstanding = self._index.matched, self._outstanding
        seen = dispatched = direct = other = 0  # counted here, added to the statistics at the end
        with self._lock:
            try:
                for event in events:
                    seen += 1
                    subs = match(event)
                    if subs:
                        dispatched += 1
                        for sub in subs:
                            if not sub.active:  # unregistered by a callback before its turn
                                continue
                            if sub.once or sub.mode is not None:
                                other += 1
                                self._invoke(sub, event)  # counts itself
                                continue
                            direct += 1
                            try:
                                sub.callback(event)
                            except Exception as exc:
                                self._failed(sub, event, exc)
                    if outstanding:
                        self._reap(full=False)
            finally:
                self._events += seen
                self._dispatched += dispatched
                self._callbacks += direct
        return direct + other

    def _invoke(self, sub: Subscription, event: Any) -> Either[Any]:
        """Run one matched callback (unregistering a ``once`` one first), or submit it to its pool."""
        if sub.once:
            self._remove(sub)
        if sub.mode is not None:
            return self._submit(sub, event)
        self._callbacks += 1
        try:
            return Right(sub.callback(event))
        except Exception as exc:
            return self._failed(sub, event, exc)

    def _failed(self, sub: Subscription, event: Any, exc: Exception) -> Either[Any]:
        """A synchronous callback raised: count it, then raise it as an ActorError or log it."""
        error = from_exception(sub.label, exc, event)
        self._errors += 1
        if sub.on_error == "raise":
            raise error from exc
        log.error("callback %s failed on event %.200r (its result is a Left):\n%s", sub.label, event,
                  error.traceback.rstrip())
        return Left(error)

    def _submit(self, sub: Subscription, event: Any) -> Either[Any]:
        self._callbacks += 1
        label = sub.label
        try:
            if isinstance(sub.mode, str):
                task: Any = Runtime().submit(NamedCall(sub.callback, label), event, mode=sub.mode)
            else:
                task = sub.mode.submit(NamedCall(sub.callback, label), event)  # type: ignore[union-attr]
        except Exception as exc:
            self._errors += 1
            log.error("callback %s could not be submitted to its pool: %s: %s", label, type(exc).__name__, exc)
            return Left(from_exception(label, exc, event))
        pending = Pending(task, label).map_error(lambda error: from_exception(label, error, event))
        self._outstanding.append((sub, pending))  # type: ignore[arg-type]
        return pending

    def _reap(self, full: bool) -> None:
        """Count and log the async results that have settled (the oldest ones, or all)."""
        waiting: deque[tuple[Subscription, Pending[Any]]] = deque()
        while self._outstanding:
            sub, pending = self._outstanding.popleft()
            settled = pending.poll()
            if settled is not pending:
                if settled.is_left:
                    self._errors += 1
                    log.error("async callback %s failed (its result is a Left):\n%s", sub.label,
                              getattr(settled.error, "traceback", "").rstrip() or repr(settled.error))  # type: ignore[attr-defined]
            elif full:
                waiting.append((sub, pending))
            else:
                self._outstanding.appendleft((sub, pending))
                break
        self._outstanding.extendleft(reversed(waiting))

    # -- running on a queue ----------------------------------------------------------------
    def run(self) -> Self:
        """Dispatch every record of ``queue`` on a runtime thread until END; returns self.

        Calling it again does nothing. ``join()`` waits for the END; ``stop()`` stops early.
        """
        with self._lock:
            if self._actor is None:
                if self.queue is None:
                    self.queue = Channel(name=f"{self.name}.queue")
                self._actor = self.as_actor(self.queue, name=self.name)
                self._actor.start()
        return self

    def as_actor(self, inbox: Any, name: str | None = None) -> Actor:
        """An actor (not started) that dispatches each record of ``inbox`` until END: the
        end of a pipeline. It runs on a thread of this process, where the callbacks are
        registered; ``join()`` returns its EventStatistics."""
        name = name or f"{self.name}.dispatch"
        return _Dispatcher(self, name, as_input(inbox, f"{name}.inbox"))

    def stop(self) -> None:
        """Ask ``run()``'s loop to stop after the record it is handling."""
        if self._actor is not None:
            self._actor.stop()

    def join(self, timeout: float | None = None) -> EventStatistics:
        """Wait for ``run()``'s loop to reach END (if it was started), then for every async
        callback to finish; the statistics. Raises the loop's ActorError, or TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._actor is not None:
            self._actor.join(timeout)
        with self._lock:
            waiting = [pending for _, pending in self._outstanding]
        for pending in waiting:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                pending.wait(left)
            except TimeoutError:
                raise TimeoutError(
                    f"EventManager {self.name!r}: async callbacks still running after {timeout} s"
                ) from None
        return self.statistics()

    def statistics(self) -> EventStatistics:
        """A snapshot of the counts (async results that have finished are counted first)."""
        with self._lock:
            self._reap(full=True)
            return EventStatistics(
                name=self.name, rules=len(self._index), events=self._events, dispatched=self._dispatched,
                callbacks=self._callbacks, pending=len(self._outstanding), errors=self._errors,
                predicate_errors=self._index.errors,
            )

    def __repr__(self) -> str:
        state = "" if self._actor is None else f" {self._actor.state}"
        return f"<EventManager {self.name!r} rules={len(self._index)}{state}>"


class _Dispatcher(Actor):
    """An EventManager's loop as an actor: each record of the inbox, in order, until END."""

    def __init__(self, manager: EventManager, name: str, inbox: Channel) -> None:
        super().__init__(name, inbox=inbox, mode="thread")
        self.manager = manager

    def run(self) -> None:
        inbox, stop, trigger = self.inbox, self._stop, self.manager.trigger
        assert inbox is not None
        while not stop[0]:
            try:
                batch = inbox.get_batch(POLL_INTERVAL)
            except TimeoutError:
                self.manager.statistics()  # idle: count and log the async results that finished
                continue
            for item in batch:
                if item is END:
                    return
                try:
                    trigger(item)
                except BaseException:
                    self._failed_record = item
                    raise
                self._received += 1
                if stop[0]:
                    return

    def on_stop(self) -> EventStatistics:
        return self.manager.statistics()
