"""A runner's live figures: its ``figures`` counters also in shared memory, read live by the parent.

A runner counts in ``runner.figures`` (a dict: the run's summary); with ``mode: process`` that dict
lives in the child and comes back only when the runner ends. So each runner also has a
:class:`RunnerCounts` (``runner.live``), made in its ``__init__``, in the parent before any fork:
the runner copies its ``records``, ``rows``, ``batches`` and ``skipped`` figures there once per
batch (and once per chunk it reads, and at its end) with :meth:`LiveFigures._publish`, and
:meth:`LiveFigures.figures_now` gives, in the parent, the figures so far of a thread and a process
runner alike.
"""

from __future__ import annotations

from typing import Any

from ..runtime.counts import SharedInts

__all__ = ["LiveFigures", "RunnerCounts"]


class RunnerCounts(SharedInts, fields=("records", "rows", "batches", "skipped")):
    """A runner's live counts (int64 in shared memory).

    >>> c = RunnerCounts(); c.rows += 5; (c.records, c.rows)
    (0, 5)
    """

    __slots__ = ()
    records: int
    rows: int
    batches: int
    skipped: int


class LiveFigures:
    """Mixin of the runners (before ``Actor``): ``live`` next to ``figures``, and ``on_result``."""

    figures: dict[str, Any]
    live: RunnerCounts
    state: str

    def _publish(self) -> None:
        """Copy the counted figures into ``live`` (where the runner runs; once per batch, not per row)."""
        live, figures = self.live, self.figures
        for name in RunnerCounts.fields:
            if name in figures:
                setattr(live, name, figures[name])

    def figures_now(self) -> dict[str, Any]:
        """The figures so far (in the parent): while the runner runs, its counted ones from ``live``
        (a process runner's dict is in its process), else its figures as it returned them."""
        figures = dict(self.figures)
        if self.state == "running":
            live = self.live
            figures.update({name: int(getattr(live, name)) for name in RunnerCounts.fields if name in figures})
        return figures

    def on_result(self, result: Any) -> None:
        if isinstance(result, dict):
            self.figures = result
