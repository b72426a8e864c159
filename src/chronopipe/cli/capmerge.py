"""``chronopipe merge CAPTURE... [-w OUT] [--offset F=S] [--reorder SECONDS]``: merge captures as
mergecap does, one reader process per file, and report each file (packets, span, steps back, damage).

By default each file keeps its own order and the files are merged by timestamp, the earliest head
first, as mergecap merges (a packet that steps back in its file comes right after the one before
it): ``-w`` writes the packets ``mergecap -w`` writes, in its order, with the same bytes.
``reorder=SECONDS`` first puts back in time order the packets of a file at most that far behind
(CaptureReader's window) and merges the files in strict time order; a packet further out of place
is late, written after the merged packets.

Damage in a file is reported and never written as a packet; a packet whose timestamp the output
cannot hold is reported as damage of its file and not written; the rest is written. ``-w`` is
written under a temporary name and renamed into place only when the run ends (exit 0 or 1).
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from ..actors.errors import ActorError
from ..capture import PACKET_KEY, CaptureReader, CaptureSummary, CaptureWriter, Damage, UnwritableError, WriteError
from ..capture.reader import seconds_to_ns
from ..capture.stream import Stepped
from ..multiplex import SortedQueueMultiplexer
from ..runtime import Runtime
from .outputs import EXIT_FOUND, EXIT_OK, AtomicOutput, UsageError, check_inputs, check_outputs
from .progress import progress

__all__ = ["parse_offsets", "run_capture_merge"]

_MOST = 1 << 64  #: seconds: an offset this large moves every timestamp past what any capture format holds

def parse_offsets(items: list[str], paths: list[Path]) -> dict[Path, str]:
    """``FILE=SECONDS`` options to {path: seconds}; FILE is a path or a file name given.

    Raises:
        ValueError: one line naming the option: FILE is not one of ``paths``, or SECONDS is not a
            finite number, or one so large (2**64 s or more) that no timestamp it moves fits a capture.

    >>> parse_offsets(["b.pcap=-0.250"], [Path("x/a.pcap"), Path("x/b.pcap")])
    {PosixPath('x/b.pcap'): '-0.250'}
    >>> parse_offsets(["b.pcap=abc"], [Path("x/b.pcap")])
    Traceback (most recent call last):
    ...
    ValueError: --offset 'b.pcap=abc': SECONDS is a number of seconds, like -0.250
    >>> parse_offsets(["b.pcap=inf"], [Path("x/b.pcap")])
    Traceback (most recent call last):
    ...
    ValueError: --offset 'b.pcap=inf': SECONDS is a finite number of seconds, like -0.250
    """
    offsets = {}
    for item in items:
        name, sep, seconds = item.rpartition("=")
        matches = [p for p in paths if name in (str(p), p.name)]
        if not sep or len(matches) != 1:
            raise ValueError(f"--offset {item!r}: expected FILE=SECONDS with FILE one of the captures given")
        try:
            value = Decimal(seconds)
        except InvalidOperation:
            raise ValueError(f"--offset {item!r}: SECONDS is a number of seconds, like -0.250") from None
        if not value.is_finite():
            raise ValueError(f"--offset {item!r}: SECONDS is a finite number of seconds, like -0.250")
        if value.copy_abs() >= _MOST:
            raise ValueError(f"--offset {item!r}: SECONDS does not fit: no capture timestamp is {_MOST:,} s (2**64 s) "
                             "or more away from 1970")
        seconds_to_ns(seconds)
        offsets[matches[0]] = seconds
    return offsets


def run_capture_merge(paths: list[Path], *, write: Path | None = None, offsets: dict[Path, str] | None = None,
                      reorder: float | str | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Merge ``paths`` (see the module docstring); exit status 0, or 1 when a file was damaged or
    a packet came out late.

    Raises:
        UsageError: an input that cannot be read, ``write`` that is an input or cannot be
            written, a ``reorder`` that is not a number of seconds >= 0, packets the output
            format cannot hold (pcap: a second link type), or no packet in any input, every one
            of them damaged (empty, not a capture...); nothing is written then.
    """
    if reorder is not None:
        try:
            window = seconds_to_ns(reorder)
        except ValueError:
            window = -1
        if not 0 <= window < 2**32 * 1_000_000_000:
            raise UsageError(f"--reorder {reorder}: a window in seconds >= 0, like 0.01")
    check_inputs(paths)
    check_outputs({"-w": write}, paths)
    offsets = offsets or {}
    keyed = reorder is None
    started = time.perf_counter()
    mux = SortedQueueMultiplexer(sort_key=PACKET_KEY, name="merge", max_late=sys.maxsize)
    readers: list[CaptureReader] = []
    output = AtomicOutput(write) if write is not None else None
    writer: CaptureWriter | None = None
    lost: list[Damage] = []  # packets the output cannot hold
    try:
        readers = [CaptureReader(path, queue=mux.input_queue(), offset=offsets.get(path, 0),
                                 reorder=0 if keyed else reorder, keyed=keyed, blocks=write is not None, start=True)
                   for path in paths]
        writer = CaptureWriter(output.path) if output is not None else None
        count = _merge(mux, writer, lost, err)
        summaries = [reader.join() for reader in readers]
        report = mux.join()
        if writer is not None:
            _write(writer, report.late_records, lost)  # out of order in their file beyond the reorder window
            count -= writer.blocks
            writer.close()
        unread = all(s.packets == 0 and s.damage for s in summaries)  # every input damaged and none gave a packet
        if output is not None and not unread:
            output.commit()
    except BaseException as exc:  # a reader failed, the output cannot hold the packets, or Ctrl-C
        Runtime().cancel(readers, ActorError("merge", "Cancelled", f"the merge stopped ({type(exc).__name__})"))
        mux.account(exc, readers)
        if writer is not None:
            writer.close()
        if output is not None and output.discard():
            print(f"chronopipe merge: {write} not written", file=err)
        if isinstance(exc, WriteError):
            raise UsageError(f"-w {write}: {exc}") from None
        raise
    if unread:
        if output is not None:
            output.discard()
        names = "; ".join(f"{s.name}: {s.damage[0].reason}" for s in summaries)
        raise UsageError(f"no packet could be read: {names}" + (f" ({write} not written)" if write else ""))
    for damage in lost:
        next((s for s in summaries if s.name == damage.file), summaries[0]).damage.append(damage)
    _print(out, summaries, report, count, time.perf_counter() - started, write)
    return EXIT_FOUND if report.late or any(s.damage for s in summaries) else EXIT_OK


def _merge(mux: SortedQueueMultiplexer, writer: CaptureWriter | None, lost: list[Damage], err: TextIO) -> int:
    """Run the merge here, writing each batch; how many records came out."""
    count = 0
    with progress("packets", err=err) as bar:
        for batch in mux.batches():
            if writer is not None:
                _write(writer, batch, lost)
            count += len(batch)
            bar.update(len(batch))
    return count


def _write(writer: CaptureWriter, packets: list[tuple[Any, ...]], lost: list[Damage]) -> None:
    write = writer.write
    for packet in packets:
        try:
            write(packet)
        except UnwritableError as exc:
            packet = packet[1] if packet.__class__ is Stepped else packet
            lost.append(Damage(packet[1], -1, str(exc), packet[3], packet[0]))


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
        if len(s.damage) > 10:
            print(f"damage {s.name}: {len(s.damage) - 10:,} more", file=out)
    if report.late:
        where = "written after the merged packets" if write else "not in the merged stream"
        print(f"out of order in their file beyond the reorder window: {report.late:,} packets, {where}: "
              f"{report.out_of_order}", file=out)
    print(f"{len(summaries)} reader processes, {elapsed:.3f} s, {count / elapsed if elapsed else 0:,.0f} packets/s",
          file=out)
