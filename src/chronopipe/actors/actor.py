"""Actor: a loop over an inbox (or a source), hosted on a thread or a process.

Behaviour is given as callables (lambdas and closures are fine: process actors are forked,
so nothing needs pickling to start) or by subclassing and overriding the hooks, which are
named for when they run: ``on_start``, ``on_receive``, ``on_stop``, ``on_failure`` (in the
actor's thread or process) and ``on_result`` (in the parent, once it has ended).

A host (runtime/hosts.py) calls the few methods of the host contract, and nothing else:
``_hosted``, ``run_hosted``, ``_finish`` and ``stop``; it may replace ``counts`` (hosting.py
says when each runs, where, and what happens if it raises). Actors import no runtime code:
``start()`` asks ``hosting.default_runtime()``, which the runtime installs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..channels import END, Channel, ChannelBroken, Mode, NotPicklable
from ..channels.outbox import BATCH, Outbox, batch_limit
from .errors import NO_RECORD, ActorError, from_exception
from .hosting import Counts, HostingRuntime, Outcome, default_runtime

__all__ = ["Actor", "ActorStatistics", "Mode"]

log = logging.getLogger("chronopipe.actor")

EMIT_BATCH = BATCH  # records per batch an actor sends at most (fewer if an output's batch_size says so)
SLOW_CHUNK = 0.02  # seconds: a source chunk slower than this shrinks back to one record


@dataclass(frozen=True)
class ActorStatistics:
    """A snapshot of one actor. Counts of a process actor are final once it has ended."""

    name: str
    mode: str
    state: str
    received: int
    emitted: int
    started_at: float | None
    ended_at: float | None
    pid: int | None


class Actor:
    """A named loop over an inbox channel, writing to output channels.

    >>> from chronopipe import Channel
    >>> inbox, out = Channel(name="in"), Channel(name="out")
    >>> double = Actor("double", lambda x: 2 * x, inbox=inbox, outputs=out).start()
    >>> _ = inbox.put_many([1, 2, 3]); inbox.close()
    >>> list(out), double.join() is None
    ([2, 4, 6], True)

    ``on_receive(item)`` returns the record to emit (None emits nothing; call
    ``self.emit`` for more than one). A ``source`` (an iterable, or a callable returning one,
    called in the actor's own thread or process) makes a producer without an inbox. The
    return value of ``on_stop`` becomes ``join()``'s result, also for process actors.
    """

    #: Every output gets every record the actor emits (False: its records are split among its
    #: outputs, as a pipeline node routes or deals them; what a failure report counts on, in
    #: runtime/counts.py).
    broadcast: bool = True

    def __init__(
        self,
        name: str,
        on_receive: Callable[[Any], Any] | None = None,
        *,
        inbox: Channel | None = None,
        outputs: Channel | Iterable[Channel] = (),
        source: Iterable[Any] | Callable[[], Iterable[Any]] | None = None,
        mode: Mode = "thread",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("every actor needs a non-empty name: it shows up in logs, statistics and errors")
        if mode not in ("thread", "process", "ray"):
            raise ValueError(f"actor {name!r}: mode must be 'thread', 'process' or 'ray', not {mode!r}")
        self.name = name
        self.mode: Mode = mode
        self.inbox = inbox
        self.outputs: list[Channel] = [outputs] if isinstance(outputs, Channel) else list(outputs)
        self._handler = on_receive
        self._source = source
        #: what emit() and the loops send: each batch to every output (channels/outbox.py)
        self._outbox = Outbox(self._deliver, limit=EMIT_BATCH)
        if type(self).emit is Actor.emit:  # emit() is the outbox's put: one call a record, not two
            self.emit = self._outbox.put  # type: ignore[method-assign,assignment]
        self._failed_record: Any = NO_RECORD
        #: received / emitted so far; a host may replace it (hosting.Counts)
        self.counts: Counts = Counts()
        self.state = "new"
        self.error: ActorError | None = None
        self.result: Any = None
        self.pid: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._done = threading.Event()
        # One byte, read per record: a bytearray here, a view of shared memory for a process.
        self._stop: bytearray | memoryview = bytearray(1)

    # -- hooks -------------------------------------------------------------------------
    def on_start(self) -> None:
        """Runs first, in the actor's own thread or process."""

    def on_receive(self, item: Any) -> Any:
        """Handle one record; the return value (unless None) is emitted."""
        if self._handler is None:
            raise NotImplementedError(f"actor {self.name!r}: give on_receive= or override on_receive()")
        return self._handler(item)

    def on_stop(self) -> Any:
        """Runs after the last record (or after stop()); its value is the actor's result."""
        return None

    def on_failure(self, exc: BaseException) -> None:
        """Runs in the actor when it fails, before the failure is reported."""

    def on_death(self, exitcode: int | None) -> float | None:
        """Its process died without reporting (SIGKILL, ``os._exit``): seconds to wait before the
        runtime starts it again in a new process, forked from the parent's copy of the actor (as
        the first one was: its channels and shared counts are the same), or None to fail as
        usual. Runs in the parent, on the supervisor thread; ``death_note`` is added to the
        error when it gives up. The default never restarts."""
        return None

    #: Said after the error of a process that died and was not restarted (see ``on_death``).
    death_note = ""

    def on_result(self, result: Any) -> None:
        """Adopt what the actor's host brought back: ``result`` is ``on_stop``'s value.

        Runs in the parent process, once, when the actor ended normally (not when it failed or
        was cancelled), before ``join()`` returns: in the actor's own thread for a thread host,
        in the runtime's supervisor thread (or the thread calling ``Runtime.shutdown()``) for a
        process host. For a process actor ``result`` is a copy made in the child, so this is
        where the parent's object takes over the child's figures (a reader's rejects, a merge's
        report); for a thread actor it is the very object on_stop returned: adopting it must be
        harmless. If it raises, the actor ends ``failed`` with that error (join() raises it); its
        outputs were already closed normally, so its neighbours go on.
        """

    # -- what the loop does ------------------------------------------------------------
    def run(self) -> None:
        """The actor's loop: drain the source or the inbox. Override for other loops."""
        if self._source is not None:
            self._run_source()
        elif self.inbox is not None:
            self._run_inbox()
        else:
            raise ValueError(f"actor {self.name!r} has nothing to do: give it an inbox or a source")

    def _main(self) -> None:
        """What the host runs between on_start and on_stop (run(), unless a subclass's
        public run() means something else, as the seed's multiplexers' does)."""
        self.run()

    def emit(self, item: Any) -> None:
        """Send one record to every output (it waits in the actor's outbox with the loop's own
        records, in order, until a whole batch is there or the loop's batch is handled)."""
        self._outbox.put(item)

    def flush(self) -> None:
        """Send everything emitted so far now, and have the outputs send their partial batches
        too (for custom loops that go idle)."""
        self._outbox.flush()
        for ch in self.outputs:
            ch.flush()

    @property
    def stopping(self) -> bool:
        """True once stop() was asked for; custom loops should return soon after."""
        return bool(self._stop[0])

    def _deliver(self, batch: list[Any], timeout: float | None) -> None:
        """The outbox's sender: one batch to every output, counted as emitted once all took it."""
        for ch in self.outputs:
            ch.put_many(batch, timeout)
        self.counts.emitted += len(batch)

    def _run_source(self) -> None:
        # Chunks grow from 1 to EMIT_BATCH records while the source is fast and fall back to 1
        # when a chunk takes long, so stop() is noticed within about one record of a slow
        # source and costs nothing per record of a fast one. Inside a chunk the channel takes
        # records as they come, so none waits in our hands for the next: the one loop that skips
        # the actor's outbox, since only the channel's own outbox has a thread to send what came
        # while the source pauses (its linger thread).
        src = self._source
        it = iter(src() if callable(src) else src)  # type: ignore[operator]
        stop, size, counts = self._stop, 1, self.counts
        single = self.outputs[0] if len(self.outputs) == 1 else None
        while not stop[0]:
            started = time.monotonic()
            chunk = itertools.islice(it, size)
            if single is not None:
                taken = single.put_many(chunk)
            else:
                taken = 0
                for item in chunk:
                    for ch in self.outputs:
                        ch.put(item)
                    taken += 1
            counts.emitted += taken
            if taken < size:
                return
            size = min(size * 2, EMIT_BATCH) if time.monotonic() - started < SLOW_CHUNK else 1

    def _run_inbox(self) -> None:
        inbox = self.inbox
        assert inbox is not None
        overridden = type(self).on_receive is not Actor.on_receive
        handle = self._handler if self._handler is not None and not overridden else self.on_receive
        out, counts = self._outbox.pending, self.counts
        for batch in self._inbox_batches(inbox):
            for item in batch:
                try:
                    r = handle(item)
                except BaseException:
                    self._failed_record = item
                    raise
                if r is not None:
                    out.append(r)
            self._outbox.flush()
            counts.received += len(batch)  # after the send: a batch is received once handled and passed on

    def _inbox_batches(self, inbox: Channel) -> Iterator[list[Any]]:
        """The inbox's batches without the END, until END or stop(): the loop of an actor that
        reads an inbox (the caller handles each batch, then counts it in ``counts.received``)."""
        stop = self._stop
        while True:
            batch = self._next_batch(inbox)
            if batch is None:
                return
            end = batch[-1] is END
            if end:
                batch.pop()
            yield batch
            if end or stop[0]:
                return

    def _next_batch(self, inbox: Channel) -> list[Any] | None:
        """The inbox's next batch; when it has none, flush ours first (nothing of ours waits in a
        partial batch while we are idle), then wait for one. None once stop() was asked for."""
        try:
            return inbox.get_batch(0)
        except TimeoutError:
            self.flush()
        stop = self._stop
        while not stop[0]:
            try:
                return inbox.get_batch(0.05)
            except TimeoutError:
                continue
        return None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, runtime: HostingRuntime | None = None) -> Actor:
        """Start hosting the actor on ``runtime`` (default: the process's Runtime); returns self."""
        (runtime or default_runtime()).start(self)
        return self

    def stop(self) -> None:
        """Ask the actor to finish: it stops taking input, runs on_stop, closes its outputs.

        Any thread may call it, and a host does from a signal handler: it takes no lock (an
        override must not either, and must call this one)."""
        self._stop[0] = 1

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the actor to end; True once it has (never raises)."""
        return self._done.wait(timeout)

    def join(self, timeout: float | None = None) -> Any:
        """Wait for the actor to end; its result, or raises its ActorError / TimeoutError."""
        if self.state == "new":
            raise RuntimeError(f"actor {self.name!r} was never started: call start() first")
        if not self._done.wait(timeout):
            raise TimeoutError(f"actor {self.name!r} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def alive(self) -> bool:
        return self.state == "running"

    def statistics(self) -> ActorStatistics:
        counts = self.counts
        return ActorStatistics(
            name=self.name, mode=self.mode, state=self.state, received=int(counts.received),
            emitted=int(counts.emitted),
            started_at=self.started_at, ended_at=self.ended_at, pid=self.pid,
        )

    def inputs(self) -> list[Channel]:
        """The channels this actor reads."""
        return [self.inbox] if self.inbox is not None else []

    def channels(self) -> list[Channel]:
        """Every channel this actor reads or writes."""
        return self.inputs() + self.outputs

    def shipping(self) -> contextlib.AbstractContextManager[Any]:
        """For implementors of hosts that pickle the actor to run it elsewhere (the Ray host): the
        context to pickle it in. Runs in the parent, in the thread that starts the actor. An actor
        that reaches objects it must not take along (a pipeline node: the graph around it)
        returns a context in which they pickle without them; the default changes nothing."""
        return contextlib.nullcontext()

    def __getstate__(self) -> dict[str, Any]:
        """A copy of the actor (the one a Ray host sends to its worker) has its own ``join`` event."""
        state = self.__dict__.copy()
        state.pop("_done", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._done = threading.Event()

    # -- the host contract (hosting.py): called by hosts only ----------------------------
    def _hosted(self, stop_flag: memoryview | None = None, counts: Counts | None = None) -> None:
        """A host takes the actor: it is ``running`` from now on.

        Runs in the parent, under the runtime's lock, before the host starts the actor's thread
        or forks its process. A host whose actor runs in another process passes the stop flag
        (one byte) and the counts the parent will read there; their current values are kept.
        Raises nothing.
        """
        if stop_flag is not None:
            stop_flag[0] = self._stop[0]
            self._stop = stop_flag
        if counts is not None:
            counts.received, counts.emitted = self.counts.received, self.counts.emitted
            self.counts = counts
        self.state, self.started_at = "running", time.time()

    def run_hosted(self) -> Outcome:
        """Run the actor where it is hosted: on_start, the loop, on_stop, close the outputs.

        Runs in the host: the actor's thread, or its child process. Never raises: an exception
        from any of them (after on_failure ran) is returned as ``Outcome("error", exc, record)``.
        """
        try:
            self._outbox.limit = batch_limit(self.outputs, EMIT_BATCH)  # the outputs are known by now
            self.on_start()
            self._main()
            self._outbox.flush()
            result = self.on_stop()
            for ch in self.outputs:
                ch.close()
            return Outcome("ok", result)
        except BaseException as exc:
            if not isinstance(exc, ChannelBroken):
                log.error("actor %r failed: %s: %s", self.name, type(exc).__name__, exc)
            try:
                self.on_failure(exc)
            except Exception:
                log.exception("actor %r: on_failure raised", self.name)
            # a batch that cannot be pickled is sent after the record that pushed it was handled
            return Outcome("error", exc, NO_RECORD if isinstance(exc, NotPicklable) else self._failed_record)

    def _finish(self, result: Any = None, error: ActorError | None = None, cancelled: bool = False) -> None:
        """Record how the actor ended and wake its joiners (after ``on_result(result)`` on success).

        Runs in the parent, once per actor: in the thread that learnt of the end (see
        ``on_result``). Raises nothing: an error of on_result becomes the actor's error.
        """
        if error is None:
            try:
                self.on_result(result)
            except Exception as exc:
                log.error("actor %r: on_result raised %s: %s", self.name, type(exc).__name__, exc)
                error = from_exception(self.name, exc)
                error.message = f"on_result: {error.message}"
                error.args = (error.actor, error.exc_type, error.message)
        self.ended_at = time.time()
        if error is not None:
            self.state, self.error = ("cancelled" if cancelled else "failed"), error
        else:
            self.state, self.result = ("stopped" if self._stop[0] else "finished"), result
        self._done.set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} mode={self.mode} state={self.state}>"
