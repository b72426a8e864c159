"""Timer sources: a :class:`Tick` record at every interval, or at the times of a cron string.

:class:`IntervalSource` ticks every ``every`` seconds; :class:`CronSource` at the times of a
cron string (croniter, the ``chronopipe[cron]`` extra). Each tick may run your code
(``action``) and carries what it returned. ``jitter`` delays each firing by a uniform random
0..jitter seconds (reproducible with ``seed``).

**Misfires are never silent.** When the source wakes up and scheduled times have passed by
more than ``grace`` seconds (the process was busy or suspended, or the channel was full:
backpressure), the ``misfire`` policy says what happens to those times:

- ``"late"`` (the default): every one of them fires now, late, each Tick with its own
  scheduled time.
- ``"coalesce"``: one Tick fires now, for the latest of them; its ``coalesced`` field says
  how many earlier ones it stands for.
- ``"skip"``: none fires; one ``Marker("missed", ticks=[scheduled times], count=n)`` takes
  their place, then the source waits for the next scheduled time. ``count`` is how many were
  skipped; ``ticks`` lists at most the first :data:`MAX_LISTED` of them and the last.

Skipping or coalescing a long suspend is quick and small: an IntervalSource counts the times
arithmetically; a CronSource keeps no more of them than ``ticks`` lists.

``statistics().detail`` counts ``fired``, ``missed`` (skipped), ``coalesced`` (folded into a
later tick) and ``late`` (ticks fired more than ``grace`` after their time).

A timer takes its time only from its ``clock``: anything with ``time()`` (epoch seconds) and
``sleep(seconds)``. The default is the system's, whose sleep notices ``stop()`` within POLL.
A :class:`FakeClock` makes tests instant and deterministic; ``advance()`` plays a suspended
process. A clock of your own must not sleep longer than POLL in real time at once.
"""

from __future__ import annotations

import math
import numbers
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol, Unpack

from .base import Source, SourceError, SourceOptions

__all__ = ["Clock", "CronSource", "FakeClock", "IntervalSource", "Misfire", "Tick"]

Misfire = Literal["late", "coalesce", "skip"]
_POLICIES = ("late", "coalesce", "skip")
#: ``grace`` when none is given: 1 s, or half the interval if that is shorter.
GRACE = 1.0
#: The most scheduled times a ``"missed"`` Marker lists before the last one.
MAX_LISTED = 100


class Clock(Protocol):
    """What a timer asks the time of, and sleeps with."""

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class FakeClock:
    """A clock for tests: time stands still until ``sleep()`` or ``advance()`` moves it.

    ``start``: epoch seconds, or an aware datetime. ``sleep(s)`` returns at once, ``s`` seconds
    later; ``advance(s)`` moves the time as a suspended process sees it jump.

    >>> clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    >>> clock.sleep(2.5); clock.advance(60); clock.time() - 1704067200
    62.5
    """

    def __init__(self, start: float | datetime = 0.0) -> None:
        self.now = start.timestamp() if isinstance(start, datetime) else float(start)

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def advance(self, seconds: float | timedelta) -> None:
        """Jump ``seconds`` ahead (as a suspended process, or one busy elsewhere, finds)."""
        self.now += _seconds(seconds, "advance")

    def __repr__(self) -> str:
        return f"FakeClock({self.now!r})"


@dataclass(frozen=True)
class Tick:
    """One firing of a timer.

    ``scheduled``: the time it was scheduled for (epoch seconds, before jitter); ``fired``: the
    clock's time when it fired; ``late``: seconds past its due time (its scheduled time plus
    its jitter); ``n``: the source's ticks counted from 1; ``value``: what ``action()``
    returned (None without an action); ``coalesced``: the earlier missed times this tick
    stands for (``misfire="coalesce"``; 0 otherwise).

    >>> Tick("every-minute", 60.0, 60.25, 0.25, 1).late
    0.25
    """

    source: str
    scheduled: float
    fired: float
    late: float
    n: int
    value: Any = None
    coalesced: int = 0


def _seconds(value: float | timedelta, what: str, source: str = "", finite: bool = True) -> float:
    """``value`` in seconds: a number (not a bool) or a timedelta, >= 0, finite unless told."""
    where = f"source {source!r}: " if source else ""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{where}{what} must be a number of seconds or a timedelta, not {value!r}")
    if not seconds >= 0 or (finite and seconds == math.inf):  # NaN is not >= 0
        raise ValueError(f"{where}{what} must be >= 0 seconds{' and finite' * finite}, not {value!r}")
    return seconds


class _Timer(Source):
    """What interval and cron timers share: jitter, the misfire policy, limit, the clock."""

    def __init__(self, name: str, *, jitter: float | timedelta, misfire: Misfire, grace: float | timedelta | None,
                 action: Callable[[], Any] | None, limit: int | None, clock: Clock | None, seed: int | None,
                 **options: Unpack[SourceOptions]) -> None:
        super().__init__(name, **options)
        if misfire not in _POLICIES:
            raise ValueError(f"source {name!r}: misfire must be one of {', '.join(_POLICIES)}, not {misfire!r}")
        if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool)):
            raise TypeError(f"source {name!r}: limit must be an int (or None), not {limit!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"source {name!r}: limit must be >= 0, not {limit!r}")
        if action is not None and not callable(action):
            raise TypeError(f"source {name!r}: action must be callable, not {action!r}")
        if clock is not None and not all(callable(getattr(clock, what, None)) for what in ("time", "sleep")):
            raise TypeError(f"source {name!r}: clock must have time() and sleep(), not {clock!r}")
        if seed is not None and not isinstance(seed, int | float | str | bytes | bytearray):
            raise TypeError(f"source {name!r}: seed must be an int, a float, a str or bytes, not {seed!r}")
        self.jitter = _seconds(jitter, "jitter", name)
        self.misfire: Misfire = misfire
        self.grace = self._default_grace() if grace is None else _seconds(grace, "grace", name, finite=False)
        self.action = action
        self.limit = limit
        self.clock = clock
        self.seed = seed
        self.detail.update(fired=0, missed=0, coalesced=0, late=0)

    # -- what a kind of timer defines -------------------------------------------------------
    def _default_grace(self) -> float:
        return GRACE

    def _schedule(self, now: float) -> Iterator[float]:
        """The scheduled times (epoch seconds, increasing), for a source started at ``now``."""
        raise NotImplementedError

    # -- time, from the clock alone ---------------------------------------------------------
    def _now(self) -> float:
        return time.time() if self.clock is None else self.clock.time()

    def _sleep(self, seconds: float) -> bool:
        """Sleep on the clock; False once stopping."""
        if self.clock is None:
            return self._pause(seconds)
        self.clock.sleep(seconds)
        return not self.stopping

    def _more(self) -> bool:
        return not self.stopping and (self.limit is None or self.detail["fired"] < self.limit)

    # -- the loop ---------------------------------------------------------------------------
    def _batches(self) -> Iterator[list[Any]]:
        rng = random.Random(self.seed)
        times = self._schedule(self._now())

        def slot() -> tuple[float, float] | None:  # the next scheduled time, and when it is due
            scheduled = next(times, None)
            if scheduled is None:
                return None
            return scheduled, scheduled + (rng.uniform(0.0, self.jitter) if self.jitter else 0.0)

        current = slot()
        while current is not None and self._more():
            now = self._now()
            if now < current[1]:
                if not self._sleep(current[1] - now):
                    return
                continue
            if now - current[1] <= self.grace:
                yield [self._fire(*current)]
                current = slot()
                continue
            if self.misfire == "late":  # a misfire: each overdue time fires, late
                yield [self._fire(*current)]
                current = slot()
                continue
            # skip or coalesce: count every time overdue by more than grace, keep a few
            count, listed, last = 1, [current[0]], current
            skip = getattr(times, "skip", None)  # an arithmetic schedule's: no loop per time
            while True:
                skipped, first, final = (0, [], 0.0) if skip is None else skip(now - self.grace - self.jitter)
                if skipped:  # the times certainly overdue, jitter or not
                    count, last = count + skipped, (final, final)
                    listed.extend(first[: MAX_LISTED - len(listed)])
                current = slot()
                if current is None or now - current[1] <= self.grace:
                    break
                count += 1
                if len(listed) < MAX_LISTED:
                    listed.append(current[0])
                last = current
            yield [self._misfired(count, listed, last, now)]

    def _misfired(self, count: int, listed: list[float], last: tuple[float, float], now: float) -> Any:
        """The Marker or the Tick for ``count`` overdue times: the first ``listed``, ``last``."""
        if self.misfire == "skip":
            self.detail["missed"] += count
            ticks = listed if count <= len(listed) else [*listed, last[0]]
            return replace(self._marker("missed", ticks=ticks, count=count), at=now)
        self.detail["coalesced"] += count - 1
        return self._fire(*last, coalesced=count - 1)

    def _fire(self, scheduled: float, due: float, coalesced: int = 0) -> Tick:
        n = self.detail["fired"] + 1
        fired = self._now()
        value = None
        if self.action is not None:
            try:
                value = self.action()
            except Exception as error:
                when = datetime.fromtimestamp(scheduled, UTC).isoformat()
                raise SourceError(self.name, f"action failed at tick {n} (scheduled {when}):"
                                             f" {type(error).__name__}: {error}") from error
        self.detail["fired"] = n
        late = max(0.0, fired - due)
        if late > self.grace:
            self.detail["late"] += 1
        return Tick(self.name, scheduled, fired, late, n, value, coalesced)


class IntervalSource(_Timer):
    """Ticks every ``every`` seconds: at ``start_at``, then every ``every`` after it.

    >>> clock = FakeClock(1_700_000_000)
    >>> ticks = list(IntervalSource(60, limit=3, clock=clock, action=lambda: "ran"))
    >>> [(t.n, t.scheduled - 1_700_000_000, t.value) for t in ticks]
    [(1, 60.0, 'ran'), (2, 120.0, 'ran'), (3, 180.0, 'ran')]

    ``every``, ``jitter`` (less than ``every``), ``grace``: seconds, or a ``timedelta``
    (``grace`` may be infinite: then nothing is a misfire). ``start_at``: epoch seconds or a
    datetime; by default one interval after the source starts (a past time: misfires).
    ``misfire``, ``grace``: see the module docstring (``grace`` defaults to 1 s, or half the
    interval if shorter). ``action``: called (without arguments) at each tick; what it returns
    is the Tick's ``value``; if it raises, the source fails with a SourceError naming the tick.
    ``limit``: end after that many ticks (default: run until ``stop()``). ``clock``: see
    :class:`FakeClock`. ``seed``: seeds the jitter. ``queue``,
    ``mode``, ``stamp``, ``maxsize``: as for every :class:`Source`.
    """

    def __init__(self, every: float | timedelta, *, name: str = "interval", jitter: float | timedelta = 0.0,
                 misfire: Misfire = "late", grace: float | timedelta | None = None,
                 action: Callable[[], Any] | None = None, start_at: float | datetime | None = None,
                 limit: int | None = None, clock: Clock | None = None, seed: int | None = None,
                 **options: Unpack[SourceOptions]) -> None:
        self.every = _seconds(every, "every", name)
        if self.every <= 0:
            raise ValueError(f"source {name!r}: every must be > 0 seconds, not {every!r}")
        if isinstance(start_at, datetime):
            start_at = start_at.timestamp()
        elif start_at is not None and not (isinstance(start_at, numbers.Real) and not isinstance(start_at, bool)):
            raise TypeError(f"source {name!r}: start_at must be epoch seconds or a datetime, not {start_at!r}")
        elif start_at is not None and not math.isfinite(start_at):
            raise ValueError(f"source {name!r}: start_at must be finite, not {start_at!r}")
        self.start_at = None if start_at is None else float(start_at)
        super().__init__(name, jitter=jitter, misfire=misfire, grace=grace, action=action, limit=limit, clock=clock,
                         seed=seed, **options)
        if self.jitter >= self.every:  # a tick's jitter would carry it past the next one's time
            raise ValueError(f"source {name!r}: jitter must be less than every ({self.every:g} s), not {jitter!r}")

    def _default_grace(self) -> float:
        return min(GRACE, self.every / 2)

    def _schedule(self, now: float) -> Iterator[float]:
        return _Every(now + self.every if self.start_at is None else float(self.start_at), self.every)


class _Every:
    """``start + k * every`` for k = 0, 1, ..., and ``skip``."""

    def __init__(self, start: float, every: float) -> None:
        self.start, self.every, self.k = start, every, 0

    def __iter__(self) -> _Every:
        return self

    def __next__(self) -> float:
        self.k += 1
        return self.at(self.k - 1)

    def at(self, k: int) -> float:  # multiplied: no drift
        return self.start + k * self.every

    def skip(self, before: float) -> tuple[int, list[float], float]:
        """Pass the next times earlier than ``before``: how many, the first MAX_LISTED, the last."""
        if not self.at(self.k) < before:
            return 0, [], 0.0
        n = max(1, math.ceil((before - self.at(self.k)) / self.every))
        while n > 1 and self.at(self.k + n - 1) >= before:  # float rounding, either way
            n -= 1
        while self.at(self.k + n) < before:
            n += 1
        self.k += n
        return n, [self.at(self.k - n + i) for i in range(min(n, MAX_LISTED))], self.at(self.k - 1)


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ImportError("CronSource needs croniter: pip install chronopipe[cron]") from None
    return croniter


class CronSource(_Timer):
    """Ticks at the times of a cron string (croniter's syntax), read in the time zone ``tz``.

    >>> clock = FakeClock(datetime(2024, 1, 1, 0, 3, tzinfo=UTC))
    >>> ticks = CronSource("*/5 * * * *", limit=3, clock=clock)
    >>> [datetime.fromtimestamp(t.scheduled, UTC).strftime("%H:%M") for t in ticks]
    ['00:05', '00:10', '00:15']

    ``tz``: a zoneinfo name (``"Europe/Paris"``) or a tzinfo; UTC by default. The first tick
    is the first time after the source starts. Daylight saving time, as classic (Vixie) cron:
    a time skipped when clocks go forward fires at the first time after it (02:30 at 03:00);
    when they go back, a wall-clock time that comes twice fires once, unless the minute or the
    hour field starts with ``*`` (``"*/30 * * * *"`` fires in both passes: it is periodic). The other arguments are
    :class:`IntervalSource`'s (``grace`` defaults to 1 s).

    Raises:
        ImportError: croniter is not installed (``pip install chronopipe[cron]``).
        ValueError: the cron string or the time zone is bad, or no time is left in it.
        TypeError: ``cron`` is not a str, or ``tz`` neither a str nor a tzinfo.
    """

    def __init__(self, cron: str, *, name: str = "cron", jitter: float | timedelta = 0.0, misfire: Misfire = "late",
                 grace: float | timedelta | None = None, action: Callable[[], Any] | None = None,
                 tz: str | tzinfo | None = None, limit: int | None = None, clock: Clock | None = None,
                 seed: int | None = None,
                 **options: Unpack[SourceOptions]) -> None:
        croniter = _croniter()
        if not isinstance(cron, str):
            raise TypeError(f"source {name!r}: the cron string must be a str, not {cron!r}")
        try:
            croniter(cron)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise ValueError(f"source {name!r}: bad cron string {cron!r}: {error}") from None
        self.cron = cron
        self.tz = _zone(tz, name)
        super().__init__(name, jitter=jitter, misfire=misfire, grace=grace, action=action, limit=limit, clock=clock,
                         seed=seed, **options)
        now = self._now()
        if next(self._schedule(now), None) is None:  # "0 0 30 2 *": not one tick, ever
            when = datetime.fromtimestamp(now, self.tz).isoformat(timespec="seconds")
            raise ValueError(f"source {name!r}: the cron string {cron!r} names no time after {when}")

    def _schedule(self, now: float) -> Iterator[float]:
        times = _croniter()(self.cron, datetime.fromtimestamp(now, self.tz))
        periodic = any(field.startswith("*") for field in self.cron.split()[:2])
        latest: datetime | None = None  # the latest wall-clock time yielded
        while True:
            try:
                when = times.get_next(datetime)
            except (ValueError, KeyError):  # CroniterBadDateError: no time is left (a year field)
                return
            wall = when.replace(tzinfo=None)
            if periodic or latest is None or wall > latest:  # not a repeat of the hour clocks went back
                latest = wall if latest is None else max(latest, wall)
                yield when.timestamp()


def _zone(tz: str | tzinfo | None, source: str) -> tzinfo:
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"source {source!r}: tz must be a zone name or a tzinfo, not {tz!r}")
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(tz)
    except (ValueError, KeyError) as error:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"source {source!r}: unknown time zone {tz!r}: {error}") from None
