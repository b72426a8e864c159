"""Target: what a control server serves, and ActorsTarget, the one over a set of actors.

A :class:`Target` is the running thing a :class:`~chronopipe.control.ControlServer` answers
for: a Runtime's actors, a pipeline, a ``chronopipe run``. Implement one by subclassing it,
as pykka's actors are written: override the methods below; each says where it runs, what it
must not do, and what happens if it raises.

Every method runs on the control server's own thread (its event loop), except ``stop``, which
runs on a thread of its own; so none may block (``stop`` excepted: it waits, up to its
timeout), and a method that does slow work makes every other request wait for it. A method
that raises answers its request with ``500 {"error": "ExcType: message"}`` (one line, never a
traceback; logged on ``chronopipe.control``); the server goes on serving. Whatever a method
returns is JSON (dicts, lists, str, int, float, bool, None) and passes through the server's
scrub: the token and every string of :meth:`Target.secrets` are replaced by ``***``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from ..actors import Actor
from ..channels.quiet import start_quiet
from .security import remove_token_files

__all__ = ["ACTOR_FIELDS", "ActorsTarget", "InputClosed", "InputFull", "Target", "kill_process"]

#: The fields of one actor's row in ``GET /actors`` and ``GET /stats``, in this order.
ACTOR_FIELDS = ("name", "mode", "state", "pid", "received", "emitted", "rate", "queue", "rss",
                "restarts", "dead_letters")
#: Seconds ``kill_process`` gives the process to end by SIGTERM before it kills it outright.
KILL_GRACE = 0.9
#: Seconds an actor process's RSS is kept before it is read again: a read is three system calls,
#: each letting go of the GIL, which a busy feed then holds for a switch interval; memory moves
#: slowly, and the rate is a one-second figure too.
RSS_EVERY = 1.0
#: Seconds ``kill_process`` waits before its SIGTERM, so the answer of ``POST /kill`` leaves first.
KILL_DELAY = 0.05


class InputFull(Exception):  # noqa: N818 (says the state of the input, as queue.Full does)
    """``push`` cannot take the records now (the input's buffer is full): answered ``429`` with a
    ``Retry-After`` header of ``retry_after`` seconds (rounded up)."""

    def __init__(self, message: str = "the input is full", retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InputClosed(Exception):  # noqa: N818 (says the state of the input)
    """``push`` cannot take records any more (the input was closed, the pipeline is stopping):
    answered ``409``."""


class Target(ABC):
    """What a control server serves: override ``info``, ``actors``, ``stats`` and ``stop``; the
    others have defaults (no features, no inputs, ``kill`` ends this process, no secrets).

    ``name`` names what runs (a pipeline's name, a run's file); ``kind`` says what it is
    (``"runtime"``, ``"pipeline"``, ``"run"``): both are shown by ``GET /info``.
    """

    name: str = "chronopipe"
    kind: str = "runtime"

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """What is running: ``{"name", "kind", "state", "running": [names of what runs]}`` (more
        keys are welcome). ``GET /info`` adds the version, pid and start time.

        Runs on the server's thread for every ``GET /info``: must not block.
        Raises: anything, answered 500 with one line.
        """

    @abstractmethod
    def actors(self) -> list[dict[str, Any]]:
        """One row per actor, with the keys of :data:`ACTOR_FIELDS` (``GET /actors``).

        Runs on the server's thread: must not block.
        Raises: anything, answered 500 with one line.
        """

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """``{"state", "seconds", "totals": {"received", "emitted", "dead_letters", "restarts"},
        "actors": rows}`` and whatever else the target counts (``GET /stats``). It should be
        cheap: monitors poll it, and it answers within milliseconds while a pipeline runs.

        Runs on the server's thread: must not block.
        Raises: anything, answered 500 with one line.
        """

    @abstractmethod
    def stop(self, timeout: float) -> dict[str, Any]:
        """Drain and end: stop taking input, let what is in flight finish, wait up to ``timeout``
        seconds for that; answer ``{"state": "finished" | "stopping", ...}`` with the final counts
        (``"stopping"`` when the timeout ran out first). ``POST /stop`` answers with it.

        Runs on a thread of its own (not the server's): the one method that may block, for up
        to ``timeout`` seconds; the server goes on answering meanwhile.
        Raises: anything, answered 500 with one line.
        """

    def features(self) -> dict[str, dict[str, list[str]]]:
        """The fields seen in the records of each input: ``{input: {field: [type names]}}``
        (``GET /features``). Default: none.

        Runs on the server's thread: must not block.
        Raises: anything, answered 500 with one line.
        """
        return {}

    def inputs(self) -> list[str]:
        """The names ``push`` accepts (shown by ``GET /info``). Default: none.

        Runs on the server's thread: must not block.
        Raises: anything, answered 500 with one line.
        """
        return []

    def push(self, input: str, records: list[Any]) -> int:
        """Put ``records`` into the input named ``input``; the number taken (``POST /push``).

        Runs on the server's thread: must not block (a full input raises InputFull instead).
        Raises:
            KeyError: no input of that name (404).
            InputFull: not now (429, with Retry-After).
            InputClosed: no more (409).
            Exception: anything else, answered 500 with one line.
        """
        raise KeyError(input)

    def kill(self) -> None:
        """End now (``POST /kill``, after its ``202`` answer was sent). Default:
        :func:`kill_process`, which ends this process within a second.

        Runs on the server's thread: must not block (start what takes time on a thread).
        Raises: anything, logged (the answer is gone already).
        """
        kill_process()

    def secrets(self) -> list[str]:
        """Strings never to appear in an answer (passwords of profiles, DSNs): the server
        replaces each by ``***`` in every response body, with its own token. Default: none.

        Runs on the server's thread for every response: must not block, should be cheap.
        Raises: anything, and the response is a 500 saying only that secrets() failed.
        """
        return []


class ActorsTarget(Target):
    """A target over the actors a callable gives (``Runtime().actors``, a pipeline's actors).

    >>> target = ActorsTarget("demo", list)
    >>> target.info()
    {'name': 'demo', 'kind': 'runtime', 'state': 'idle', 'running': []}

    ``rate`` is the records per second received over the last second or more (measured between
    two calls at least a second apart, kept per actor name); ``queue`` is the inbox's buffered
    records as this process sees them; ``rss`` the resident memory of the actor's process (this
    one, for a thread actor), read at most once a second (``RSS_EVERY``). Override :meth:`row`
    to add restarts and dead letters.
    """

    def __init__(self, name: str, actors: Callable[[], Iterable[Actor]], *, kind: str = "runtime") -> None:
        self.name = name
        self.kind = kind
        self._actors = actors
        self._lock = threading.Lock()
        self._rates: dict[str, tuple[float, int, float]] = {}  # name -> (since, received then, rate)
        self._procs: dict[int, psutil.Process] = {}
        self._rss_read: dict[int, tuple[float, int]] = {}  # pid -> (when, rss)
        self._made = time.time()

    def members(self) -> list[Actor]:
        """The actors served now."""
        return list(self._actors())

    def counts(self, actor: Actor) -> tuple[int, int]:
        """``(received, emitted)`` of ``actor``, its row's counts and what its rate is measured on:
        its records (a subclass counting something else, a run's rows, overrides it)."""
        counts = actor.counts
        return int(counts.received), int(counts.emitted)

    def row(self, actor: Actor) -> dict[str, Any]:
        """One :data:`ACTOR_FIELDS` row for ``actor`` (restarts and dead letters 0: a subclass that
        knows them sets them). Raises nothing for an actor that ended or whose process is gone."""
        received, emitted = self.counts(actor)
        pid = actor.pid or os.getpid()
        return {
            "name": actor.name, "mode": actor.mode, "state": actor.state, "pid": pid,
            "received": received, "emitted": emitted,
            "rate": self._rate(actor, received), "queue": _queue(actor), "rss": self._rss(pid),
            "restarts": 0, "dead_letters": 0,
        }

    def actors(self) -> list[dict[str, Any]]:
        return [self.row(a) for a in self.members()]

    def info(self) -> dict[str, Any]:
        members = self.members()
        return {"name": self.name, "kind": self.kind, "state": _state(members),
                "running": [a.name for a in members if a.state == "running"]}

    def stats(self) -> dict[str, Any]:
        members = self.members()
        rows = [self.row(a) for a in members]
        totals = {key: sum(r[key] for r in rows) for key in ("received", "emitted", "dead_letters", "restarts")}
        return {"state": _state(members), "seconds": round(_seconds(members), 3), "totals": totals, "actors": rows}

    def stop(self, timeout: float) -> dict[str, Any]:
        """Ask every running actor to stop (``Actor.stop``), wait up to ``timeout`` seconds for them
        to end; the final stats, ``state`` ``"finished"`` or, if some still run, ``"stopping"``."""
        deadline = time.monotonic() + timeout
        running = [a for a in self.members() if a.state == "running"]
        for actor in running:
            actor.stop()
        for actor in running:
            actor.wait(max(0.0, deadline - time.monotonic()))
        answer = self.stats()
        answer["state"] = "stopping" if any(a.state == "running" for a in running) else "finished"
        return answer

    def _rate(self, actor: Actor, received: int) -> float:
        if actor.state != "running":
            return 0.0
        now = time.monotonic()
        with self._lock:
            kept = self._rates.get(actor.name)
            if kept is None:  # first look: the average since it started, as far as we know
                started = actor.started_at
                elapsed = time.time() - started if started else 0.0
                rate = received / elapsed if elapsed > 0 else 0.0
                self._rates[actor.name] = (now, received, rate)
                return round(rate, 3)
            since, before, rate = kept
            if now - since >= 1.0:
                rate = max(0, received - before) / (now - since)
                self._rates[actor.name] = (now, received, rate)
            return round(rate, 3)

    def _rss(self, pid: int) -> int | None:
        now = time.monotonic()
        kept = self._rss_read.get(pid)
        if kept is not None and now - kept[0] < RSS_EVERY:
            return kept[1]
        try:
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            rss = int(proc.memory_info().rss)
        except (psutil.Error, OSError):
            self._procs.pop(pid, None)
            self._rss_read.pop(pid, None)
            return None
        self._rss_read[pid] = (now, rss)
        return rss


def _queue(actor: Actor) -> int:
    inbox = actor.inbox
    if inbox is None:
        return 0
    try:
        return max(0, int(inbox.qsize()))
    except Exception:  # a closed or broken channel has nothing buffered we can see
        return 0


def _state(members: list[Actor]) -> str:
    if not members:
        return "idle"
    states = {a.state for a in members}
    if "running" in states:
        return "running"
    return "failed" if states & {"failed", "cancelled"} else "finished"


def _seconds(members: list[Actor]) -> float:
    started = [a.started_at for a in members if a.started_at]
    if not started:
        return 0.0
    if any(a.state == "running" for a in members):
        return time.time() - min(started)
    ended = [a.ended_at for a in members if a.ended_at]
    return (max(ended) if ended else time.time()) - min(started)


def kill_process() -> None:
    """End this process within a second, from a thread, without blocking the caller.

    After ``KILL_DELAY`` (so an answer being sent leaves first) it removes the token files the
    control servers of this process wrote (a process that dies leaves none), sends SIGTERM to this process
    (the runtime's handler ends its actor processes, then the process dies of it, status 143);
    if the process is still alive ``KILL_GRACE`` seconds later (a handler that does not exit, a
    main thread stuck in C code), it SIGKILLs every child process (psutil, recursively) and
    ends with ``os._exit(143)``. Raises nothing.
    """
    start_quiet(threading.Thread(target=_kill_soon, name="chronopipe-kill", daemon=True))


def _kill_soon() -> None:
    begun = time.monotonic()
    time.sleep(KILL_DELAY)
    remove_token_files()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(max(0.0, KILL_GRACE - (time.monotonic() - begun)))
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    os._exit(143)
