"""Run: a validated run config started as actors, waited for, stopped, summed up.

Each runner is one actor. Every producer has one inbox channel with a writer per consumer it
depends on; a consumer writes a message per complete batch to the inbox of each producer that
depends on it. So ``depends_on`` orders the run for real: a producer loads only batches its
consumers completed, and ends when all of them ended (each closed its end of the inbox) and it
has drained their stages. The run ends when every runner has.

    run = Run(config, profiles)
    run.start()
    run.join()            # raises the first runner's ActorError, if one failed
    run.summary()         # one RunnerSummary per runner
    run.close()           # lets the stage folders go (see Run.start)
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..actors import Actor, ActorError
from ..channels import open_channel
from .push import PUSH, push_input
from .runners import ConsumerRunner, ProducerRunner

__all__ = ["LOCK", "Run", "RunnerSummary", "StageInUse"]

LOCK = ".run.lock"  #: in each stage folder: held by the run using it (the holder's pid in it)
ORPHANS_END = 3.0  # seconds the process runners of a killed run may take to see it and end
INBOX = 64  # batch messages waiting at a producer before its consumers wait (backpressure)


@dataclass(frozen=True)
class RunnerSummary:
    """What one runner did: rows staged (consumer) or loaded (producer), batches, seconds."""

    name: str
    type: str
    variety: str
    rows: int
    batches: int
    skipped: int  #: batches an earlier run had already staged (consumer) or loaded (producer)
    seconds: float
    state: str
    records: int = 0  #: consumer: records read from the source
    rejected: int = 0
    late: int = 0
    markers: int = 0
    over_limit: int = 0
    rejects: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        """A consumer's records in = rows staged + rejected + late + markers + over the limit
        (rejected and late records never reach the runner, so they are not in ``records``)."""
        return self.records == self.rows + self.markers + self.over_limit


class StageInUse(Exception):  # noqa: N818 (what it says is the state, not a fault)
    """A stage folder is held by another run (its pid in the message): nothing was started."""


class Run:
    """The runners of one config, as actors (see the module docstring).

    ``profiles``: name -> profile, for the runners that name one. ``base``: the folder relative
    stage paths and file options are taken from (the YAML file's).
    """

    def __init__(self, config: Any, profiles: Mapping[str, Any] | None = None, *, base: Path | None = None) -> None:
        self.config = config
        self.base = Path(base if base is not None else getattr(config, "base", Path.cwd()))
        self.profiles = dict(profiles or {})
        self.runners: list[Actor] = []
        #: the push consumers' inputs, by consumer name (runs/push.py): the control API puts into them
        self.inputs: dict[str, Any] = {}
        self.started_at: float | None = None
        self._locks: list[int] = []  # the file descriptors of the stage folders' LOCK files we hold
        self._build()

    def _build(self) -> None:
        runners = list(self.config.runners)
        consumers = {r.name: r for r in runners if r.type == "consumer"}
        producers = [r for r in runners if r.type == "producer"]
        producers_of: dict[str, list[str]] = {name: [] for name in consumers}
        for producer in producers:
            for name in producer.depends_on:
                producers_of[name].append(producer.name)
        modes = {r.name: r.mode for r in runners}
        inboxes = {}
        for producer in producers:
            crossing = modes[producer.name] == "process" or any(modes[c] == "process" for c in producer.depends_on)
            # between processes a message travels alone (batch_size=1), so INBOX of them wait, not one batch
            extra = {"batch_size": 1} if crossing else {}
            inboxes[producer.name] = open_channel(INBOX, mode="process" if crossing else "thread",
                                                  name=f"{producer.name} inbox", writers=len(producer.depends_on),
                                                  **extra)
        for consumer in consumers.values():
            if consumer.variety == PUSH:  # made here, in the process the records arrive in
                self.inputs[consumer.name] = push_input(consumer.name, **consumer.options)
            self.runners.append(ConsumerRunner(
                consumer.name, variety=consumer.variety, options=consumer.options, base=self.base,
                stage=_stage_spec(consumer, self.base), size=batch_size(consumer),
                seconds=consumer.batch_configuration.seconds,
                outputs=[inboxes[p] for p in producers_of[consumer.name]], mode=consumer.mode,
                source=self.inputs.get(consumer.name)))
        for producer in producers:
            self.runners.append(ProducerRunner(
                producer.name, variety=producer.variety, options=producer.options, base=self.base,
                stages={c: _stage_spec(consumers[c], self.base) for c in producer.depends_on},
                producers_of=producers_of, inbox=inboxes[producer.name], mode=producer.mode,
                profile=self.profiles.get(producer.profile) if producer.profile else None))

    def start(self) -> Run:
        """Take each stage folder for this run, then start every runner (producers first, so
        their inboxes have a reader); returns self. Two runs never share a stage folder: each
        holds an exclusive ``flock`` on the folder's LOCK file for its whole life (its process
        runners inherit it), released by :meth:`close`, or by the system when the process dies
        (a killed run never blocks the next).

        Raises:
            StageInUse: another run holds a stage folder (nothing was started, nothing is held).
            StageError: a stage folder cannot be made.
        """
        self._lock_stages()
        _preload(self.config.runners)
        self.started_at = time.monotonic()
        for runner in sorted(self.runners, key=lambda r: isinstance(r, ConsumerRunner)):
            runner.start()
        return self

    def _lock_stages(self) -> None:
        from .stages import StageError

        # once each, however written (one process locking a file twice would lock itself out)
        folders = {Path(_stage_spec(r, self.base)["path"]).resolve() for r in self.config.runners
                   if r.type == "consumer"}
        try:
            for folder in sorted(folders):
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                except OSError as exc:
                    raise StageError(f"{folder}: cannot use it as a stage folder ({exc.strerror or exc})") from None
                if not _take(fd):
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                    os.close(fd)
                    raise StageInUse(f"stage folder {folder} is in use by another run (pid {holder})")
                self._locks.append(fd)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Let the stage folders go (after the run; again: nothing). The LOCK files stay (empty)."""
        locks, self._locks = self._locks, []
        for fd in locks:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # the lock goes with the last descriptor of it (a process runner's copy ended)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether every runner has ended, waiting up to ``timeout`` seconds for it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for runner in self.runners:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not runner.wait(left):
                return False
        return True

    def join(self, timeout: float | None = None) -> list[RunnerSummary]:
        """Wait for every runner; their summaries.

        Raises:
            ActorError: a runner failed (the first one that did, by start order); the others
                were stopped by then (a failure stops the actors connected to it).
            TimeoutError: still running after ``timeout`` seconds.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"the run is still going after {timeout} s")
        errors = [r.error for r in self.runners if r.error is not None]
        if errors:
            raise _root(errors)
        return self.summary()

    def stop(self) -> None:
        """Ask the consumers to stop (their sources stop, partial batches are staged); the
        producers then drain what was staged and end. A push consumer's input is closed instead:
        the consumer stages what it still holds, then ends. Returns at once; any thread."""
        self._close_inputs()
        for runner in self.runners:
            if isinstance(runner, ConsumerRunner) and runner.name not in self.inputs:
                runner.stop()

    def _close_inputs(self) -> None:
        for source in self.inputs.values():
            source.close()

    def cancel(self, wait: float = 1.0) -> None:
        """Stop every runner now, producers too; what they had not loaded stays staged. Each is
        told to stop; those still running after ``wait`` seconds (a consumer waiting on the full
        inbox of a producer that no longer reads it, a sink stuck in a write) are cancelled by
        the runtime: their channels break and their processes are terminated. Main thread only."""
        self._close_inputs()
        for runner in self.runners:
            runner.stop()
        if self.wait(wait):
            return
        from ..runtime import Runtime

        reason = ActorError("run", "Cancelled", "the run was stopped at once (Ctrl-C or SIGTERM twice)")
        Runtime().cancel([r for r in self.runners if r.state != "new"], reason, wait=wait)

    def summary(self) -> list[RunnerSummary]:
        """One summary per runner, in config order (figures so far for a running runner, from its
        live counts: a process runner's too)."""
        kinds = {r.name: r for r in self.config.runners}
        out = []
        for runner in self.runners:
            figures: dict[str, Any] = (runner.figures_now() if hasattr(runner, "figures_now")
                                       else dict(getattr(runner, "figures", {})))
            spec = kinds[runner.name]
            seconds = float(figures.get("seconds") or 0.0)
            if not seconds and runner.started_at is not None:  # cancelled, or running: its figures have none
                seconds = max(0.0, (runner.ended_at or time.time()) - runner.started_at)
            out.append(RunnerSummary(
                runner.name, spec.type, spec.variety, figures.get("rows", 0), figures.get("batches", 0),
                figures.get("skipped", 0), seconds, runner.state,
                records=figures.get("records", 0), rejected=figures.get("rejected", 0),
                late=figures.get("late", 0), markers=figures.get("markers", 0),
                over_limit=figures.get("over_limit", 0), rejects=list(figures.get("rejects", []))))
        order = {r.name: i for i, r in enumerate(self.config.runners)}
        return sorted(out, key=lambda s: order[s.name])


#: rows per batch when the config does not say: Arrow batches are cheap per row and dear per batch
#: (a COPY, a Parquet file, a ledger row: ~6 ms each), record sources the other way round
DEFAULT_SIZE = {"csv": 50_000}


def batch_size(consumer: Any) -> int:
    """The rows per batch of a consumer: its ``batch_configuration.size``, else its variety's default."""
    size = consumer.batch_configuration.size
    return size if size is not None else DEFAULT_SIZE.get(consumer.variety, 1000)


def _preload(runners: list[Any]) -> None:
    """Import what the runners will use, here, before any runner starts: two runner threads
    importing pyarrow at once can see it half initialised (its circular imports), and a process
    runner forked after the import does not import it again."""
    from .varieties import CONSUMERS, PRODUCERS, resolve_import

    for runner in runners:
        table = CONSUMERS if runner.type == "consumer" else PRODUCERS
        spec = table.get(runner.variety, runner.variety if ":" in runner.variety else None)
        if spec:
            with contextlib.suppress(Exception):  # the runner reports it, with its name
                resolve_import(spec)
    heavy = ["chronopipe.runs.batch", "chronopipe.runs.stages"]
    if any(getattr(getattr(r, "stage", None), "type", None) == "parquet" for r in runners) or any(
            r.variety in ("csv", "parquet", "postgres") for r in runners):
        heavy += ["pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.parquet"]
    for module in heavy:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def _take(fd: int, orphans: float = ORPHANS_END) -> bool:
    """Whether the exclusive lock of ``fd`` is ours. While its holder (the pid in the file) is
    dead, its process runners, orphaned, are ending (runtime/child.py): wait up to ``orphans``."""
    deadline = time.monotonic() + orphans
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            if time.monotonic() > deadline:
                return False
            try:
                if holder.isdigit():
                    os.kill(int(holder), 0)
                    return False  # alive: a run (no pid yet: one starting, or one's runners ending)
            except PermissionError:
                return False
            except (ProcessLookupError, OverflowError):
                pass
            time.sleep(0.05)


def _stage_spec(consumer: Any, base: Path) -> dict[str, Any]:
    stage = consumer.stage
    path = Path(stage.path)
    return {"type": stage.type, "path": str(path if path.is_absolute() else base / path),
            "keep": bool(getattr(stage, "keep", False))}


def _root(errors: list[ActorError]) -> ActorError:
    """The error that started it: the one not caused by a neighbour's failure, if any."""
    for error in errors:
        if error.exc_type not in ("ChannelBroken", "ActorError"):
            return error
    return errors[0]
