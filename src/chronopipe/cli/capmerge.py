"""``chronopipe merge A.pcap B.pcapng ... [-w out.pcapng]``: merge captures by timestamp, one reader
process per file, and report each file (packets, span, steps back, damage)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..capture import PACKET_KEY, CaptureReader, CaptureSummary, CaptureWriter
from ..multiplex import SortedQueueMultiplexer

__all__ = ["parse_offsets", "run_capture_merge"]


def parse_offsets(items: list[str], paths: list[Path]) -> dict[Path, str]:
    """``FILE=SECONDS`` options to {path: seconds}; FILE is a path or a file name given.

    >>> parse_offsets(["b.pcap=-0.250"], [Path("x/a.pcap"), Path("x/b.pcap")])
    {PosixPath('x/b.pcap'): '-0.250'}
    """
    offsets = {}
    for item in items:
        name, sep, seconds = item.rpartition("=")
        matches = [p for p in paths if name in (str(p), p.name)]
        if not sep or len(matches) != 1:
            raise ValueError(f"--offset {item!r}: expected FILE=SECONDS with FILE one of the captures given")
        offsets[matches[0]] = seconds
    return offsets


def run_capture_merge(paths: list[Path], *, write: Path | None = None, offsets: dict[Path, str] | None = None,
                      out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Merge ``paths``; exit status 0, or 1 when a file was damaged or a packet came out late."""
    offsets = offsets or {}
    started = time.perf_counter()
    mux = SortedQueueMultiplexer(sort_key=PACKET_KEY, name="merge", max_late=sys.maxsize)
    readers = [CaptureReader(path, queue=mux.input_queue(), offset=offsets.get(path, 0), start=True)
               for path in paths]
    writer = CaptureWriter(write) if write is not None else None
    count, shown = 0, started
    try:
        for batch in mux.batches():  # the merge runs here, in this thread
            if writer is not None:
                for packet in batch:
                    writer.write(packet)
            count += len(batch)
            now = time.perf_counter()
            if now - shown >= 1.0 and now - started > 2.0:
                shown = now
                print(f"\rmerged {count:,} packets, {count / (now - started):,.0f}/s", end="", file=err, flush=True)
        if writer is not None:  # out of order in their own file by more than the reader's window
            for packet in mux.join().late_records:
                writer.write(packet)
    finally:
        if writer is not None:
            writer.close()
    if shown > started:
        print(file=err)
    summaries = [reader.join() for reader in readers]
    report = mux.join()
    elapsed = time.perf_counter() - started
    _print(out, summaries, report, count, elapsed, write)
    return 1 if report.late or any(s.damage for s in summaries) else 0


def _print(out: TextIO, summaries: list[CaptureSummary], report: Any, count: int, elapsed: float,
           write: Path | None) -> None:
    width = max([len(s.name) for s in summaries] + [8])
    print(f"{'file':<{width}} {'packets':>10} {'span s':>12} {'steps back':>10} {'damage':>7}", file=out)
    for s in summaries:
        print(f"{s.name:<{width}} {s.packets:>10,} {s.span_ns / 1e9:>12.6f} {s.steps_back:>10,} {len(s.damage):>7}",
              file=out)
    print(f"{'merged':<{width}} {count:>10,}" + (f"  -> {write}" if write else ""), file=out)
    for s in summaries:
        for damage in s.damage[:10]:
            print(f"damage {damage}", file=out)
    if report.late:
        where = "written after the merged packets" if write else "not in the merged stream"
        print(f"out of order in their file beyond the reorder window: {report.late:,} packets, {where}: "
              f"{report.out_of_order}", file=out)
    print(f"{len(summaries)} reader processes, {elapsed:.3f} s, {count / elapsed if elapsed else 0:,.0f} packets/s",
          file=out)
