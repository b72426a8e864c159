"""The ``chronopipe`` command line. Exit codes: 0 ok, 1 failure, 130 Ctrl-C, 143 SIGTERM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..actors import ActorError

__all__ = ["DEFAULT_DATA", "main"]

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chronopipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="read the bundled CSV files with one actor process each")
    demo.add_argument("files", nargs="*", type=Path, help="CSV files (default: examples/data/*.txt)")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            from .. import __version__

            print(__version__)
        elif args.command == "demo":
            from .demo import run_demo

            files = args.files or sorted(DEFAULT_DATA.glob("*.txt"))
            if not files:
                parser.error(f"no CSV files given and none bundled under {DEFAULT_DATA}")
            missing = [f for f in files if not f.is_file()]
            if missing:
                parser.error(f"no such file: {missing[0]}")
            run_demo(files, sys.stdout)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ActorError as exc:
        print(f"chronopipe: {exc}", file=sys.stderr)
        return 1
