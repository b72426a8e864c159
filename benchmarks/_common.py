"""What the benchmarks share: a timed run, a count check, paired-round ratios, medians and
target verdicts."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Run:
    records: int
    seconds: float
    peak_rss: int = 0
    rss_samples: int = 0

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def check_count(name: str, got: Any, expected: int) -> None:
    """A contender that lost or invented records is a failure, not a figure."""
    if got != expected:
        raise RuntimeError(f"{name}: counted {got!r} records, expected {expected}")


def _value(x: Run | float) -> float:
    return x.rate if isinstance(x, Run) else float(x)


def paired_ratio(a: Sequence[Run | float], b: Sequence[Run | float]) -> tuple[float, list[float]]:
    """``(median, per_round)`` of the ratios ``a[i] / b[i]``: a ``Run`` counts as its rate, a
    number as itself (a cost, a peak RSS).

    ``a[i]`` and ``b[i]`` must come from the same round, run back to back, so that each ratio
    compares two runs that saw about the same machine. The median of those per-round ratios is
    the figure a benchmark reports, never best over best (which lets one lucky run on either side
    pass a target). Rates rather than times are compared, so a contender that runs on a different
    number of records pairs with its neighbour per round all the same.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_ratio needs as many runs on each side, at least one: got {len(a)} and {len(b)}")
    per_round = [_value(x) / _value(y) for x, y in zip(a, b, strict=True)]
    return statistics.median(per_round), per_round


def median_rate(runs: Sequence[Run]) -> float:
    """The median rate of a contender's runs (the absolute figure the benchmarks report)."""
    return statistics.median(r.rate for r in runs)


def rounds_text(per_round: Sequence[float], digits: int = 2) -> str:
    """Per-round ratios for a table line: ``1.02, 0.97, 1.10``."""
    return ", ".join(f"{r:.{digits}f}" for r in per_round)


def target_verdict(targets: dict[str, tuple[float, str]], key: str, value: float) -> str:
    """``ok`` or ``MISS`` against ``targets[key] = (bound, "min" | "max")``."""
    bound, kind = targets[key]
    ok = value >= bound if kind == "min" else value <= bound
    sign = ">=" if kind == "min" else "<"
    return f"{'ok  ' if ok else 'MISS'} (target {sign} {bound:g})"


def finish(targets: dict[str, tuple[float, str]], summary: dict[str, Any], check: bool) -> int:
    """Print which targets were missed and, last, the JSON summary; the exit status (1 if
    ``check`` and a target was missed)."""
    missed = [key for key in targets if target_verdict(targets, key, summary[key]).startswith("MISS")]
    print("targets missed: " + (", ".join(missed) if missed else "none"))
    print(json.dumps(summary), flush=True)
    return 1 if check and missed else 0
