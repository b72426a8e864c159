"""QueueMultiplexer: join many input queues into many output queues, round-robin FIFO.

Every record of every input goes to every output exactly once; each input's order is kept;
each output ends with a single END once every input has ended. Inputs that have records
waiting at the same time are interleaved one record at a time, in registration order (the
seed's "non-blocking round-robin FIFO"): ``a1 a2`` on one input and ``b1 b2 b3`` on another
come out ``a1 b1 a2 b2 b3``. The interleaving is done a batch at a time with slice
assignments (``interleave``), not record by record, by the loop every merge shares (merge.py).
It runs as an actor (on a thread by default), or in the calling thread when iterated
(``for record in mux``), which saves the hand-over to an output queue. Register queues before putting END on any input:
inputs registered after ``run()`` are picked up, but a merge that saw all its inputs end has
finished.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..actors.actor import Actor
from ..channels import Channel, Mode
from ..channels.base import POLL_INTERVAL, channel_class, renamed_mode
from ..channels.queues import QueueOutput, as_input
from ..runtime.seed import SeedStart
from .merge import interleave, merge_channels

__all__ = ["QueueMultiplexer", "interleave"]


def _records(batches: Iterator[list[Any]]) -> Iterator[Any]:
    try:
        for batch in batches:
            yield from batch
    finally:
        batches.close()  # type: ignore[attr-defined]


class QueueMultiplexer(SeedStart, Actor):
    """Many-to-many FIFO multiplexer (the seed's API: ``input_queue``, ``output_queue``, ``run``).

    >>> from chronopipe.channels import END
    >>> mux = QueueMultiplexer(channel_mode="thread")
    >>> a, b, out = mux.input_queue(), mux.input_queue(), mux.output_queue()
    >>> _ = mux.run()
    >>> a.put(1); b.put(2); a.put(END); b.put(END)
    >>> sorted(out)
    [1, 2]
    """

    def __init__(
        self, name: str = "multiplexer", *, maxsize: int = 10_000, channel_mode: Mode = "process",
        mode: Mode = "thread", kind: Mode | None = None,
    ) -> None:
        """``mode``: where the merge runs (an actor's mode); ``channel_mode``: the mode of the
        channels ``input_queue()`` and ``output_queue()`` make (``kind=``, its older name, is
        deprecated)."""
        super().__init__(name, mode=mode)
        self.maxsize = maxsize
        self.channel_mode: Mode = renamed_mode(channel_mode, kind, warn=kind is not None)
        channel_class(self.channel_mode)  # an unknown mode fails here, not at the first input_queue()
        self._inputs: list[Channel] = []
        self._registered = threading.Event()  # set once an input and an output exist

    # -- registration (the seed's API) ---------------------------------------------------
    def input_queue(self, queue: Any = None) -> Any:
        """A new input channel, or register ``queue`` (a Channel or any queue with get())."""
        self._check_open("input_queue")
        name = f"{self.name}.in{len(self._inputs)}"
        channel = Channel(self.maxsize, mode=self.channel_mode, name=name) if queue is None else as_input(queue, name)
        self._inputs.append(channel)
        self._note_registration()
        return channel if queue is None else queue

    def output_queue(self, queue: Any = None) -> Any:
        """A new output channel, or register ``queue`` (a Channel or any queue with put())."""
        self._check_open("output_queue")
        name = f"{self.name}.out{len(self.outputs)}"
        if queue is None:
            channel: Channel = Channel(self.maxsize, mode=self.channel_mode, name=name)
        else:
            channel = queue if isinstance(queue, Channel) else QueueOutput(queue, name=name)
        self.outputs.append(channel)
        self._note_registration()
        return channel if queue is None else queue

    @property
    def started(self) -> bool:
        """True once ``start()`` (the seed's ``run()``: runtime/seed.py) began the merge."""
        return self.state != "new"

    def __iter__(self) -> Iterator[Any]:
        """Merge here, in the calling thread, yielding every record (no actor, no output queue).

        The inputs' writers must run elsewhere (actors, threads, other processes). Breaking
        out of the loop stops the merge; ``join()`` then gives what ``run()`` would have.

        >>> mux = QueueMultiplexer(channel_mode="thread")
        >>> a = mux.input_queue()
        >>> a.put_many([1, 2]); a.close()
        2
        >>> list(mux)
        [1, 2]
        """
        return _records(self.batches())

    def batches(self) -> Iterator[list[Any]]:
        """Merge here like ``iter(mux)``, yielding the records a batch (a list) at a time."""
        if self.state != "new":
            raise RuntimeError(f"multiplexer {self.name!r} was started with run(): read its output queues instead")
        if self.outputs:
            raise RuntimeError(f"multiplexer {self.name!r} has output queues: run() it and read them, "
                               "or iterate a multiplexer that has none")
        return self._iterate()

    def _iterate(self) -> Iterator[list[Any]]:
        self.state, self.started_at = "running", time.time()
        batches, completed = self._batches(), False
        try:
            for batch in batches:
                self.counts.emitted += len(batch)
                yield batch
            completed = True
        except Exception as exc:
            self._finish(error=exc)  # type: ignore[arg-type]
            raise
        finally:
            batches.close()
            if self.state == "running":  # it ended, was stopped, or the caller stopped reading
                if not completed:
                    self._stop[0] = 1
                self._finish(self.on_stop())

    def inputs(self) -> list[Channel]:
        return list(self._inputs)

    def account(self, error: Any, producers: Iterable[Actor]) -> None:
        """Add this merge to ``error`` (an ActorError of a run it took part in): how far it got, and
        per input, what its ``producers`` had sent that it never took (lost with the run).

        Call it in the thread that iterated the multiplexer, after the failure: a multiplexer
        iterated in the caller's thread is no actor the runtime counts. An error without
        ``progress`` (nothing was counted) is left alone.
        """
        if getattr(error, "progress", None) is None:
            return
        progress, flight = dict(error.progress), dict(error.in_flight or {})
        progress[self.name] = (int(self.counts.received), int(self.counts.emitted))
        for producer in producers:
            for ch in producer.outputs:
                if producer.name in progress and any(ch is i for i in self._inputs):
                    flight[ch.name] = max(0, progress[producer.name][1] - ch.statistics().items_got)
        error.progress, error.in_flight = progress, flight

    def _check_open(self, what: str) -> None:
        if self.state == "new" or (self.state == "running" and self.mode == "thread"):
            return
        when = "started in a process" if self.state == "running" else self.state
        raise RuntimeError(f"multiplexer {self.name!r}: {what}() after it {when}; register every queue before run()")

    def _note_registration(self) -> None:
        if self._inputs and self.outputs:
            self._registered.set()

    # -- the actor's loop ------------------------------------------------------------------
    def _main(self) -> None:
        if self._await_registration():
            self._merge()

    def _await_registration(self) -> bool:
        """Wait until an input and an output exist; False if stop() came first."""
        while not self._registered.wait(POLL_INTERVAL):
            if self.stopping:
                return False
        return True

    def _merge(self) -> None:
        """Send every batch the merge gives to the outputs."""
        for batch in self._batches():
            self._outbox.put_many(batch)
            self._outbox.flush()

    def _batches(self) -> Iterator[list[Any]]:
        """The merged batches (merge.py), first come first out; the sorted multiplexer merges by key."""
        return merge_channels(self._inputs, stopped=lambda: self.stopping, before_wait=self.flush,
                              counts=self.counts)
