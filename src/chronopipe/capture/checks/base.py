"""What a check is: callbacks on the EventManager that watch decoded packets, then a verdict.

A check registers its callbacks (each with a Condition) on the run's EventManager, sees the
decoded records of every capture merged in timestamp order, and at the end returns a
:class:`CheckResult`: pass, fail or not checkable, its counts, and the first examples as
:class:`Finding` (file, frame, timestamp, what). Checks are parameterised by their keyword
arguments (from the rules file) and never print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from ...events import EventManager
    from ..reader import CaptureSummary

__all__ = ["Check", "CheckResult", "Finding", "Status"]

Status = Literal["pass", "fail", "not checkable"]
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class Finding:
    """One thing a check found, where: ``file:frame`` and its timestamp.

    >>> str(Finding("tapA.pcap", 12, 1_700_000_000_000_000_001, "retransmission of 10.0.0.1:80 seq 1000"))
    'tapA.pcap:12 @1700000000.000000001: retransmission of 10.0.0.1:80 seq 1000'
    """

    file: str
    frame: int
    ts_ns: int
    what: str

    def __str__(self) -> str:
        seconds, nanos = divmod(self.ts_ns, 1_000_000_000)
        return f"{self.file}:{self.frame} @{seconds}.{nanos:09d}: {self.what}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "frame": self.frame, "ts_ns": self.ts_ns, "what": self.what}


@dataclass
class CheckResult:
    name: str
    status: Status
    summary: str  #: one line a person reads
    counts: dict[str, Any] = field(default_factory=dict)
    examples: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "counts": self.counts,
                "examples": [f.as_dict() for f in self.examples]}


class Check:
    """Base class: subclasses set ``name``, register callbacks in ``attach`` and judge in ``result``."""

    name: ClassVar[str] = "check"
    #: its callbacks may run in another process (see chronopipe.capture.checkhost): it keeps its
    #: state in itself (which dill can pickle, to bring it back), reports only through
    #: ``result()`` and shares no object with the caller or another check
    portable: ClassVar[bool] = False
    #: what it costs per packet (microseconds on the benchmark's taps), to balance processes
    cost: ClassVar[float] = 1.0

    def __init__(self) -> None:
        self.examples: list[Finding] = []

    def attach(self, events: EventManager) -> None:
        """Register this check's callbacks (with their Conditions) on ``events``."""

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        raise NotImplementedError

    def note(self, record: dict[str, Any], what: str) -> None:
        """Keep an example (the first MAX_EXAMPLES)."""
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(Finding(record["source"], record["index"], record["ts_ns"], what))

    def note_at(self, file: str, frame: int, ts_ns: int, what: str) -> None:
        """``note``, for a packet whose record is no longer kept."""
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(Finding(file, frame, ts_ns, what))
