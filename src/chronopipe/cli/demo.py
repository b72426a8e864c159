"""The demonstration job: one reader process per bundled CSV file, counted in the parent.

Until readers and multiplexers land, this shows the runtime doing real work: each file is
read line by line by its own actor process, records cross processes through one shared
channel, and the parent reports what arrived from where.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ..actors import Actor
from ..channels import Channel

__all__ = ["read_rows", "run_demo"]


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one occupancy CSV as dicts; the unnamed leading column is named ``row``."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = ["row", *next(reader)]
        for fields in reader:
            yield {"file": path.name, **dict(zip(header, fields, strict=True))}


def run_demo(files: list[Path], out: TextIO) -> dict[str, Any]:
    """Read ``files`` in parallel actor processes and print a report; returns its figures."""
    started = time.perf_counter()
    records = Channel(kind="process", name="records", writers=len(files))
    readers = [
        Actor(f"read:{path.name}", source=lambda path=path: read_rows(path), outputs=records, mode="process").start()
        for path in files
    ]
    per_file: dict[str, int] = {}
    first = last = None
    for row in records:
        per_file[row["file"]] = per_file.get(row["file"], 0) + 1
        first = row["date"] if first is None or row["date"] < first else first
        last = row["date"] if last is None or row["date"] > last else last
    for reader in readers:
        reader.join()
    elapsed = time.perf_counter() - started
    total = sum(per_file.values())
    print(f"{'file':<20} {'rows':>8}", file=out)
    for name in sorted(per_file):
        print(f"{name:<20} {per_file[name]:>8}", file=out)
    print(f"{'total':<20} {total:>8}", file=out)
    print(f"first timestamp      {first}\nlast timestamp       {last}", file=out)
    print(f"{len(files)} reader processes, {elapsed:.3f} s, {total / elapsed:,.0f} rows/s", file=out)
    return {"rows": per_file, "total": total, "first": first, "last": last, "elapsed_s": elapsed}
