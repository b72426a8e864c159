"""RunTarget: what the control API of ``chronopipe run pipeline.yml --control HOST:PORT`` serves.

A :class:`RunTarget` shows a :class:`~chronopipe.runs.engine.Run` to a
:class:`~chronopipe.control.ControlServer`: ``/info`` names the YAML file and its runners, ``/stats``
has a row per runner (its actor) in rows, not in batch messages, and the rows in and out of each
runner as the run's summary knows them; ``POST /push`` puts records into a push consumer's input
(runs/push.py); ``POST /stop`` drains the run as a first Ctrl-C does (closing the push inputs).

    run = Run(config, profiles).start()
    with open_control(RunTarget(run, "pipeline.yml"), "127.0.0.1:0") as server:
        print(server.url)
        run.join()

Rows are live for a thread and a process runner alike: a runner counts in shared memory too
(``runner.live``, tally.py), once per batch, and the parent reads it while the runner runs.

No answer holds a profile's secret: the rows name runners, varieties, states and counts, never a
runner's options (a URL with a password, a DSN); :meth:`RunTarget.secrets` gives the server every
Secret value of the run's profiles to scrub from what it sends all the same.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..actors import Actor
from ..control import ActorsTarget
from .engine import Run, RunnerSummary
from .profiles import Secret
from .runners import ConsumerRunner
from .tally import LiveFigures

__all__ = ["RunTarget", "run_secrets"]


def run_secrets(profiles: Any) -> list[str]:
    """Every non-empty Secret value of ``profiles`` (name -> Profile), the longest first.

    >>> from chronopipe.runs.profiles import Profile
    >>> run_secrets({"pg": Profile(name="pg", fields={"user": "u", "password": "hunter2", "dsn": "x"})})
    ['hunter2', 'x']
    """
    found: set[str] = set()
    for profile in dict(profiles or {}).values():
        for value in getattr(profile, "fields", {}).values():
            if isinstance(value, Secret) and value:
                found.add(value.reveal())
    return sorted(found, key=lambda s: (-len(s), s))


class RunTarget(ActorsTarget):
    """A run from YAML served by a control server (see the module docstring).

    ``run``: the :class:`Run`, started or about to be; ``path``: its YAML file, as given on the
    command line (shown in ``/info``); ``name``: default the file's name.
    """

    kind = "run"

    def __init__(self, run: Run, path: str | Path, *, name: str | None = None) -> None:
        super().__init__(name or Path(path).name, lambda: list(run.runners), kind="run")
        self.run = run
        self.path = str(path)
        self._specs = {r.name: r for r in run.config.runners}
        #: set once a stop was asked through the control API (the command line waits for its answer)
        self.stop_requested = threading.Event()
        #: set once the answer to that stop was made (the server sends it right after)
        self.stop_answered = threading.Event()

    # -- what is running -----------------------------------------------------------------
    def state(self) -> str:
        """``new`` (not started), ``running``, ``stopping`` (a stop was asked) or ``finished``,
        ``failed`` (a runner failed), ``cancelled``."""
        runners = self.run.runners
        if not runners or all(r.state == "new" for r in runners):
            return "new"
        if any(r.state in ("new", "running") for r in runners):
            return "stopping" if self.stop_requested.is_set() else "running"
        if any(r.state == "failed" for r in runners):
            return "failed"
        if any(r.state == "cancelled" for r in runners):
            return "cancelled"
        return "finished"

    def info(self) -> dict[str, Any]:
        """``{"name", "kind": "run", "state", "running", "path", "runners": [{name, type,
        variety, mode, state, depends_on}]}``."""
        runners = []
        for actor in self.run.runners:
            spec = self._specs[actor.name]
            runners.append({"name": actor.name, "type": spec.type, "variety": spec.variety, "mode": actor.mode,
                            "state": actor.state, "depends_on": list(getattr(spec, "depends_on", []) or [])})
        return {"name": self.name, "kind": "run", "state": self.state(), "path": self.path,
                "running": [r["name"] for r in runners if r["state"] == "running"], "runners": runners}

    def counts(self, actor: Actor) -> tuple[int, int]:
        """A runner's ``(received, emitted)`` in rows (a consumer: records read, rejects and late
        ones included / rows staged; a producer: rows loaded, both); its rate is rows in per second."""
        figures = _figures(actor)
        rows = int(figures.get("rows", 0))
        if isinstance(actor, ConsumerRunner):
            return int(figures.get("records", 0)) + int(figures.get("rejected", 0)) + int(figures.get("late", 0)), rows
        return rows, rows

    def row(self, actor: Actor) -> dict[str, Any]:
        """The runner's actor row (counts in rows: :meth:`counts`) with its ``type``, ``variety``,
        ``unit`` (``"rows"``), ``rows``, ``batches``, ``skipped``, ``rejected``, ``late``: live, from a
        thread or a process runner alike (``figures_now``)."""
        row = super().row(actor)
        spec = self._specs.get(actor.name)
        figures = _figures(actor)
        row.update(type=getattr(spec, "type", None), variety=getattr(spec, "variety", None), unit="rows",
                   rows=int(figures.get("rows", 0)), batches=int(figures.get("batches", 0)),
                   skipped=int(figures.get("skipped", 0)), rejected=int(figures.get("rejected", 0)),
                   late=int(figures.get("late", 0)))
        return row

    def stats(self) -> dict[str, Any]:
        """The base stats (rows per actor) with ``runners``: one line per runner of the run's
        summary (rows in and out as the summary counts them) and ``totals`` in rows."""
        stats = super().stats()
        runners = [_summary_row(s) for s in self.run.summary()]
        stats["state"] = self.state()
        stats["path"] = self.path
        stats["runners"] = runners
        totals = dict(stats.get("totals", {}))
        totals["received"] = sum(r["rows_in"] for r in runners if r["type"] == "consumer")
        totals["emitted"] = sum(r["rows_out"] for r in runners if r["type"] == "producer")
        totals["staged"] = sum(r["rows_out"] for r in runners if r["type"] == "consumer")
        stats["totals"] = totals
        return stats

    def inputs(self) -> list[str]:
        """The push consumers' names (runs/push.py): what ``POST /push`` takes as ``input``."""
        return sorted(self.run.inputs)

    # -- what changes it -----------------------------------------------------------------
    def push(self, input: str, records: list[Any]) -> int:
        """Put ``records`` into the push consumer named ``input``, all or none; how many were taken.

        Raises:
            KeyError: no push consumer of that name (404). InputFull: they do not all fit (429).
            InputClosed: its input was closed (``POST /stop``, Ctrl-C), or the consumer ended (409).
        """
        source = self.run.inputs[input]
        runner = next(r for r in self.run.runners if r.name == input)
        if runner.state not in ("new", "running"):  # failed or cancelled: nothing would read them
            source.close()
        return source.put_many(records)

    def stop(self, timeout: float) -> dict[str, Any]:
        """Drain, as a first Ctrl-C does: the consumers' sources stop and they stage what they
        hold, the producers load what was staged. Waits up to ``timeout`` seconds for every
        runner to end; answers the stats then (the final ones once it has ended), ``state`` how
        it ended, ``"finished"``, ``"failed"`` or ``"cancelled"``, or ``"stopping"`` (the
        producers still load; ``run_state`` is the run's own state either way)."""
        self.stop_requested.set()
        try:
            self.run.stop()
            ended = self.run.wait(max(0.0, float(timeout)))
            answer = self.stats()
            answer["run_state"] = answer["state"]
            answer["state"] = answer["state"] if ended else "stopping"
            return answer
        finally:
            self.stop_answered.set()

    def secrets(self) -> list[str]:
        """Every Secret value of the run's profiles (the server scrubs them from every answer)."""
        return run_secrets(self.run.profiles)


def _summary_row(summary: RunnerSummary) -> dict[str, Any]:
    """One runner of the run's summary as JSON: ``rows_in`` (a consumer: records read, rejects and
    late ones included; a producer: rows loaded) and ``rows_out`` (rows staged / loaded)."""
    consumer = summary.type == "consumer"
    rows_in = summary.records + summary.rejected + summary.late if consumer else summary.rows
    return {"name": summary.name, "type": summary.type, "variety": summary.variety, "state": summary.state,
            "rows_in": rows_in, "rows_out": summary.rows, "batches": summary.batches, "skipped": summary.skipped,
            "rejected": summary.rejected, "late": summary.late, "seconds": round(summary.seconds, 3)}


def _figures(actor: Actor) -> dict[str, Any]:
    """A runner's figures as they are now (a process runner's from its shared counters)."""
    return actor.figures_now() if isinstance(actor, LiveFigures) else dict(getattr(actor, "figures", {}))
