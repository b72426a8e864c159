"""``chronopipe merge-csv``: merge CSV files by a key column, one reader process per file, losing no row.

    python main.py                                  # the three bundled UCI occupancy files
    chronopipe merge-csv --files 'logs/*.csv' --key date --output merged.csv

Every row read is accounted for, and the report says so: ``rows in = merged + rejected + late``.

- **Rejected** rows (wrong number of fields, malformed quoting, undecodable bytes) are listed
  with ``file:line`` (the first 10 per file, then a count). An unmatched quote costs its own
  line, not the rows after it (see CSVReader).
- **Late** rows arrive against the merge order (a file steps back in time): they cannot be
  merged in order, so they are never merged and never dropped. With ``--output merged.csv``
  they go to ``merged.late.csv`` beside it (the row's columns plus ``source_file`` and
  ``source_line``); the report lists the first 10 and counts them per file.
- **A file in the wrong direction** (its first two steps between different keys both run
  against ``--direction``) stops the run before anything is merged: a UsageError naming the
  file and the lines, not 20,000 late rows.
- **Columns**: the output has the union of the files' columns, in the order first seen (file
  by file, in the order given); a row without one of them has it empty, as ``csvstack`` does.
  A column is never dropped.
- **Empty or header-only** files merge nothing but still count: the output has the header of
  the others (or their own), and the report names them.
- **Before anything is opened**: every input is a readable file, no output is an input or a
  directory (check_inputs, check_outputs); then each file's header and first rows are read
  here: ``--key`` must name a column of every file that has a header.
- **Outputs are atomic**: written under a temporary name beside the target and renamed into
  place only when the run finished; a failed or interrupted (Ctrl-C) run leaves no output, no
  temporary file, and says on stderr which file was not written. No late-rows file is written
  when no row was late, nor beside an output that is no regular file (``/dev/null``, a FIFO):
  then late rows are only listed.

Progress is a tqdm bar on stderr when it is a terminal (nothing on a pipe or a log); the report
is on stdout. Exit status: 0 every row merged; 1 the run finished but a row was rejected or late;
2 a usage error (UsageError).
"""

from __future__ import annotations

import csv
import itertools
import operator
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..multiplex import SortedQueueMultiplexer
from ..readers import CSVReader, ReaderError, ReaderSummary
from ..readers.csvlayout import dedupe
from .csvreport import SHOWN, LateRow, MergeFigures, print_report
from .outputs import AtomicOutput, UsageError, check_inputs, check_outputs
from .progress import progress

__all__ = ["PROBE_ROWS", "MergeFigures", "late_path_for", "merge_csv", "run_merge"]

PROBE_ROWS = 50  #: rows of each file read before the merge (columns, the key, the direction)


def late_path_for(output: Path) -> Path:
    """The late-rows file beside ``output``: ``merged.csv`` -> ``merged.late.csv``.

    >>> late_path_for(Path("out/merged.csv")), late_path_for(Path("merged"))
    (PosixPath('out/merged.late.csv'), PosixPath('merged.late.csv'))
    """
    return output.with_name(f"{output.stem if output.suffix else output.name}.late{output.suffix or '.csv'}")


def run_merge(
    files: list[Path],
    *,
    key: str = "date",
    direction: str = "min",
    output: Path | None = None,
    typed: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Merge ``files`` by ``key``, print the report to ``out``; return the exit status.

    0: every row merged; 1: the run finished but some row was rejected or late (see
    :func:`merge_csv` for the figures).

    Raises:
        UsageError: an unreadable input, an output that is an input (or a directory, or cannot
            be written), ``key`` naming no column of a file, a file whose first rows run
            against ``direction``.
        KeyboardInterrupt: Ctrl-C; no output is left behind.
    """
    return merge_csv(files, key=key, direction=direction, output=output, typed=typed, out=out, err=err).exit_status


def merge_csv(
    files: list[Path],
    *,
    key: str = "date",
    direction: str = "min",
    output: Path | None = None,
    typed: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> MergeFigures:
    """:func:`run_merge`, returning its figures (:class:`MergeFigures`) instead of the exit status.

    Raises:
        UsageError: as :func:`run_merge`.
        KeyboardInterrupt: Ctrl-C; no output is left behind.
    """
    if direction not in ("min", "max"):
        raise UsageError(f"--direction is min or max, not {direction!r}")
    # beside a regular file only: --output /dev/null or a FIFO has no "beside"
    late_path = late_path_for(output) if output is not None and (output.is_file() or not output.exists()) else None
    check_inputs(files)
    check_outputs({"--output": output, "late rows file": late_path}, files)
    started = time.perf_counter()
    names = _names(files)
    probes = [_probe(path, key, direction, typed) for path in files]  # may raise UsageError
    columns = list(dict.fromkeys(itertools.chain.from_iterable(p.columns for p in probes)))
    file_col, line_col = _free_name("source_file", columns), _free_name("source_line", columns)
    figures = MergeFigures(files=names, paths=[str(p) for p in files], rows={}, rejected_per_file={},
                           late_per_file=dict.fromkeys(names, 0), merged=0, columns=columns, output=output)
    figures.empty = {n: p.empty for n, p in zip(names, probes, strict=True) if p.empty}

    targets: list[AtomicOutput] = []
    try:
        targets += [AtomicOutput(path) for path in (output, late_path) if path is not None]
        summaries = _merge(files, names, figures, key, direction, typed, line_col, file_col, targets, err)
    except BaseException as exc:
        for n, target in enumerate(targets):
            if target.discard() and (n == 0 or figures.late):  # an empty late-rows file is no loss
                print(f"{target.target}: not written (the run did not finish)", file=err)
        if isinstance(exc, TypeError) and str(exc).startswith("sort keys cannot be compared"):
            text = re.sub(r"<object object at 0x[0-9a-fA-F]+>", "a key", str(exc))  # never an internal sentinel
            raise UsageError(f"--key {key}: {text}") from None  # e.g. --typed numbers in one file, dates in another
        raise
    for s, name in zip(summaries, names, strict=True):
        figures.rows[name] = s.records
        figures.rejected_per_file[name] = s.rejected
        figures.blank_per_file[name] = s.blank
        figures.rejects_per_file[name] = s.rejects[:SHOWN]
        figures.rejects += s.rejects[:SHOWN]
    if targets:
        targets[0].commit()
    if len(targets) > 1:
        if figures.late:
            targets[1].commit()
            figures.late_output = targets[1].target
        else:
            targets[1].discard()
    figures.elapsed_s = time.perf_counter() - started
    print_report(out, figures, key, len(files))
    return figures


# -- before the merge --------------------------------------------------------------------------
@dataclass
class _Probe:
    columns: list[str]
    empty: str  # "" (has rows), "empty file" or "header only"


def _probe(path: Path, key: str, direction: str, typed: bool) -> _Probe:
    """Read the header and the first rows of ``path`` here, before the merge.

    Raises:
        UsageError: ``key`` is not a column of the file; its first rows run against ``direction``;
            its header is malformed or undecodable.
    """
    reader = CSVReader(path, typed=typed, line_key="\0line", max_rejects=0)
    try:
        rows = list(itertools.islice(reader, PROBE_ROWS))
    except ReaderError as exc:  # a header that does not parse or decode
        raise UsageError(str(exc)) from None
    if reader.columns is None:
        return _Probe([], "empty file")
    columns = [c for c in reader.columns if c != "\0line"]
    if key not in columns:
        raise UsageError(f"--key {key}: {path} has no column {key!r} (its columns: {', '.join(columns)})")
    keyed = [(r["\0line"], r[key]) for r in rows if r[key] is not None and r[key] != ""]  # the merge rejects the others
    _check_direction(path, keyed, key, direction)
    return _Probe(columns, "" if rows or reader.rejected else "header only")


def _check_direction(path: Path, keyed: list[tuple[int, Any]], key: str, direction: str) -> None:
    """Refuse a file whose first two steps between different keys both run against ``direction``
    (or whose only step does): merged, nearly every row of it would be late.

    Raises:
        UsageError: naming the file, the lines and the keys.
    """
    against: Callable[[Any, Any], bool] = operator.lt if direction == "min" else operator.gt
    steps = []
    try:
        for (line_a, a), (line_b, b) in itertools.pairwise(keyed):
            if a != b:
                steps.append((against(b, a), line_a, line_b, a, b))
                if len(steps) == 2:
                    break
    except TypeError:  # keys that do not compare (None, mixed types): the merge will say so
        return
    if steps and all(step[0] for step in steps):
        order, wanted = ("descending", "ascending") if direction == "min" else ("ascending", "descending")
        points = [(steps[0][1], steps[0][3])] + [(lb, b) for _, _, lb, _, b in steps]
        shown = ", ".join(f"line {line}: {value}" for line, value in points)
        raise UsageError(f"{path}: lines {points[0][0]}-{points[-1][0]} are in {order} {key} order ({shown}), "
                         f"against --direction {direction} ({wanted}); nothing was merged: give --direction "
                         f"{'max' if direction == 'min' else 'min'}, or sort the file")


def _names(files: list[Path]) -> list[str]:
    """Each file's name in the report: its base name, or the path as given when base names repeat;
    a path given again is ``name (2)``, ``name (3)``... so that every file has its own figures.

    >>> _names([Path("a/x.csv"), Path("b/x.csv"), Path("y.csv"), Path("./y.csv")])
    ['a/x.csv', 'b/x.csv', 'y.csv', 'y.csv (2)']
    """
    bases = [path.name for path in files]
    names = [base if bases.count(base) == 1 else str(path) for base, path in zip(bases, files, strict=True)]
    return dedupe(names, again="{name} ({n})")


def _free_name(name: str, taken: list[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... the first that is not a column."""
    candidates = itertools.chain((name,), (f"{name}_{n}" for n in itertools.count(2)))
    return next(c for c in candidates if c not in taken)


# -- the merge ---------------------------------------------------------------------------------
def _merge(files: list[Path], names: list[str], figures: MergeFigures, key: str, direction: str, typed: bool,
           line_col: str, file_col: str, targets: list[AtomicOutput], err: TextIO) -> list[ReaderSummary]:
    """Run the readers and the merge; write the outputs' temporary files; return the readers' summaries."""
    handles = [target.path.open("w", newline="", encoding="utf-8") for target in targets]
    try:
        writer = late_writer = None
        try:
            if handles:
                writer = csv.DictWriter(handles[0], fieldnames=figures.columns, restval="", extrasaction="ignore")
                writer.writeheader()
            if len(handles) > 1:
                late_writer = csv.DictWriter(handles[1], fieldnames=[*figures.columns, file_col, line_col],
                                             restval="", extrasaction="ignore")
                late_writer.writeheader()  # the file is discarded if no row is late
        except OSError as exc:
            raise _write_failed(targets[1 if late_writer else 0], exc, late_writer is not None) from None
        shown: dict[int, int] = {}

        def on_late(idx: int, record: Any, frontier: Any) -> None:
            name = names[idx]
            figures.late_per_file[name] += 1
            if shown.get(idx, 0) < SHOWN:
                shown[idx] = shown.get(idx, 0) + 1
                figures.late_rows.append(LateRow(str(files[idx]), record.get(line_col), key, record.get(key), frontier))
            if late_writer is not None:
                record[file_col] = str(files[idx])
                try:
                    late_writer.writerow(record)
                except OSError as exc:
                    raise _write_failed(targets[1], exc, late=True) from None

        mux = SortedQueueMultiplexer(on_late=on_late, sort_key=key, sort_direction=direction, name="merge",  # type: ignore[arg-type]
                                     max_late=0)
        readers: list[CSVReader] = []
        for path, name in zip(files, names, strict=True):
            readers.append(CSVReader(path, queue=mux.input_queue(), name=name, typed=typed, line_key=line_col,
                                     key=key, start=True))
        count, first, last = 0, None, None
        try:
            with progress("rows", err=err) as bar:
                for batch in mux.batches():  # the merge runs here, in this thread
                    if batch:
                        if first is None:
                            first = batch[0].get(key)
                        last = batch[-1].get(key)
                        count += len(batch)
                        if writer is not None:
                            try:
                                writer.writerows(batch)
                            except OSError as exc:
                                raise _write_failed(targets[0], exc) from None
                        bar.update(len(batch))
        except Exception as exc:
            for reader in readers:  # the merge failed: the readers need not go on (Ctrl-C: the runtime ends them)
                reader.stop()
            mux.account(exc, readers)
            raise
        summaries = [reader.join() for reader in readers]
        mux.join()
        for n, handle in enumerate(handles):
            try:
                handle.close()  # flushes: a full disk may say so only now
            except OSError as exc:
                raise _write_failed(targets[n], exc, late=n == 1) from None
    finally:
        for handle in handles:
            try:
                handle.close()  # a no-op for those closed above
            except OSError:
                pass  # the run failed already: that error is the one to report
    figures.merged, figures.first, figures.last = count, first, last
    return summaries


def _write_failed(target: AtomicOutput, exc: OSError, late: bool = False) -> UsageError:
    """An output that could not be written (a full disk, ``/dev/full``): one line naming it."""
    return UsageError(f"{'late rows file' if late else '--output'} {target.target}: {exc.strerror or exc}; not written")
