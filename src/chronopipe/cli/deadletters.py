"""``chronopipe dead-letters FILE [--verbose] [--replay PIPELINE [--dead-letter OUT]]``.

Without ``--replay``: list the dead letters of a pipeline run. One line per letter, in file order:
its number, the node that gave up on it, the attempts, the last error and a preview of the record
(as JSON); then a count per node. ``--verbose`` adds each letter's pipeline, time and traceback.
The records are not unpickled (none of their classes is needed). Exit status: 0 no dead letters,
1 dead letters listed, 2 a missing, unreadable or corrupt file (one line naming the file and the
line, never a traceback).

    $ chronopipe dead-letters orders.dead-letters.jsonl
    1  parse  4 attempts  ValueError: invalid literal for int() with base 10: 'x'  record "x"
    1 dead letter in orders.dead-letters.jsonl: parse 1

With ``--replay PIPELINE`` (``module:attribute`` or ``path/to/file.py:attribute``, naming a
``chronopipe.graph.Pipeline`` or a callable that takes no argument and returns one, as uvicorn
names an app): run ``pipeline.replay(FILE, dead_letter=OUT)`` (docs/delivery.md), print the run's
``statistics().summary`` and one line of result. Records that fail again go to ``--dead-letter
OUT``, by default ``<FILE's stem>.replay.jsonl`` beside FILE (never FILE itself; appended to if it
exists). Exit status: 0 every record was handled, 1 some were dead-lettered again, 2 a usage error
(a bad spec, a module that cannot be imported, an attribute that is missing or no Pipeline, a bad
FILE, a letter naming a node the pipeline does not have; nothing was run), 3 the run failed (a
node under ``guarantee="none"`` raised, a worker died). One line on stderr, never a traceback.

    $ chronopipe dead-letters orders.dead-letters.jsonl --replay jobs/orders.py:pipeline
    finished: parse 1 in = 1 handled + 0 dead-lettered; load 1 in = 1 handled + 0 dead-lettered
    replayed 1 dead letter of orders.dead-letters.jsonl: all handled, none dead-lettered again
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_parser", "listing", "load_pipeline", "replay_path", "run_dead_letters", "run_replay"]

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
                    "and record, one line each, then a count. Exit status 1 if there are any. With --replay, give "
                    "them back to the nodes that failed them instead (Pipeline.replay, docs/delivery.md): exit "
                    "status 0 if all were handled, 1 if some were dead-lettered again.")
    parser.add_argument("file", type=Path, metavar="FILE", help="a dead-letter file (JSON lines)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print each letter's pipeline, time and traceback")
    parser.add_argument("--replay", metavar="PIPELINE",
                        help="module:attribute or path/to/file.py:attribute naming the (fixed) Pipeline, or a "
                             "function without arguments returning it: replay FILE's records through it")
    parser.add_argument("--dead-letter", type=Path, metavar="OUT",
                        help="with --replay: where records that fail again go (default: <FILE stem>.replay.jsonl "
                             "beside FILE; appended to)")
    return parser


def run_dead_letters(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """List ``args.file`` on ``out``; the exit status (0 none, 1 some).

    Raises:
        UsageError: the file is missing, not a file, unreadable or not a dead-letter file (exit 2).
    """
    from ..delivery import DeadLetterFileError, read_dead_letters
    from .outputs import EXIT_FOUND, EXIT_OK, UsageError, check_inputs

    check_inputs([args.file])
    if args.replay is not None:
        return run_replay(args, out)
    if args.dead_letter is not None:
        raise UsageError("--dead-letter OUT goes with --replay PIPELINE (it says where records that fail again go)")
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


# -- --replay ----------------------------------------------------------------------------------
def replay_path(file: Path) -> Path:
    """Where ``--replay`` writes the records that fail again when ``--dead-letter`` is not given.

    >>> replay_path(Path("out/orders.dead-letters.jsonl"))
    PosixPath('out/orders.dead-letters.replay.jsonl')
    """
    return file.with_name(f"{file.stem}.replay.jsonl")


def run_replay(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``--replay``: replay ``args.file`` through the pipeline ``args.replay`` names; the exit
    status (0 all handled, 1 some dead-lettered again).

    Raises:
        UsageError: anything found wrong before the run (exit 2; see the module docstring).
        ActorError: the run failed (the command line says so in one line, exit 3).
    """
    from ..delivery import DeadLetterFileError, read_dead_letters
    from .outputs import EXIT_FOUND, EXIT_OK, UsageError, check_outputs

    target = args.dead_letter if args.dead_letter is not None else replay_path(args.file)
    check_outputs({"--dead-letter": target}, [args.file])
    pipeline = load_pipeline(args.replay)
    try:
        letters = read_dead_letters(args.file)  # unpickled, so a record's class that is missing shows now
    except DeadLetterFileError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
    pipeline.initialize()
    nodes = {node.name for node in pipeline.top_node.walk("both")}
    unknown = sorted({letter.node for letter in letters} - nodes)
    if unknown:
        raise UsageError(f"{args.file}: dead letters of nodes {args.replay} does not have: {', '.join(unknown)} "
                         f"(its nodes: {', '.join(sorted(nodes))})")
    inexact = sum(not letter.exact for letter in letters)
    if inexact:
        raise UsageError(f"{args.file}: {inexact} dead letter{'s' if inexact != 1 else ''} without a pickled record "
                         "(it could not be pickled): they cannot be replayed")
    _terminate_like_ctrl_c()
    try:
        pipeline.replay(args.file, dead_letter=target)
    except Exception as exc:
        from ..actors import ActorError

        if isinstance(exc, ActorError) or not isinstance(exc, (ValueError, TypeError)):
            raise  # the run failed: one line and exit status 3 (cli/__init__.py)
        raise UsageError(f"{args.replay}: cannot replay {args.file}: {str(exc).splitlines()[0]}") from None
    stats = pipeline.statistics()
    again = stats.dead_lettered
    plural = "" if len(letters) == 1 else "s"
    where = f" into {target}" if again else ""
    result = "all handled, none" if not again else f"{again:,}"
    print(stats.summary, file=out or sys.stdout)
    print(f"replayed {len(letters):,} dead letter{plural} of {args.file}: {result} dead-lettered again{where}",
          file=out or sys.stdout)
    return EXIT_FOUND if again else EXIT_OK


def load_pipeline(spec: str) -> Any:
    """The Pipeline ``spec`` names: ``module:attribute`` (the current folder is put on sys.path)
    or ``path/to/file.py:attribute`` (the file's folder is); the attribute may be dotted, and may
    be a callable without arguments that returns the Pipeline.

    Raises:
        UsageError: a spec without ``:``, a file or module that cannot be imported, a missing
            attribute, a callable that raises, anything that is not a Pipeline: one line.

    >>> load_pipeline("chronopipe.graph")
    Traceback (most recent call last):
    ...
    chronopipe.cli.outputs.UsageError: --replay chronopipe.graph: give MODULE:ATTRIBUTE or FILE.py:ATTRIBUTE
    >>> load_pipeline("chronopipe.graph:nothing")
    Traceback (most recent call last):
    ...
    chronopipe.cli.outputs.UsageError: --replay chronopipe.graph:nothing: chronopipe.graph has no attribute 'nothing'
    """
    import importlib
    import importlib.util
    import os

    from ..graph import Pipeline
    from .outputs import UsageError

    where, _, attribute = spec.rpartition(":")
    if not where or not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise UsageError(f"--replay {spec}: give MODULE:ATTRIBUTE or FILE.py:ATTRIBUTE")
    try:
        if where.endswith(".py") or os.sep in where or "/" in where:
            path = Path(where)
            if not path.is_file():
                raise UsageError(f"--replay {spec}: {where}: no such file")
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            name = path.stem if path.suffix == ".py" else path.name
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise UsageError(f"--replay {spec}: {where}: not a Python file")
            if name in sys.modules and getattr(sys.modules[name], "__file__", None) != str(path.resolve()):
                raise UsageError(f"--replay {spec}: a module named {name!r} is already imported; rename {where}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # its classes pickle by this name (dead letters, node processes)
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(where)
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and (where == exc.name or where.startswith(exc.name + ".")):
            raise UsageError(f"--replay {spec}: no module named {exc.name!r}") from None
        raise UsageError(f"--replay {spec}: importing {where} failed: {_one_line(exc)}") from None
    except (Exception, SystemExit) as exc:  # its own error, a syntax error, a sys.exit() in it
        raise UsageError(f"--replay {spec}: importing {where} failed: {_one_line(exc)}") from None
    _lend_to_main(module)
    found: Any = module
    for i, part in enumerate(attribute.split(".")):
        if not hasattr(found, part):
            owner = where if i == 0 else ".".join(attribute.split(".")[:i])
            raise UsageError(f"--replay {spec}: {owner} has no attribute {part!r}")
        found = getattr(found, part)
    if not isinstance(found, Pipeline) and callable(found):
        try:
            found = found()
        except (Exception, SystemExit) as exc:
            raise UsageError(f"--replay {spec}: {attribute}() raised {_one_line(exc)}") from None
    if not isinstance(found, Pipeline):
        raise UsageError(f"--replay {spec}: {attribute} is not a chronopipe.graph.Pipeline (it is "
                         f"{type(found).__name__} {_short(found)})")
    return found


def _lend_to_main(module: Any) -> None:
    """Make the classes and functions ``module`` defines findable as ``__main__.X`` too: records
    dead-lettered while the script ran as ``python script.py`` were pickled under that name."""
    main = sys.modules.get("__main__")
    if main is None or main is module:
        return
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) == module.__name__ and not hasattr(main, name):
            setattr(main, name, value)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return "?"
    return text if len(text) <= 60 else text[:57] + "..."


def _terminate_like_ctrl_c() -> None:
    """A replay runs actors: SIGTERM must stop it like the other commands' runs (cli/__init__.py)."""
    import os
    import signal

    from . import _OWNER, Terminated

    if _OWNER[0] == os.getpid():
        from ..runtime.signals import redeliver_when_swallowed

        redeliver_when_swallowed(Terminated, signal.SIGTERM)
