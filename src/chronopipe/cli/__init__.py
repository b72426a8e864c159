"""The ``chronopipe`` command line. Exit codes: 0 ok, 1 failure, 2 usage, 130 Ctrl-C, 143 SIGTERM."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from ..actors import ActorError
from .scl import add_parser as add_scl_parser
from .validate import add_parser as add_validate_parser

__all__ = ["DEFAULT_DATA", "main"]

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "examples" / "data"
DEFAULT_FILES = ("datatest.txt", "datatraining.txt", "datatest2.txt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chronopipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="merge captures (or CSV files) chronologically, one reader process per file")
    merge.add_argument("captures", nargs="*", type=Path, help="pcap / pcapng files to merge by timestamp")
    merge.add_argument("-w", "--write", type=Path, help="write the merged captures (.pcapng keeps each tap apart)")
    merge.add_argument("--offset", action="append", default=[], metavar="FILE=SECONDS",
                       help="add SECONDS to every timestamp of FILE (a tap's clock offset); repeatable")
    merge.add_argument("--files", help="glob of CSV files (default: the bundled UCI occupancy files)")
    merge.add_argument("--key", default="date", help="the column to merge by (default: date)")
    merge.add_argument("--direction", choices=["min", "max"], default="min", help="ascending (min) or descending")
    merge.add_argument("--output", type=Path, help="write the merged rows to this CSV file")
    merge.add_argument("--typed", action="store_true", help="convert numbers and timestamps (for numeric keys)")
    sub.add_parser("version", help="print the version")
    add_scl_parser(sub)
    add_validate_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            from .. import __version__

            print(__version__)
        elif args.command == "validate":
            from .validate import run_validate

            return run_validate(args)
        elif args.command == "scl":
            from .scl import run_scl

            return run_scl(args)
        elif args.command == "merge" and args.captures:
            from .capmerge import parse_offsets, run_capture_merge

            missing = [str(p) for p in args.captures if not p.is_file()]
            if missing:
                parser.error(f"no such file: {', '.join(missing)}")
            try:
                offsets = parse_offsets(args.offset, args.captures)
            except ValueError as exc:
                parser.error(str(exc))
            return run_capture_merge(args.captures, write=args.write, offsets=offsets)
        elif args.command == "merge":
            from .merge import run_merge

            if args.files:
                files = [Path(p) for p in sorted(glob.glob(args.files))]
                if not files:
                    parser.error(f"--files {args.files!r} matches no file")
            else:
                files = [DEFAULT_DATA / name for name in DEFAULT_FILES]
                if not all(f.is_file() for f in files):
                    parser.error(f"the bundled sample files are not under {DEFAULT_DATA}: give --files")
            run_merge(files, key=args.key, direction=args.direction, output=args.output, typed=args.typed)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ActorError as exc:
        print(f"chronopipe: {exc}", file=sys.stderr)
        return 1
