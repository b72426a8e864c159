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
dict of figures is what ``join()`` returns, also from a process.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..actors import Actor
from ..channels import END, Channel

__all__ = ["ConsumerRunner", "ProducerRunner", "as_row"]

POLL = 0.1  # seconds: how often a waiting consumer looks at its stop flag and its batch's age


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


_END_OF_ROWS = object()  # a live iterable's helper thread: the iterable ended


class _Raised:
    """A live iterable's helper thread: the iterable raised ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ConsumerRunner(Actor):
    """One consumer: its source into its stage, batch by batch (see the module docstring)."""

    def __init__(self, name: str, *, variety: str, options: Mapping[str, Any], base: Path, stage: Mapping[str, Any],
                 size: int, seconds: float | None = None, outputs: Iterable[Channel] = (),
                 mode: Any = "thread") -> None:
        super().__init__(name, mode=mode, outputs=list(outputs))
        self.variety, self.options, self.base = variety, dict(options), base
        self.stage_spec, self.size, self.seconds = dict(stage), size, seconds
        self.limit: int | None = self.options.get("limit")
        self.figures: dict[str, Any] = {"records": 0, "rows": 0, "batches": 0, "skipped": 0, "markers": 0,
                                        "over_limit": 0, "rejected": 0, "late": 0, "errors": 0, "rejects": []}
        self._began = 0.0

    # -- in the runner's thread or process ---------------------------------------------
    def run(self) -> None:
        from .stages import open_stage
        from .varieties import make_source, row_maker

        self._began = time.monotonic()
        self._stage = open_stage(self.stage_spec["type"], self.stage_spec["path"],
                                 keep=self.stage_spec.get("keep", False))
        self._seq = 0
        source = make_source(self.variety, self.options, name=self.name, base=self.base, size=self.size)
        self._row = row_maker(self.variety)
        if type(source).__name__ == "CSVBatches":
            self._tables(source)
        elif isinstance(source, Actor):
            self._read_hosted(source)
        else:
            self._rows(self._limited(iter(source)))
        self._account(source)

    def _tables(self, source: Any) -> None:
        """A source of whole tables (CSVBatches): each is one batch already."""
        from .batch import Batch

        for table in source:
            if self.stopping:
                source.stop() if hasattr(source, "stop") else None
                break
            self.figures["records"] += table.num_rows
            self._put(Batch(table))

    def _rows(self, records: Iterator[Any]) -> None:
        """A plain iterable (generator, a class of yours): records one by one, stop between them."""
        if self.seconds is not None:
            return self._rows_live(records)
        pending: list[dict[str, Any]] = []
        for record in records:
            self._take(record, pending)
            if self.stopping:
                break
        self._cut(pending)

    def _rows_live(self, records: Iterator[Any]) -> None:
        """A plain iterable of a live source (``seconds`` set) is read on a helper thread, so a
        partial batch is cut after ``seconds`` and a stop is seen within POLL even while the
        iterable waits for its next record (the helper, left waiting inside it, is a daemon).
        What the helper read before the stop is staged; an error of the iterable is raised here."""
        import queue
        import threading

        handed: queue.Queue[Any] = queue.Queue(maxsize=self.size)

        def pump() -> None:
            item: Any = _END_OF_ROWS
            try:
                for record in records:
                    if not self._hand(handed, record):
                        return
            except BaseException as exc:  # raised again in the runner's thread
                item = _Raised(exc)
            self._hand(handed, item)

        helper = threading.Thread(target=pump, name=f"chronopipe:{self.name}:reader", daemon=True)
        helper.start()
        pending: list[dict[str, Any]] = []
        first_at, item = 0.0, None
        while not self.stopping:
            wait = max(0.0, min(POLL, first_at + self.seconds - time.monotonic())) if pending else POLL
            try:
                item = handed.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _END_OF_ROWS or isinstance(item, _Raised):
                break
            if item is not None:
                first_at = first_at if pending else time.monotonic()
                self._take(item, pending)
            if pending and time.monotonic() - first_at >= self.seconds:
                self._cut(pending)
        while self.stopping:  # what the helper read by now (and hands within POLL) is staged too
            try:
                item = handed.get(timeout=POLL)
            except queue.Empty:
                break
            if item is _END_OF_ROWS or isinstance(item, _Raised):
                break
            self._take(item, pending)
        self._cut(pending)
        if isinstance(item, _Raised):
            raise item.exc

    def _hand(self, handed: Any, item: Any) -> bool:
        """Put ``item`` on the helper's queue, waiting for room (at most POLL once the runner
        stops); whether the helper should read on (False once the runner stops)."""
        import queue

        while True:
            try:
                handed.put(item, timeout=POLL)
                return not self.stopping
            except queue.Full:
                if self.stopping:
                    return False

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
                if pending and self.seconds is not None and time.monotonic() - first_at >= self.seconds:
                    self._cut(pending)
                if ended:
                    break
            self._cut(pending)
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
        if len(pending) >= self.size:
            self._cut(pending)

    def _cut(self, pending: list[dict[str, Any]]) -> None:
        if pending:
            from .batch import Batch

            self._put(Batch(list(pending)))
            pending.clear()

    def _put(self, batch: Any) -> None:
        from .batch import content_id

        batch.consumer, batch.seq = self.name, self._seq
        batch.id = content_id(self.name, self._seq, batch)
        self._seq += 1
        if self._stage.put(batch):
            self.figures["batches"] += 1
        else:
            self.figures["skipped"] += 1  # staged by an earlier run already
        self.figures["rows"] += batch.num_rows
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
        return dict(self.figures)

    def on_result(self, result: Any) -> None:
        if isinstance(result, dict):
            self.figures = result


class ProducerRunner(Actor):
    """One producer: its consumers' complete batches into its sink (see the module docstring)."""

    def __init__(self, name: str, *, variety: str, options: Mapping[str, Any], base: Path,
                 stages: Mapping[str, Mapping[str, Any]], producers_of: Mapping[str, list[str]], inbox: Channel,
                 profile: Any = None, mode: Any = "thread") -> None:
        super().__init__(name, inbox=inbox, mode=mode)
        self.variety, self.options, self.base, self.profile = variety, dict(options), base, profile
        self.stage_specs, self.producers_of = {k: dict(v) for k, v in stages.items()}, dict(producers_of)
        self.figures: dict[str, Any] = {"rows": 0, "batches": 0, "skipped": 0, "seconds": 0.0}
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
        self._sink = make_sink(self.variety, self.options, base=self.base, profile=self.profile)
        self._sink.open()
        self._sweep()  # what an earlier run staged and did not load

    def on_receive(self, message: dict[str, Any]) -> None:
        if self.stopping:  # told to stop at once: what is left stays staged for the next run
            return
        if message["batch"] in self._loaded:
            self.figures["skipped"] += 1  # loaded by an earlier run (or by the start-up sweep)
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

    def on_result(self, result: Any) -> None:
        if isinstance(result, dict):
            self.figures = result

