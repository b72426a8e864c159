"""Clock: named stopwatches a node can use to time parts of its work (consecution's ``node.clock``)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Clock"]


class Clock:
    """Named stopwatches that add up the seconds they ran.

    >>> clock = Clock()
    >>> with clock.running("parse"):
    ...     pass
    >>> clock.get_time("parse") >= 0.0
    True
    >>> Clock().start()
    Traceback (most recent call last):
    ...
    ValueError: Clock.start() needs at least one name, e.g. clock.start('parse')
    """

    def __init__(self) -> None:
        self.delta: Counter[str] = Counter()  # seconds accumulated by stopped watches
        self.active_start_times: dict[str, float] = {}

    @contextmanager
    def running(self, *names: str) -> Iterator[None]:
        """Time the ``with`` block under each of ``names``."""
        self.start(*names)
        try:
            yield
        finally:
            self.stop(*names)

    @contextmanager
    def paused(self, *names: str) -> Iterator[None]:
        """Leave the ``with`` block out of the time of ``names``."""
        self.stop(*names)
        try:
            yield
        finally:
            self.start(*names)

    def start(self, *names: str) -> None:
        """Start the watches ``names`` (a running one keeps running)."""
        if not names:
            raise ValueError("Clock.start() needs at least one name, e.g. clock.start('parse')")
        now = time.perf_counter()
        for name in names:
            self.active_start_times.setdefault(name, now)

    def stop(self, *names: str) -> None:
        """Stop ``names`` (every running watch when none is given) and add up their time."""
        now = time.perf_counter()
        for name in names or list(self.active_start_times):
            started = self.active_start_times.pop(name, None)
            if started is not None:
                self.delta[name] += now - started

    def reset(self, *names: str) -> None:
        """Forget ``names`` (every watch when none is given)."""
        for name in names or [*self.active_start_times, *self.delta]:
            self.delta.pop(name, None)
            self.active_start_times.pop(name, None)

    def get_time(self, *names: str) -> float | dict[str, float]:
        """Seconds of one watch, or a dict of several (running watches count up to now)."""
        now = time.perf_counter()
        names = names or tuple(dict.fromkeys([*self.delta, *self.active_start_times]))
        times: dict[str, float] = {}
        for name in names:
            if name in self.delta:
                times[name] = self.delta[name]
            elif name in self.active_start_times:
                times[name] = now - self.active_start_times[name]
        if len(times) == 1:
            return next(iter(times.values()))
        return times

    def __str__(self) -> str:
        rows = [f"{'seconds':<15s}name"]
        rows += [f"{f'{seconds:0.6f}':<15s}{name}" for name, seconds in self.delta.most_common()]
        return "\n".join(rows)

    __repr__ = __str__
