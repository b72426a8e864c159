"""Which checks a validation run makes, with which parameters: defaults and a rules file.

A rules file is Python or YAML. Both may configure the built-in checks; Python may also add
callbacks of its own::

    # rules.py                                      # rules.yml
    CHECKS = {                                      checks:
        "duplicates": {"window": 0.002},              duplicates: {window: 0.002}
        "hosts": {"hosts": ["10.0.0.0/8"]},           hosts: {hosts: [10.0.0.0/8]}
        "clock": False,                               clock: false
    }
    def rules(em):                                  # (YAML has no callbacks)
        em.register(lambda r: "telnet seen", {"tcp.dport": 23}, {"name": "no-telnet"})

Built-in checks: out_of_order, malformed, snaplen, duplicates, tcp, clock (on by default;
``False`` turns one off) and hosts, udp_sequence, reqresp (when configured; the last two take
a list, one entry per stream). A callback registered by ``rules(em)`` that returns a string
reports a finding: its check (named by the callback's ``name`` option) fails. A callback that
raises (anything: ``sys.exit``, a BaseException, a KeyboardInterrupt of its own making) or runs
past its ``timeout`` option is a rule that failed: the ``custom`` check fails with the rule's
name, how many times it failed, the packet it first failed on and that traceback (or, for a
timeout, where it was when abandoned); the run and the other checks go on. A real Ctrl-C or
SIGTERM still ends the run: while a :class:`SignalWatch` is active (``chronopipe validate``
runs under one), a KeyboardInterrupt in the main thread is the rule's own only if no SIGINT
arrived; without one, KeyboardInterrupt and SystemExit in the main thread end the run.

A rules file that cannot be loaded (a YAML or Python syntax error, an exception when it is
run), and a ``rules(em)`` that raises, are a :class:`RulesFileError` (a ValueError) in one line.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checks.base import Check, CheckResult
from .checks.basic import AllowList, Malformed, OutOfOrder, RequestResponse, Sliced, UdpSequence

if TYPE_CHECKING:
    from ..events import EventManager
    from .reader import CaptureSummary

__all__ = ["CustomFindings", "RuleError", "RulesFileError", "SignalWatch", "apply_rules", "build_checks", "load_rules"]

DEFAULT_ON = ("out_of_order", "malformed", "snaplen", "duplicates", "tcp", "clock")
KNOWN = (*DEFAULT_ON, "hosts", "udp_sequence", "reqresp")


def _builtin(name: str, options: Mapping[str, Any]) -> Check:
    if name == "duplicates":
        from .checks.dups import Duplicates

        return Duplicates(**options)
    if name == "tcp":
        from .checks.tcp import TcpAnalysis

        return TcpAnalysis(**options)
    if name == "clock":
        from .checks.clock import ClockOffset

        return ClockOffset(**options)
    classes: dict[str, Callable[..., Check]] = {"out_of_order": OutOfOrder, "malformed": Malformed,
                                                "snaplen": Sliced, "hosts": AllowList}
    return classes[name](**options)


def build_checks(config: Mapping[str, Any] | None = None, files: int = 1) -> list[Check]:
    """The checks of a run: the defaults, as ``config`` adjusts them (see the module docstring).

    >>> [c.name for c in build_checks({"clock": False, "tcp": False})]
    ['out_of_order', 'malformed', 'snaplen', 'duplicates']
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(KNOWN))
    if unknown:
        raise ValueError(f"rules: unknown check(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    checks: list[Check] = []
    for name in DEFAULT_ON:
        options = config.get(name, {})
        if options is False or (name == "clock" and files < 2 and name not in config):
            continue
        checks.append(_builtin(name, options if isinstance(options, Mapping) else {}))
    if config.get("hosts"):
        checks.append(_builtin("hosts", config["hosts"]))
    for options in _entries(config.get("udp_sequence")):
        checks.append(UdpSequence(**options))
    for options in _entries(config.get("reqresp")):
        checks.append(RequestResponse(**options))
    return checks


def _entries(value: Any) -> list[Mapping[str, Any]]:
    if not value:
        return []
    return [value] if isinstance(value, Mapping) else list(value)


class RulesFileError(ValueError):
    """A rules file that cannot be loaded, or whose ``rules(em)`` raised: one line, naming the file."""


def load_rules(path: str | Path) -> tuple[dict[str, Any], Callable[[EventManager], Any] | None]:
    """(check configuration, ``rules(em)`` callback or None) from a ``.py`` or ``.yml`` file.

    Raises:
        RulesFileError: not YAML or Python, a syntax error (``file:line:column``), not UTF-8, or
            the file raised when run.
        SyntaxError: a Python syntax error (its message names the file and line).
    """
    path = Path(path)
    if path.suffix in (".yml", ".yaml"):
        return _load_yaml(path), None
    if path.suffix != ".py":
        raise RulesFileError(f"rules file {path}: expected .py, .yml or .yaml")
    try:
        namespace = runpy.run_path(str(path))
    except SyntaxError:
        raise
    except BaseException as exc:
        if not _rules_own(exc):
            raise
        raise RulesFileError(f"rules file {path}: raised {_what(exc, path)} when loaded") from None
    config, rules = namespace.get("CHECKS", {}), namespace.get("rules")
    if not isinstance(config, Mapping):
        raise RulesFileError(f"rules file {path}: CHECKS must be a dict of check name -> options")
    if rules is not None and not callable(rules):
        raise RulesFileError(f"rules file {path}: rules must be a function rules(em)")
    return dict(config), rules


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        need = "YAML rules need PyYAML (pip install pyyaml), or write rules.py"
        raise RulesFileError(f"rules file {path}: {need}") from None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise RulesFileError(f"rules file {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(exc.problem or exc.context or "").split())
        context = exc.context_mark if exc.context and exc.context_mark is not mark else None
        also = (f" ({' '.join(exc.context.split())} at {context.line + 1}:{context.column + 1})"  # type: ignore[union-attr]
                if context is not None else "")
        raise RulesFileError(f"rules file {where}: YAML syntax error: {problem}{also}") from None
    except yaml.YAMLError as exc:
        raise RulesFileError(f"rules file {path}: not YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("checks", {}), Mapping):
        raise RulesFileError(f"rules file {path}: expected a mapping with a 'checks' mapping at the top")
    return dict(data.get("checks", {}))


def apply_rules(rules: Callable[[Any], Any], events: Any, path: str | Path) -> None:
    """``rules(events)``, its failure a :class:`RulesFileError` naming ``path`` (a real Ctrl-C or
    SIGTERM, see :func:`_rules_own`, goes through)."""
    try:
        rules(events)
    except BaseException as exc:
        if not _rules_own(exc):
            raise
        raise RulesFileError(f"rules file {path}: rules(em) raised {_what(exc, Path(path))}") from None


def _what(exc: BaseException, path: Path) -> str:
    """``Type: message (line N)``, N the last line of ``path`` the traceback went through."""
    what = " ".join("".join(traceback.format_exception_only(type(exc), exc)).split())
    if len(what) > MESSAGE_LIMIT:
        what = what[:MESSAGE_LIMIT] + "..."
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    return what + (f" (line {lines[-1]})" if lines else "")


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


def _rules_own(exc: BaseException) -> bool:
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
                if not _rules_own(exc):
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
