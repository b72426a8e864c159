"""The ``push`` consumer variety: records a client sends to a live run through its control API.

A consumer ``variety: push`` reads a :class:`~chronopipe.control.inputs.PushInput` named after
the consumer (option ``maxsize``, default 10,000 records held, not yet read by the consumer).
``chronopipe run pipeline.yml --control HOST:PORT`` serves it: ``POST /push {"input": "<consumer
name>", "records": [...]}`` puts the records into it, all or none (429 when they do not all fit,
409 once it is closed, 404 for a name that is no push consumer), and the consumer stages them as
any consumer stages its source's records: ``batch_configuration.size`` rows a batch, a partial
batch cut after ``seconds``. A record that is a JSON object is a row as it is; any other value
(a number, a string, a list, null) is staged as ``{"value": record}``, as every consumer does
with such records (:func:`~chronopipe.runs.runners.as_row`): neither a reject nor a 400.

The records arrive in the process serving the control API, so a push consumer runs as a thread
(``mode: process`` is a config error); the input is made by the :class:`~.engine.Run`, in that
process, before any runner starts, so records pushed while the run starts are held, not refused.
``POST /stop`` (or a first Ctrl-C) closes the push inputs: each consumer reads what its input
still holds, stages it, and ends; nothing accepted is lost. A run with a push consumer and no
``--control`` is refused before anything runs (nothing could ever feed it, nor end it but a
signal). What a push consumer stages is new on every run, as a live source's is: a rerun numbers
its batches after the last one staged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a push consumer is made: a run without one does without the control package
    from ..control.inputs import PushInput

__all__ = ["MAXSIZE", "PUSH", "push_input", "push_names", "unfed"]

#: the variety's name
PUSH = "push"
#: records a push input holds by default before it refuses more (429)
MAXSIZE = 10_000


def push_input(name: str, maxsize: int = MAXSIZE) -> PushInput:
    """The source of a push consumer: an empty PushInput named after the consumer.

    Raises:
        ValueError: ``maxsize`` is not a whole number >= 1.

    >>> push_input("orders", maxsize=5)
    PushInput('orders', open, 0/5 held)
    """
    if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
        raise ValueError(f"maxsize must be a whole number >= 1 (records), not {maxsize!r}")
    from ..control.inputs import PushInput

    return PushInput(name, maxsize=maxsize)


def push_names(runners: Iterable[Any]) -> list[str]:
    """The names of the push consumers among ``runners`` (configs), in their order."""
    return [r.name for r in runners if r.type == "consumer" and r.variety == PUSH]


def unfed(config: Any) -> str | None:
    """Why ``config`` cannot run without a control API (one line at the first push consumer's
    variety), or None when it has no push consumer.

    >>> from chronopipe.runs.config import parse_config
    >>> config = parse_config("runners: [{name: a, type: consumer, variety: push, stage: {type: local, path: s}}]",
    ...                       source="pipeline.yml")
    >>> unfed(config).split(": a push")[0]
    'pipeline.yml:1:46: runners[0].variety'
    """
    for index, runner in enumerate(config.runners):
        if runner.type == "consumer" and runner.variety == PUSH:
            return (f"{config.where(('runners', index, 'variety'))}: a push consumer takes its records from the "
                    "control API alone: run with --control HOST:PORT")
    return None
