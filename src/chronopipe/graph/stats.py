"""What a pipeline's ``statistics()`` returns: its last run, node by node, in one line too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NodeStatistics", "PipelineStatistics"]

_KEPT = ("confirm", "track")  # the guarantees whose failing records are counted as failed, not dead-lettered


@dataclass(frozen=True)
class NodeStatistics:
    """One node in the last run (counts are summed over its workers; None in sync mode)."""

    name: str
    mode: str
    workers: int
    received: int | None
    sent: int | None
    state: str
    retried: int = 0  # attempts after the first, under guarantee="replay"
    dead_lettered: int = 0  # records given up on and sent to the dead-letter sink
    restarts: int = 0  # worker processes started again after one died (guarantee="replay")
    duplicates_possible: int = 0  # records a dead worker may have sent on before the new one did again
    dropped: int = 0  # a merge's: copies of records a restarted branch sent again, dropped (kept in order)
    failed: int = 0  # records whose process() raised, under "confirm" or "track" (the run went on)
    guarantee: str = "none"  # the node's own, or the pipeline's


@dataclass(frozen=True)
class PipelineStatistics:
    """The last run of a pipeline: its mode, how long it ran, and its nodes in top-down order;
    the retries and dead letters of all nodes, and where the letters went (None: no sink)."""

    mode: str
    state: str
    seconds: float | None
    nodes: tuple[NodeStatistics, ...]
    retried: int = 0
    dead_lettered: int = 0
    dead_letters: str | None = None
    restarts: int = 0
    duplicates_possible: int = 0
    fed: int | None = None  # under acks: records of the source fed (counting those a resumed run skipped)
    confirmed: int | None = None  # under acks: of those, how many every terminal node finished with
    failed: int = 0  # records whose process() raised under "confirm" / "track", all nodes
    failures: tuple[Any, ...] = ()  # under "track": the last of them (DeadLetter: node, error, traceback, record)
    resumed_at: int | None = None  # with a state_dir: the records an earlier run confirmed (skipped)

    @property
    def unconfirmed(self) -> range:
        """The offsets in the source of the records fed and not confirmed (empty without acks)."""
        if self.fed is None or self.confirmed is None:
            return range(0)
        return range(self.confirmed, self.fed)

    @property
    def summary(self) -> str:
        """One line: per node whose records were counted, ``in = handled + dead-lettered``
        (nothing is lost silently), then how many letters went where.

        >>> node = NodeStatistics("parse", "threads", 1, 10, 9, "finished", retried=3, dead_lettered=1)
        >>> PipelineStatistics("threads", "finished", 0.5, (node,), 3, 1, "dl.jsonl").summary
        'finished: parse 10 in = 9 handled + 1 dead-lettered (3 retries); 1 dead letter in dl.jsonl'
        """
        parts = [_node_text(n) for n in self.nodes if n.received is not None]
        if self.failed:
            parts.append(f"{self.failed:,} record{'' if self.failed == 1 else 's'} failed"
                         + (f" (the last {len(self.failures):,} in statistics().failures)" if self.failures else ""))
        if self.fed is not None and self.confirmed is not None:
            parts.append(_acks_text(self))
        if self.restarts:
            again = sum(n.duplicates_possible for n in self.nodes)  # (the resume's are said with it)
            parts.append(f"{self.restarts:,} worker restart{'' if self.restarts == 1 else 's'} "
                         f"(up to {again:,} records sent on twice)")
        if self.dead_letters is not None:
            plural = "" if self.dead_lettered == 1 else "s"
            parts.append(f"{self.dead_lettered:,} dead letter{plural} in {self.dead_letters}")
        return f"{self.state}: " + "; ".join(parts or ["no counts in this mode"])


def _node_text(n: NodeStatistics) -> str:
    """``parse 10 in = 9 handled + 1 dead-lettered (3 retries)``: what became of a node's records.

    >>> _node_text(NodeStatistics("load", "threads", 1, 10, 10, "finished"))
    'load 10 in = 10 handled'
    """
    assert n.received is not None
    text = f"{n.name} {n.received:,} in = {n.received - n.dead_lettered - n.dropped - n.failed:,} handled"
    if n.guarantee in _KEPT or n.failed:
        text += f" + {n.failed:,} failed"
    if n.guarantee == "replay" or n.dead_lettered:
        text += f" + {n.dead_lettered:,} dead-lettered"
    if n.dropped:
        text += f" + {n.dropped:,} dropped as repeats"
    if n.retried:
        text += f" ({n.retried:,} retr{'y' if n.retried == 1 else 'ies'})"
    return text


def _acks_text(stats: PipelineStatistics) -> str:
    """The acknowledgements' part of a summary.

    >>> stats = PipelineStatistics("threads", "failed", 1.0, (), fed=5000, confirmed=3000, resumed_at=1000,
    ...                            duplicates_possible=4000)
    >>> for part in _acks_text(stats).split("; "): print(part)
    resumed after record 1,000 (up to 4,000 records handled twice)
    5,000 fed, 3,000 confirmed (records 3,000 to 4,999 not confirmed)
    """
    assert stats.fed is not None and stats.confirmed is not None
    text = ""
    if stats.resumed_at is not None:
        again = stats.duplicates_possible - sum(n.duplicates_possible for n in stats.nodes)
        text = f"resumed after record {stats.resumed_at:,} (up to {again:,} records handled twice); "
    text += f"{stats.fed:,} fed, {stats.confirmed:,} confirmed"
    if stats.unconfirmed:
        text += f" (records {stats.unconfirmed.start:,} to {stats.unconfirmed.stop - 1:,} not confirmed)"
    return text
