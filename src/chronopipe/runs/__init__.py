"""Runs from YAML: consumers read sources into stages, producers load stages into sinks.

    chronopipe run pipeline.yml

A run is a list of *runners* (seed 003's ``config.yml``): each consumer reads its source (a
reader or source of chronopipe, by ``variety``) and puts batches of rows into its stage (a
folder of JSON-lines or Parquet files with a manifest); each producer loads the complete
batches of the consumers it ``depends_on`` into its sink (CSV, Parquet, a callable,
PostgreSQL), marks them done once the sink committed them, and only then lets them go. Batch
ids are content ids, and sinks are idempotent per batch id, so a rerun after a crash loads
each row exactly once. See docs/runs.md.

Layers inside: config, profiles (pydantic, PyYAML) -> varieties -> batch, stages, csvtable,
sinks, postgres (pyarrow, psycopg; imported when used) -> runners -> engine. The package sits
between the command line and capture (it hosts capture readers as consumers).
"""

from .engine import Run, RunnerSummary
from .runners import ConsumerRunner, ProducerRunner, as_row
from .varieties import CONSUMERS, PRODUCERS, VarietyError, accepted_options, resolve_import

__all__ = [
    "CONSUMERS",
    "PRODUCERS",
    "ConsumerRunner",
    "ProducerRunner",
    "Run",
    "RunnerSummary",
    "VarietyError",
    "accepted_options",
    "as_row",
    "resolve_import",
]
