"""The control API of a pipeline: ``Pipeline(..., control="127.0.0.1:0")`` (docs/control.md).

A :class:`PipelineControl` belongs to such a pipeline. At each run's begin (after its actor
processes were forked) it starts a :class:`~chronopipe.control.ControlServer` over a
:class:`PipelineTarget`; at the run's end, once a pending ``POST /stop`` was answered, it closes
it. ``consume(iterable)`` feeds the records through a :class:`~.feeding.ControlledFeed`, which
looks at the stop flag between chunks (never per record: the records of a chunk go through C
iterators) and samples the fields of the first record of each chunk for ``GET /features``.

``POST /stop`` sets the flag and stops the input when it is one of chronopipe's sources or a
:class:`~chronopipe.control.inputs.PushInput` (those end by themselves after every record they
hold, so nothing they took is left behind); the feed ends, the run drains (every record fed
goes through the nodes and, under acknowledgements, is confirmed and saved: a rerun with the
same ``state_dir`` resumes after it), and the answer is the run's final counts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..control import ActorsTarget, ControlServer, open_control, parse_address
from ..control.features import Features
from ..control.inputs import PushInput
from ..sources import Source
from .feeding import ControlledFeed
from .node import RouterNode, top_down_order
from .stats import PipelineStatistics

if TYPE_CHECKING:
    from ..actors import Actor
    from .pipeline import Pipeline

__all__ = ["PipelineControl", "PipelineTarget", "counts_of"]

#: Seconds the end of a run waits for pending ``/stop`` calls to take their answer.
ANSWER_WAIT = 5.0
_NODE_FIELDS = ("mode", "workers", "received", "sent", "state", "retried", "dead_lettered", "failed", "restarts",
                "dropped", "duplicates_possible", "guarantee")


def counts_of(stats: PipelineStatistics) -> dict[str, Any]:
    """A pipeline's statistics as JSON: per node what it received and sent on (None in the sync
    mode unless its guarantee counts them), the dead letters, and ``fed`` / ``confirmed`` under
    acknowledgements."""
    return {
        "run": stats.state, "mode": stats.mode,
        "nodes": {n.name: {key: getattr(n, key) for key in _NODE_FIELDS} for n in stats.nodes},
        "retried": stats.retried, "dead_lettered": stats.dead_lettered, "failed": stats.failed,
        "restarts": stats.restarts, "duplicates_possible": stats.duplicates_possible,
        "dead_letters": stats.dead_letters, "fed": stats.fed, "confirmed": stats.confirmed,
        "resumed_at": stats.resumed_at, "summary": stats.summary,
    }


class PipelineTarget(ActorsTarget):
    """What a pipeline's control server serves: its actors (its nodes in the sync mode), its
    counts, the features of its input, its push inputs, and the drain of ``stop``."""

    def __init__(self, pipeline: Pipeline, control: PipelineControl) -> None:
        super().__init__(pipeline.name, self._run_actors, kind="pipeline")
        self.pipeline, self.control = pipeline, control

    def _run_actors(self) -> list[Actor]:
        run = self.pipeline._run
        return list(getattr(run, "actors", ()))

    def row(self, actor: Actor) -> dict[str, Any]:
        """The actor's row, with the restarts of its process and the dead letters of its node."""
        row = super().row(actor)
        tally, journal = getattr(actor, "tally", None), getattr(actor, "journal", None)
        if tally is not None:
            row["dead_letters"] = int(tally.dead_lettered)
        if journal is not None:
            row["restarts"] = int(journal.restarts)
        return row

    def actors(self) -> list[dict[str, Any]]:
        """A row per actor of the run; in the sync mode, a row per node (counts None unless known)."""
        if self.pipeline.mode != "sync":
            return [self.row(a) for a in self.members()]
        stats = self.pipeline.statistics()
        pid, rss = os.getpid(), self._rss(os.getpid())
        return [{"name": n.name, "mode": "sync", "state": n.state, "pid": pid, "received": n.received,
                 "emitted": n.sent, "rate": None, "queue": None, "rss": rss, "restarts": n.restarts,
                 "dead_letters": n.dead_lettered} for n in stats.nodes]

    def info(self) -> dict[str, Any]:
        pipeline = self.pipeline
        nodes = [n.name for n in top_down_order(pipeline.top_node) if not isinstance(n, RouterNode)]
        state = self.control.state(pipeline.statistics())
        if pipeline.mode == "sync":
            running = nodes if state in ("running", "stopping") else []
        else:
            running = [a.name for a in self.members() if a.state == "running"]
        return {"name": pipeline.name, "kind": "pipeline", "mode": pipeline.mode, "state": state,
                "running": running, "nodes": nodes}

    def stats(self) -> dict[str, Any]:
        """``state``, ``seconds``, ``totals`` (from the pipeline's statistics), the actor rows, and
        the pipeline's own counts (:func:`counts_of`)."""
        stats = self.pipeline.statistics()
        return self._answer(stats, self.control.state(stats))

    def _answer(self, stats: PipelineStatistics, state: str) -> dict[str, Any]:
        nodes = stats.nodes
        totals = {"received": sum(n.received or 0 for n in nodes), "emitted": sum(n.sent or 0 for n in nodes),
                  "dead_letters": stats.dead_lettered, "restarts": stats.restarts}
        return {"state": state, "seconds": round(stats.seconds or 0.0, 3), "totals": totals,
                "actors": self.actors(), **counts_of(stats), "run": self.control.state(stats)}

    def features(self) -> dict[str, dict[str, list[str]]]:
        return {name: features.snapshot() for name, features in list(self.control.features.items())}

    def inputs(self) -> list[str]:
        return sorted(self.control.inputs)

    def push(self, input: str, records: list[Any]) -> int:
        """Put ``records`` into the push input named ``input``.

        Raises:
            KeyError: no push input of that name. InputFull: it holds too many records to take
                them all (none taken). InputClosed: it was closed (the run is stopping or over).
        """
        return self.control.inputs[input].put_many(records)

    def stop(self, timeout: float) -> dict[str, Any]:
        """Stop feeding, let the run drain, and answer its final counts with how it ended
        (``state`` ``"finished"`` or ``"failed"``), or the counts so far with ``"stopping"`` when
        the run did not end within ``timeout``."""
        final = self.control.stop(timeout)
        if final is None:
            return self._answer(self.pipeline.statistics(), "stopping")
        return self._answer(final, final.state)


class PipelineControl:
    """A pipeline's control plane: the address, the server of the current (or last) run, its
    inputs and features, and the stop flag.

    Raises:
        ValueError: ``address`` is not HOST:PORT (one line).
    """

    def __init__(self, pipeline: Pipeline, address: str) -> None:
        if not isinstance(address, str):
            raise ValueError(f"Pipeline control must be an address 'HOST:PORT' (or None), not {address!r}")
        parse_address(address)
        self.address = address
        self.pipeline = pipeline
        self.target = PipelineTarget(pipeline, self)
        self.server: ControlServer | None = None
        self.inputs: dict[str, PushInput] = {}
        self.features: dict[str, Features] = {}
        self._stoppable: Any = None
        self._stopped = threading.Event()
        self._ended = threading.Event()
        self._final: PipelineStatistics | None = None
        self._pending = 0
        self._calls = threading.Condition()

    # -- the pipeline's side -----------------------------------------------------------
    def feeding(self, source: Any, records: Iterable[Any]) -> ControlledFeed:
        """``records`` (those of ``source``, maybe counted for acknowledgements) as the run's feed;
        a PushInput ``source`` is registered under its name for ``POST /push``."""
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) and name else "input"
        self.inputs = {source.name: source} if isinstance(source, PushInput) else {}
        self.features = {name: Features()}
        stoppable = isinstance(source, (PushInput, Source))
        self._stoppable = source if stoppable else None
        return ControlledFeed(records, source, self._stopped, self.features[name], stoppable)

    def begin(self, run: Any) -> None:
        """Serve the run (begun: its processes forked). ControlError: the server cannot start; the
        run is stopped then.

        Raises:
            ControlError: the address cannot be served (taken, not loopback without a token).
        """
        self._stopped.clear()
        self._ended.clear()
        self._final = None
        if self.server is not None:  # a run that failed to begin left it (push())
            self.server.close()
        try:
            self.server = open_control(self.target, self.address)
        except BaseException as exc:
            fail = getattr(run, "_fail", None)
            if fail is not None:
                raise fail(exc) from None  # (its actors cancelled; the ControlError itself)
            raise

    def ended(self, stats: PipelineStatistics) -> None:
        """The run ended (finished or failed): answer pending stops, then close the server."""
        self._final = stats
        self._ended.set()
        for push_input in self.inputs.values():
            push_input.close()  # /push answers 409 from now on
        deadline = time.monotonic() + ANSWER_WAIT
        with self._calls:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._calls.wait(left)
        server = self.server
        if server is not None:
            server.close()

    # -- the server's side -------------------------------------------------------------
    def state(self, stats: PipelineStatistics) -> str:
        """The run's state: ``running`` (``stopping`` once a stop was asked for, ``failed`` once an
        actor failed) from its begin to its end (its last nodes' end() included), then its
        statistics' (finished, failed)."""
        if self.server is not None and not self._ended.is_set():
            failed = getattr(self.pipeline._run, "_an_actor_failed", None)
            if failed is not None and failed():  # its end (an error) is on its way
                return "failed"
            return "stopping" if self._stopped.is_set() else "running"
        return stats.state

    def stop(self, timeout: float) -> PipelineStatistics | None:
        """Stop feeding (the flag; the source or push input stopped), wait up to ``timeout``
        seconds for the run to end; its final statistics, or None if it goes on."""
        with self._calls:
            self._pending += 1
        try:
            self._stopped.set()
            stoppable = self._stoppable
            if stoppable is not None:
                stoppable.stop()
            self._ended.wait(timeout)
            return self._final
        finally:
            with self._calls:
                self._pending -= 1
                self._calls.notify_all()
