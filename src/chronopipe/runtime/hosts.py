"""How the Runtime hosts actors: a thread each, or a process each watched by a supervisor thread.

The two hosts implement ``actors.hosting.Host`` (a Ray host would be a third): ``ThreadHost``
runs ``actor.run_hosted()`` on a daemon thread; ``ProcessHost`` forks a process that runs it
and sends the outcome back on a status pipe. What the runtime knows about a hosted actor is in
its ``HostRecord`` (the host, its pid, status pipe and outcome, why the actor was cancelled),
kept by the runtime, never on the actor.

``ActorHosting`` is a part of ``Runtime`` (a mixin): the supervisor thread waits on every actor
process's status pipe and sentinel, so a death is noticed within about a millisecond; a failure
stops every actor connected to the failed one through channels (its component), and the error
says how far each of them got and how many records were lost (counts.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dill
import multiprocess
from multiprocess.connection import Pipe, wait

from ..actors.actor import Actor
from ..actors.errors import ActorError, describe_exit, error_envelope, error_from_envelope, from_exception
from ..actors.hosting import Host, Outcome
from ..channels import Channel
from . import counts
from .child import init_child, stdlib_before_exit
from .signals import start_quiet

__all__ = ["ActorHosting", "HostRecord", "ProcessHost", "ThreadHost"]

log = logging.getLogger("chronopipe.runtime")
_ctx = multiprocess.get_context("fork")

#: Ended actors the runtime keeps (for ``actors()`` and ``statistics()``); older ones are let go.
ENDED_KEPT = 32


class ThreadHost:
    """Runs the actor on a daemon thread of this process, then ``report(outcome)`` on that thread."""

    def __init__(self, actor: Actor, report: Callable[[Outcome], None]) -> None:
        self.pid: int | None = os.getpid()
        self.thread = threading.Thread(target=lambda: report(actor.run_hosted()), name=f"chronopipe:{actor.name}",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def cancel(self, reason: ActorError | None, *, kill: bool = False) -> None:
        """A thread cannot be ended from outside: it ends at its stop flag or a broken channel."""


class ProcessHost:
    """Forks a process that runs the actor and sends its outcome on ``status_r`` (read by the
    supervisor into ``outcome``); ``sentinel`` is readable once the process has ended."""

    def __init__(self, actor: Actor) -> None:
        self.status_r, status_w = Pipe(duplex=False)
        self._status_w: Any = status_w
        self.proc = _ctx.Process(target=_host_process, args=(actor, status_w), name=f"chronopipe:{actor.name}")
        self.pid: int | None = None
        self.outcome: tuple[str, Any] | None = None

    def start(self) -> None:
        # SIGINT/SIGTERM are held back across the fork: a handler that ran inside the fork's
        # after-fork hooks (logging's _releaseLock, ours) would see its KeyboardInterrupt
        # "ignored", and the run would go on without its children. The child unblocks them in
        # init_child, once its own handlers are in place.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self._status_w.close()
        self._status_w = None
        self.pid = self.proc.pid

    @property
    def sentinel(self) -> Any:
        return self.proc.sentinel

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode

    @property
    def started(self) -> bool:
        """Whether the process was forked (a Ctrl-C can land between the record and the fork)."""
        return self.pid is not None

    def alive(self) -> bool:
        return self.started and self.proc.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self.started:
            self.proc.join(timeout)

    def cancel(self, reason: ActorError | None, *, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with ``kill``) the process, if it was started and still runs."""
        if self.started and self.proc.exitcode is None:
            self.proc.kill() if kill else self.proc.terminate()

    def read_report(self, name: str) -> None:
        """Read the child's report into ``outcome`` (("none", None) if it closed the pipe silently)."""
        try:
            data = self.status_r.recv_bytes()
        except (EOFError, OSError):
            self.outcome = ("none", None)
            return
        try:
            self.outcome = dill.loads(data)
        except Exception as exc:
            self.outcome = ("error", error_envelope(name, TypeError(f"its report cannot be unpickled: {exc}")))


@dataclass(eq=False)
class HostRecord:
    """What the runtime keeps about one hosted actor (the actor itself keeps none of it)."""

    actor: Actor
    host: Host
    cancelled_by: ActorError | None = None  #: set once: why the runtime stopped it early

    @property
    def pid(self) -> int | None:
        return self.host.pid

    def restart_wanted(self) -> bool:
        """After a dead actor's restart delay, under the runtime's lock: whether to start it
        again. False when it ended meanwhile, or was cancelled or stopped (then concluded so)."""
        actor = self.actor
        if actor.state != "running":
            return False
        if self.cancelled_by is not None or actor.stopping:
            actor._finish(error=self.cancelled_by, cancelled=True)
            return False
        return True


class ActorHosting:
    """The actor-hosting half of the Runtime (its attributes are made in ``Runtime._setup``)."""

    _lock: Any
    _pid: int
    _records: dict[int, HostRecord]  # by id(actor), in start order
    _supervisor: threading.Thread | None
    _wake_r: Any
    _wake_w: Any

    def _host(self, actor: Actor) -> HostRecord:
        """Take ``actor`` and start its host (the caller holds the lock and checked the actor)."""
        if actor.mode == "ray":
            return self._host_ray(actor)  # type: ignore[attr-defined] (rayhost.RayHosting)
        if actor.mode == "thread":
            record = HostRecord(actor, ThreadHost(actor, lambda outcome: self._thread_ended(record, outcome)))
            actor._hosted()
        else:
            # Stop flag and counts in shared memory: the parent sees them live, even after a SIGKILL.
            actor._hosted(memoryview(_ctx.RawArray("B", 1)).cast("B"), counts.SharedCounts())
            record = HostRecord(actor, ProcessHost(actor))
        self._forget_ended()
        self._records[id(actor)] = record
        record.host.start()
        actor.pid = record.host.pid
        if actor.mode == "process":
            self._ensure_supervisor()
        return record

    def _forget_ended(self) -> None:
        """Let go of the oldest ended actors beyond the last ENDED_KEPT (the caller holds the lock):
        a long-running program that starts actors again and again keeps no process, pipe or
        channel of theirs open (their objects are the caller's to keep)."""
        ended = [key for key, r in self._records.items() if r.actor.state not in ("new", "running")]
        for key in ended[:max(0, len(ended) - ENDED_KEPT)]:
            host = self._records.pop(key).host
            if isinstance(host, ProcessHost) and host.started:
                host.status_r.close()
                with contextlib.suppress(ValueError):  # (still being reaped: the supervisor closes it)
                    host.proc.close()

    def _records_of(self, actors: Iterable[Actor]) -> list[HostRecord]:
        return [r for r in (self._records.get(id(a)) for a in actors) if r is not None]

    def _thread_ended(self, record: HostRecord, outcome: Outcome) -> None:
        actor = record.actor
        if record.cancelled_by is not None:  # stopped early because a neighbour failed
            actor._finish(error=record.cancelled_by, cancelled=True)
        elif outcome.status == "ok":
            actor._finish(result=outcome.value)
        else:
            error = from_exception(actor.name, outcome.value, outcome.record)
            self._account(actor, error, in_message=False)
            actor._finish(error=error)
            self._fail_component(actor)

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None or not self._supervisor.is_alive():
            self._supervisor = start_quiet(
                threading.Thread(target=self._supervise, name="chronopipe-supervisor", daemon=True))
        else:
            self._wake_w.send_bytes(b"w")

    def _supervise(self) -> None:
        """Wait on every actor process: read its report, notice its death within ~1 ms."""
        while True:
            with self._lock:
                watched: dict[Any, tuple[HostRecord, str]] = {}
                for r in self._records.values():
                    host = r.host
                    if isinstance(host, ProcessHost) and host.started and r.actor.state == "running":
                        if host.outcome is None and not host.status_r.closed:
                            watched[host.status_r] = (r, "report")
                        watched[host.sentinel] = (r, "exit")
                if not watched:
                    self._supervisor = None
                    return
            ready = wait([self._wake_r, *watched])
            for obj in sorted(ready, key=lambda o: watched.get(o, (None, ""))[1] != "report"):
                if obj is self._wake_r:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                elif watched[obj][1] == "report":
                    record = watched[obj][0]
                    record.host.read_report(record.actor.name)  # type: ignore[attr-defined]
                else:
                    self._reap(watched[obj][0])

    def _reap(self, record: HostRecord) -> None:
        """A process host has ended: conclude its actor from the report (or from how it died)."""
        actor, host = record.actor, record.host
        assert isinstance(host, ProcessHost)
        restart, delay = False, None
        with self._lock:
            if actor.state != "running":
                return
            host.join(1.0)
            if host.outcome is None and host.status_r.poll(0):
                host.read_report(actor.name)
            host.status_r.close()
            status, payload = host.outcome or ("none", None)
            if status == "ok":
                result, (actor.counts.received, actor.counts.emitted) = payload
            if record.cancelled_by is not None:  # stopped early because a neighbour failed
                actor._finish(error=record.cancelled_by, cancelled=True)
                return
            if status == "ok":
                actor._finish(result=result)
                return
            if status == "error":
                error = error_from_envelope(payload, host.exitcode)
                self._account(actor, error, in_message=False)
            else:  # it died without a word: start it again if it wants, else say what that cost
                delay = None if actor.stopping else actor.on_death(host.exitcode)
                if delay is not None:
                    restart = True
                else:
                    error = describe_exit(actor.name, host.exitcode)
                    error.message += actor.death_note
                    self._account(actor, error, in_message=True)
            if not restart:
                actor._finish(error=error)
        if restart:
            self._restart(record, delay or 0.0)
            return
        self._fail_component(actor)

    def _restart(self, record: HostRecord, delay: float) -> None:
        """Fork ``record``'s actor again in a new process host (after ``delay`` seconds), unless
        the run was cancelled meanwhile; the supervisor watches the new host on its next turn."""
        if delay:
            threading.Event().wait(delay)
        actor = record.actor
        with self._lock:
            if not record.restart_wanted():
                return
            host = ProcessHost(actor)
            record.host = host
            host.start()
            actor.pid = host.pid
            log.warning("actor %r: its process died; restarted as pid %s", actor.name, host.pid)

    def _component(self, failed: Actor) -> tuple[list[Actor], set[Channel]]:
        """``failed`` and every actor connected to it through channels (in start order), and their channels."""
        with self._lock:
            actors = [r.actor for r in self._records.values()]
            channels: set[Channel] = set(failed.channels())
            members: set[int] = {id(failed)}
            grew = True
            while grew:
                grew = False
                for a in actors:
                    if id(a) not in members and channels.intersection(a.channels()):
                        members.add(id(a))
                        channels.update(a.channels())
                        grew = True
            return [a for a in actors if id(a) in members], channels

    def _account(self, failed: Actor, error: ActorError, in_message: bool) -> None:
        """Tell in ``error`` how far each actor of ``failed``'s component got, and what was lost."""
        try:
            members, _ = self._component(failed)
            error.progress, error.in_flight = counts.progress(members), counts.in_flight(members)
            if in_message:
                error.message += f"; actor {failed.name}, pid {failed.pid}; " + counts.describe(
                    error.progress, error.in_flight)
                error.args = (error.actor, error.exc_type, error.message)
        except Exception:  # the accounting must never hide the failure itself
            log.exception("actor %r: could not count its component's progress", failed.name)

    def _fail_component(self, failed: Actor) -> None:
        """Stop every actor connected to ``failed`` through channels; break those channels."""
        members, channels = self._component(failed)
        with self._lock:
            self._cancel([a for a in members if a is not failed], channels, failed.error)

    def _cancel(self, actors: Iterable[Actor], channels: Iterable[Channel], reason: ActorError | None) -> None:
        running = [a for a in actors if a.state == "running"]
        records = self._records_of(running)
        for r in records:
            r.cancelled_by = r.cancelled_by or reason
        for a in running:
            a.stop()
        for ch in channels:
            ch.abort(reason)
        for r in records:
            if r.actor.state == "running":
                r.host.cancel(reason)


def _host_process(actor: Actor, status_w: Any) -> None:
    """Body of an actor's process (forked; runs nothing of the parent's teardown)."""
    init_child(readers=actor.inputs(), writers=actor.outputs)
    actor.pid = os.getpid()
    outcome = actor.run_hosted()
    stdlib_before_exit()
    if outcome.status == "ok":
        report: tuple[str, Any] = ("ok", (outcome.value, (actor.counts.received, actor.counts.emitted)))
    else:
        report = ("error", error_envelope(actor.name, outcome.value, outcome.record))
    try:
        data = dill.dumps(report)
    except Exception as exc:
        unpicklable = TypeError(f"on_stop's result cannot be pickled: {exc}")
        data = dill.dumps(("error", error_envelope(actor.name, unpicklable)))
    status_w.send_bytes(data)
    status_w.close()
