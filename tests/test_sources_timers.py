"""Timer sources: interval and cron ticks, jitter, misfire policies, actions, hosting, backpressure.

Every schedule is checked on a FakeClock (instant, deterministic); only the hosting tests use
the real clock, with tolerant timing.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chronopipe.actors.errors import ActorError
from chronopipe.sources.base import Marker, SourceError
from chronopipe.sources.timers import CronSource, FakeClock, IntervalSource, Tick

T0 = 1_700_000_000.0
POLICIES = ["late", "coalesce", "skip"]


def _suspended(misfire: str, *, periods: float = 3.5, until: float = T0 + 50) -> tuple[list[object], IntervalSource]:
    """Records of a 10 s timer (grace 1 s) whose process is suspended for ``periods`` intervals
    after its first tick, up to its tick scheduled at ``until``."""
    clock = FakeClock(T0)
    source = IntervalSource(10, misfire=misfire, grace=1, clock=clock)  # type: ignore[arg-type]
    records = iter(source)
    seen = [next(records)]  # tick at T0 + 10
    clock.advance(periods * 10)  # wakes at T0 + 45: 20, 30 and 40 are overdue
    while not (isinstance(seen[-1], Tick) and seen[-1].scheduled >= until):
        seen.append(next(records))
    records.close()
    return seen, source


def _slots(records: list[object], first: float, every: float) -> list[int]:
    """The schedule slots (0, 1, ...) the records account for: a tick its own and those it
    coalesced, a missed marker its ticks."""
    slots: list[int] = []
    for record in records:
        if isinstance(record, Tick):
            k = round((record.scheduled - first) / every)
            slots.extend(range(k - record.coalesced, k + 1))
        elif isinstance(record, Marker) and record.kind == "missed":
            slots.extend(round((t - first) / every) for t in record.detail["ticks"])
    return slots


# -- schedules ----------------------------------------------------------------------------------
def test_interval_ticks_every_period_from_one_period_after_start() -> None:
    ticks = list(IntervalSource(2.5, limit=4, clock=FakeClock(T0)))
    assert [t.scheduled - T0 for t in ticks] == [2.5, 5.0, 7.5, 10.0]
    assert [t.fired for t in ticks] == [t.scheduled for t in ticks]
    assert [t.n for t in ticks] == [1, 2, 3, 4]
    assert all(t.late == 0 and t.coalesced == 0 and t.value is None and t.source == "interval" for t in ticks)


def test_interval_accepts_timedelta_and_start_at() -> None:
    start = datetime.fromtimestamp(T0 + 100, UTC)
    ticks = list(IntervalSource(timedelta(minutes=1), start_at=start, limit=3, clock=FakeClock(T0)))
    assert [t.scheduled - T0 for t in ticks] == [100.0, 160.0, 220.0]


def test_interval_start_at_in_the_past_is_a_misfire() -> None:
    records = list(IntervalSource(10, start_at=T0 - 25, misfire="skip", limit=1, clock=FakeClock(T0)))
    assert [r.kind for r in records if isinstance(r, Marker)] == ["missed"]
    assert records[0].detail["ticks"] == [T0 - 25, T0 - 15, T0 - 5]
    assert [t.scheduled for t in records if isinstance(t, Tick)] == [T0 + 5]


def test_limit_ends_the_source_by_itself_with_its_counts() -> None:
    source = IntervalSource(1, limit=5, clock=FakeClock(T0))
    assert len(list(source)) == 5
    stats = source.statistics()
    assert stats.records == 5
    assert stats.detail == {"fired": 5, "missed": 0, "coalesced": 0, "late": 0}


def test_cron_every_five_minutes_ticks_on_the_fives() -> None:
    start = datetime(2023, 12, 31, 23, 58, 30, tzinfo=UTC)
    ticks = list(CronSource("*/5 * * * *", limit=4, clock=FakeClock(start)))
    midnight = datetime(2024, 1, 1, tzinfo=UTC)
    assert [t.scheduled for t in ticks] == [(midnight + timedelta(minutes=5 * k)).timestamp() for k in range(4)]
    assert [t.fired for t in ticks] == [t.scheduled for t in ticks]
    assert ticks[0].source == "cron"


def test_cron_reads_its_times_in_the_zone_given() -> None:
    def first(day: datetime) -> datetime:
        tick = next(iter(CronSource("0 9 * * *", tz="Europe/Paris", limit=1, clock=FakeClock(day))))
        return datetime.fromtimestamp(tick.scheduled, UTC)

    assert first(datetime(2024, 1, 10, tzinfo=UTC)) == datetime(2024, 1, 10, 8, tzinfo=UTC)  # CET
    assert first(datetime(2024, 7, 10, tzinfo=UTC)) == datetime(2024, 7, 10, 7, tzinfo=UTC)  # CEST


def test_bad_cron_string_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"source 'nightly': bad cron string '61 \* \* \* \*'"):
        CronSource("61 * * * *", name="nightly")


def test_unknown_time_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        CronSource("* * * * *", tz="Mars/Olympus")


def test_missing_croniter_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ImportError) as caught:
        CronSource("*/5 * * * *")
    message = str(caught.value)
    assert "pip install chronopipe[cron]" in message and "\n" not in message


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"misfire": "drop"}, "misfire must be one of late, coalesce, skip"),
    ({"jitter": -1}, "jitter must be >= 0"),
    ({"grace": timedelta(seconds=-1)}, "grace must be >= 0"),
    ({"limit": -1}, "limit must be >= 0"),
])
def test_bad_arguments_are_value_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IntervalSource(1, **kwargs)  # type: ignore[arg-type]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every must be > 0"):
        IntervalSource(0)


@pytest.mark.parametrize("cron", [None, 5, b"* * * * *", ["*/5", "*", "*", "*", "*"]])
def test_a_cron_that_is_not_a_str_is_a_one_line_type_error_naming_the_source(cron: object) -> None:
    with pytest.raises(TypeError, match=r"^source 'nightly': the cron string must be a str, not ") as caught:
        CronSource(cron, name="nightly")  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_a_cron_string_with_no_time_left_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^source 'leap': the cron string '0 0 30 2 \*' names no time after 2024-"):
        CronSource("0 0 30 2 *", name="leap", clock=FakeClock(datetime(2024, 1, 1, tzinfo=UTC)))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"every": "x"}, TypeError, "every must be a number of seconds or a timedelta, not 'x'"),
    ({"every": None}, TypeError, "every must be a number of seconds"),
    ({"every": float("inf")}, ValueError, "every must be >= 0 seconds and finite"),
    ({"jitter": None}, TypeError, "jitter must be a number of seconds"),
    ({"jitter": float("inf")}, ValueError, "jitter must be >= 0 seconds and finite"),
    ({"grace": "1"}, TypeError, "grace must be a number of seconds"),
    ({"grace": float("nan")}, ValueError, "grace must be >= 0 seconds"),
    ({"limit": 1.5}, TypeError, "limit must be an int"),
    ({"limit": "3"}, TypeError, "limit must be an int"),
    ({"start_at": "2024-01-01"}, TypeError, "start_at must be epoch seconds or a datetime"),
    ({"start_at": float("nan")}, ValueError, "start_at must be finite"),
    ({"clock": "system"}, TypeError, "clock must have time"),
    ({"seed": [1]}, TypeError, "seed must be"),
])
def test_an_argument_of_a_bad_type_or_value_is_a_one_line_error_naming_the_source(
        kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    kwargs = {"every": 1, **kwargs}
    with pytest.raises(error, match=r"^source 'beat': " + match) as caught:
        IntervalSource(name="beat", **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_a_cron_tz_of_a_bad_type_or_jitter_of_a_bad_type_is_a_type_error_naming_the_source() -> None:
    with pytest.raises(TypeError, match=r"^source 'cron': tz must be a zone name or a tzinfo, not 5"):
        CronSource("* * * * *", tz=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^source 'cron': jitter must be a number of seconds"):
        CronSource("* * * * *", jitter=None)  # type: ignore[arg-type]


def test_an_infinite_grace_makes_no_misfire() -> None:
    source = IntervalSource(10, grace=float("inf"), misfire="skip", start_at=T0 - 100, limit=3, clock=FakeClock(T0))
    ticks = list(source)
    assert [t.scheduled for t in ticks] == [T0 - 100, T0 - 90, T0 - 80]  # overdue, fired all the same
    assert source.detail["missed"] == 0 and source.markers == 0


# -- jitter ------------------------------------------------------------------------------------
def test_jitter_delays_each_tick_within_bounds() -> None:
    ticks = list(IntervalSource(10, jitter=2, seed=1, limit=200, clock=FakeClock(T0)))
    delays = [t.fired - t.scheduled for t in ticks]
    assert [t.scheduled - T0 for t in ticks] == [10.0 * k for k in range(1, 201)]
    assert all(0 <= d <= 2 for d in delays)
    assert max(delays) > 1.5 and min(delays) < 0.5  # spread over the range, not a constant
    assert all(t.late == 0 for t in ticks)  # jitter is not lateness


def test_jitter_is_reproducible_with_a_seed() -> None:
    def delays(seed: int) -> list[float]:
        return [t.fired - t.scheduled for t in IntervalSource(10, jitter=5, seed=seed, limit=20, clock=FakeClock(T0))]

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)


# -- misfires ----------------------------------------------------------------------------------
def test_misfire_late_fires_every_missed_tick_with_its_own_scheduled_time() -> None:
    records, source = _suspended("late")
    ticks = [r for r in records if isinstance(r, Tick)]
    assert not [r for r in records if isinstance(r, Marker)]
    assert [t.scheduled - T0 for t in ticks] == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert [t.fired - T0 for t in ticks] == [10.0, 45.0, 45.0, 45.0, 50.0]
    assert [t.late for t in ticks] == [0.0, 25.0, 15.0, 5.0, 0.0]
    assert source.detail == {"fired": 5, "missed": 0, "coalesced": 0, "late": 3}


def test_misfire_coalesce_fires_once_for_the_latest_with_the_count() -> None:
    records, source = _suspended("coalesce")
    assert not [r for r in records if isinstance(r, Marker)]
    assert [(t.scheduled - T0, t.fired - T0, t.coalesced) for t in records] == [  # type: ignore[union-attr]
        (10.0, 10.0, 0), (40.0, 45.0, 2), (50.0, 50.0, 0)]
    assert source.detail == {"fired": 3, "missed": 0, "coalesced": 2, "late": 1}


def test_misfire_skip_emits_one_missed_marker_and_no_tick_for_those_times() -> None:
    records, source = _suspended("skip")
    markers = [r for r in records if isinstance(r, Marker)]
    assert len(markers) == 1
    assert markers[0].kind == "missed" and markers[0].source == "interval"
    assert markers[0].detail["ticks"] == [T0 + 20, T0 + 30, T0 + 40]
    assert markers[0].at == T0 + 45  # the clock's time, when the source noticed
    assert [t.scheduled - T0 for t in records if isinstance(t, Tick)] == [10.0, 50.0]
    assert source.detail == {"fired": 2, "missed": 3, "coalesced": 0, "late": 0}
    assert source.statistics().markers == 1


@pytest.mark.parametrize("misfire", POLICIES)
def test_every_policy_accounts_for_each_scheduled_time_once(misfire: str) -> None:
    records, _ = _suspended(misfire, periods=7.2, until=T0 + 90)  # wakes at T0 + 82
    assert _slots(records, T0 + 10, 10) == list(range(9))  # 10 .. 90: none lost, none twice


@pytest.mark.parametrize("misfire", POLICIES)
def test_a_wake_up_within_grace_is_no_misfire(misfire: str) -> None:
    records, source = _suspended(misfire, periods=1.05)  # wakes at T0 + 20.5: 0.5 s late, grace 1 s
    assert [(t.scheduled - T0, t.late) for t in records] == [  # type: ignore[union-attr]
        (10.0, 0.0), (20.0, 0.5), (30.0, 0.0), (40.0, 0.0), (50.0, 0.0)]
    assert source.detail["late"] == source.detail["missed"] == source.detail["coalesced"] == 0


@pytest.mark.parametrize("misfire", POLICIES)
def test_a_busy_action_is_a_misfire_handled_by_the_policy(misfire: str) -> None:
    clock = FakeClock(T0)

    def busy() -> None:
        if clock.time() == T0 + 10:
            clock.advance(25)  # the first action takes 25 s: 20 and 30 are overdue

    records = list(IntervalSource(10, misfire=misfire, action=busy, limit=3, clock=clock))  # type: ignore[arg-type]
    assert _slots(records, T0 + 10, 10)[:3] == [0, 1, 2]
    assert any(isinstance(r, Marker) for r in records) == (misfire == "skip")


def test_late_policy_stops_at_the_limit_inside_a_misfire() -> None:
    clock = FakeClock(T0)
    records = iter(IntervalSource(10, limit=3, clock=clock))
    next(records)
    clock.advance(100)
    assert [t.scheduled - T0 for t in records] == [20.0, 30.0]


# -- actions -----------------------------------------------------------------------------------
def test_the_actions_value_is_in_the_tick() -> None:
    calls = iter(range(100))
    ticks = list(IntervalSource(1, action=lambda: f"run {next(calls)}", limit=3, clock=FakeClock(T0)))
    assert [t.value for t in ticks] == ["run 0", "run 1", "run 2"]


def test_an_action_that_raises_is_a_source_error_naming_the_source_and_tick() -> None:
    def action() -> int:
        raise ZeroDivisionError("nope")

    with pytest.raises(SourceError, match=r"source 'cleanup': action failed at tick 1 .*ZeroDivisionError: nope"):
        list(IntervalSource(1, name="cleanup", action=action, clock=FakeClock(T0)))


def test_an_action_that_raises_fails_the_hosted_source() -> None:
    count = iter(range(100))

    def action() -> int:
        n = next(count)
        if n == 2:
            raise RuntimeError("disk full")
        return n

    source = IntervalSource(1, name="rotate", action=action, clock=FakeClock(T0)).start()
    with pytest.raises(ActorError) as caught:
        source.join(5)
    assert caught.value.actor == "rotate"
    assert "source 'rotate': action failed at tick 3" in str(caught.value)
    assert "RuntimeError: disk full" in str(caught.value)


# -- hosted, on the real clock -----------------------------------------------------------------
def test_hosted_interval_ticks_and_stop_ends_it_quickly() -> None:
    source = IntervalSource(0.05, name="beat").start()
    try:
        ticks = [source.queue.get(timeout=2) for _ in range(3)]
    finally:
        began = time.monotonic()
        source.stop()
        stats = source.join(0.5)
    assert time.monotonic() - began < 0.5
    assert [t.n for t in ticks] == [1, 2, 3]
    assert ticks[1].scheduled - ticks[0].scheduled == pytest.approx(0.05)
    assert all(t.fired >= t.scheduled for t in ticks)
    assert stats.state == "stopped" and stats.detail["fired"] >= 3


@pytest.mark.parametrize("misfire", POLICIES)
def test_backpressure_is_a_misfire_handled_by_the_policy(misfire: str) -> None:
    every, grace = 0.05, 0.05
    source = IntervalSource(every, name="bp", misfire=misfire, grace=grace, maxsize=1).start()  # type: ignore[arg-type]
    records: list[object] = []
    try:
        time.sleep(0.6)  # nobody reads: the channel is full, the source blocks in put
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # read until a tick scheduled well after the stall
            records.append(source.queue.get(timeout=2))
            ticks = [r for r in records if isinstance(r, Tick)]
            if ticks[-1:] and ticks[-1].scheduled >= ticks[0].scheduled + 0.8:
                break
    finally:
        source.stop()
        records.extend(source.queue)  # drain to END, so a blocked put lets the source end
        stats = source.join(2)
    ticks = [r for r in records if isinstance(r, Tick)]
    markers = [r for r in records if isinstance(r, Marker)]
    assert ticks[0].n == 1
    slots = _slots(records, ticks[0].scheduled, every)
    assert slots == list(range(len(slots)))  # every scheduled time accounted for once, in order
    assert len(slots) >= 16
    if misfire == "late":
        assert not markers and stats.detail["late"] >= 3
        assert any(t.late > grace for t in ticks)
    elif misfire == "coalesce":
        assert not markers and any(t.coalesced >= 3 for t in ticks)
        assert stats.detail["coalesced"] == sum(t.coalesced for t in ticks)
    else:
        assert markers and all(m.kind == "missed" for m in markers)
        assert len(markers[0].detail["ticks"]) >= 3
        assert stats.detail["missed"] == sum(len(m.detail["ticks"]) for m in markers)


# -- long suspends, jitter bounds, daylight saving time -----------------------------------------
def _after_suspend(source: IntervalSource | CronSource, clock: FakeClock, seconds: float) -> object:
    """The first record after the source's first tick and a suspend of ``seconds``."""
    records = iter(source)
    next(records)
    clock.advance(seconds)
    record = next(records)
    records.close()
    return record


def test_a_skip_marker_lists_the_first_100_and_the_last_time_and_counts_them_all() -> None:
    clock = FakeClock(T0)
    source = IntervalSource(0.01, misfire="skip", grace=0.005, clock=clock)
    marker = _after_suspend(source, clock, 10.0)  # wakes at 10.01: ticks at 0.02 .. 10.00 are overdue
    assert isinstance(marker, Marker) and marker.detail["count"] == 999 == source.detail["missed"]
    ticks = marker.detail["ticks"]
    assert len(ticks) == 101 and ticks[-1] == pytest.approx(T0 + 10.0)
    assert ticks[:100] == pytest.approx([T0 + 0.02 + 0.01 * k for k in range(100)])


@pytest.mark.parametrize("misfire", ["skip", "coalesce"])
def test_a_week_long_suspend_of_a_1_ms_interval_is_skipped_or_coalesced_at_once(misfire: str) -> None:
    clock = FakeClock(T0)
    source = IntervalSource(0.001, misfire=misfire, grace=0.0005, clock=clock)  # type: ignore[arg-type]
    started = time.monotonic()
    record = _after_suspend(source, clock, 7 * 86400.0)
    assert time.monotonic() - started < 1.0
    count = 7 * 86400 * 1000 - 1  # 0.002 .. 604800.000 (604800.001 is due: it comes next)
    if misfire == "skip":
        assert isinstance(record, Marker) and record.detail["count"] == count and len(record.detail["ticks"]) == 101
    else:
        assert isinstance(record, Tick) and record.coalesced == count - 1
        assert record.scheduled == pytest.approx(T0 + 7 * 86400)


def test_a_cron_source_skipping_a_week_keeps_no_more_than_the_listed_times() -> None:
    clock = FakeClock(T0)
    marker = _after_suspend(CronSource("* * * * *", misfire="skip", clock=clock), clock, 7 * 86400.0)
    assert isinstance(marker, Marker) and marker.detail["count"] == 7 * 1440 - 1
    assert len(marker.detail["ticks"]) == 101


@pytest.mark.parametrize("jitter", [1.0, 5, timedelta(seconds=2)])
def test_jitter_not_less_than_every_is_a_one_line_value_error_naming_the_source(jitter: object) -> None:
    with pytest.raises(ValueError, match=r"^source 'beat': jitter must be less than every \(1 s\)") as caught:
        IntervalSource(1, jitter=jitter, name="beat")  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert IntervalSource(1, jitter=0.99).jitter == 0.99


def test_cron_at_a_fixed_time_fires_once_when_clocks_go_back_as_classic_cron() -> None:
    paris = ZoneInfo("Europe/Paris")
    clock = FakeClock(datetime(2024, 10, 26, 12, tzinfo=paris))  # 02:30 comes twice on the 27th
    ticks = list(CronSource("30 2 * * *", tz="Europe/Paris", limit=3, clock=clock))
    assert [datetime.fromtimestamp(t.scheduled, paris).isoformat() for t in ticks] == [
        "2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00", "2024-10-29T02:30:00+01:00"]


def test_a_periodic_cron_fires_in_both_passes_of_the_hour_clocks_go_back() -> None:
    paris = ZoneInfo("Europe/Paris")
    clock = FakeClock(datetime(2024, 10, 27, 1, 40, tzinfo=paris))
    ticks = list(CronSource("*/30 * * * *", tz="Europe/Paris", limit=5, clock=clock))
    assert [datetime.fromtimestamp(t.scheduled, paris).strftime("%H:%M%z") for t in ticks] == [
        "02:00+0200", "02:30+0200", "02:00+0100", "02:30+0100", "03:00+0100"]
