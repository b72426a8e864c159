"""``chronopipe scl FILE|-``: parse SCL commands line by line, print one JSON document per line.

    chronopipe scl examples/data/commands.scl
    printf 'a=1 b=(c="x y")\\n' | chronopipe scl -

Line N of the output is line N of the input: its statements as a JSON array (numbers exact, blank
lines ``[]``), or ``null`` if the line does not parse or is not UTF-8; the error goes to stderr as
``FILE:LINE:COLUMN: message`` and a caret excerpt, and the next line is read. Exit status 1 if any
line failed. Each line goes straight to JSON (``scl.stream.parse_json``): time and memory are
linear in the line, a few times its size. On a terminal, a progress bar counts the bytes read.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
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
                    "(null for a line that fails or is not UTF-8; its error goes to stderr). "
                    "Exit status 1 if any line failed.",
    )
    parser.add_argument("file", metavar="FILE|-", help="the SCL file, or - for standard input")
    return parser


def run_scl(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Parse ``args.file`` (``-``: stdin) line by line; JSON to ``out``, errors to ``err``.

    Returns the exit status: 0, 1 if a line failed (it is ``null`` in the output), 2 if the file
    cannot be opened. Raises nothing for bad input; ``BrokenPipeError`` on ``out`` ends quietly (1).
    """
    from .outputs import EXIT_USAGE
    from .progress import progress

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    name = "<stdin>" if args.file == "-" else args.file
    try:
        binary = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        print(f"chronopipe scl: {exc}", file=err)
        return EXIT_USAGE
    try:
        with progress("B", err=err, total=_size(binary), desc="scl") as bar:
            lines, failed = _convert(binary, name, out, err, bar)
        out.flush()
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


def _convert(binary: BinaryIO, name: str, out: TextIO, err: TextIO, bar: Any) -> tuple[int, int]:
    """Write the JSON (or ``null``) of each line of ``binary``; errors to ``err``; (lines, failed lines)."""
    from ..scl import SCLSyntaxError
    from ..scl.stream import parse_json

    shown = 0  # characters of the current line already counted on the bar

    def advance(offset: int) -> None:
        nonlocal shown
        bar.update(offset - shown)
        shown = offset

    lines = failed = 0
    while raw := binary.readline():
        lines += 1
        size = len(raw)
        raw = raw.rstrip(b"\n").removesuffix(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            failed += 1
            out.write("null\n")
            err.write(_not_utf8(name, lines, raw, exc))
        else:
            del raw  # the text alone stays in memory while the line is parsed
            shown = 0
            try:
                chunks = parse_json(text, first_line=lines, progress=advance if not bar.disable else None)
            except SCLSyntaxError as e:
                failed += 1
                out.write("null\n")
                err.write(f"{name}:{e.line}:{e.column}: {e.message}\n{e.excerpt}\n")
            else:
                del text
                for chunk in chunks:
                    out.write(chunk)
                out.write("\n")
                del chunks
        bar.update(size - shown)
        shown = 0
    return lines, failed


def _not_utf8(name: str, line: int, raw: bytes, exc: UnicodeDecodeError) -> str:
    """``FILE:LINE:COLUMN: not UTF-8 text (reason)`` and a caret excerpt (bad bytes shown as U+FFFD)."""
    from ..scl.errors import error_at

    before = raw[:exc.start].decode("utf-8", "replace")
    e = error_at(before + raw[exc.start:].decode("utf-8", "replace"), len(before), "", "", line)
    return f"{name}:{line}:{e.column}: not UTF-8 text ({exc.reason}): line skipped\n{e.excerpt}\n"


def _size(binary: BinaryIO) -> int | None:
    """Bytes in ``binary`` if it is a regular file (the bar's total), else None."""
    try:
        info = os.fstat(binary.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
