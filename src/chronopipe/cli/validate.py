"""``chronopipe validate CAPTURE... [--rules F] [--offset F=S] [--json F] [--html F] [--scl-port N]``.

Exit status: 0 every check passed, 1 a check failed, 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["add_parser", "run_validate"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("validate", help="validate packet captures: merge by timestamp, run the checks, report")
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


def run_validate(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from ..capture.report import to_html, to_json, to_text
    from ..capture.rules import CustomFindings, build_checks, load_rules
    from ..capture.validate import validate
    from .capmerge import parse_offsets

    if args.check_processes is not None and args.check_processes < 0:
        print(f"chronopipe validate: --check-processes is 0 or more, not {args.check_processes}", file=err)
        return 2
    missing = [str(p) for p in args.captures if not p.is_file()]
    if missing:
        print(f"chronopipe validate: no such file: {', '.join(missing)}", file=err)
        return 2
    try:
        offsets = parse_offsets(args.offset, args.captures)
        config, rules = load_rules(args.rules) if args.rules else ({}, None)
        checks = build_checks(config, files=len(args.captures))
    except (ValueError, TypeError, OSError, SyntaxError) as exc:
        print(f"chronopipe validate: {exc}", file=err)
        return 2
    custom = None
    if rules is not None:
        custom = CustomFindings()
        checks.append(custom)
    tty = err.isatty()

    def progress(packets: int, seconds: float) -> None:
        if tty:
            print(f"\r{packets:,} packets, {packets / seconds:,.0f}/s", end="", file=err, flush=True)

    report = validate(args.captures, checks, offsets=offsets, scl_port=args.scl_port, progress=progress,
                      check_processes=args.check_processes,
                      rules=(lambda em: rules(custom.view(em))) if rules is not None and custom else None)
    if tty:
        print(file=err)
    if all(s.packets == 0 and s.damage for s in report.files):
        for s in report.files:
            print(f"chronopipe validate: {s.file}: unreadable: {s.damage[0].reason}", file=err)
        return 2
    print(to_text(report), file=out)
    if args.json:
        args.json.write_text(to_json(report, indent=1), encoding="utf-8")
    if args.html:
        args.html.write_text(to_html(report), encoding="utf-8")
    return 0 if report.passed else 1
