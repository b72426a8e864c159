"""QueueMultiplexer: join many input queues into many output queues, first come first out.

Every record of every input goes to every output exactly once; each input's order is kept;
each output ends with a single END once every input has ended. It runs as an actor (on a
thread by default). Register queues before putting END on any input: inputs registered after
``run()`` are picked up, but a merge that saw all its inputs end has finished.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Self

from multiprocess.connection import wait

from ..actors.actor import Actor, Mode
from ..channels import END, Channel, ProcessChannel
from ..channels.base import POLL_INTERVAL, Kind
from ..readers.output import QueueOutput
from .inputs import as_input

__all__ = ["QueueMultiplexer"]



class _Stopped(Exception):  # noqa: N818 (control flow, never escapes)
    """stop() was asked for while the merge waited."""


class QueueMultiplexer(Actor):
    """Many-to-many FIFO multiplexer (the seed's API: ``input_queue``, ``output_queue``, ``run``).

    >>> mux = QueueMultiplexer(kind="thread")
    >>> a, b, out = mux.input_queue(), mux.input_queue(), mux.output_queue()
    >>> _ = mux.run()
    >>> a.put(1); b.put(2); a.put(END); b.put(END)
    >>> sorted(out)
    [1, 2]
    """

    def __init__(
        self, name: str = "multiplexer", *, maxsize: int = 10_000, kind: Kind = "process", mode: Mode = "thread"
    ) -> None:
        super().__init__(name, mode=mode)
        self.maxsize = maxsize
        self.kind: Kind = kind
        self._inputs: list[Channel] = []
        self._registered = threading.Event()  # set once an input and an output exist

    # -- registration (the seed's API) ---------------------------------------------------
    def input_queue(self, queue: Any = None) -> Any:
        """A new input channel, or register ``queue`` (a Channel or any queue with get())."""
        self._check_open("input_queue")
        name = f"{self.name}.in{len(self._inputs)}"
        channel = Channel(self.maxsize, kind=self.kind, name=name) if queue is None else as_input(queue, name)
        self._inputs.append(channel)
        self._note_registration()
        return channel if queue is None else queue

    def output_queue(self, queue: Any = None) -> Any:
        """A new output channel, or register ``queue`` (a Channel or any queue with put())."""
        self._check_open("output_queue")
        name = f"{self.name}.out{len(self.outputs)}"
        if queue is None:
            channel: Channel = Channel(self.maxsize, kind=self.kind, name=name)
        else:
            channel = queue if isinstance(queue, Channel) else QueueOutput(queue, name=name)
        self.outputs.append(channel)
        self._note_registration()
        return channel if queue is None else queue

    def run(self) -> Self:  # type: ignore[override]
        """Start merging (once; later calls do nothing) and return self, so it chains."""
        if self.state == "new":
            self.start()
        return self

    def inputs(self) -> list[Channel]:
        return list(self._inputs)

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
        try:
            self._await_registration()
            self._merge()
        except _Stopped:
            pass

    def _await_registration(self) -> None:
        while not self._registered.wait(POLL_INTERVAL):
            if self._stop[0]:
                raise _Stopped

    def _merge(self) -> None:
        """Round robin over the inputs: take what each has, pass it on, wait when none has."""
        live: list[Channel] = []
        seen = 0
        idle_wait = 0.0005
        while True:
            if len(self._inputs) > seen:
                new = self._inputs[seen:]
                live.extend(new)
                seen += len(new)
            if not live:
                return
            progressed = False
            for ch in list(live):
                try:
                    batch = ch.get_batch(0)
                except TimeoutError:
                    continue
                if batch[-1] is END:
                    batch.pop()
                    live.remove(ch)
                if batch:
                    self._received += len(batch)
                    self._out.extend(batch)
                    self._send_out()
                progressed = True
            if self._stop[0]:
                return
            if progressed:
                idle_wait = 0.0005
                continue
            self.flush()  # about to wait: hand over everything we hold
            if all(isinstance(ch, ProcessChannel) for ch in live):
                wait([ch._reader for ch in live], POLL_INTERVAL)
            else:  # foreign queues and thread channels offer nothing to wait on together
                time.sleep(idle_wait)
                idle_wait = min(idle_wait * 2, 0.01)
