"""``chronopipe scl FILE|-``: parse SCL commands line by line, print one JSON document per line.

    chronopipe scl examples/data/commands.scl
    printf 'a=1 b=(c="x y")\\n' | chronopipe scl -

Line N of the output is line N of the input: its statements as a JSON array (numbers exact, blank
lines ``[]``), or ``null`` if the line does not parse; the error goes to stderr as
``FILE:LINE:COLUMN: message`` and a caret excerpt. Exit status 1 if any line failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO, TextIO

__all__ = ["add_parser", "run_scl"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``scl`` subcommand on ``subparsers`` (from ``ArgumentParser.add_subparsers``).

    >>> sub = argparse.ArgumentParser(prog="chronopipe").add_subparsers()
    >>> add_parser(sub).parse_args(["commands.scl"]).file
    'commands.scl'
    """
    parser = subparsers.add_parser(
        "scl",
        help="parse SCL commands: one JSON document per input line",
        description="Parse SCL commands (UTF-8 text) line by line; print each line's statements as one JSON array "
                    "(null for a line that fails; its error goes to stderr). Exit status 1 if any line failed.",
    )
    parser.add_argument("file", metavar="FILE|-", help="the SCL file, or - for standard input")
    return parser


def run_scl(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Parse ``args.file`` (``-``: stdin) line by line; JSON to ``out``, errors to ``err``; the exit status."""
    from ..scl import parse_lines, to_json

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    name = "<stdin>" if args.file == "-" else args.file
    try:
        binary = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        print(f"chronopipe scl: {exc}", file=err)
        return 1
    lines = failed = 0
    try:
        for line in parse_lines(_decoded(binary), errors="yield"):
            lines = line.number
            if line.error is None:
                out.write(to_json(line.statements) + "\n")
            else:
                failed += 1
                out.write("null\n")
                e = line.error
                err.write(f"{name}:{e.line}:{e.column}: {e.message}\n{e.excerpt}\n")
        out.flush()
    except _NotUTF8 as exc:
        print(f"chronopipe scl: {name}:{exc.line}:{exc.column}: not UTF-8 text ({exc.reason}): stopped there", file=err)
        return 1
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if binary is not sys.stdin.buffer:
            binary.close()
    if failed:
        print(f"chronopipe scl: {failed:,} of {lines:,} lines failed", file=err)
    return 1 if failed else 0


class _NotUTF8(Exception):  # noqa: N818
    def __init__(self, line: int, column: int, reason: str) -> None:
        super().__init__(line, column, reason)
        self.line, self.column, self.reason = line, column, reason


def _decoded(binary: BinaryIO) -> Iterator[str]:
    """The lines of ``binary`` as text; ``_NotUTF8`` (with the exact line and column) at the first bad one."""
    for number, raw in enumerate(binary, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = len(raw[:exc.start].decode("utf-8", "replace")) + 1
            raise _NotUTF8(number, column, exc.reason) from None
