"""``chronopipe run pipeline.yml`` and ``chronopipe lint pipeline.yml``: runs from YAML.

    chronopipe lint pipeline.yml                 # check the file: every error as FILE:LINE:COL: PATH: message
    chronopipe run pipeline.yml [--profiles F]   # run it: a progress bar per runner, a summary table

``lint`` loads and validates the config (and the profiles it names) and runs nothing. ``run``
starts every runner as an actor and waits for all of them; the first Ctrl-C (or SIGTERM) stops
the consumers, which stage what they hold, and lets the producers load what was staged (a
second one stops everything at once; what was not loaded stays staged for the next run).
Output: one summary table on stdout (rows, batches, seconds per runner), then for each consumer
``rows in = staged + rejected + late``; rejects on stderr as ``file:line: reason``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from .control import add_control_option

__all__ = ["add_parsers", "run_lint", "run_run"]

#: the option naming the input file of the consumer varieties that read one (checked before a run)
INPUT_OPTIONS = {"csv": "path", "file": "filename", "capture": "filename"}
#: consumer varieties preflight does not construct: what their constructor does is not a check
UNBUILT = {"generator": "it calls your function", "tcp-server": "it binds its port",
           "udp": "it binds its port"}
#: producer varieties whose ``path`` is a folder of batch files
FOLDER_SINKS = frozenset({"csv", "parquet"})
LINT_EXIT_CODES = """exit status:
  0    the file is valid (nothing ran)
  2    errors in the file or its profiles, each listed as FILE:LINE:COL: PATH: message"""
GRACE = 60.0  # seconds the producers get to load what was staged after a Ctrl-C
CANCEL_WAIT = 5.0  # seconds the runners get to end once told to stop at once


def add_parsers(subparsers: Any) -> None:
    """Register ``run`` and ``lint`` on ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    for command, text in (("run", "run a pipeline.yml: consumers into stages, producers into sinks"),
                          ("lint", "check a pipeline.yml (and the profiles it names) without running it")):
        parser = subparsers.add_parser(command, help=text, description=text + ". Format: docs/runs.md.",
                                       epilog=LINT_EXIT_CODES if command == "lint" else None)
        parser.add_argument("config", type=Path, metavar="PIPELINE.yml", help="the run's YAML file")
        parser.add_argument("--profiles", type=Path, metavar="FILE",
                            help="the profiles file (default ~/.chronopipe/profiles.yml; also "
                                 "CHRONOPIPE_PROFILE_<NAME>_<FIELD> environment variables)")
        if command == "run":
            add_control_option(parser, "run")


def _load(args: argparse.Namespace, *, lint: bool = False) -> tuple[Any, dict[str, Any]]:
    """The validated config and the profiles it names; UsageError (exit 2) for any mistake.
    ``lint``: make no stage folder (check that one could be made)."""
    from ..runs.config import ConfigError, load_config
    from ..runs.profiles import ProfileError, load_profiles
    from ..runs.push import unfed as push_unfed
    from ..runs.varieties import accepted_options
    from .outputs import UsageError, check_inputs

    check_inputs([args.config])
    try:
        config = load_config(args.config, accepted_options=accepted_options)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    wanted = sorted({r.profile for r in config.runners if getattr(r, "profile", None)})
    profiles: dict[str, Any] = {}
    if wanted:
        try:
            known = load_profiles(args.profiles)
        except ProfileError as exc:
            raise UsageError(str(exc)) from None
        for name in wanted:
            try:
                profiles[name] = known[name]
                profiles[name].connect_options()  # a value it cannot take (port: abc) is refused here
            except ProfileError as exc:  # it names the profiles known and the files looked in
                first = next(i for i, r in enumerate(config.runners) if getattr(r, "profile", None) == name)
                raise UsageError(f"{config.where(('runners', first, 'profile'))}: {exc}") from None
    if not lint and getattr(args, "control", None) is None and (unfed := push_unfed(config)):
        raise UsageError(unfed)  # a push consumer, and no control API to feed it (runs/push.py)
    _preflight(config, profiles, lint=lint)
    return config, profiles


def _preflight(config: Any, profiles: dict[str, Any], *, lint: bool = False) -> None:
    """What can be checked before anything runs, each a UsageError (exit 2) at its place in the
    file: an input (csv, file, capture) missing or unreadable, an import path that does not
    resolve, a ``limit`` that is no count, an option value the variety's constructor refuses, a
    sink folder that is a file or inside a stage folder (a sink never writes among the batches
    it reads, nor onto an input), a stage folder that cannot be made (made last; lint makes none)."""
    from ..runs.varieties import CALLABLE_OPTIONS, VarietyError, resolve_import
    from .outputs import UsageError

    base = Path(config.base)
    stages = {}
    for index, runner in enumerate(config.runners):
        if runner.type == "consumer":
            path = (base / runner.stage.path).resolve()
            if path.exists() and not path.is_dir():
                raise UsageError(f"{config.where(('runners', index, 'stage', 'path'))}: {path} is a file, "
                                 "not a folder")
            stages[path] = runner.name
    for index, runner in enumerate(config.runners):
        key = INPUT_OPTIONS.get(runner.variety) if runner.type == "consumer" else None
        value = runner.options.get(key) if key else None
        if isinstance(value, str):
            path = base / value
            if not path.is_file():
                why = "is a folder" if path.is_dir() else "does not exist" if not path.exists() else "is not a file"
                raise UsageError(f"{config.where(('runners', index, key))}: {value}: {why}")
            if not os.access(path, os.R_OK):
                raise UsageError(f"{config.where(('runners', index, key))}: {value}: permission denied")
    for index, runner in enumerate(config.runners):
        for key in CALLABLE_OPTIONS & runner.options.keys():
            value = runner.options[key]
            if isinstance(value, str) and ":" in value:
                try:
                    resolve_import(value, f"option {key}")
                except VarietyError as exc:
                    raise UsageError(f"{config.where(('runners', index, key))}: {exc}") from None
    for index, runner in enumerate(config.runners):
        target = runner.options.get("path") if runner.type == "producer" else None
        if isinstance(target, str):
            path = (base / target).resolve()
            for stage, consumer in stages.items():
                if path == stage or stage in path.parents:
                    raise UsageError(f"{config.where(('runners', index, 'path'))}: {target} is inside the stage "
                                     f"of {consumer!r}; give the sink its own folder")
            if runner.variety in FOLDER_SINKS and path.exists() and not path.is_dir():
                raise UsageError(f"{config.where(('runners', index, 'path'))}: {target} is a file, not a folder "
                                 "(a sink writes a folder of batch files, never onto an input)")
    for index, runner in enumerate(config.runners):
        limit = runner.options.get("limit") if runner.type == "consumer" else None
        if limit is not None and (type(limit) is not int or limit < 0):
            raise UsageError(f"{config.where(('runners', index, 'limit'))}: limit must be a whole number >= 0 "
                             f"(records), not {limit!r}")
    for index, runner in enumerate(config.runners):
        _construct(config, index, runner, profiles)
    _stage_folders(config, stages, lint=lint)


def _construct(config: Any, index: int, runner: Any, profiles: dict[str, Any]) -> None:
    """Make a built-in runner's source or sink once, not started: a value its constructor refuses
    is a UsageError at that option (else at the variety). Not made, only imported: classes of
    yours, and UNBUILT. The others connect to nothing and open no file before they start (the
    websocket, http, tcp-client, follow, stdin sources) or ``open()`` (the sinks, PostgreSQL's too)."""
    from ..runs.engine import batch_size
    from ..runs.varieties import CONSUMERS, PRODUCERS, VarietyError, make_sink, make_source, resolve_import
    from .outputs import UsageError

    consumer = runner.type == "consumer"
    base = Path(config.base)
    try:
        if runner.variety not in (CONSUMERS if consumer else PRODUCERS):
            resolve_import(runner.variety, f"{runner.type} variety")
        elif consumer and runner.variety not in UNBUILT:
            make_source(runner.variety, runner.options, name=runner.name, base=base, size=batch_size(runner))
        elif not consumer:
            profile = profiles.get(runner.profile) if getattr(runner, "profile", None) else None
            make_sink(runner.variety, runner.options, base=base, profile=profile)
    except (TypeError, ValueError, LookupError, VarietyError, OSError, ImportError) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        key = _named_option(line, runner.options)
        where = config.where(("runners", index, key or "variety"))
        raise UsageError(f"{where}: {line}" if key else f"{where}: {runner.variety} {runner.type}: {line}") from None


def _named_option(message: str, options: dict[str, Any]) -> str | None:
    """The option key ``message`` names (``column_types`` also as "column type"), if one.

    >>> _named_option("unknown column type 'bogus'", {"path": "a.csv", "column_types": {}})
    'column_types'
    """
    import re

    for key in sorted(options, key=len, reverse=True):
        spellings = {key, key.replace("_", " "), key.rstrip("s"), key.replace("_", " ").rstrip("s")}
        if any(re.search(rf"(?<![\w.]){re.escape(s)}(?!\w)", message) for s in spellings if s):
            return key
    return None


def _stage_folders(config: Any, stages: dict[Path, str], *, lint: bool) -> None:
    """Make each stage folder (``run``), or check that it could be made (``lint``: the nearest
    existing folder takes a new folder: one is made and removed there at once, nothing stays)."""
    from ..runs.stages import StageError, open_stage
    from .outputs import UsageError

    for index, runner in enumerate(config.runners):
        path = (Path(config.base) / runner.stage.path).resolve() if runner.type == "consumer" else None
        if path is None or stages.pop(path, None) is None:
            continue  # a producer, or a stage folder checked already (consumers may share one)
        where = config.where(("runners", index, "stage", "path"))
        if not lint:
            try:
                open_stage(runner.stage.type, path)
            except StageError as exc:
                raise UsageError(f"{where}: {str(exc).splitlines()[0]}") from None
            continue
        if path.is_dir():
            if not os.access(path, os.W_OK | os.X_OK):
                raise UsageError(f"{where}: {path}: cannot use it as a stage folder (permission denied)")
            continue
        first = path
        while not first.parent.exists() and first.parent != first:
            first = first.parent
        try:
            first.mkdir()
            first.rmdir()
        except OSError as exc:
            raise UsageError(f"{where}: {path}: cannot make the stage folder ({exc.strerror or exc})") from None


def run_lint(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Validate the file; print what would run. Exit status 0, or 2 with the errors."""
    config, _ = _load(args, lint=True)
    out = sys.stdout if out is None else out
    for runner in config.runners:
        after = f" after {', '.join(runner.depends_on)}" if runner.type == "producer" else ""
        into = f" -> {runner.stage.type} stage {runner.stage.path}" if runner.type == "consumer" else ""
        print(f"{runner.type} {runner.name}: {runner.variety}{into}{after}", file=out)
    print(f"{args.config}: ok ({len(config.runners)} runners)", file=out)
    return 0


def run_run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the file; the exit status (0; 1 rejected or late rows; 3 a runner died; 130 Ctrl-C;
    143 SIGTERM). The first Ctrl-C or SIGTERM drains (the consumers stage what they hold, the
    producers load what was staged, within GRACE seconds); a second one stops everything at once."""
    from ..runs.engine import Run
    from ..runtime import Runtime
    from .control import check_address, run_target, serving

    control = getattr(args, "control", None)
    check_address(control)  # before anything runs
    config, profiles = _load(args)
    Runtime()  # its signal handlers first, so that ours, put in front of them, decide
    run = Run(config, profiles, base=Path(config.base))
    try:
        with serving(run_target(run, args.config, control), control):  # the control API, for the run's life
            return _go(run, out, err)
    finally:
        run.close()  # the stage folders are free for the next run


def _go(run: Any, out: TextIO | None, err: TextIO | None) -> int:
    """Start ``run`` (UsageError when a stage folder is another run's), watch it, sum it up."""
    from ..actors import ActorError
    from ..runs.engine import StageInUse
    from . import _deferred_signals  # SIGINT and SIGTERM held back until the block ends
    from .outputs import EXIT_FOUND, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, UsageError

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    with _Signals() as signals:
        try:
            with _deferred_signals():  # a runner never started would be waited for, and its producers with it
                try:
                    run.start()
                except StageInUse as exc:
                    raise UsageError(str(exc)) from None
            _watch(run, err)
        except _Interrupted:
            print("chronopipe run: stopping: the consumers stage what they hold, the producers load it "
                  "(a second Ctrl-C or SIGTERM stops at once)", file=err)
            try:
                run.stop()
                if not run.wait(GRACE):
                    print(f"chronopipe run: still loading after {GRACE:.0f} s: stopping at once", file=err)
                    run.cancel()
            except _Interrupted:
                print("chronopipe run: stopping at once: what was not loaded stays staged for the next run",
                      file=err)
                run.cancel()
            signals.restore()  # a third signal: what it does outside a run (the runtime's teardown)
            run.wait(CANCEL_WAIT)
    seconds = time.monotonic() - (run.started_at or time.monotonic())
    try:
        summaries = run.join(0) if signals.received is None else run.summary()
    except ActorError as exc:
        return _failed(exc, run, out, err, seconds)
    _print_summary(summaries, out, err, seconds)
    if signals.received is not None:
        return EXIT_TERMINATED if signals.received == signal.SIGTERM else EXIT_INTERRUPTED
    found = any(s.rejected or s.late for s in summaries)
    return EXIT_FOUND if found else EXIT_OK


def _failed(exc: Any, run: Any, out: TextIO, err: TextIO, seconds: float) -> int:
    """A runner failed: the summary so far, then one line naming it (exit 3; 2 when it could not
    read its input). Nothing it completed is lost: complete batches stay staged for the next run."""
    from . import INPUT_ERRORS, failure_summary
    from .outputs import EXIT_DIED, EXIT_USAGE

    _print_summary(run.summary(), out, err, seconds)
    short = exc.exc_type.rpartition(".")[2]  # the class, not its module: PostgresSinkError
    if short in INPUT_ERRORS:
        line = str(exc).splitlines()[0].replace(f"failed: {exc.exc_type}", f"failed: {short}", 1)
        print(f"chronopipe run: {line}", file=err)
        return EXIT_USAGE
    line = failure_summary(exc).split("; in flight (lost)")[0]  # messages about staged batches, not rows
    line = line.replace(f"failed: {exc.exc_type}", f"failed: {short}", 1)
    print(f"chronopipe run: {line}; complete batches stay staged for the next run", file=err)
    return EXIT_DIED


class _Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run (raised in the main thread by _Signals)."""


class _Signals:
    """While a run goes, SIGINT and SIGTERM raise _Interrupted in the main thread and remember
    which came first (``received``), in place of the runtime's handlers, which would end the
    runners' processes at once, before they staged and loaded what they hold. A signal the
    program ignores (``cmd &``) stays ignored. Off the main thread, nothing changes."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                current = signal.getsignal(signum)
                if current is not signal.SIG_IGN:
                    self._previous[signum] = current
                    signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        # The first signal drains, the second stops at once, later ones change nothing (the stop has its deadline)
        self._count += 1
        if self.received is None:
            self.received = signum
        if self._count <= 2:
            raise _Interrupted(signum)

    def restore(self) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def __exit__(self, *exc_info: object) -> None:
        self.restore()


def _watch(run: Any, err: TextIO) -> None:
    """Wait for the run; on a terminal, a progress bar per runner (rows so far)."""
    if not (hasattr(err, "isatty") and err.isatty()):
        while not run.wait(0.2):
            pass
        return
    from tqdm import tqdm

    bars = [tqdm(desc=r.name, unit=" rows", unit_scale=True, file=err, position=i, leave=False, dynamic_ncols=True)
            for i, r in enumerate(run.runners)]
    try:
        while not run.wait(0.2):
            for bar, runner in zip(bars, run.runners, strict=True):
                rows = runner.figures_now().get("rows", 0)
                bar.update(rows - bar.n)
    finally:
        for bar in bars:
            bar.close()


def _print_summary(summaries: list[Any], out: TextIO, err: TextIO, seconds: float) -> None:
    header = ("runner", "type", "variety", "rows", "batches", "skipped", "seconds")
    rows = [(s.name, s.type, s.variety, f"{s.rows:,}", f"{s.batches:,}", f"{s.skipped:,}", f"{s.seconds:.2f}")
            for s in summaries]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i < 3 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip(), file=out)
    for s in summaries:
        if s.type != "consumer":
            continue
        if s.state not in ("finished", "stopped"):  # cancelled or failed: a process runner's figures never came back
            print(f"{s.name}: {s.state}: its figures are incomplete; what it staged stays staged", file=out)
            continue
        records_in = s.records + s.rejected + s.late
        extra = "".join(f" + {label} {n:,}" for label, n in (("markers", s.markers), ("over limit", s.over_limit))
                        if n)
        print(f"{s.name}: rows in {records_in:,} = staged {s.rows:,} + rejected {s.rejected:,} + late {s.late:,}"
              f"{extra}", file=out)
        for reject in s.rejects:
            print(reject, file=err)
    print(f"{len(summaries)} runners, {seconds:.2f} s", file=out)
