"""What the benchmarks share: a timed run, a count check, best-of-N and target verdicts."""

from __future__ import annotations

import json
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


def best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


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
