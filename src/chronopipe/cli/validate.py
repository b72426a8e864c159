"""``chronopipe validate CAPTURE... [--rules F] [--offset F=S] [--json F] [--html F] [--scl-port N]``.

Exit status: 0 every check passed, 1 a check failed, 2 usage or unreadable input (checked before the
run: the captures, the rules file, and that --json and --html can be written and are no input),
3 a reader or check process died, 130 / 143 interrupted. A run that does not finish writes no
--json or --html (they are written at its end) and says so on stderr: ``r.json not written``.

A rules file that cannot be loaded, or whose ``rules(em)`` raises, is one line and exit status 2;
a rule that fails (raises anything, or runs past its ``timeout``) fails the ``custom`` check
(exit status 1) and the run goes on; a real Ctrl-C still ends it (130).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from .control import add_control_option

__all__ = ["add_parser", "run_validate"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate", help="validate packet captures: merge by timestamp, run the checks, report",
                       description="Merge captures (one tap each) by timestamp, run the built-in checks (TCP "
                                   "gaps, duplicates, clock offsets, snap lengths, ...) and any rules, and report.")
    p.add_argument("captures", nargs="+", type=Path, help="pcap / pcapng (/ .gz) files, one tap each")
    p.add_argument("--rules", type=Path, help="rules file (.py or .yml): check options, custom callbacks")
    p.add_argument("--offset", action="append", default=[], metavar="FILE=SECONDS",
                   help="add SECONDS to every timestamp of FILE (a tap's clock offset); repeatable")
    p.add_argument("--json", type=Path, help="write the report as JSON to this file")
    p.add_argument("--html", type=Path, help="write the report as one self-contained HTML page")
    p.add_argument("--scl-port", type=int, help="parse payloads on this port as SCL commands (fields 'scl.*')")
    p.add_argument("--check-processes", type=int, metavar="N",
                   help="run the built-in checks in N more processes (default: one per core beyond the first; "
                        "0: all in the main process)")
    add_control_option(p, "validation run")


def run_validate(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Validate ``args.captures``; the report to ``out`` (and --json / --html); the exit status.

    Raises:
        UsageError: an unreadable capture, an output that cannot be written or is an input, a bad
            option or rules file (exit status 2), all before the run starts.
    """
    from ..capture.report import to_html, to_json
    from ..capture.rules import CustomFindings, SignalWatch, build_checks, load_rules
    from .capmerge import parse_offsets
    from .control import check_address, serving, validate_target
    from .outputs import UsageError, check_inputs, check_outputs

    if args.scl_port is not None and not 0 <= args.scl_port <= 65535:
        raise UsageError(f"--scl-port is a port number, 0 to 65535, not {args.scl_port}")
    if args.check_processes is not None and args.check_processes < 0:
        raise UsageError(f"--check-processes is 0 or more, not {args.check_processes}")
    control = getattr(args, "control", None)
    check_address(control)
    check_inputs(args.captures + ([args.rules] if args.rules else []))
    check_outputs({"--json": args.json, "--html": args.html}, args.captures + ([args.rules] if args.rules else []))
    with SignalWatch():  # a rule's own KeyboardInterrupt or SystemExit fails the rule; Ctrl-C ends the run
        try:
            offsets = parse_offsets(args.offset, args.captures)
            config, rules = load_rules(args.rules) if args.rules else ({}, None)
            checks = build_checks(config, files=len(args.captures))
        except (ValueError, TypeError, OSError, SyntaxError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if args.rules and text.startswith("rules: "):
                text = f"rules file {args.rules}: {text.removeprefix('rules: ')}"
            raise UsageError(text) from None
        custom = None
        if rules is not None:
            custom = CustomFindings()
            checks.append(custom)
        target = validate_target(args.captures) if control else None
        with serving(target, control) as server:
            html = to_html if server is None else lambda report: to_html(report, status_url=f"{server.url}/stats")
            outputs = {path: render for path, render in ((args.json, lambda report: to_json(report, indent=1)),
                                                         (args.html, html)) if path is not None}
            return _run(args, checks, offsets, rules, custom, outputs, out, err, target)


def _run(args: argparse.Namespace, checks: list[Any], offsets: dict[Any, Any], rules: Any, custom: Any,
         outputs: dict[Path, Any], out: TextIO, err: TextIO, target: Any) -> int:
    """The validation run itself, its report printed and written; the exit status. ``target``:
    the control API's, if one (a stop asked through it is said on ``err``)."""
    from ..capture.report import to_text
    from ..capture.rules import RulesFileError, apply_rules
    from ..capture.validate import validate
    from .outputs import AtomicOutput, UsageError
    from .progress import progress

    written: set[Path] = set()
    try:
        with progress("packets", err=err) as bar:
            def show(packets: int, seconds: float) -> None:
                bar.update(packets - bar.n)

            setup = None
            if rules is not None and custom is not None:
                def setup(em: Any) -> None:
                    apply_rules(rules, custom.view(em), args.rules)

            try:
                report = validate(args.captures, checks, offsets=offsets, scl_port=args.scl_port, progress=show,
                                  check_processes=args.check_processes, rules=setup)
            finally:
                if target is not None:
                    target.run_over.set()  # a stop through the control API answers now
        if all(s.packets == 0 and s.damage for s in report.files):
            names = "; ".join(f"{s.file}: {s.damage[0].reason}" for s in report.files)
            raise UsageError(f"no packet could be read: {names}")
        print(to_text(report), file=out)
        for path, render in outputs.items():
            with AtomicOutput(path) as output:
                output.path.write_text(render(report), encoding="utf-8")
                output.commit()
            written.add(path)
    except RulesFileError as exc:  # rules(em) raised: before the run started, nothing was to be written
        raise UsageError(str(exc)) from None
    except BaseException as exc:
        for path in outputs:
            if path not in written:
                print(f"chronopipe validate: {path} not written", file=err)
        _shorten(exc)
        raise
    if target is not None and target.stop_requested.is_set():
        print("chronopipe validate: stopped through the control API: the report covers the packets read "
              "before the stop", file=err)
    return 0 if report.passed else 1


def _shorten(exc: BaseException) -> None:
    """An actor's error with the repr of its record cut to RECORD_REPR characters (a packet's
    record, payload and all, is kilobytes long: not for a one-line message)."""
    from ..actors import ActorError

    repr_ = getattr(exc, "record_repr", None) if isinstance(exc, ActorError) else None
    if isinstance(repr_, str) and len(repr_) > RECORD_REPR:
        exc.record_repr = repr_[:RECORD_REPR] + "..."  # type: ignore[attr-defined]


#: Longest the repr of a record is in an error's message.
RECORD_REPR = 200
