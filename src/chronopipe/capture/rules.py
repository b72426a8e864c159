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

import re
import runpy
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checks.base import Check
from .checks.basic import AllowList, Malformed, OutOfOrder, RequestResponse, Sliced, UdpSequence
from .custom import MESSAGE_LIMIT, CustomFindings, RuleError, SignalWatch, rules_own

if TYPE_CHECKING:
    from ..events import EventManager

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
    try:
        return _checks(config, files)
    except TypeError as exc:  # an option the check does not take: say which check, not which class
        detail = re.sub(r"^\w+\.__init__\(\) ", "", str(exc))
        raise ValueError(f"rules: a check was given an option it does not take: {detail}") from None


def _checks(config: dict[str, Any], files: int) -> list[Check]:
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
        if not rules_own(exc):
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
    unknown = sorted(str(k) for k in data if k != "checks")
    if unknown:
        raise RulesFileError(f"rules file {path}: unknown key(s) {', '.join(unknown)} at the top (only 'checks')")
    return dict(data.get("checks", {}))


def apply_rules(rules: Callable[[Any], Any], events: Any, path: str | Path) -> None:
    """``rules(events)``, its failure a :class:`RulesFileError` naming ``path`` (a real Ctrl-C or
    SIGTERM, see :func:`_rules_own`, goes through)."""
    try:
        rules(events)
    except BaseException as exc:
        if not rules_own(exc):
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
