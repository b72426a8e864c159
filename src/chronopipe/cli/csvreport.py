"""The CSV merge's figures and its report: ``rows in = merged + rejected + late``, printed.

:class:`MergeFigures` is what ``merge_csv`` returns; :func:`print_report` prints it as
``chronopipe merge-csv`` (and ``main.py``) do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..readers import Reject
from .outputs import EXIT_FOUND, EXIT_OK

__all__ = ["SHOWN", "LateRow", "MergeFigures", "print_report"]

SHOWN = 10  #: rejects and late rows listed per file in the report


@dataclass
class LateRow:
    """A row that arrived against the merge order: where it is, its key, and the key it came after
    (the last key of its file, or the last merged, whichever is later in the merge order).

    >>> str(LateRow("a.csv", 4, "date", "2020-01-01 00:00:05", "2020-01-01 00:00:10"))
    'a.csv:4: date 2020-01-01 00:00:05 comes after 2020-01-01 00:00:10'
    """

    file: str
    line: int
    column: str
    key: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.column} {self.key} comes after {self.after}"


@dataclass
class MergeFigures:
    """What a CSV merge did: ``rows_in == merged + rejected + late``, always."""

    files: list[str]  #: the names in the report, in the order given (distinct, even for a file given twice)
    paths: list[str]  #: the paths, as given (as rejects and late rows name them)
    rows: dict[str, int]  #: per file: rows read and kept (merged or late)
    rejected_per_file: dict[str, int]
    late_per_file: dict[str, int]
    merged: int
    columns: list[str]  #: the output's header
    first: Any = None
    last: Any = None
    elapsed_s: float = 0.0
    empty: dict[str, str] = field(default_factory=dict)  #: file: "empty file" or "header only"
    rejects: list[Reject] = field(default_factory=list)  #: the first SHOWN per file
    rejects_per_file: dict[str, list[Reject]] = field(default_factory=dict)  #: the first SHOWN of each file
    blank_per_file: dict[str, int] = field(default_factory=dict)  #: blank rows skipped (not rows: not in rows_in)
    late_rows: list[LateRow] = field(default_factory=list)  #: the first SHOWN per file
    output: Path | None = None
    late_output: Path | None = None  #: the late-rows file, when one was written

    @property
    def rejected(self) -> int:
        return sum(self.rejected_per_file.values())

    @property
    def late(self) -> int:
        return sum(self.late_per_file.values())

    @property
    def blank(self) -> int:
        return sum(self.blank_per_file.values())

    @property
    def rows_in(self) -> int:
        """The rows of the files, each file counted as often as it was given: per file, the rows
        merged or late plus the rejected ones."""
        return sum(self.rows.get(n, 0) + self.rejected_per_file.get(n, 0) for n in self.files)

    @property
    def exit_status(self) -> int:
        return EXIT_FOUND if self.rejected or self.late else EXIT_OK


def print_report(out: TextIO, figures: MergeFigures, key: str, readers: int) -> None:
    """The per-file table, the accounting line, the first rejects and late rows, the rate."""
    names = figures.files
    width = max([len(n) for n in names] + [12])
    late = figures.late
    print(f"{'file':<{width}} {'rows':>9} {'rejected':>9}" + (f" {'late':>9}" if late else ""), file=out)
    for n in names:
        print(f"{n:<{width}} {figures.rows[n]:>9,} {figures.rejected_per_file[n]:>9,}"
              + (f" {figures.late_per_file[n]:>9,}" if late else ""), file=out)
    print(f"{'merged':<{width}} {figures.merged:>9,}", file=out)
    if figures.merged:
        print(f"first {key}: {figures.first}\nlast {key}:  {figures.last}", file=out)
    print(f"rows in {figures.rows_in:,} = merged {figures.merged:,} + rejected {figures.rejected:,} "
          f"+ late {late:,}", file=out)
    if figures.blank:
        per_file = ", ".join(f"{n} {c:,}" for n, c in figures.blank_per_file.items() if c)
        print(f"blank lines skipped: {figures.blank:,} ({per_file}); they are no rows", file=out)
    for n, what in figures.empty.items():
        print(f"{n}: no rows ({what})", file=out)
    for n in names:
        for reject in figures.rejects_per_file.get(n, []):
            where = f"{reject.line}-{reject.end_line}" if reject.end_line else f"{reject.line}"
            print(f"rejected {reject.file}:{where}: {reject.reason}", file=out)
        if figures.rejected_per_file[n] > SHOWN:
            print(f"rejected ... and {figures.rejected_per_file[n] - SHOWN:,} more in {n}", file=out)
    if late:
        for row in figures.late_rows:
            print(f"late {row}", file=out)
        for n in names:
            if figures.late_per_file[n] > SHOWN:
                print(f"late ... and {figures.late_per_file[n] - SHOWN:,} more in {n}", file=out)
        if figures.late_output:
            where = f"written to {figures.late_output} (with source_file and source_line)"
        elif figures.output:
            where = f"not merged, and not written ({figures.output} is no regular file to write one beside)"
        else:
            where = "not merged; with --output they are written to a .late.csv file beside it"
        per_file = ", ".join(f"{n} {c:,}" for n, c in figures.late_per_file.items() if c)
        print(f"late rows: {late:,} ({per_file}) came against the {key} order: {where}", file=out)
    rate = figures.merged / figures.elapsed_s if figures.elapsed_s else 0
    print(f"{readers} reader processes, {figures.elapsed_s:.3f} s, {rate:,.0f} rows/s", file=out)

