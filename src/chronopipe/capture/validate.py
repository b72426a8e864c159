"""A validation run: read captures in parallel, merge by timestamp, decode, dispatch to checks.

::

    cap1.pcap --CaptureReader(process)--\\
    cap2.pcap --CaptureReader(process)---+--> SortedQueueMultiplexer -+-> decode --> EventManager --> checks
    cap3.pcapng-CaptureReader(process)--/        (by ts_ns)           |                (Conditions)
                                                                      +-> CheckHost(process): decode --> EventManager
                                                                                                    --> more checks

The checks are split across the main process and ``check_processes`` CheckHost processes
(default: one per core beyond the first, fewer than the portable checks), each decoding the
merged packets for its own checks (see :mod:`chronopipe.capture.checkhost`): the same report,
sooner. A rules file's callbacks run in the main process.

``validate(paths, checks=...)`` returns a :class:`Report`: per file what its reader found, per
check its verdict, counts and first examples, and the packet rate per tap over time (for the
HTML timeline). Checks come from :func:`~chronopipe.capture.rules.build_checks` and a rules file.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..actors.errors import ActorError
from ..channels import ChannelBroken
from ..events import EventManager
from ..multiplex import SortedQueueMultiplexer
from ..runtime import Runtime
from .checkhost import CheckHost, partition
from .checks.base import Check, CheckResult
from .decode import decode
from .reader import PACKET_KEY, CaptureReader, CaptureSummary

__all__ = ["Report", "validate"]

Samples = dict[str, list[tuple[int, int]]]  # source -> [(ts, packets)], one per batch

SCHEMA = "chronopipe.validate/1"
#: Longest a run waits for the runtime to report a check host whose inbox broke under it.
HOST_DEATH_WAIT = 2.0


@dataclass
class Report:
    """What a validation run found; ``as_dict()`` is the stable JSON schema (``SCHEMA``)."""

    files: list[CaptureSummary]
    checks: list[CheckResult]
    packets: int
    seconds: float
    late: int = 0  #: packets out of order beyond the readers' reorder window (not checked in place)
    timeline: dict[str, list[int]] = field(default_factory=dict)  #: source -> packets per bucket
    bucket_ns: int = 1_000_000_000
    start_ns: int | None = None
    #: source -> (start_ns, bucket_ns, packets per bucket) over that tap's own span (HTML panels)
    tap_timelines: dict[str, tuple[int, int, list[int]]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "passed": self.passed,
            "packets": self.packets,
            "seconds": round(self.seconds, 3),
            "packets_per_s": round(self.packets / self.seconds) if self.seconds else None,
            "late": self.late,
            "files": [{
                "name": s.name, "file": s.file, "packets": s.packets, "bytes": s.bytes, "first_ns": s.first_ns,
                "last_ns": s.last_ns, "span_s": s.span_ns / 1e9,
                "rate_pps": round(s.packets / (s.span_ns / 1e9), 1) if s.span_ns else None,
                "steps_back": s.steps_back, "worst_step_ns": s.worst_step_ns, "complete": s.complete,
                "damage": [{"offset": d.offset, "frame": d.frame, "reason": d.reason} for d in s.damage],
            } for s in self.files],
            "checks": [c.as_dict() for c in self.checks],
            "timeline": {"start_ns": self.start_ns, "bucket_ns": self.bucket_ns, "packets": self.timeline,
                         "taps": {source: {"start_ns": start, "bucket_ns": bucket, "packets": row}
                                  for source, (start, bucket, row) in self.tap_timelines.items()}},
        }


def validate(paths: Sequence[str | Path], checks: Sequence[Check], *, offsets: dict[Any, Any] | None = None,
             rules: Callable[[EventManager], Any] | None = None, scl_port: int | None = None,
             progress: Callable[[int, float], None] | None = None, buckets: int = 200,
             check_processes: int | None = None) -> Report:
    """Run ``checks`` over the captures ``paths`` merged by timestamp (see the module docstring)."""
    started = time.perf_counter()
    offsets = offsets or {}
    scl = _scl_decoder(scl_port) if scl_port else None
    decoder: Callable[[tuple[Any, ...]], dict[str, Any]] = decode if scl is None else lambda p: scl(decode(p))
    if check_processes is None:
        check_processes = default_check_processes(checks)
    here, *elsewhere = partition(checks, check_processes)
    events = EventManager(name="validate", on_error="raise")
    for check in here:
        check.attach(events)
    if rules is not None:
        rules(events)
    hosts: list[CheckHost] = []
    readers: list[CaptureReader] = []
    mux: SortedQueueMultiplexer | None = None
    try:
        hosts = [CheckHost(f"validate-checks-{i}", group, decoder) for i, group in enumerate(elsewhere, 1) if group]
        for host in hosts:
            host.start()
        mux = SortedQueueMultiplexer(sort_key=PACKET_KEY, name="validate-merge", max_late=sys.maxsize)
        readers = [CaptureReader(p, queue=mux.input_queue(), offset=offsets.get(Path(p), 0), start=True)
                   for p in paths]
        inboxes = [host.inbox for host in hosts]
        dispatch = events.dispatch

        def run_checks(packets: list[tuple[Any, ...]]) -> None:
            """Send the packets to the hosts, then decode and dispatch them here, each as its turn
            comes (the callbacks of one run before the next is decoded), keeping no results."""
            for inbox in inboxes:
                inbox.put_many(packets)  # type: ignore[union-attr]
            dispatch(map(decoder, packets))

        count, counts, stamps = _merge(mux, run_checks, progress, started)
        summaries = [reader.join() for reader in readers]
        merge = mux.join()
        run_checks(merge.late_records)  # checked too, out of place
        count += merge.late
        for inbox in inboxes:
            inbox.close()  # type: ignore[union-attr]
        for host in hosts:
            host.join()  # its on_result has put the state of its checks into ours
        if rules is not None:
            events.join()  # the rules' async callbacks still running: their findings are the report's too
    except BaseException as exc:  # a check raised, or Ctrl-C: no reader or host goes on without us
        died = _host_death(exc, hosts)  # before the cancel, which would take its place
        why = ActorError("validate", "Cancelled", f"the validation run stopped before its end ({type(exc).__name__})")
        Runtime().cancel([*hosts, *readers], why)
        error = died or exc
        if isinstance(error, ActorError) and mux is not None:
            mux.account(error, readers)
        if died is not None:
            raise died from None
        raise
    results = [check.result(summaries) for check in checks]
    start, bucket, timeline = _timeline(counts, summaries, buckets)
    return Report(summaries, results, count, time.perf_counter() - started, merge.late, timeline, bucket, start,
                  _tap_timelines(stamps, buckets))


def _host_death(exc: BaseException, hosts: Sequence[CheckHost]) -> ActorError | None:
    """The error of the check host whose death broke its inbox under us, when ``exc`` is that.

    Sending to a host that was just killed fails at once (a broken pipe), a millisecond before
    the runtime, which watches the process, has noticed the death and aborted the channel with
    the host's error: wait that long, and tell the host's story rather than the pipe's.
    """
    if not isinstance(exc, ChannelBroken) or isinstance(exc, ActorError):
        return None
    for host in hosts:
        if host.inbox is not None and str(exc).startswith(f"channel {host.inbox.name!r}"):
            host._done.wait(HOST_DEATH_WAIT)
            return host.error
    return None


def _merge(mux: SortedQueueMultiplexer, run_checks: Callable[[list[tuple[Any, ...]]], None],
           progress: Callable[[int, float], None] | None, started: float) -> tuple[int, Samples, dict[str, _Stamps]]:
    """Merge here, in this thread, checking each batch; how many packets, their samples and stamps."""
    count, shown = 0, started
    counts: Samples = {}
    stamps: dict[str, _Stamps] = {}
    for batch in mux.batches():
        run_checks(batch)
        if batch:
            count += len(batch)
            _sample(counts, batch)
            _stamp(stamps, batch)
            now = time.perf_counter()
            if progress is not None and now - shown >= 0.5:
                shown = now
                progress(count, now - started)
    return count, counts, stamps


def default_check_processes(checks: Sequence[Check]) -> int:
    """Check hosts for a run when not told: one per core this process may use beyond the first,
    fewer than the portable checks (a host with one cheap check costs more than it saves).

    >>> default_check_processes([]) == 0
    True
    """
    portable = sum(1 for c in checks if c.portable)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(cores - 1, portable - 1))


def _sample(counts: Samples, batch: list[tuple[Any, ...]]) -> None:
    """Packets per source in this batch, stamped with the batch's first timestamp (cheap, in C)."""
    per: dict[str, int] = {}
    for source in map(_SOURCE, batch):
        per[source] = per.get(source, 0) + 1
    first = batch[0][0]
    for source, n in per.items():
        counts.setdefault(source, []).append((first, n))


class _Stamps:
    """The timestamps of one tap's packets, every ``step``-th kept: at most ``LIMIT`` of them
    (``step`` doubles, every other one dropped, when full), so memory stays bounded."""

    LIMIT = 65_536

    def __init__(self) -> None:
        self.kept: list[int] = []  # not an array("q"): a capture may hold stamps past int64 nanoseconds
        self.step = 1
        self.seen = 0

    def add(self, stamps: list[int]) -> None:
        self.kept.extend(stamps[(-self.seen) % self.step::self.step])
        self.seen += len(stamps)
        while len(self.kept) > self.LIMIT:
            self.kept = self.kept[::2]
            self.step *= 2


def _stamp(stamps: dict[str, _Stamps], batch: list[tuple[Any, ...]]) -> None:
    """Keep the timestamps of this batch's packets, per source (for the taps' own timelines)."""
    source = batch[0][1]
    if batch[-1][1] == source and all(packet[1] == source for packet in batch):
        per = {source: [packet[0] for packet in batch]}
    else:
        per = {}
        for packet in batch:
            per.setdefault(packet[1], []).append(packet[0])
    for source, times in per.items():
        if source not in stamps:
            stamps[source] = _Stamps()
        stamps[source].add(times)


def _SOURCE(packet: tuple[Any, ...]) -> str:  # noqa: N802 (a getter, named like operator.itemgetter's results)
    return packet[1]


def _timeline(counts: Samples, summaries: list[CaptureSummary],
              buckets: int) -> tuple[int | None, int, dict[str, list[int]]]:
    firsts = [s.first_ns for s in summaries if s.first_ns is not None]
    lasts = [s.last_ns for s in summaries if s.last_ns is not None]
    if not firsts:
        return None, 1_000_000_000, {}
    start, end = min(firsts), max(lasts)
    bucket = max(1, (end - start) // buckets + 1)
    timeline = {}
    for source, samples in counts.items():
        row = [0] * buckets
        for ts, n in samples:
            row[min(buckets - 1, max(0, (ts - start) // bucket))] += n
        timeline[source] = row
    return start, bucket, timeline


def _tap_timelines(stamps: dict[str, _Stamps], buckets: int) -> dict[str, tuple[int, int, list[int]]]:
    """Per source, its packets in ``buckets`` buckets over its own first to last packet (fewer
    buckets for a few packets: 10, or one per two packets), every packet counted once."""
    rows = {}
    for source, kept in stamps.items():
        times = kept.kept
        start, span = min(times), max(times) - min(times)
        n = min(buckets, max(10, len(times) // 2))
        bucket = max(1, span // n + 1)
        row = [0] * n
        for ts in times:
            row[(ts - start) // bucket] += kept.step
        row[(times[-1] - start) // bucket] -= kept.step * len(times) - kept.seen  # the last stands for fewer
        rows[source] = (start, bucket, row)
    return rows


def _scl_decoder(port: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Payloads on ``port`` parsed as SCL text: record["scl"] = {key: value or {"value", children...}};
    returns the record."""
    from .. import scl

    def nest(statements: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in statements:
            out[s["key"]] = {"value": s["value"], **nest(s["children"])} if "children" in s else s["value"]
        return out

    def parse(record: dict[str, Any]) -> dict[str, Any]:
        l4 = record.get("tcp") or record.get("udp")
        if l4 is None or port not in (l4["sport"], l4["dport"]) or not record.get("payload"):
            return record
        try:
            record["scl"] = nest(scl.parse(record["payload"].decode("utf-8")))
        except (UnicodeDecodeError, scl.SCLSyntaxError) as exc:
            record["scl_error"] = str(exc).splitlines()[0]
        return record

    return parse
