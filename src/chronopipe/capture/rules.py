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
raises is a rule that failed: the ``custom`` check fails with the rule's name, how many times it
raised, the packet it first raised on and that traceback; the run and the other checks go on.
"""

from __future__ import annotations

import runpy
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checks.base import Check, CheckResult
from .checks.basic import AllowList, Malformed, OutOfOrder, RequestResponse, Sliced, UdpSequence

if TYPE_CHECKING:
    from ...events import EventManager
    from .reader import CaptureSummary

__all__ = ["CustomFindings", "RuleError", "build_checks", "load_rules"]

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


def load_rules(path: str | Path) -> tuple[dict[str, Any], Callable[[EventManager], Any] | None]:
    """(check configuration, ``rules(em)`` callback or None) from a ``.py`` or ``.yml`` file."""
    path = Path(path)
    if path.suffix in (".yml", ".yaml"):
        try:
            import yaml
        except ImportError:
            need = "YAML rules need PyYAML (pip install pyyaml), or write rules.py"
            raise ValueError(f"rules file {path}: {need}") from None
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, Mapping) or not isinstance(data.get("checks", {}), Mapping):
            raise ValueError(f"rules file {path}: expected a mapping with a 'checks' mapping at the top")
        return dict(data.get("checks", {})), None
    if path.suffix != ".py":
        raise ValueError(f"rules file {path}: expected .py, .yml or .yaml")
    namespace = runpy.run_path(str(path))
    config, rules = namespace.get("CHECKS", {}), namespace.get("rules")
    if not isinstance(config, Mapping):
        raise ValueError(f"rules file {path}: CHECKS must be a dict of check name -> options")
    if rules is not None and not callable(rules):
        raise ValueError(f"rules file {path}: rules must be a function rules(em)")
    return dict(config), rules


@dataclass
class RuleError:
    """A rule's callback that raised: how often, and where and how it first did."""

    rule: str
    count: int
    exception: str  #: ``Type: message`` of the first exception
    file: str
    frame: int
    ts_ns: int
    traceback: str  #: of the first exception, from the rule's own code

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "exception": self.exception, "file": self.file, "frame": self.frame,
                "ts_ns": self.ts_ns, "traceback": self.traceback}


class CustomFindings(Check):
    """The verdict on callbacks a rules file registered: a callback that returned a string found
    something (its check fails); one that raised is a rule that failed (the check fails too, the
    run goes on): ``errors`` keeps, per rule, how many times it raised and its first traceback,
    with the packet (file, frame, timestamp) it raised on."""

    name = "custom"

    def __init__(self) -> None:
        super().__init__()
        self.per_rule: dict[str, int] = {}
        self.errors: dict[str, RuleError] = {}

    def view(self, events: EventManager) -> Any:
        """``events`` as a rules file sees it: what it registers is watched by this check."""
        return _Watched(events, self)

    def _watch(self, callback: Callable[[Any], Any], label: str) -> Callable[[Any], Any]:
        self.per_rule.setdefault(label, 0)

        def run(record: dict[str, Any]) -> Any:
            try:
                found = callback(record)
            except Exception as exc:  # the rule's fault, not the run's: report it, go on
                self._raised(label, record, exc)
                return None
            if isinstance(found, str) and found:
                self.per_rule[label] += 1
                self.note(record, f"{label}: {found}")
            return found

        return run

    def _raised(self, label: str, record: dict[str, Any], exc: Exception) -> None:
        error = self.errors.get(label)
        if error is not None:
            error.count += 1
            return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__ and exc.__traceback__.tb_next))
        what = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        file, frame, ts_ns = record.get("source", "?"), record.get("index", 0), record.get("ts_ns", 0)
        self.errors[label] = RuleError(label, 1, what, file, frame, ts_ns, tb)
        self.note(record, f"{label}: the rule raised {what}")

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        found = sum(self.per_rule.values())
        parts = []
        for rule, n in self.per_rule.items():
            error = self.errors.get(rule)
            part = f"{rule}: {n}"
            if error is not None:
                times = "once" if error.count == 1 else f"{error.count:,} times"
                part += (f" found, and the rule raised {times} (first on {error.file}:{error.frame}: "
                         f"{error.exception.splitlines()[-1]})")
            parts.append(part)
        summary = ", ".join(parts) or "no rule registered"
        status = "fail" if found or self.errors else "pass" if self.per_rule else "not checkable"
        counts: dict[str, Any] = dict(self.per_rule)
        if self.errors:
            counts["rule_errors"] = {rule: error.as_dict() for rule, error in self.errors.items()}
        return CheckResult(self.name, status, summary, counts, self.examples)


class _Watched:
    """An EventManager whose ``register`` / ``register_once`` report to a CustomFindings."""

    def __init__(self, events: EventManager, findings: CustomFindings) -> None:
        self._events, self._findings = events, findings

    def register(self, callback: Callable[[Any], Any], condition: Any = None, options: Any = None) -> Any:
        label = (options or {}).get("name") or getattr(callback, "__name__", "rule")
        return self._events.register(self._findings._watch(callback, label), condition, options)

    def register_once(self, callback: Callable[[Any], Any], condition: Any = None, options: Any = None) -> Any:
        return self.register(callback, condition, {**(options or {}), "once": True})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)
