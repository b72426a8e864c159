"""Driving checks as a validation run does, without actors: read, decode, merge by ts_ns, trigger.

``run_checks(paths, checks)`` reads each capture in this thread (CaptureReader, ``offset`` and
``source`` per file as a run gives them), decodes every packet, merges the files by timestamp
(``merge_sorted``, stable: ties in file order), triggers an EventManager the checks are
attached to, and returns ``{check name: CheckResult}``. ``run_records`` does the same for
records made here (``tcp_record`` builds one through ``decode``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from chronopipe import EventManager, merge_sorted
from chronopipe.capture import CaptureReader, CaptureSummary, decode
from chronopipe.capture.checks import Check, CheckResult

DATA = Path(__file__).parent / "data" / "captures"
T0 = 1_700_000_000_000_000_000


def run_records(records: Iterable[dict[str, Any]], checks: Sequence[Check],
                summaries: Sequence[CaptureSummary] = ()) -> dict[str, CheckResult]:
    events = EventManager(name="test", on_error="raise")
    for check in checks:
        check.attach(events)
    for record in records:
        events.trigger(record)
    return {check.name: check.result(list(summaries)) for check in checks}


def read_records(path: Path, source: str | None = None, offset: float | str = 0) -> tuple[list[dict[str, Any]],
                                                                                          CaptureSummary]:
    reader = CaptureReader(path, source=source, offset=offset)
    records = [decode(packet) for packet in reader]
    return records, reader.summary


def run_checks(paths: Sequence[Path], checks: Sequence[Check], *, sources: Sequence[str | None] | None = None,
               offsets: Sequence[float | str] | None = None) -> dict[str, CheckResult]:
    """The checks' results over ``paths`` merged by timestamp (``sources`` / ``offsets``: per path)."""
    sources = sources or [None] * len(paths)
    offsets = offsets or [0] * len(paths)
    read = [read_records(p, s, o) for p, s, o in zip(paths, sources, offsets, strict=True)]
    merged = merge_sorted(*(records for records, _ in read), key="ts_ns")
    return run_records(merged, checks, [summary for _, summary in read])


def tcp_record(seq: int, ack: int = 0, flags: str = "A", length: int = 0, *, ts_ms: float = 0, source: str = "tap",
               src: str = "10.0.0.1", sport: int = 40000, dst: str = "10.0.0.2", dport: int = 80, ttl: int = 64,
               mac: bytes = b"\x02\x00\x00\x00\x00\x01", ident: int = 1, index: int = 0) -> dict[str, Any]:
    """A decoded Ethernet/IPv4/TCP record; ``flags`` as letters (S, A, F, R, P), ``length`` payload bytes."""
    bits = sum({"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}[f] for f in flags)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, bits, 65535, 0, 0)
    payload = bytes(length)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + length, ident, 0, ttl, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    frame = b"\x02\x00\x00\x00\x00\xff" + mac + b"\x08\x00" + ip + tcp + payload
    return decode((T0 + round(ts_ms * 1_000_000), source, 0, index, len(frame), len(frame), 1, frame))
