"""Runners: a run's consumers and producers, each one actor (on a thread, or in a process).

A :class:`ConsumerRunner` reads its source (its variety), cuts the records into batches of
``batch_configuration.size`` rows (a partial batch is also cut after ``seconds`` of waiting, for
live sources, and at the end), puts each batch into its stage, and tells the producers that
depend on it, one message per complete batch on their inbox channels. A
:class:`ProducerRunner` first loads the complete batches an earlier run left in its consumers'
stages, then each batch it is told of, and at the end sweeps the stages once more: for each,
``sink.write(batch)`` (which commits), then the done mark, then the file is released (deleted
once every producer of that consumer marked it done, unless the stage keeps its files).

Batch ids are content ids (consumer, sequence number, rows): reading the same input again
makes the same batches, which the stage does not store twice and a sink does not load twice.
So a run killed at any point and started again ends with each row loaded exactly once.

For implementors of new runner kinds, the actor hooks run as for every actor: ``on_start``,
``run``/``on_receive`` and ``on_stop`` in the runner's own thread or process; ``on_stop``'s
dict of figures is what ``join()`` returns, also from a process; ``figures_now()`` gives them
live, from a process too (the counts in shared memory: tally.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..actors import Actor
from ..channels import END, Channel
from .intake import POLL, Pump, recut
from .tally import LiveFigures, RunnerCounts

__all__ = ["ConsumerRunner", "InputChanged", "ProducerRunner", "as_row"]


def as_row(record: Any) -> dict[str, Any] | None:
    """The stage row of one record: a dict as it is, a dataclass or named tuple as a dict,
    anything else as ``{"value": record}``; None for a source's gap or pause marker.

    >>> as_row({"a": 1}), as_row(("x", 2)), as_row(3)
    ({'a': 1}, {'value': ('x', 2)}, {'value': 3})
    """
    if type(record) is dict:
        return record
    kind = type(record)
    if kind.__name__ == "Marker" and kind.__module__.startswith("chronopipe."):  # not a class of yours so named
        return None
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    if hasattr(record, "_asdict"):
        return dict(record._asdict())
    if isinstance(record, Mapping):
        return dict(record)
    return {"value": record}


#: consumers whose source gives the same records again when read again (a file): a rerun checks
#: that the batches an earlier run staged come again, and fails if the input changed
REREAD = frozenset({"csv", "file", "capture"})
#: consumers of live sources: what they read is new; a rerun numbers its batches after the last
LIVE = frozenset({"socket", "websocket", "tcp-server", "tcp-client", "udp", "http", "interval", "cron",
                  "follow", "stdin", "push"})


class InputChanged(Exception):  # noqa: N818 (what happened, not whose fault)
    """A consumer's input is not what an earlier run staged from it (exactly once would break)."""


class ConsumerRunner(LiveFigures, Actor):
    """One consumer: its source into its stage, batch by batch (see the module docstring).

    A rerun resumes: the batches an earlier run staged for this consumer are cut again at the
    same rows, in order, and must come out the same (same content id), so they are neither
    staged nor loaded twice; the rows after them make new batches, numbered after the last.
    A file whose rows changed fails the run (:class:`InputChanged`); a generator or a class of
    yours that gives other rows this time gives new rows, numbered after the earlier ones. A
    live source's rows are new: its batches are numbered after the last one staged.
    """

    def __init__(self, name: str, *, variety: str, options: Mapping[str, Any], base: Path, stage: Mapping[str, Any],
                 size: int, seconds: float | None = None, outputs: Iterable[Channel] = (),
                 mode: Any = "thread", source: Any = None) -> None:
        super().__init__(name, mode=mode, outputs=list(outputs))
        self.variety, self.options, self.base = variety, dict(options), base
        self.source = source  # made by the run, in its process (a push input), else by run()
        self.stage_spec, self.size, self.seconds = dict(stage), size, seconds
        self.limit: int | None = self.options.get("limit")
        self.figures: dict[str, Any] = {"records": 0, "rows": 0, "batches": 0, "skipped": 0, "markers": 0,
                                        "over_limit": 0, "rejected": 0, "late": 0, "errors": 0, "rejects": []}
        self.live = RunnerCounts()  # here, in the parent: its figures live, from its process too (tally.py)
        self._began = 0.0

    # -- in the runner's thread or process ---------------------------------------------
    def run(self) -> None:
        from .stages import open_stage
        from .varieties import make_source, row_maker

        self._began = time.monotonic()
        self._stage = open_stage(self.stage_spec["type"], self.stage_spec["path"],
                                 keep=self.stage_spec.get("keep", False))
        earlier = sorted(self._stage.complete([self.name]), key=lambda ref: ref.seq)
        self._after = max((ref.seq for ref in earlier), default=-1) + 1  # the first number no batch has
        self._plan = deque([] if self.variety in LIVE else earlier)  # to cut again, in order
        self._seq = self._after if self.variety in LIVE else 0
        options = self.options
        if self.variety == "csv" and self._plan:  # the types of what was staged, not inferred again
            options = {"column_types": self._staged_types(), **options}
        source = self.source if self.source is not None else make_source(
            self.variety, options, name=self.name, base=self.base, size=self.size)
        self._row = row_maker(self.variety)
        if type(source).__name__ == "CSVBatches":
            self._tables(source)
        elif isinstance(source, Actor):
            self._read_hosted(source)
        else:
            self._rows(self._limited(iter(source)))
        self._account(source)

    def _schema_file(self) -> Path:
        """Where the Arrow schema of this consumer's staged batches is kept (a rerun reads it)."""
        return Path(self.stage_spec["path"]) / f".{self.name}.schema"

    def _staged_types(self) -> dict[str, Any]:
        """The column types of the batches an earlier run staged: a file whose rows are read again
        gets them, not types inferred again from other rows (which would change the batches' ids)."""
        import pyarrow as pa

        try:
            schema = pa.ipc.read_schema(pa.py_buffer(self._schema_file().read_bytes()))
        except (OSError, pa.ArrowInvalid):
            return {}
        return {field.name: field.type for field in schema}

    def _keep_schema(self, batch: Any) -> None:
        """Keep the schema of the first Arrow batch staged (written whole, then renamed)."""
        import os

        path = self._schema_file()
        if not path.exists():
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            tmp.write_bytes(batch.table.schema.serialize().to_pybytes())
            os.replace(tmp, path)

    def _target(self) -> int:
        """The rows of the next batch: where an earlier run cut, else ``size``."""
        return self._plan[0].rows if self._plan else self.size

    def _tables(self, source: Any) -> None:
        """A source of Arrow tables (CSVBatches): cut again only where an earlier run cut elsewhere."""
        from .batch import Batch

        for table in recut(source, self._target):
            self.figures["records"] += table.num_rows
            self._put(Batch(table))
            if self.stopping:
                source.stop() if hasattr(source, "stop") else None
                break
        self._end([])  # a file that ends before the rows an earlier run staged from it has changed

    def _rows(self, records: Iterator[Any]) -> None:
        """A plain iterable (generator, a class of yours), read by a Pump: a partial batch is cut
        after ``seconds``, and a stop is seen within POLL even while the iterable waits for its
        next record; what was read by then is staged. An error of the iterable is raised here."""
        pump = Pump(records, name=self.name, stopping=lambda: self.stopping, high=max(self.size, 1000)).start()
        pending: list[dict[str, Any]] = []
        first_at = 0.0
        while not pump.ended:
            wait = POLL
            if pending and self.seconds is not None:
                wait = max(0.0, min(POLL, first_at + self.seconds - time.monotonic()))
            taken = pump.take(wait)
            if taken and not pending:
                first_at = time.monotonic()
            for record in taken:
                self._take(record, pending)
            self._publish()
            if pending and self._timed() and time.monotonic() - first_at >= self.seconds:
                self._cut(pending)
            if self.stopping:
                for record in pump.take(0.0):  # what it read by now is staged too
                    self._take(record, pending)
                break
        self._end(pending)
        if pump.ended and pump.error is not None:
            raise pump.error

    def _limited(self, records: Iterator[Any]) -> Iterator[Any]:
        for count, record in enumerate(records, 1):
            yield record
            if self.limit is not None and count >= self.limit:
                return

    def _read_hosted(self, source: Any) -> None:
        """A reader or source: hosted on a thread of ours, its queue read with a timeout so a
        partial batch is cut after ``seconds`` and a stop is passed on within POLL."""
        source.start()
        queue, pending, first_at, asked = source.queue, [], 0.0, False
        try:
            while True:
                if (self.stopping or self._over()) and not asked:
                    source.stop()
                    asked = True
                wait = POLL
                if pending and self.seconds is not None:
                    wait = max(0.0, min(POLL, first_at + self.seconds - time.monotonic()))
                try:
                    batch = queue.get_batch(wait)
                except TimeoutError:
                    batch = []
                ended = bool(batch) and batch[-1] is END
                for record in batch[:-1] if ended else batch:
                    if not pending:
                        first_at = time.monotonic()
                    self._take(record, pending)
                self._publish()
                if pending and self._timed() and time.monotonic() - first_at >= self.seconds:
                    self._cut(pending)
                if ended:
                    break
            self._end(pending)
        finally:
            if not asked:
                source.stop()
            source.join(timeout=30.0)

    def _over(self) -> bool:
        return self.limit is not None and self.figures["rows"] + self.figures["markers"] >= self.limit

    def _take(self, record: Any, pending: list[dict[str, Any]]) -> None:
        self.figures["records"] += 1
        row = self._row(record)
        if row is None:
            self.figures["markers"] += 1
            return
        if self.limit is not None and self.figures["rows"] + len(pending) >= self.limit:
            self.figures["over_limit"] += 1  # arrived before the source saw our stop
            return
        pending.append(row)
        if len(pending) >= self._target():
            self._cut(pending)

    def _timed(self) -> bool:
        """Whether a partial batch is cut after ``seconds``: not while cutting again where an
        earlier run cut (the batch would differ from the one staged)."""
        return self.seconds is not None and not self._plan

    def _end(self, pending: list[dict[str, Any]]) -> None:
        """The source ended or the runner stops: stage what is pending, unless an earlier run
        staged more of this consumer than was read again. Then what is pending is the start of a
        batch staged whole already (a stop mid-replay; a generator giving fewer rows this time),
        and a file that ended before its staged rows did has changed."""
        if not self._plan:
            self._cut(pending)
            return
        if self.variety in REREAD and not (self.stopping or self._over()):
            raise InputChanged(f"{self.name}: the input changed since an earlier run staged it (it ends before "
                               f"batch {self._plan[0].seq}): give the consumer a new stage folder to load it again")
        self.figures["rows"] += len(pending)  # in the stage already, in the earlier run's batch
        pending.clear()

    def _cut(self, pending: list[dict[str, Any]]) -> None:
        if pending:
            from .batch import Batch

            self._put(Batch(list(pending)))
            pending.clear()

    def _put(self, batch: Any) -> None:
        from .batch import content_id

        batch.consumer, batch.seq = self.name, self._seq
        batch.id = content_id(self.name, self._seq, batch)
        if self._plan:
            staged = self._plan.popleft()
            if batch.id != staged.id:  # not the rows the earlier run staged as this batch
                if self.variety in REREAD:
                    raise InputChanged(
                        f"{self.name}: the input changed since an earlier run staged it (batch {staged.seq}, "
                        f"{staged.rows:,} rows, differs): give the consumer a new stage folder to load it again")
                self._plan.clear()  # new rows: numbered after the earlier run's batches
                batch.seq = self._seq = self._after
                batch.id = content_id(self.name, self._seq, batch)
        self._seq += 1
        if batch.arrow and self._seq == 1:
            self._keep_schema(batch)
        if self._stage.put(batch):
            self.figures["batches"] += 1
        else:
            self.figures["skipped"] += 1  # staged by an earlier run already
        self.figures["rows"] += batch.num_rows
        self._publish()
        self.emit({"batch": batch.id, "consumer": self.name, "seq": batch.seq, "rows": batch.num_rows})
        self.flush()

    def _account(self, source: Any) -> None:
        stats = source.statistics() if hasattr(source, "statistics") else None
        get = (lambda key: stats.get(key, 0)) if isinstance(stats, dict) else (lambda key: getattr(stats, key, 0))
        for key in ("rejected", "late", "errors"):
            self.figures[key] = get(key) or 0
        rejects = getattr(source, "rejects", None) or []
        self.figures["rejects"] = [str(r) for r in list(rejects)[:20]]

    def on_stop(self) -> dict[str, Any]:
        self.figures["seconds"] = time.monotonic() - self._began if self._began else 0.0
        self._publish()
        return dict(self.figures)


class ProducerRunner(LiveFigures, Actor):
    """One producer: its consumers' complete batches into its sink (see the module docstring)."""

    def __init__(self, name: str, *, variety: str, options: Mapping[str, Any], base: Path,
                 stages: Mapping[str, Mapping[str, Any]], producers_of: Mapping[str, list[str]], inbox: Channel,
                 profile: Any = None, mode: Any = "thread") -> None:
        super().__init__(name, inbox=inbox, mode=mode)
        self.variety, self.options, self.base, self.profile = variety, dict(options), base, profile
        self.stage_specs, self.producers_of = {k: dict(v) for k, v in stages.items()}, dict(producers_of)
        self.figures: dict[str, Any] = {"rows": 0, "batches": 0, "skipped": 0, "seconds": 0.0}
        self.live = RunnerCounts()  # here, in the parent: its figures live, from its process too (tally.py)
        self._sink: Any = None
        self._began = 0.0

    def on_start(self) -> None:
        from .stages import open_stage
        from .varieties import make_sink

        self._began = time.monotonic()
        self._stages = {consumer: open_stage(spec["type"], spec["path"], keep=spec.get("keep", False))
                        for consumer, spec in self.stage_specs.items()}
        self._loaded: set[str] = set()
        for stage in self._stages.values():
            self._loaded |= stage.done(self.name)
        self._before = frozenset(self._loaded)  # what earlier runs loaded
        self._sink = make_sink(self.variety, self.options, base=self.base, profile=self.profile)
        self._sink.open()
        self._sweep()  # what an earlier run staged and did not load

    def on_receive(self, message: dict[str, Any]) -> None:
        if self.stopping:  # told to stop at once: what is left stays staged for the next run
            return
        if message["batch"] in self._loaded:
            if message["batch"] in self._before:
                self.figures["skipped"] += 1  # loaded by an earlier run (not: by our start-up sweep)
                self._publish()
            return
        self._load(message["consumer"], message["batch"])

    def _sweep(self) -> None:
        for consumer, stage in self._stages.items():
            for ref in stage.complete([consumer]):
                self._load(consumer, ref.id)

    def _load(self, consumer: str, batch_id: str) -> None:
        if batch_id in self._loaded:
            return
        stage = self._stages[consumer]
        batch = stage.load(batch_id)
        written = self._sink.write(batch)
        self.figures["rows"] += written
        self.figures["batches" if written or not batch.num_rows else "skipped"] += 1
        self._publish()
        stage.mark_done(self.name, batch_id)  # only now: the sink has committed it
        self._loaded.add(batch_id)
        stage.release(batch_id, self.producers_of.get(consumer, [self.name]))
        self.counts.emitted += 1

    def on_stop(self) -> dict[str, Any]:
        try:
            if not self.stopping:
                self._sweep()  # anything staged while we started up and not announced twice
        finally:
            self._close()
        self.figures["seconds"] = time.monotonic() - self._began if self._began else 0.0
        stats = getattr(self._sink, "statistics", None)
        self.figures["sink"] = stats() if callable(stats) else {}
        return dict(self.figures)

    def on_failure(self, exc: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()
