"""The ``chronopipe`` command line: one subcommand per job, one table of exit statuses.

    chronopipe merge CAPTURE... [-w OUT] [--offset FILE=SECONDS] [--reorder SECONDS]
    chronopipe merge-csv --files PATH... [--key COLUMN] [--direction min|max] [--output CSV]
    chronopipe validate CAPTURE... [--rules F] [--json F] [--html F] [--control HOST:PORT]
    chronopipe scl FILE|-
    chronopipe dead-letters FILE [--verbose] [--replay PIPELINE [--dead-letter OUT]]
    chronopipe run PIPELINE.yml [--profiles FILE] [--control HOST:PORT]
    chronopipe lint PIPELINE.yml [--profiles FILE]
    chronopipe status URL [--token TOKEN] [--json]

Exit status (see outputs.EXIT_CODES): 0 all good; 1 the run finished but found something; 2 usage
error or unreadable input; 3 an actor or worker died; 130 Ctrl-C; 143 SIGTERM. A routine mistake
is one line on stderr, never a traceback. Only light standard modules are imported here; the
commands import what they need when they run, with Ctrl-C held back (so a Ctrl-C at start-up is
still exit status 130), and SIGTERM unwinds like Ctrl-C (outputs discarded, exit status 143).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .deadletters import add_parser as add_dead_letters_parser
from .outputs import EXIT_CODES, EXIT_DIED, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, UsageError
from .run import add_parsers as add_run_parsers
from .scl import add_parser as add_scl_parser
from .status import add_parser as add_status_parser
from .validate import add_parser as add_validate_parser

__all__ = ["main", "parser"]

#: An actor that failed on these could not read its input: exit status 2, not 3.
INPUT_ERRORS = frozenset({"ReaderError", "InputChanged", "FileNotFoundError", "IsADirectoryError",
                          "PermissionError", "UnicodeDecodeError", "NotADirectoryError"})


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``--help`` ends with the exit status table)."""
    top = argparse.ArgumentParser(
        prog="chronopipe", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Merge timestamped files and packet captures in chronological order, validate captures, "
                    "parse SCL commands.")
    top.add_argument("--version", action="store_true", help="print the version and exit")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    merge = sub.add_parser(
        "merge", help="merge packet captures by timestamp (like mergecap), one reader process per file",
        description="Merge pcap / pcapng (/ .gz) captures by timestamp, one reader process per file; each file "
                    "keeps its own packet order, as mergecap does. Prints one line per file.")
    merge.add_argument("captures", nargs="*", type=Path, metavar="CAPTURE", help="pcap / pcapng files to merge")
    merge.add_argument("-w", "--write", type=Path, metavar="OUT",
                       help="write the merged packets (.pcapng keeps each tap apart; .pcap for one link type)")
    merge.add_argument("--offset", action="append", default=[], metavar="FILE=SECONDS",
                       help="add SECONDS to every timestamp of FILE (a tap's clock offset); repeatable")
    merge.add_argument("--reorder", type=float, metavar="SECONDS",
                       help="put packets that step back in time by at most SECONDS in their file back in "
                            "timestamp order (default: keep each file's order, as mergecap does)")
    merge.add_argument("--files", nargs="+", help=argparse.SUPPRESS)  # the old spelling: say where it went

    csv_merge = sub.add_parser(
        "merge-csv", help="merge CSV files chronologically by a column, one reader process per file",
        description="Merge CSV files by a key column, one reader process per file. Every row is accounted "
                    "for: rows in = merged + rejected + late.")
    csv_merge.add_argument("--files", nargs="+", metavar="PATH",
                           help="CSV files or quoted globs (required; main.py gives the bundled UCI occupancy files)")
    csv_merge.add_argument("--key", default="date", help="the column to merge by (default: date)")
    csv_merge.add_argument("--direction", choices=["min", "max"], default="min",
                           help="min: ascending (default), max: descending")
    csv_merge.add_argument("--output", type=Path, metavar="CSV", help="write the merged rows to this CSV file")
    csv_merge.add_argument("--typed", action="store_true", help="convert numbers and timestamps (for numeric keys)")

    sub.add_parser("version", help="print the version")
    add_scl_parser(sub)
    add_validate_parser(sub)
    add_dead_letters_parser(sub)
    add_run_parsers(sub)
    add_status_parser(sub)
    for command in sub.choices.values():  # every --help ends with the exit status table, as written
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        command.epilog = command.epilog or EXIT_CODES  # or its own (lint's)
    return top


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, so outputs are discarded, then exit with status 143."""


_OWNER = [0]  # the pid that installed _on_sigterm


def _on_sigterm(signum: int, frame: Any) -> None:
    """Turn SIGTERM into Terminated in the main thread. The runtime, started later, chains to this
    handler after it has ended its child processes; this handler takes no lock and never blocks.

    In a process forked from ours that has not yet put its own handlers in place (the signal came
    during the fork), it does what SIGTERM does by default: that process ends, at once.
    """
    if os.getpid() != _OWNER[0]:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (see the module docstring)."""
    previous, ours = signal.SIG_DFL, False
    try:
        previous = signal.getsignal(signal.SIGTERM)
        ours = previous in (signal.SIG_DFL, None) and threading.current_thread() is threading.main_thread()
        if ours:
            _OWNER[0] = os.getpid()
            signal.signal(signal.SIGTERM, _on_sigterm)
        return _main(argv)
    except KeyboardInterrupt:  # before _main's own handling began, or while it printed
        print("chronopipe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("chronopipe: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if ours:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    args = None
    try:
        top = parser()
        args = top.parse_args(argv)
        if args.version or args.command == "version":
            from .. import __version__

            print(f"chronopipe {__version__}")
            return 0
        if args.command is None:
            top.print_usage(sys.stderr)
            print("chronopipe: error: give a command (merge, merge-csv, validate, scl, dead-letters, run, lint, "
                  "status) or --help", file=sys.stderr)
            return EXIT_USAGE
        return _run(args)
    except KeyboardInterrupt:
        print("chronopipe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"{_prog(args)}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly
        _silence_stdout()
        return 1
    except Exception as exc:
        return _failed(args, exc)


#: The extra (setup.py) that brings an optional module a command imports.
EXTRAS = {"pydantic": "runs", "yaml": "runs", "pyarrow": "parquet", "psycopg": "postgres", "aiohttp": "control"}

#: What each command imports, loaded with Ctrl-C held back (see _deferred_signals).
COMMAND_MODULES = {
    "dead-letters": ("chronopipe.delivery",),
    "merge": ("chronopipe.cli.capmerge",),
    "merge-csv": ("chronopipe.cli.merge",),
    "validate": ("chronopipe.capture.validate", "chronopipe.capture.report", "chronopipe.capture.rules"),
    "scl": ("chronopipe.scl",),
    "run": ("chronopipe.runs.engine", "chronopipe.runs.config", "chronopipe.runs.profiles"),
    "lint": ("chronopipe.runs.config", "chronopipe.runs.profiles"),
}


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends.

    A KeyboardInterrupt in the middle of an import leaves half-initialised modules behind (pathos'
    ppft then fails with ModuleNotFoundError); held back, the signal arrives right after the
    imports, where it is a clean exit status 130 (or 143).
    """
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask here: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run(args: argparse.Namespace) -> int:
    with _deferred_signals():
        for module in COMMAND_MODULES.get(args.command, ()):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:  # an optional dependency this command needs
                extra = EXTRAS.get((exc.name or "").partition(".")[0])
                if extra is None:
                    raise
                raise UsageError(f"needs {exc.name}: pip install 'chronopipe[{extra}]'") from None
        runs_actors = args.command not in ("scl", "dead-letters", "lint", "status")
        if runs_actors and _OWNER[0] == os.getpid():
            from ..runtime.signals import redeliver_when_swallowed

            redeliver_when_swallowed(Terminated, signal.SIGTERM)
    if args.command == "status":
        from .status import run_status

        return run_status(args)
    if args.command == "dead-letters":
        from .deadletters import run_dead_letters

        return run_dead_letters(args)
    if args.command in ("run", "lint"):
        from .run import run_lint, run_run

        return run_run(args) if args.command == "run" else run_lint(args)
    if args.command == "validate":
        from .validate import run_validate

        return run_validate(args)
    if args.command == "scl":
        from .outputs import check_inputs
        from .scl import run_scl

        if args.file != "-":
            check_inputs([Path(args.file)])

        return run_scl(args)
    if args.command == "merge":
        if args.files:
            raise UsageError("--files is for CSV files: use chronopipe merge-csv --files " + " ".join(args.files))
        if not args.captures:
            raise UsageError("give the captures to merge: chronopipe merge CAPTURE... [-w OUT]")
        from .capmerge import parse_offsets, run_capture_merge

        if args.write is not None and str(args.write) == "-":
            raise UsageError("-w -: writing the capture to standard output is not supported; give a file name")
        try:
            offsets = parse_offsets(args.offset, args.captures)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return run_capture_merge(args.captures, write=args.write, offsets=offsets, reorder=args.reorder)
    if args.command == "merge-csv":
        from .merge import run_merge

        if not args.files:  # the library ships no data: the repository's main.py gives its own files
            raise UsageError("give the CSV files to merge: chronopipe merge-csv --files PATH... "
                             "(main.py in the repository merges its bundled examples/data files)")
        files = expand_files(args.files)
        return run_merge(files, key=args.key, direction=args.direction, output=args.output, typed=args.typed)
    raise UsageError(f"unknown command {args.command!r}")  # argparse refuses it first


def expand_files(items: list[str]) -> list[Path]:
    """Paths given to ``--files``: each a path, or a quoted glob expanded here (sorted).

    Raises:
        UsageError: a glob that matches nothing; an existing path is checked later (check_inputs).

    >>> expand_files(["/etc/hostname"])
    [PosixPath('/etc/hostname')]
    """
    files: list[Path] = []
    for item in items:
        if glob.has_magic(item) and not Path(item).exists():
            matches = sorted(glob.glob(item))
            if not matches:
                raise UsageError(f"--files {item!r} matches no file")
            files.extend(Path(m) for m in matches)
        else:
            files.append(Path(item))
    return files


def _failed(args: argparse.Namespace | None, exc: Exception) -> int:
    """One line for an error that ended the run: 2 for unreadable input, 3 for a dead actor.

    A dead or failed actor's line says why, then how far each actor got and how many records
    were in flight, therefore lost (from the error's ``progress`` and ``in_flight``).
    """
    from ..actors import ActorError
    from ..channels import ChannelBroken

    if isinstance(exc, ActorError):
        if exc.exc_type.rsplit(".", 1)[-1] in INPUT_ERRORS:  # a qualified name for classes of modules
            print(f"{_prog(args)}: {str(exc).splitlines()[0]}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{_prog(args)}: {failure_summary(exc)}", file=sys.stderr)
        return EXIT_DIED
    if isinstance(exc, ChannelBroken):  # a process at the other end died before the runtime said which
        print(f"{_prog(args)}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_DIED
    if isinstance(exc, OSError):  # a file vanished or a disk filled up mid-run
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{_prog(args)}: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    raise exc  # a bug: the traceback is what we need to fix it


#: Actors named in a failure summary; the others are counted.
SUMMARY_ACTORS = 6


def failure_summary(exc: Any) -> str:
    """An ActorError in one line: why, then how far each actor got and what was lost.

    >>> from chronopipe.actors import ActorError
    >>> err = ActorError("datatest.txt", "ProcessKilled", "the process was killed by signal SIGKILL "
    ...                  "without reporting; actor datatest.txt, pid 42; progress: ...", exitcode=-9,
    ...                  progress={"merge": (12000, 11000), "datatest.txt": (0, 4000)}, in_flight={"in0": 1000})
    >>> failure_summary(err).split("; ")  # doctest: +NORMALIZE_WHITESPACE
    ["actor 'datatest.txt' died (killed by SIGKILL, pid 42)", 'progress: merge received 12,000, emitted 11,000',
     'datatest.txt emitted 4,000', 'in flight (lost): 1,000']
    >>> print(failure_summary(ActorError("parse", "ValueError", "bad row", record="1;2")))
    actor 'parse' failed: ValueError: bad row (record: '1;2')
    >>> print(failure_summary(ActorError("merge", "EOFError", "", progress={"merge": (101, 101)})))
    actor 'merge' failed: EOFError; progress: merge received 101, emitted 101
    """
    import re

    text = str(exc).splitlines()[0] if exc.message else f"actor {exc.actor!r} failed: {exc.exc_type}"
    pid = re.search(r"; actor .*, pid (\d+);", exc.message)
    where = f", pid {pid.group(1)}" if pid else ""
    if exc.exc_type == "ProcessKilled" and exc.exitcode is not None and exc.exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exc.exitcode).name
        except ValueError:
            name = f"signal {-exc.exitcode}"
        text = f"actor {exc.actor!r} died (killed by {name}{where})"
    elif exc.exc_type == "ProcessExited":
        text = f"actor {exc.actor!r} died (exited with code {exc.exitcode} without reporting{where})"
    parts = [text]
    if exc.progress:
        shown = [f"{name} {_counts(received, emitted)}"
                 for name, (received, emitted) in list(exc.progress.items())[:SUMMARY_ACTORS]]
        more = len(exc.progress) - SUMMARY_ACTORS
        parts.append("progress: " + "; ".join(shown) + (f"; {more} more actors" if more > 0 else ""))
    if exc.in_flight:  # {} is no channel counted (the reader was the caller): not "0 lost"
        parts.append(f"in flight (lost): {exc.lost:,}")
    return "; ".join(parts)


def _counts(received: int, emitted: int) -> str:
    """``received 5, emitted 4``; a source only ``emitted``, a sink only ``received``."""
    if received and not emitted:
        return f"received {received:,}"
    if emitted and not received:
        return f"emitted {emitted:,}"
    return f"received {received:,}, emitted {emitted:,}"


def _prog(args: argparse.Namespace | None) -> str:
    command = getattr(args, "command", None)
    return f"chronopipe {command}" if command else "chronopipe"


def _silence_stdout() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
