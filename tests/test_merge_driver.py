"""merge_channels: the one merge loop of the multiplexers and the pipeline nodes."""

from __future__ import annotations

import select
import threading
import time

import pytest

import chronopipe as cp
from chronopipe.actors.hosting import Counts
from chronopipe.channels.base import POLL_INTERVAL
from chronopipe.multiplex.merge import merge_channels
from chronopipe.order import MergeWindow


@pytest.fixture(params=["thread", "process"])
def mode(request) -> str:
    return request.param


def channels(mode: str, *contents: list, close: bool = True) -> list[cp.Channel]:
    """One channel per list, holding it (and its END), flushed so the merge sees it at once."""
    made = []
    for records in contents:
        ch = cp.Channel(mode=mode)
        if records:
            ch.put_many(records)
        if close:
            ch.close()
        else:
            ch.flush()
        made.append(ch)
    if mode == "process":
        time.sleep(0.02)  # the batches reach the other end of the pipes
    return made


def records(batches) -> list:
    return [r for batch in batches for r in batch]


class Merging(threading.Thread):
    """A merge running in a thread: its batches, and whether it ended."""

    def __init__(self, inputs, window=None, **options) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.batches: list[list] = []
        self.merge = merge_channels(inputs, window, stopped=self.stop.is_set, **options)
        self.start()

    def run(self) -> None:
        for batch in self.merge:
            self.batches.append(batch)


def by_value() -> MergeWindow:
    return MergeWindow(lambda r: r[0])


# -- first come, first out ---------------------------------------------------------------------
def test_records_waiting_on_several_inputs_are_interleaved_one_at_a_time_in_registration_order(mode):
    a, b = channels(mode, ["a1", "a2"], ["b1", "b2", "b3"])
    assert list(merge_channels([a, b])) == [["a1", "b1", "a2", "b2", "b3"]]


def test_an_input_appended_while_the_merge_runs_takes_part(mode):
    first, later = channels(mode, [1], [2], close=False)
    inputs = [first]
    merging = Merging(inputs)
    time.sleep(0.1)
    inputs.append(later)
    first.close()
    later.close()
    merging.join(5)
    assert not merging.is_alive() and sorted(records(merging.batches)) == [1, 2]


def test_the_merge_counts_every_record_it_takes_and_not_the_ends(mode):
    counts = Counts()
    merged = records(merge_channels(channels(mode, list(range(10)), list(range(5))), counts=counts))
    assert len(merged) == counts.received == 15


def test_a_record_arriving_on_a_silent_input_is_merged_within_milliseconds(mode):
    a, b = channels(mode, [], [], close=False)
    merging = Merging([a, b])
    time.sleep(0.05)
    sent = time.monotonic()
    b.put("late")
    b.flush()
    while not merging.batches and time.monotonic() - sent < 5:
        time.sleep(0.0002)
    assert merging.batches == [["late"]] and time.monotonic() - sent < 0.02
    a.close()
    b.close()
    merging.join(5)


# -- by key ----------------------------------------------------------------------------------
def test_ties_come_out_in_input_registration_order(mode):
    b, a = channels(mode, [(2, "b"), (2, "b"), (3, "b")], [(1, "a"), (2, "a"), (2, "a"), (3, "a")])
    assert records(merge_channels([b, a], by_value())) == [
        (1, "a"), (2, "b"), (2, "b"), (2, "a"), (2, "a"), (3, "b"), (3, "a")]


def test_a_record_that_steps_back_goes_to_the_windows_late_callback(mode):
    late = []
    window = MergeWindow(lambda r: r, on_late=lambda i, record, frontier: late.append((i, record, frontier)))
    assert records(merge_channels(channels(mode, [1, 5, 3, 6]), window)) == [1, 5, 6]
    assert late == [(0, 3, 5)]


def test_by_default_an_input_is_read_only_when_the_window_wants_it(mode):
    ahead, behind = channels(mode, [(10,)], [], close=False)
    merging = Merging([ahead, behind], by_value())
    time.sleep(0.1)  # the merge took ahead's first batch, and waits for behind
    ahead.put_many([(11,), (12,)])
    ahead.flush()
    time.sleep(0.2)
    assert pending(ahead)  # still in the channel, not in the merge's memory
    behind.put_many([(1,), (20,)])
    ahead.close()
    behind.close()
    merging.join(5)
    assert records(merging.batches) == [(1,), (10,), (11,), (12,), (20,)]


def pending(channel) -> bool:
    """Whether ``channel`` holds records nobody took yet, looked at without taking any (the merge
    reads it meanwhile: ``ready()`` would read a process channel's pipe too, racing the merge)."""
    fd = channel.wait_handle()
    if fd is None:
        return channel.ready()  # (a thread channel's only looks)
    return bool(select.select([fd], [], [], 0)[0]) or channel.qsize() > 0


def test_drain_takes_every_input_as_soon_as_it_has_something(mode):
    ahead, behind = channels(mode, [(10,), (11,), (12,)], [], close=False)
    counts = Counts()
    merging = Merging([ahead, behind], by_value(), drain=True, counts=counts)
    deadline = time.monotonic() + 5
    while (pending(ahead) or not merging.batches) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not pending(ahead)  # taken while behind is silent: nothing emitted
    assert all(batch == [] for batch in merging.batches)  # a round that took records but emitted none
    assert counts.received == 0  # none handled yet: a record is received once its batch was handled
    behind.put((1,))
    ahead.close()
    behind.close()
    merging.join(5)
    assert records(merging.batches) == [(1,), (10,), (11,), (12,)] and counts.received == 4


def test_idle_timeout_moves_on_without_the_silent_input_that_holds_the_merge_back(mode):
    live, silent = channels(mode, [(1,), (2,)], [(0,)], close=False)
    moved_on = []
    started = time.monotonic()
    merging = Merging([live, silent], by_value(), idle_timeout=0.2, on_idle=moved_on.append)
    while records(merging.batches) != [(0,), (1,), (2,)] and time.monotonic() - started < 5:
        time.sleep(0.005)
    assert records(merging.batches) == [(0,), (1,), (2,)] and moved_on == [1]
    assert 0.2 <= time.monotonic() - started < 2
    live.close()
    silent.close()
    merging.join(5)


# -- waiting and stopping --------------------------------------------------------------------
@pytest.mark.parametrize("window", [None, "bounded", "drain"])
def test_a_merge_stopped_while_it_waits_ends_within_the_poll_interval(mode, window):
    inputs = channels(mode, [], [], close=False)
    options = {} if window is None else {"window": by_value(), "drain": window == "drain"}
    merging = Merging(inputs, **options)
    time.sleep(0.1)
    asked = time.monotonic()
    merging.stop.set()
    merging.join(5)
    assert not merging.is_alive() and time.monotonic() - asked < POLL_INTERVAL + 0.1


@pytest.mark.parametrize("window", [None, "bounded", "drain"])
def test_what_the_caller_holds_is_handed_over_before_every_wait(mode, window):
    a, b = channels(mode, [(1,)], [], close=False)
    handed_over = threading.Event()
    options = {} if window is None else {"window": by_value(), "drain": window == "drain"}
    merging = Merging([a, b], before_wait=handed_over.set, **options)
    assert handed_over.wait(5)
    a.close()
    b.close()
    merging.join(5)


@pytest.mark.parametrize(("options", "message"), [
    ({"idle_timeout": 1}, "MergeWindow"),
    ({"drain": True}, "MergeWindow"),
    ({"window": MergeWindow(), "idle_timeout": 0}, "> 0 seconds"),
])
def test_options_that_do_not_fit_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        merge_channels([cp.Channel(mode="thread")], **options)


@pytest.mark.parametrize("window", [None, "by value"], ids=["fifo", "by_key"])
def test_a_batch_whose_handling_raised_is_not_counted_received(mode, window):
    a, b = channels(mode, [(1,), (3,)], [(2,), (4,)])
    counts = Counts()
    merge = merge_channels([a, b], by_value() if window else None, stopped=lambda: False,
                           before_wait=lambda: None, counts=counts)
    first = next(merge)
    assert first and counts.received == 0  # the caller failed to handle it: the generator is closed
    merge.close()
    assert counts.received == 0


def test_late_records_are_counted_received_once_the_merge_ended(mode):
    late: list = []
    steps_back, = channels(mode, [(1,), (5,), (3,), (6,)])
    counts = Counts()
    window = MergeWindow(lambda r: r[0], on_late=lambda i, record, floor: late.append(record))
    merged = records(merge_channels([steps_back], window, stopped=lambda: False, before_wait=lambda: None,
                                    counts=counts))
    assert merged == [(1,), (5,), (6,)] and late == [(3,)]
    assert counts.received == 4  # 3 handed on + 1 late: every record taken is accounted for
