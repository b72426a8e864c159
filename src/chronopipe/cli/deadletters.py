"""``chronopipe dead-letters FILE [--verbose]``: list the dead letters of a pipeline run.

One line per letter, in file order: its number, the node that gave up on it, the attempts, the
last error and a preview of the record (as JSON); then a count per node. ``--verbose`` adds each
letter's pipeline, time and traceback. The records are not unpickled (none of their classes is
needed). Exit status: 0 no dead letters, 1 dead letters listed, 2 a missing, unreadable or
corrupt file (one line naming the file and the line, never a traceback).

    $ chronopipe dead-letters orders.dead-letters.jsonl
    1  parse  4 attempts  ValueError: invalid literal for int() with base 10: 'x'  record "x"
    1 dead letter in orders.dead-letters.jsonl: parse 1
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_parser", "listing", "run_dead_letters"]

#: Characters of an error message shown on a letter's line.
ERROR_WIDTH = 70


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``dead-letters`` subcommand on ``subparsers``.

    >>> sub = argparse.ArgumentParser(prog="chronopipe").add_subparsers()
    >>> add_parser(sub).parse_args(["dl.jsonl", "-v"]).verbose
    True
    """
    parser = subparsers.add_parser(
        "dead-letters", help="list the dead letters a pipeline wrote (guarantee='replay')",
        description="List the records a pipeline gave up on (Pipeline(guarantee='replay')): node, attempts, error "
                    "and record, one line each, then a count. Exit status 1 if there are any. Pipeline.replay(FILE) "
                    "gives them back to their nodes (docs/delivery.md).")
    parser.add_argument("file", type=Path, metavar="FILE", help="a dead-letter file (JSON lines)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print each letter's pipeline, time and traceback")
    return parser


def run_dead_letters(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """List ``args.file`` on ``out``; the exit status (0 none, 1 some).

    Raises:
        UsageError: the file is missing, not a file, unreadable or not a dead-letter file (exit 2).
    """
    from ..delivery import DeadLetterFileError, read_dead_letters
    from .outputs import EXIT_FOUND, EXIT_OK, UsageError, check_inputs

    check_inputs([args.file])
    try:
        letters = read_dead_letters(args.file, originals=False)
    except DeadLetterFileError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
    for line in listing(letters, str(args.file), verbose=args.verbose):
        print(line, file=out or sys.stdout)
    return EXIT_FOUND if letters else EXIT_OK


def listing(letters: list[Any], name: str, verbose: bool = False) -> list[str]:
    """The lines ``chronopipe dead-letters`` prints for ``letters`` read from file ``name``.

    >>> from chronopipe.delivery import DeadLetter
    >>> letters = [DeadLetter("p", "parse", 4, "ValueError", "bad row", "", "1;2", 0.0),
    ...            DeadLetter("p", "load", 1, "KeyError", "'id'", "", {"x": 1}, 0.0)]
    >>> print("\\n".join(listing(letters, "dl.jsonl")))
    1  parse  4 attempts  ValueError: bad row  record "1;2"
    2  load   1 attempt   KeyError: 'id'  record {"x": 1}
    2 dead letters in dl.jsonl: parse 1, load 1
    """
    from ..delivery import preview

    lines = []
    number_width = len(str(len(letters)))
    node_width = max((len(letter.node) for letter in letters), default=0)
    for i, letter in enumerate(letters, 1):
        error = " ".join(letter.error.split())
        error = error if len(error) <= ERROR_WIDTH else error[: ERROR_WIDTH - 3] + "..."
        attempts = f"{letter.attempts} attempt{'s' if letter.attempts != 1 else ' '}"
        record = letter.record  # its JSON form: a string shows quoted, as JSON writes it
        record = preview(json.dumps(record, ensure_ascii=False) if isinstance(record, str) else record)
        lines.append(f"{i:>{number_width}}  {letter.node:<{node_width}}  {attempts}  {letter.error_type}: {error}  "
                     f"record {record}")
        if verbose:
            when = datetime.fromtimestamp(letter.timestamp).astimezone().isoformat(" ", "seconds")
            lines.append(f"{'':>{number_width}}  pipeline {letter.pipeline!r}, given up at {when}")
            lines.extend(f"{'':>{number_width}}  | {text}" for text in letter.traceback.rstrip().splitlines())
    per_node = Counter(letter.node for letter in letters)
    plural = "" if len(letters) == 1 else "s"
    counts = ", ".join(f"{node} {n:,}" for node, n in per_node.items())
    lines.append(f"{len(letters):,} dead letter{plural} in {name}" + (f": {counts}" if counts else ""))
    return lines
