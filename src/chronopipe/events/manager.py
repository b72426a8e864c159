"""EventManager: run the callbacks whose condition an event satisfies.

``register(callback, condition, options)`` files a callback under a Condition (a dict of field
-> rule, see ``condition.py``); ``trigger(event)`` runs the callbacks of every condition the
event satisfies, in registration order, and returns their results; ``run()`` does the same for
every record of a queue, in arrival order, on a runtime thread, until END; ``dispatch(events)``
runs the callbacks of many events without keeping their results. Conditions are indexed
(``index.py``): dispatch costs about the same with 100 or 100,000 selective rules.

Results are Either values: ``Right(return value)``, ``Left(ActorError)`` when the callback
raised (the error carries the exception type, message, traceback text and the event), or, for
``options={"async": True}``, a ``Pending`` that settles to one of those when the pool is done.

Async callbacks run on the manager's daemon callback threads (``"thread"``, the default:
``threads.py``), or ``async_pool``: ``"process"`` (the Runtime's process pool), the user's own
pathos ProcessPool or ThreadPool (the seed's ``ProcessPool()``), multiprocessing Pool or
``concurrent.futures`` executor. A worker that dies settles the Pending to a Left (ActorError ``BrokenProcessPool``),
never a hang; pools.py says how, and where that has limits. **A callback on a process pool
runs in another process, on a copy of the event and of everything it refers to: it cannot
change the parent's objects** (``commands.append(event)`` appends to the worker's copy of
``commands``). Return what you need instead: it comes back as ``Right(value)``.

Nothing hangs the manager: no lock that ``statistics()``, ``register()`` or ``matching()`` take
is held while a callback runs (events are serialised by a separate *turn*, which only other
``trigger``/``dispatch`` calls wait for). ``timeout`` (per registration, or the manager's
default) turns a callback that runs too long into ``Left(ActorError TimeoutError)``: a
synchronous one with a timeout runs on a callback thread while the dispatching thread waits
at most that long, then moves on (the callback is abandoned, its daemon thread runs on); an
async one's Pending settles to that Left at its deadline. Callbacks without a timeout run
inline, at the cost of a bare call and a list append.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from ..actors.actor import Actor
from ..actors.errors import ActorError, from_exception
from ..channels import Channel
from ..either import Either, Left, Pending, Right
from ..multiplex.inputs import as_input
from ..runtime.seed import SeedStart
from .callbacks import Outstanding, callback_key, pool_mode, submit_task
from .condition import Condition
from .index import ConditionIndex, drop_one, put_one
from .loop import QueueDispatcher
from .subscription import EventStatistics, OnError, Subscription, check_timeout, subscribe
from .threads import Lend, callback_threads, lent_call, timeout_error

__all__ = ["EventManager", "EventStatistics", "Subscription"]

log = logging.getLogger("chronopipe.events")
RIGHT_NONE: Right[Any] = Right(None)  # what most callbacks give: one Right for all of them


class EventManager(SeedStart):
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
    ``timeout`` is the default of the ``timeout`` option (seconds; None: wait as long as it takes).

    Events are handled one at a time (``trigger`` from several threads is serialised); within
    an event, callbacks run in registration order. A callback may register or unregister
    callbacks: one unregistered before its turn does not run, one registered runs from the
    next event on. Callbacks run in the thread that triggers the event (``run()``: the
    runtime's thread), except those with a timeout or ``async``; a callback that raises gives
    a Left (see ``on_error``).

    Raises:
        ValueError: a bad ``on_error`` or ``timeout``.
        TypeError: a ``queue`` without ``get()``, or an ``async_pool`` that is no pool.
    """

    def __init__(self, queue: Any = None, async_pool: Any = None, *, name: str = "events",
                 on_error: OnError = "log", timeout: float | None = None) -> None:
        if on_error not in ("log", "raise"):
            raise ValueError(f"EventManager {name!r}: on_error must be 'log' or 'raise', not {on_error!r}")
        if queue is not None and not isinstance(queue, Channel) and not callable(getattr(queue, "get", None)):
            raise TypeError(f"EventManager {name!r}: queue must be a Channel or have get(), not {type(queue).__name__}")
        self.queue = queue
        self.name = name
        self.on_error: OnError = on_error
        self.timeout = check_timeout(timeout, f"EventManager {name!r}")
        self.async_pool = pool_mode(async_pool)
        self._index: ConditionIndex[Subscription] = ConditionIndex()
        self._by_callback: dict[Any, Any] = {}  # callback -> its Subscription, or a dict seq -> Subscription
        self._lock = threading.RLock()  # the state: index, registrations, outstanding; never held in user code
        self._turn = threading.RLock()  # events one at a time: held while callbacks run
        self._lent = threading.local()  # .token: the Lend of a timed callback running in this thread
        self._outstanding = Outstanding()  # async callbacks submitted, not reaped yet (under _lock)
        # written by the thread whose turn it is (errors: of synchronous callbacks)
        self._events = self._dispatched = self._callbacks = self._errors = 0
        self._actor: QueueDispatcher | None = None

    # -- registration ----------------------------------------------------------------------
    def register(self, callback: Callable[[Any], Any], condition: Mapping[Any, Any] | Condition | None = None,
                 options: Mapping[str, Any] | None = None) -> Subscription:
        """Run ``callback(event)`` for every event that satisfies ``condition`` (None: every event).

        ``options``: ``"async"``: True (the manager's pool), ``"thread"`` or ``"process"``;
        ``"once"``: unregister after the first match; ``"name"``: for logs and errors (default:
        the callback's name); ``"on_error"``: ``"log"`` or ``"raise"`` for this callback;
        ``"timeout"``: seconds after which its result is ``Left(ActorError TimeoutError)`` and
        the manager moves on (None: no timeout; default: the manager's ``timeout``).

        Raises:
            TypeError: the callback is not callable, or options is not a dict.
            ValueError: an unknown option or a bad option value.
        """
        sub = subscribe(self, callback, condition, options)
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
        ``condition`` only, if given); returns how many were removed.

        Raises:
            ValueError: a Subscription of another manager.
            TypeError: a Subscription with a condition.
        """
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
        sub.active, sub.fast = False, None
        self._index.remove(sub.seq)
        drop_one(self._by_callback, sub._key, sub.seq)
        return True

    def subscriptions(self) -> list[Subscription]:
        """Every registered callback, in registration order."""
        with self._lock:
            return self._index.entries()

    # -- dispatch --------------------------------------------------------------------------
    def matching(self, event: Any) -> list[Subscription]:
        """The subscriptions ``event`` would trigger, in order (nothing is run)."""
        with self._lock:
            return self._index.match(event)

    def _match(self, event: Any) -> list[Subscription]:
        with self._lock:
            subs = self._index.matched(event)
            if self._outstanding:
                self._outstanding.reap(full=False)
        return subs

    def _take_turn(self) -> bool:
        """Wait for this thread's turn to dispatch; False if it has it already (lent to it)."""
        token = getattr(self._lent, "token", None)
        if token is not None and token.alive:
            return False
        self._turn.acquire()
        return True

    def trigger(self, event: Any) -> list[Either[Any]]:
        """Run the callbacks ``event`` matches, in registration order; their results.

        Runs in the calling thread (timed and async callbacks on their threads or pool).

        Raises:
            ActorError: a callback with ``on_error="raise"`` raised or timed out.
        """
        took = self._take_turn()
        try:
            self._events += 1
            subs = self._match(event)
            if not subs:
                return []
            self._dispatched += 1
            results: list[Either[Any]] = []
            append = results.append
            try:
                for sub in subs:  # active (fast is None once not): checked at each one's turn
                    fn = sub.fast
                    if fn is not None:
                        try:
                            value = fn(event)
                        except Exception as exc:
                            append(self._failed(sub, event, exc))
                            continue
                        append(RIGHT_NONE if value is None else Right(value))
                    elif sub.active:
                        append(self._invoke(sub, event))
            finally:
                self._callbacks += len(results)  # counted in bulk (a raising one counts itself)
            return results
        finally:
            if took:
                self._turn.release()

    def dispatch(self, events: Iterable[Any]) -> int:
        """``trigger`` each of ``events`` in turn, keeping no results; how many callbacks ran.

        For callers that would throw the results away (the end of a pipeline, a validation
        run): the same callbacks run in the same order, with the same statistics, errors and
        ``on_error`` handling, at a lower cost per event. ``events`` may be a generator (it is
        consumed during this manager's turn: no other event is dispatched meanwhile).

        >>> manager, ticks = EventManager(), []
        >>> _ = manager.register(ticks.append, {"kind": "tick"})
        >>> manager.dispatch([{"kind": "tick", "n": 1}, {"kind": "tock"}, {"kind": "tick", "n": 2}]), len(ticks)
        (2, 2)

        Raises:
            ActorError: a callback with ``on_error="raise"`` raised or timed out.
        """
        match = self._match
        seen = dispatched = ran = 0  # counted here, added to the statistics at the end
        took = self._take_turn()
        try:
            for event in events:
                seen += 1
                subs = match(event)
                if not subs:
                    continue
                dispatched += 1
                for sub in subs:
                    fn = sub.fast
                    if fn is not None:
                        try:
                            fn(event)
                        except Exception as exc:
                            self._failed(sub, event, exc)
                        ran += 1
                    elif sub.active:
                        self._invoke(sub, event)
                        ran += 1
        finally:
            self._events += seen
            self._dispatched += dispatched
            self._callbacks += ran
            if took:
                self._turn.release()
        return ran

    def _invoke(self, sub: Subscription, event: Any) -> Either[Any]:
        """Run a matched callback that is not a plain one: ``once`` (unregistered first), timed,
        or async (submitted to its pool)."""
        if sub.once:
            with self._lock:
                self._remove(sub)
        if sub.mode is not None:
            return self._submit(sub, event)
        if sub.timeout is not None:
            return self._call_timed(sub, event, sub.timeout)
        try:
            value = sub.callback(event)
        except Exception as exc:
            return self._failed(sub, event, exc)
        return RIGHT_NONE if value is None else Right(value)

    def _call_timed(self, sub: Subscription, event: Any, timeout: float) -> Either[Any]:
        """Run a synchronous callback on a callback thread; wait ``timeout`` s for it, no more."""
        token = Lend()
        call = callback_threads().submit(lent_call, (self._lent, sub.callback, event, token), sub.label)
        try:
            finished = call.wait(timeout)
        finally:
            token.alive = False  # the turn is taken back (Ctrl-C in the wait included)
        if not finished:
            thread = call.thread.name if call.thread is not None else None
            return self._failed(sub, event, timeout_error(sub.label, timeout, event, thread))
        try:
            value = call.result(0)
        except Exception as exc:
            return self._failed(sub, event, exc)
        return RIGHT_NONE if value is None else Right(value)

    def _failed(self, sub: Subscription, event: Any, exc: Exception) -> Either[Any]:
        """A synchronous callback raised or timed out: count it, then raise it as an ActorError or log it."""
        error = from_exception(sub.label, exc, event)
        self._errors += 1
        if sub.on_error == "raise":
            self._callbacks += 1  # the loop's bulk count does not reach it
            raise error from exc
        if isinstance(exc, ActorError) and exc.exc_type == "TimeoutError":
            log.error("callback %s timed out on event %.200r (its result is a Left): %s", sub.label, event,
                      exc.message)
        else:
            log.error("callback %s failed on event %.200r (its result is a Left):\n%s", sub.label, event,
                      error.traceback.rstrip())
        return Left(error)

    def _submit(self, sub: Subscription, event: Any) -> Either[Any]:
        label = sub.label
        try:
            task = submit_task(sub.mode, sub.callback, event, label, sub.timeout)  # type: ignore[arg-type]
        except Exception as exc:
            self._errors += 1
            log.error("callback %s could not be submitted to its pool: %s: %s", label, type(exc).__name__, exc)
            return Left(from_exception(label, exc, event))
        pending = Pending(task, label).map_error(lambda error: from_exception(label, error, event))
        with self._lock:
            self._outstanding.append((sub.label, pending))
        return pending

    # -- running on a queue ----------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True once ``start()`` (the seed's ``run()``) began dispatching ``queue``."""
        return self._actor is not None

    def start(self) -> Self:
        """Dispatch every record of ``queue`` on a runtime thread until END; returns self.

        Calling it again does nothing. ``join()`` waits for the END; ``stop()`` stops early.
        ``run()`` is the seed's name for it (runtime/seed.py).
        """
        with self._lock:
            if self._actor is None:
                self.queue = self.queue if self.queue is not None else Channel(name=f"{self.name}.queue")
                self._actor = self.as_actor(self.queue, name=self.name).start()
        return self

    def as_actor(self, inbox: Any, name: str | None = None) -> Actor:
        """An actor (not started) that dispatches each record of ``inbox`` until END: the
        end of a pipeline. It runs on a thread of this process, where the callbacks are
        registered; ``join()`` returns its EventStatistics."""
        name = name or f"{self.name}.dispatch"
        return QueueDispatcher(self, name, as_input(inbox, f"{name}.inbox"))

    def stop(self) -> None:
        """Ask ``start()``'s loop to stop after the record it is handling."""
        if self._actor is not None:
            self._actor.stop()

    def join(self, timeout: float | None = None) -> EventStatistics:
        """Wait for ``start()``'s loop to reach END (if it was started), then for every async
        callback to finish; the statistics. Raises the loop's ActorError, or TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._actor is not None:
            self._actor.join(timeout)
        with self._lock:
            waiting = self._outstanding.pendings()
        for pending in waiting:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                pending.wait(left)
            except TimeoutError:
                raise TimeoutError(f"EventManager {self.name!r}: async callbacks still running "
                                   f"after {timeout} s") from None
        return self.statistics()

    def statistics(self) -> EventStatistics:
        """A snapshot of the counts (async results that have finished are counted first).

        Never waits for a callback: from any thread, while callbacks run (or hang)."""
        with self._lock:
            self._outstanding.reap(full=True)
            return EventStatistics(
                name=self.name, rules=len(self._index), events=self._events, dispatched=self._dispatched,
                callbacks=self._callbacks, pending=len(self._outstanding),
                errors=self._errors + self._outstanding.errors, predicate_errors=self._index.errors,
            )

    def __repr__(self) -> str:
        state = "" if self._actor is None else f" {self._actor.state}"
        return f"<EventManager {self.name!r} rules={len(self._index)}{state}>"
