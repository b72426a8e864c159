"""The ``custom`` check: the findings and failures of a rules file's own callbacks.

A callback that returns a string reports a finding; one that raises (anything, ``sys.exit``
included) or runs past its ``timeout`` is a rule that failed, counted with the packet it first
failed on and its traceback; the run goes on. :class:`SignalWatch` tells a real Ctrl-C or SIGTERM
(which ends the run) from a KeyboardInterrupt a rule raised itself. See rules.py for the file.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .checks.base import Check, CheckResult

if TYPE_CHECKING:
    from ..events import EventManager
    from .reader import CaptureSummary

__all__ = ["MESSAGE_LIMIT", "CustomFindings", "RuleError", "SignalWatch", "rules_own"]


#: Longest an exception's message or a record's repr is in a one-line message.
MESSAGE_LIMIT = 200


class SignalWatch:
    """While active (``with SignalWatch():``, in the main thread), whether SIGINT or SIGTERM arrived.

    Its handlers note the signal, then do what the handlers they replaced did (the runtime's,
    the command line's, or Python's KeyboardInterrupt), so a real Ctrl-C stops the run as
    before. It tells a KeyboardInterrupt (or the command line's SIGTERM exception) that a signal
    raised from one that a rule's own code raised: only the first kind ends a run.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: dict[int, Any] = {}
        self._outer: SignalWatch | None = None

    def __enter__(self) -> SignalWatch:
        global _WATCH
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                current = signal.getsignal(signum)
                if current is signal.SIG_IGN or current is None:
                    continue  # ignored (`cmd &`), or not Python's to handle: never a KeyboardInterrupt
                self._previous[signum] = current
                signal.signal(signum, self._handler)
        self._outer, _WATCH = _WATCH, self
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _WATCH
        _WATCH = self._outer
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handler:  # else one installed later chains to ours: left there
                signal.signal(signum, previous)

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
            os.kill(os.getpid(), signum)


_WATCH: SignalWatch | None = None


def rules_own(exc: BaseException) -> bool:
    """Whether ``exc``, raised in a rule's (or the rules file's) code, is the rule's own failure
    rather than a signal that arrived meanwhile (see the module docstring)."""
    if isinstance(exc, Exception) or threading.current_thread() is not threading.main_thread():
        return True  # signal handlers run in the main thread only
    if _WATCH is not None:
        return not _WATCH.seen
    return not isinstance(exc, (KeyboardInterrupt, SystemExit))


@dataclass
class RuleError:
    """A rule's callback that failed (raised, or ran past its timeout): how often, and where and
    how it first did."""

    rule: str
    count: int  #: times it failed, timeouts included
    exception: str  #: ``Type: message`` of the first failure
    file: str
    frame: int
    ts_ns: int
    traceback: str  #: of the first exception, from the rule's own code (a timeout: where it was then)
    timeouts: int = 0  #: of ``count``, the times it ran past its timeout (abandoned)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "timeouts": self.timeouts, "exception": self.exception, "file": self.file,
                "frame": self.frame, "ts_ns": self.ts_ns, "traceback": self.traceback}

    def failed(self) -> str:
        """``raised 3 times``, ``timed out once``, ``failed 5 times (2 timed out)``."""
        times = "once" if self.count == 1 else f"{self.count:,} times"
        if not self.timeouts:
            return f"raised {times}"
        if self.timeouts == self.count:
            return f"timed out {times}"
        return f"failed {times} ({self.timeouts:,} timed out)"


class CustomFindings(Check):
    """The verdict on callbacks a rules file registered: a callback that returned a string found
    something (its check fails); one that raised or ran past its ``timeout`` is a rule that
    failed (the check fails too, the run goes on): ``errors`` keeps, per rule, how many times it
    failed and its first traceback, with the packet (file, frame, timestamp) it failed on."""

    name = "custom"

    def __init__(self) -> None:
        super().__init__()
        self.per_rule: dict[str, int] = {}
        self.errors: dict[str, RuleError] = {}
        self._lock = threading.Lock()  # async rules report from their pool's threads

    def view(self, events: EventManager) -> Any:
        """``events`` as a rules file sees it: what it registers is watched by this check."""
        return _Watched(events, self)

    def _watch(self, callback: Callable[[Any], Any], label: str, timeout: float | None = None,
               lend: Any = None) -> Callable[[Any], Any]:
        """``callback`` as registered: what it finds and how it fails are reported here. With a
        ``timeout``, it runs on a callback thread while this one waits that long at most (the
        dispatching thread's turn lent to it through ``lend``, the manager's thread-local, when
        it has one), then abandons it: a failure of the rule, not of the run."""
        self.per_rule.setdefault(label, 0)

        def attempt(record: dict[str, Any]) -> tuple[bool, Any]:
            """(True, what the callback returned) or (False, what it raised)."""
            try:
                return True, callback(record)
            except BaseException as exc:  # the rule's fault, not the run's: reported, the run goes on
                if not rules_own(exc):
                    raise  # a real Ctrl-C or SIGTERM
                return False, exc

        def settle(record: dict[str, Any], outcome: tuple[bool, Any]) -> Any:
            ok, value = outcome
            if not ok:
                self._raised(label, record, value)
                return None
            if isinstance(value, str) and value:
                with self._lock:
                    self.per_rule[label] += 1
                    self.note(record, f"{label}: {value}")
            return value

        if timeout is None:
            return lambda record: settle(record, attempt(record))

        from ..events.threads import Lend, callback_threads, lent_call

        def timed(record: dict[str, Any]) -> Any:
            token = Lend()
            if lend is not None:
                call = callback_threads().submit(lent_call, (lend, attempt, record, token), label)
            else:
                call = callback_threads().submit(attempt, (record,), label)
            try:
                finished = call.wait(timeout)
            finally:
                token.alive = False  # the turn is taken back (Ctrl-C in the wait included)
            if not finished:
                self._timed_out(label, record, timeout, call.thread, attempt.__code__)
                return None
            return settle(record, call.result(0))

        return timed

    def _raised(self, label: str, record: dict[str, Any], exc: BaseException) -> None:
        with self._lock:
            error = self.errors.get(label)
            if error is not None:
                error.count += 1
                return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__ and exc.__traceback__.tb_next))
        what = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self._first(label, record, RuleError(label, 1, what, *_where(record), tb),
                    f"{label}: the rule raised {_short(what)}")

    def _timed_out(self, label: str, record: dict[str, Any], timeout: float, thread: threading.Thread | None,
                   below: Any) -> None:
        with self._lock:
            error = self.errors.get(label)
            if error is not None:
                error.count += 1
                error.timeouts += 1
                return
        what = f"TimeoutError: no result within its timeout of {timeout:g} s (abandoned, its thread runs on)"
        stack = _stack_of(thread, below)
        tb = f"{what}\n" + (f"where it was then (most recent call last):\n{stack}" if stack else "")
        self._first(label, record, RuleError(label, 1, what, *_where(record), tb, timeouts=1),
                    f"{label}: the rule timed out after {timeout:g} s")

    def _first(self, label: str, record: dict[str, Any], error: RuleError, note: str) -> None:
        with self._lock:
            if label in self.errors:  # another thread's failure came first
                self.errors[label].count += 1
                self.errors[label].timeouts += error.timeouts
                return
            self.errors[label] = error
            self.note(record, note)

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        found = sum(self.per_rule.values())
        parts = []
        for rule, n in self.per_rule.items():
            error = self.errors.get(rule)
            part = f"{rule}: {n}"
            if error is not None:
                part += (f" found, and the rule {error.failed()} (first on {error.file}:{error.frame}: "
                         f"{_short(error.exception.splitlines()[-1])})")
            parts.append(part)
        summary = ", ".join(parts) or "no rule registered"
        status = "fail" if found or self.errors else "pass" if self.per_rule else "not checkable"
        counts: dict[str, Any] = dict(self.per_rule)
        if self.errors:
            counts["rule_errors"] = {rule: error.as_dict() for rule, error in self.errors.items()}
        return CheckResult(self.name, status, summary, counts, self.examples)


def _where(record: Any) -> tuple[str, int, int]:
    """(file, frame, ts_ns) of a packet record."""
    if not isinstance(record, Mapping):
        return "?", 0, 0
    return record.get("source", "?"), record.get("index", 0), record.get("ts_ns", 0)


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."


def _stack_of(thread: threading.Thread | None, below: Any) -> str:
    """The stack of ``thread`` now, from the frame under the one running code ``below`` (the
    rule's own code), formatted as a traceback's lines; "" when it is not to be had."""
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
    frames = []
    while frame is not None and frame.f_code is not below:
        frames.append(frame)
        frame = frame.f_back
    if frame is None or not frames:  # finished meanwhile, or not where it was expected
        return ""
    frames.reverse()
    summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
    return "".join(summary.format())


class _Watched:
    """An EventManager whose ``register`` / ``register_once`` report to a CustomFindings; a
    callback's ``timeout`` option is taken care of here (see CustomFindings._watch)."""

    def __init__(self, events: EventManager, findings: CustomFindings) -> None:
        self._events, self._findings = events, findings

    def register(self, callback: Callable[[Any], Any], condition: Any = None, options: Any = None) -> Any:
        options = dict(options or {})
        label = options.get("name") or getattr(callback, "__name__", "rule")
        timeout = options.pop("timeout") if "timeout" in options else getattr(self._events, "timeout", None)
        if timeout is not None:
            from ..events.subscription import check_timeout

            timeout = check_timeout(timeout, f"rule {label!r}")
        options["timeout"] = None  # not the manager's: a timed-out rule would be its error, the run's end
        # an async callback runs on its pool's thread, which holds no dispatching turn to lend
        lend = getattr(self._events, "_lent", None) if not options.get("async") else None
        return self._events.register(self._findings._watch(callback, label, timeout, lend), condition, options)

    def register_once(self, callback: Callable[[Any], Any], condition: Any = None, options: Any = None) -> Any:
        return self.register(callback, condition, {**(options or {}), "once": True})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)
