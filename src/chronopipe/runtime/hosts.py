"""How the Runtime hosts actors: a thread each, or a process each watched by a supervisor thread.

``ActorHosting`` is a part of ``Runtime`` (a mixin): the supervisor thread waits on every actor
process's report pipe and sentinel, so a death is noticed within about a millisecond; a failure
stops every actor connected to the failed one through channels (its component), and the error
says how far each of them got and how many records were lost (counts.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

import dill
from multiprocess.connection import wait

from ..actors.actor import Actor
from ..actors.errors import ActorError, describe_exit, error_envelope, error_from_envelope, from_exception
from ..channels import Channel
from . import counts
from .child import init_child, stdlib_before_exit
from .signals import start_quiet

__all__ = ["ActorHosting"]

log = logging.getLogger("chronopipe.runtime")


class ActorHosting:
    """The actor-hosting half of the Runtime (its attributes are made in ``Runtime._setup``)."""

    _lock: Any
    _actors: list[Actor]
    _supervisor: threading.Thread | None
    _wake_r: Any
    _wake_w: Any

    def _host_thread(self, actor: Actor) -> None:
        status, payload = actor._host_main()
        if actor._cancelled_by is not None:  # stopped early because a neighbour failed
            actor._finish(error=actor._cancelled_by, cancelled=True)
        elif status == "ok":
            actor._finish(result=payload)
        else:
            error = from_exception(actor.name, payload, actor._failed_record)
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
                watched: dict[Any, tuple[Actor, str]] = {}
                for a in self._actors:
                    if a.mode == "process" and a.state == "running":
                        if a._status_r is not None and a._outcome is None:
                            watched[a._status_r] = (a, "report")
                        watched[a._host.sentinel] = (a, "exit")
                if not watched:
                    self._supervisor = None
                    return
            ready = wait([self._wake_r, *watched])
            for obj in sorted(ready, key=lambda o: watched.get(o, (None, ""))[1] != "report"):
                if obj is self._wake_r:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                elif watched[obj][1] == "report":
                    self._read_report(watched[obj][0])
                else:
                    self._reap(watched[obj][0])

    def _read_report(self, actor: Actor) -> None:
        try:
            data = actor._status_r.recv_bytes()
        except (EOFError, OSError):
            actor._outcome = ("none", None)
            return
        try:
            actor._outcome = dill.loads(data)
        except Exception as exc:
            actor._outcome = ("error", error_envelope(actor.name, TypeError(f"its report cannot be unpickled: {exc}")))

    def _reap(self, actor: Actor) -> None:
        with self._lock:
            if actor.state != "running":
                return
            proc = actor._host
            proc.join(1.0)
            if actor._outcome is None and actor._status_r.poll(0):
                self._read_report(actor)
            actor._status_r.close()
            status, payload = actor._outcome or ("none", None)
            if status == "ok":
                result, (actor._received, actor._emitted) = payload
            if actor._cancelled_by is not None:  # stopped early because a neighbour failed
                actor._finish(error=actor._cancelled_by, cancelled=True)
                return
            if status == "ok":
                actor._finish(result=result)
                return
            if status == "error":
                error = error_from_envelope(payload, proc.exitcode)
                self._account(actor, error, in_message=False)
            else:  # it died without a word: say what that cost
                error = describe_exit(actor.name, proc.exitcode)
                self._account(actor, error, in_message=True)
            actor._finish(error=error)
        self._fail_component(actor)

    def _component(self, failed: Actor) -> tuple[list[Actor], set[Channel]]:
        """``failed`` and every actor connected to it through channels (in start order), and their channels."""
        with self._lock:
            channels: set[Channel] = set(failed.channels())
            members: set[Actor] = {failed}
            grew = True
            while grew:
                grew = False
                for a in self._actors:
                    if a not in members and channels.intersection(a.channels()):
                        members.add(a)
                        channels.update(a.channels())
                        grew = True
            return [a for a in self._actors if a in members], channels

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
        for a in actors:
            if a.state == "running":
                a._cancelled_by = a._cancelled_by or reason
                a._stop[0] = 1
        for ch in channels:
            ch.abort(reason)
        for a in actors:
            if a.state == "running" and a.mode == "process":
                a._host.terminate()


def _host_process(actor: Actor, status_w: Any) -> None:
    """Body of an actor's process (forked; runs nothing of the parent's teardown)."""
    init_child(readers=actor.inputs(), writers=actor.outputs)
    actor.pid = os.getpid()
    status, payload = actor._host_main()
    stdlib_before_exit()
    counts = (actor._received, actor._emitted)
    if status == "ok":
        report: tuple[str, Any] = ("ok", (payload, counts))
    else:
        report = ("error", error_envelope(actor.name, payload, actor._failed_record))
    try:
        data = dill.dumps(report)
    except Exception as exc:
        unpicklable = TypeError(f"on_stop's result cannot be pickled: {exc}")
        data = dill.dumps(("error", error_envelope(actor.name, unpicklable)))
    status_w.send_bytes(data)
    status_w.close()
