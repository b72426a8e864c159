"""Clock offsets between taps, from the packets two taps both saw.

The same packet (:func:`~chronopipe.capture.checks.dups.packet_key`: the IP packet with TTL and
checksum blanked) seen on tap A at ``ta`` and on tap B at ``tb``, at most ``window`` seconds
apart, gives one sample ``tb - ta`` for the pair (A, B), names in sorted order. The sample is
the difference of the two clocks plus the packet's travel time from one tap to the other, so
the median over many packets estimates the offset when the taps sit close together (or the
traffic crosses them both ways about equally). Per pair: packets matched, median, min and max
offset, and the median of |offset|, in nanoseconds.

Each packet is matched with the latest sighting of the same bytes on every other tap; packets
that repeat (retransmissions, IPv6 duplicate ACKs) may pair with the wrong copy now and then,
which the median ignores. Memory holds two windows of packets, as the duplicates check, and
per pair at most ``KEPT`` offsets: the count, min and max are exact; the medians are exact up
to ``KEPT`` matches and beyond come from a uniform sample of ``KEPT`` of them (reservoir
sampling, seeded, so a run gives the same figures every time; the rank error of a median of
65,536 samples is about 0.4%).
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..reader import seconds_to_ns
from .base import Check, CheckResult, Finding, Status
from .dups import KEY_FIELD, packet_key

if TYPE_CHECKING:
    from ...events import EventManager
    from ..reader import CaptureSummary

__all__ = ["KEPT", "ClockOffset", "OffsetSamples", "offset_stats"]

KEPT = 1 << 16  #: offsets kept per pair of taps for the medians


def offset_stats(samples: array[int] | list[int]) -> dict[str, int]:
    """Matched count, median (the lower one of an even count), min, max and median of |offset|.

    >>> offset_stats([5, -3, 250, 7])
    {'matched': 4, 'median_ns': 5, 'min_ns': -3, 'max_ns': 250, 'p50_abs_ns': 5}
    """
    ordered = sorted(samples)
    middle = (len(ordered) - 1) // 2
    return {"matched": len(ordered), "median_ns": ordered[middle], "min_ns": ordered[0], "max_ns": ordered[-1],
            "p50_abs_ns": sorted(map(abs, ordered))[middle]}


class OffsetSamples:
    """The offsets of one pair of taps, in bounded memory (see the module docstring).

    >>> few, many = OffsetSamples(), OffsetSamples(keep=100)
    >>> for offset in (5, -3, 250, 7):
    ...     few.add(offset)
    >>> few.stats() == offset_stats([5, -3, 250, 7])
    True
    >>> for offset in range(100_000):
    ...     many.add(offset)
    >>> stats = many.stats()
    >>> len(many.kept), stats["matched"], stats["min_ns"], stats["max_ns"], 40_000 < stats["median_ns"] < 60_000
    (100, 100000, 0, 99999, True)
    """

    __slots__ = ("count", "high", "keep", "kept", "low", "random")

    def __init__(self, keep: int = KEPT) -> None:
        self.keep = keep
        self.kept: array[int] = array("q")
        self.count = 0
        self.low = self.high = 0
        self.random = random.Random(0).random

    def add(self, offset: int) -> None:
        count = self.count = self.count + 1
        if count == 1:
            self.low = self.high = offset
        elif offset < self.low:
            self.low = offset
        elif offset > self.high:
            self.high = offset
        if count <= self.keep:
            self.kept.append(offset)
        else:  # Algorithm R: keep it with probability keep / count, in place of a random one
            slot = int(self.random() * count)
            if slot < self.keep:
                self.kept[slot] = offset

    def stats(self) -> dict[str, int]:
        """offset_stats of the kept sample, with the exact count, min and max."""
        return {**offset_stats(self.kept), "matched": self.count, "min_ns": self.low, "max_ns": self.high}

    def __getstate__(self) -> tuple[Any, ...]:  # slots, and a bound method: pickled by hand
        return self.keep, self.kept, self.count, self.low, self.high, self.random.__self__.getstate()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.keep, self.kept, self.count, self.low, self.high, generator = state
        rng = random.Random()
        rng.setstate(generator)
        self.random = rng.random


class ClockOffset(Check):
    """The clock offset of every pair of taps (see the module docstring).

    ``window``: seconds within which two sightings are the same packet (default 1 s: larger
    than any offset to find). ``tolerance``: the largest |median offset| that passes (default
    1 ms). ``min_matches``: a pair with fewer packets matched is not checkable (default 10).
    Fails when a checkable pair is off by more than the tolerance; not checkable when no pair is.
    """

    name = "clock"
    portable = True
    cost = 1.45

    def __init__(self, window: float | str = 1.0, tolerance: float | str = 0.001, min_matches: int = 10) -> None:
        super().__init__()
        self.window_ns = seconds_to_ns(window)
        self.tolerance_ns = seconds_to_ns(tolerance)
        self.min_matches = min_matches
        self.offsets: dict[tuple[str, str], OffsetSamples] = {}
        self.sources: dict[str, int] = {}  #: tap -> packets seen
        self._current: dict[int, Any] = {}  # key -> (ts, source), or {source: ts} once two taps saw it
        self._previous: dict[int, Any] = {}
        self._rotate_at: int | None = None

    def attach(self, events: EventManager) -> None:
        events.register(self._packet, None, {"name": "clock"})

    def _packet(self, record: dict[str, Any]) -> None:
        ts, source = record["ts_ns"], record["source"]
        sources = self.sources
        sources[source] = sources.get(source, 0) + 1
        current = self._current
        if self._rotate_at is None or ts >= self._rotate_at:
            self._previous, self._current = current, {}
            current = self._current
            self._rotate_at = ts + self.window_ns + 1
        key = record.get(KEY_FIELD) or packet_key(record)  # the duplicates check computed it, usually
        seen = current.get(key) or self._previous.get(key)
        if seen is None or (type(seen) is tuple and seen[1] == source):
            current[key] = (ts, source)
            return
        if type(seen) is tuple:
            seen = {seen[1]: seen[0]}
        for other, at in seen.items():
            if other != source and abs(ts - at) <= self.window_ns:
                self._match(other, at, source, ts)
        seen[source] = ts
        current[key] = seen

    def _match(self, a: str, ta: int, b: str, tb: int) -> None:
        pair, offset = ((a, b), tb - ta) if a < b else ((b, a), ta - tb)
        samples = self.offsets.get(pair)
        if samples is None:
            samples = self.offsets[pair] = OffsetSamples()
        samples.add(offset)

    def pairs(self, summaries: Sequence[CaptureSummary] = ()) -> dict[str, dict[str, int]]:
        """``"A~B"`` -> offset_stats (B's stamp minus A's) for every pair of taps, matched or not."""
        taps = sorted(set(self.sources) | {s.name for s in summaries})
        stats = {}
        for i, a in enumerate(taps):
            for b in taps[i + 1:]:
                samples = self.offsets.get((a, b))
                stats[f"{a}~{b}"] = samples.stats() if samples else {"matched": 0}
        return stats

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        pairs = self.pairs(summaries)
        counts: dict[str, Any] = {"pairs": pairs, "tolerance_ns": self.tolerance_ns, "window_ns": self.window_ns}
        if not pairs:
            return CheckResult(self.name, "not checkable", "fewer than two taps: no clock offset to estimate", counts)
        checkable = {p: s for p, s in pairs.items() if s["matched"] >= self.min_matches}
        if not checkable:
            most = max(s["matched"] for s in pairs.values())
            return CheckResult(self.name, "not checkable", f"no pair of taps saw {self.min_matches} packets in "
                               f"common within {self.window_ns / 1e9:g} s (at most {most})", counts)
        off = {p: s for p, s in checkable.items() if abs(s["median_ns"]) > self.tolerance_ns}
        examples = [Finding(p, 0, 0, f"median clock offset {s['median_ns'] / 1e6:+.3f} ms over {s['matched']} "
                                     f"packets (min {s['min_ns'] / 1e6:+.3f}, max {s['max_ns'] / 1e6:+.3f})")
                    for p, s in off.items()]
        shown = ", ".join(f"{p}: {s['median_ns'] / 1e6:+.3f} ms ({s['matched']} packets)" for p, s in checkable.items())
        summary = (f"{len(off)} of {len(checkable)} pairs of taps off by more than {self.tolerance_ns / 1e6:g} ms: "
                   if off else "clocks agree within tolerance: ") + shown
        status: Status = "fail" if off else "pass"
        return CheckResult(self.name, status, summary, counts, examples)
