"""Backoff: how long to wait before the next attempt, after one failure or several in a row.

A source that loses its server (a refused connection, an HTTP 503, a dropped websocket) must
not retry at once, nor all at the same moment as every other client of that server. Each
``next()`` gives the seconds to wait: capped exponential growth with jitter, as in AWS's
"Exponential Backoff And Jitter". After attempt ``n`` (from 0) the bound is
``min(maximum, initial * factor ** n)``, and the wait is

- ``jitter="full"`` (the default): uniform in ``[0, bound]``;
- ``jitter="equal"``: uniform in ``[bound / 2, bound]``;
- ``jitter="none"``: the bound itself.

``reset()`` after a success starts again from ``initial``. ``seed`` makes the waits
repeatable (tests, doctests). A Backoff is not shared between threads: each source keeps its own.

>>> backoff = Backoff(initial=1.0, maximum=8.0, jitter="none")
>>> [backoff.next() for _ in range(6)]
[1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
>>> backoff.attempts
6
>>> backoff.reset()
>>> backoff.next()
1.0
"""

from __future__ import annotations

import random
from typing import Literal

__all__ = ["HEALTHY", "Backoff", "Jitter"]

Jitter = Literal["full", "equal", "none"]
#: Seconds a connection must have stayed up for its drop to reset the backoff and reconnect at
#: once; a younger one waits ``next()`` first, so a server that drops every connection is not
#: hammered (the TCP and websocket clients' rule).
HEALTHY = 10.0


class Backoff:
    """Capped exponential waits with jitter: ``next()`` after each failure, ``reset()`` after a success.

    ``initial``: the bound of the first wait, in seconds (> 0). ``maximum``: no wait is longer
    (>= ``initial``). ``factor``: the bound grows by it at each attempt (>= 1). ``jitter``:
    ``"full"``, ``"equal"`` or ``"none"`` (see the module docstring). ``seed``: for a repeatable
    sequence; None draws from the system's randomness.

    >>> backoff = Backoff(initial=0.5, maximum=30.0, seed=7)
    >>> waits = [backoff.next() for _ in range(8)]
    >>> [round(wait, 3) for wait in waits]
    [0.162, 0.151, 1.302, 0.29, 4.287, 5.851, 1.74, 15.223]
    >>> all(0.0 <= wait <= min(30.0, 0.5 * 2 ** n) for n, wait in enumerate(waits))
    True
    >>> again = Backoff(initial=0.5, maximum=30.0, seed=7)  # the same seed, the same waits
    >>> waits == [again.next() for _ in range(8)]
    True
    >>> backoff.bound()  # the ceiling of the next wait
    30.0
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0, jitter: Jitter = "full",
                 seed: int | None = None) -> None:
        if not initial > 0:
            raise ValueError(f"Backoff: initial must be > 0 seconds, got {initial!r}")
        if not maximum >= initial:
            raise ValueError(f"Backoff: maximum ({maximum!r}) must be >= initial ({initial!r})")
        if not factor >= 1:
            raise ValueError(f"Backoff: factor must be >= 1, got {factor!r}")
        if jitter not in ("full", "equal", "none"):
            raise ValueError(f"Backoff: jitter must be 'full', 'equal' or 'none', not {jitter!r}")
        self.initial, self.maximum, self.factor, self.jitter = float(initial), float(maximum), float(factor), jitter
        self._random = random.Random(seed)
        #: failures since the last reset(): the number of next() calls
        self.attempts = 0

    def bound(self) -> float:
        """The longest the next wait can be: ``min(maximum, initial * factor ** attempts)``."""
        try:
            return min(self.maximum, self.initial * self.factor**self.attempts)
        except OverflowError:  # factor ** attempts beyond a float: long past the maximum
            return self.maximum

    def next(self) -> float:
        """Seconds to wait before the next attempt; counts one more attempt."""
        bound = self.bound()
        self.attempts += 1
        if self.jitter == "full":
            return self._random.uniform(0.0, bound)
        if self.jitter == "equal":
            return self._random.uniform(bound / 2, bound)
        return bound

    def reset(self) -> None:
        """A success: the next wait is bounded by ``initial`` again."""
        self.attempts = 0

    def __repr__(self) -> str:
        return (f"Backoff(initial={self.initial}, maximum={self.maximum}, factor={self.factor}, "
                f"jitter={self.jitter!r}, attempts={self.attempts})")
