"""The Ray host: an actor with ``mode="ray"`` runs in a Ray actor, on any node of the cluster.

``RayHost`` implements ``actors.hosting.Host`` as ThreadHost and ProcessHost do. Its Ray actor
(``_Shell``, two threads) is given the actor pickled as Ray pickles (cloudpickle: a class or a
lambda of ``__main__`` goes by value, an importable one by name) and runs ``actor.run_hosted()``
on one thread; the other answers ``stop()`` and ``counts()`` meanwhile. The outcome comes back
as the return value of ``run()``, pickled as a process's report is (hosts.py). The actor's
channels must be ray channels (channels/onray.py): nothing else reaches another machine.

``RayHosting`` is the part of ``Runtime`` that watches Ray hosts: one thread (``ray.wait`` on
every running actor's ``run()``, 50 ms at a time) concludes an actor when its call returns, and
notices a death when the call raises Ray's actor error; then, as for a process, it asks
``actor.on_death`` whether to start it again (a new Ray actor, from the parent's copy), or
fails its component. The same thread carries ``actor.stop()`` over to the Ray actor (a stop
flag set by a signal handler is only read here) and brings its counts home twice a second.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import warnings
from typing import Any

import dill

from ..actors.actor import Actor
from ..actors.errors import ActorError, describe_exit, error_envelope, error_from_envelope, from_exception
from ..actors.hosting import Counts
from ..channels.rayhub import ensure_ray, require_ray
from .signals import start_quiet

__all__ = ["RayHost", "RayHosting"]

log = logging.getLogger("chronopipe.runtime")
#: Seconds between two readings of a Ray actor's counts.
COUNTS_EVERY = 0.5
#: Seconds after which an actor Ray has not started yet is worth a warning.
PENDING_WARNING = 10


class _Shell:
    """The Ray actor around one chronopipe actor (threaded: run() on one thread, the rest on the other)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.unpickled = name, None
        try:
            self.actor: Actor = require_ray().cloudpickle.loads(data)
        except Exception as exc:  # reported by run(), as the actor's error
            self.unpickled = TypeError(
                f"the actor cannot be unpickled on its Ray worker ({type(exc).__name__}: {exc}); Ray workers "
                "import your classes by module name: install that code on every node, or give it to Ray with "
                "ray.init(runtime_env={'py_modules': [...]} or {'working_dir': ...})")

    def pid(self) -> tuple[int, str]:
        return os.getpid(), os.uname().nodename

    def run(self) -> bytes:
        if self.unpickled is not None:
            return dill.dumps(("error", error_envelope(self.name, self.unpickled)))
        actor = self.actor
        actor.pid = os.getpid()
        outcome = actor.run_hosted()
        if outcome.status == "ok":
            report: tuple[str, Any] = ("ok", (outcome.value, (actor.counts.received, actor.counts.emitted)))
        else:
            report = ("error", error_envelope(actor.name, outcome.value, outcome.record))
        try:
            return dill.dumps(report)
        except Exception as exc:
            unpicklable = TypeError(f"on_stop's result cannot be pickled: {exc}")
            return dill.dumps(("error", error_envelope(actor.name, unpicklable)))

    def stop(self) -> None:
        if self.unpickled is None:
            self.actor.stop()

    def counts(self) -> tuple[int, int]:
        if self.unpickled is not None:
            return 0, 0
        return self.actor.counts.received, self.actor.counts.emitted


_remote_shell: Any = None


def _shell_class() -> Any:
    global _remote_shell
    if _remote_shell is None:
        _remote_shell = require_ray().remote(_Shell)
    return _remote_shell


class RayHost:
    """Runs the actor in a Ray actor; ``outcome`` is its report once ``run()`` returned or it died.

    ``ray_options`` (the actor's attribute, if any) go to ``.options()``: by default the Ray actor
    takes no CPU of the scheduler's (so a pipeline of many nodes fits a small cluster); give
    ``{"num_cpus": 1}``, ``{"scheduling_strategy": "SPREAD"}`` and so on to place it.
    """

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.pid: int | None = None
        self.node: str | None = None
        self.shell: Any = None
        self.run_ref: Any = None
        self.pid_ref: Any = None
        self.outcome: tuple[str, Any] | None = None
        self.death: str | None = None  # Ray's word on how it died
        self.stop_sent = False
        self.counts_ref: Any = None
        self.counts_at = 0.0
        self.started_at = 0.0
        self.said_waiting = False
        self._ended = threading.Event()

    def start(self) -> None:
        """Create the Ray actor (it starts in its own time: ``pid`` is learnt later).

        Raises:
            ValueError: ``ray_options`` Ray refuses, or asking for more than the cluster has.
            TypeError: the actor cannot be pickled (the message says where in it).
        """
        ray = ensure_ray()
        options = {"num_cpus": 0, "max_concurrency": 2, "max_restarts": 0,
                   **(getattr(self.actor, "ray_options", None) or {})}
        _check_room(options, ray.cluster_resources())
        with self.actor.shipping():  # (the parent's copy: counts and stop flag as they are now)
            try:
                data = ray.cloudpickle.dumps(self.actor)
            except Exception as exc:
                raise TypeError(f"the actor cannot be sent to Ray: {_culprit(self.actor)} ({type(exc).__name__}: "
                                f"{exc}); give it only what pickles, and open files, sockets and connections in "
                                "its on_start (a node's begin)") from None
        self.started_at = time.monotonic()
        self.shell = _shell_class().options(**options).remote(self.actor.name, data)
        self.run_ref = self.shell.run.remote()
        self.pid_ref = self.shell.pid.remote()

    def alive(self) -> bool:
        return self.shell is not None and not self._ended.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self.shell is not None:
            self._ended.wait(timeout)

    def cancel(self, reason: ActorError | None, *, kill: bool = False) -> None:
        """Tell the Ray actor to stop (``kill``: end its process now, as ``ray.kill``)."""
        if self.shell is None or self._ended.is_set():
            return
        try:
            if kill:
                require_ray().kill(self.shell, no_restart=True)
            elif not self.stop_sent:
                self.stop_sent = True
                self.shell.stop.remote()
        except Exception:  # Ray is shutting down: the actor goes with it
            log.debug("could not cancel Ray actor %r", self.actor.name, exc_info=True)

    def ended(self) -> None:
        self._ended.set()


class RayHosting:
    """The Ray half of the Runtime's hosting (a mixin; attributes made in ``Runtime._setup``)."""

    _lock: Any
    _records: dict[int, Any]
    _ray_supervisor: threading.Thread | None = None

    def _host_ray(self, actor: Actor) -> Any:
        """Take ``actor`` and start it on Ray (the caller holds the lock and checked it)."""
        from .hosts import HostRecord

        actor._hosted(bytearray(1), Counts())
        record = HostRecord(actor, RayHost(actor))
        self._forget_ended()  # type: ignore[attr-defined]
        self._records[id(actor)] = record
        _start_or_fail(record)
        if self._ray_supervisor is None or not self._ray_supervisor.is_alive():
            self._ray_supervisor = start_quiet(
                threading.Thread(target=self._supervise_ray, name="chronopipe-ray-supervisor", daemon=True))
        return record

    def _supervise_ray(self) -> None:
        ray = require_ray()
        while True:
            with self._lock:
                watched = {r.host.run_ref: r for r in self._records.values()
                           if isinstance(r.host, RayHost) and r.host.run_ref is not None
                           and r.actor.state == "running" and r.host.outcome is None}
                if not watched:
                    self._ray_supervisor = None
                    return
            try:
                ready, _ = ray.wait(list(watched), num_returns=len(watched), timeout=0.05)
            except Exception:  # Ray was shut down under us: every actor of it is gone
                log.debug("ray.wait failed", exc_info=True)
                ready = list(watched)
            hosts = {ref: record.host for ref, record in watched.items()}
            for ref in ready:
                self._conclude_ray(watched[ref], ref)
            for ref, record in watched.items():
                if record.host is hosts[ref] and hosts[ref].outcome is None:  # (not restarted meanwhile)
                    self._tend(record, hosts[ref])

    def _tend(self, record: Any, host: RayHost) -> None:
        """Carry a stop over, learn the pid, bring the counts home."""
        ray, actor = require_ray(), record.actor
        if actor._stop[0] and not host.stop_sent:
            host.cancel(None)
        if host.pid is None and not host.said_waiting and time.monotonic() - host.started_at > PENDING_WARNING:
            host.said_waiting = True  # (Ray keeps an actor it has no room for pending, silently)
            warnings.warn(f"actor {actor.name!r}: Ray has not started it after {PENDING_WARNING} s: does the cluster "
                          f"have room for its ray_options {getattr(actor, 'ray_options', None) or {}!r}? (`ray "
                          "status` says what is free)", RuntimeWarning, stacklevel=1)
        try:
            if host.pid is None and host.pid_ref is not None and ray.wait([host.pid_ref], timeout=0)[0]:
                host.pid, host.node = ray.get(host.pid_ref)
                actor.pid = host.pid
            if host.counts_ref is not None and ray.wait([host.counts_ref], timeout=0)[0]:
                actor.counts.received, actor.counts.emitted = ray.get(host.counts_ref)
                host.counts_ref = None
            now = time.monotonic()
            if host.counts_ref is None and now - host.counts_at >= COUNTS_EVERY:
                host.counts_ref, host.counts_at = host.shell.counts.remote(), now
        except ray.exceptions.RayError:
            pass  # it died: run()'s call says so on a later turn

    def _conclude_ray(self, record: Any, ref: Any) -> None:
        """``run()`` returned or raised: conclude the actor, or start it again after a death."""
        ray, host, actor = require_ray(), record.host, record.actor
        try:
            host.outcome = dill.loads(ray.get(ref))
        except ray.exceptions.RayActorError as exc:
            host.outcome, host.death = ("none", None), str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        except Exception as exc:
            host.outcome = ("error", error_envelope(actor.name, exc))
        if host.pid is None:  # it ended before the supervisor learnt where it ran
            try:
                host.pid, host.node = ray.get(host.pid_ref, timeout=1.0)
                actor.pid = host.pid
            except Exception:  # it died before it could say
                pass
        restart, delay, error = False, None, None
        host.cancel(None, kill=True)  # its Ray actor ends with it (a new one is made for a restart)
        with self._lock:
            host.ended()
            if actor.state != "running":
                return
            status, payload = host.outcome
            if record.cancelled_by is not None:
                actor._finish(error=record.cancelled_by, cancelled=True)
                return
            if status == "ok":
                result, (actor.counts.received, actor.counts.emitted) = payload
                actor._finish(result=result)
                return
            if status == "error":
                error = error_from_envelope(payload, None)
                self._account(actor, error, in_message=False)  # type: ignore[attr-defined]
            else:
                _orphan_calls(actor)
                delay = None if actor.stopping else actor.on_death(-9)
                if delay is not None:
                    restart = True
                else:
                    error = describe_exit(actor.name, -9)
                    error.message = (f"its Ray actor died without reporting ({host.death})" + actor.death_note)
                    self._account(actor, error, in_message=True)  # type: ignore[attr-defined]
            if not restart:
                actor._finish(error=error)
        if restart:
            threading.Thread(target=self._restart_ray, args=(record, delay or 0.0), daemon=True).start()
            return
        self._fail_component(actor)  # type: ignore[attr-defined]

    def _restart_ray(self, record: Any, delay: float) -> None:
        if delay:
            time.sleep(delay)
        actor = record.actor
        with self._lock:
            if not record.restart_wanted():
                return
            record.host = RayHost(actor)
            try:
                _start_or_fail(record)
            except ActorError:  # it cannot be started again: it failed, and its component with it
                failed = True
            else:
                failed = False
                log.warning("actor %r: its Ray actor died; restarted", actor.name)
            if not failed and (self._ray_supervisor is None or not self._ray_supervisor.is_alive()):
                self._ray_supervisor = start_quiet(
                    threading.Thread(target=self._supervise_ray, name="chronopipe-ray-supervisor", daemon=True))
        if failed:
            self._fail_component(actor)  # type: ignore[attr-defined]


def _start_or_fail(record: Any) -> None:
    """Start ``record``'s Ray host; if it cannot start, its actor fails now with an ActorError
    naming it (the caller holds the runtime's lock).

    Raises:
        ActorError: the actor's error, whatever start() raised.
    """
    try:
        record.host.start()
    except Exception as exc:
        error = from_exception(record.actor.name, exc if isinstance(exc, (TypeError, ValueError)) else ValueError(
            f"it cannot be started on Ray ({type(exc).__name__}: {exc})"))
        record.actor._finish(error=error)
        raise error from None


#: ``.options()`` keywords that ask for a resource, and its name in ``ray.cluster_resources()``.
_RESOURCES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def _check_room(options: dict[str, Any], cluster: dict[str, float]) -> None:
    """Refuse options asking for more of a resource than the whole cluster has (Ray would keep
    the actor pending for ever).

    Raises:
        ValueError: naming the resource, what is asked and what there is.
    """
    wanted = {name: options[key] for key, name in _RESOURCES.items() if options.get(key)}
    wanted.update(options.get("resources") or {})
    for name, amount in wanted.items():
        if amount > cluster.get(name, 0):
            raise ValueError(f"its ray_options ask for {amount} {name} and the Ray cluster has "
                             f"{cluster.get(name, 0):g} in all: Ray would never start it")


def _orphan_calls(actor: Actor) -> None:
    """A Ray actor died: what its inboxes' calls still waiting in the hub would take is left for
    its successor (or for nobody), before ``on_death`` may send anything again."""
    for channel in actor.inputs():
        if getattr(channel, "mode", None) == "ray":
            try:
                channel.reader_died()  # type: ignore[attr-defined]
            except Exception:  # a broken channel: nothing is read from it any more
                log.debug("channel %r: could not detach its dead reader", channel.name, exc_info=True)


def _culprit(obj: Any, path: str = "actor", depth: int = 8, seen: set[int] | None = None) -> str:
    """Where in ``obj`` the value that cannot be pickled is (``actor.unit.owner.guard``), as deep
    as its attributes, list items and dict values go: said in the error, which a whole graph of
    nodes reached through the actor would not tell otherwise. References back to the objects
    already looked into are not followed (the culprit is not behind them)."""
    seen = set() if seen is None else seen
    if depth == 0 or id(obj) in seen:
        return path
    seen.add(id(obj))
    if isinstance(obj, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    else:
        try:  # what pickling takes of it (an Actor leaves its join event out)
            state = obj.__getstate__()
        except Exception:
            state = None
        if isinstance(state, tuple):  # (__dict__, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        attrs = state if isinstance(state, dict) else {}
        if not attrs:
            return path
        children = [(f"{path}.{k}", v) for k, v in attrs.items()]
    for where, value in children:
        if not _pickles(value, seen):
            return _culprit(value, where, depth - 1, seen)
    return path


def _pickles(value: Any, seen: set[int]) -> bool:
    """Whether ``value`` pickles as Ray pickles, the objects in ``seen`` standing for themselves."""
    cloudpickle = require_ray().cloudpickle

    class Probe(cloudpickle.CloudPickler):  # type: ignore[misc,name-defined]
        def persistent_id(self, obj: Any) -> Any:
            return id(obj) if obj is not value and id(obj) in seen else None

    try:
        Probe(io.BytesIO()).dump(value)
    except Exception:
        return False
    return True
