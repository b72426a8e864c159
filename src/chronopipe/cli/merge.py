"""The main job: merge CSV files chronologically, one reader process per file, and report.

    python main.py                                  # the three bundled UCI occupancy files
    python main.py --files 'logs/*.csv' --key date --output merged.csv
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..multiplex import SortedQueueMultiplexer
from ..readers import CSVReader

__all__ = ["PROGRESS_AFTER", "run_merge"]

PROGRESS_AFTER = 2.0  # seconds before a progress line appears on stderr


def run_merge(
    files: list[Path],
    *,
    key: str = "date",
    direction: str = "min",
    output: Path | None = None,
    typed: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Merge ``files`` by ``key``; print the report to ``out``; return its figures."""
    started = time.perf_counter()
    mux = SortedQueueMultiplexer(sort_key=key, sort_direction=direction, name="merge")  # type: ignore[arg-type]
    readers = [
        CSVReader(path, queue=mux.input_queue(), name=path.name, typed=typed, start=True) for path in files
    ]
    writer, handle = None, None
    count, first, last, shown = 0, None, None, started
    try:
        if output is not None:
            handle = output.open("w", newline="", encoding="utf-8")
        for batch in mux.batches():  # the merge runs here, in this thread
            if batch:
                if first is None:
                    first = batch[0].get(key)
                last = batch[-1].get(key)
                count += len(batch)
                if handle is not None:
                    if writer is None:
                        writer = csv.DictWriter(handle, fieldnames=list(batch[0]), extrasaction="ignore")
                        writer.writeheader()
                    writer.writerows(batch)
            now = time.perf_counter()
            if now - started > PROGRESS_AFTER and now - shown >= 1.0:
                shown = now
                print(f"\rmerged {count:,} rows, {count / (now - started):,.0f} rows/s", end="", file=err, flush=True)
    finally:
        if handle is not None:
            handle.close()
    if shown > started:
        print(file=err)
    summaries = [reader.join() for reader in readers]
    report = mux.join()
    elapsed = time.perf_counter() - started
    _print_report(out, summaries, report, count, first, last, elapsed, key)
    return {
        "rows": {s.name: s.records for s in summaries},
        "merged": count,
        "first": first,
        "last": last,
        "rejected": sum(s.rejected for s in summaries),
        "late": report.late,
        "elapsed_s": elapsed,
    }


def _print_report(out: TextIO, summaries: list[Any], report: Any, count: int, first: Any, last: Any,
                  elapsed: float, key: str) -> None:
    width = max([len(s.name) for s in summaries] + [12])
    print(f"{'file':<{width}} {'rows':>9} {'rejected':>9}", file=out)
    for s in summaries:
        print(f"{s.name:<{width}} {s.records:>9,} {s.rejected:>9,}", file=out)
    print(f"{'merged':<{width}} {count:>9,}", file=out)
    print(f"first {key}: {first}\nlast {key}:  {last}", file=out)
    for s in summaries:
        for reject in s.rejects[:10]:
            print(f"rejected {reject}", file=out)
        if s.rejected > 10:
            print(f"rejected ... and {s.rejected - 10:,} more in {s.name}", file=out)
    if report.late:
        print(f"late or out of order: {report.late:,} rows, kept aside, not merged: {report.out_of_order}", file=out)
    print(f"{len(summaries)} reader processes, {elapsed:.3f} s, {count / elapsed if elapsed else 0:,.0f} rows/s",
          file=out)
