"""wait_any: one wait over channels of any modes, woken by what arrives, never longer than asked."""

from __future__ import annotations

import queue
import statistics
import threading
import time

import multiprocess
import pytest

import chronopipe as cp
from chronopipe.channels import wait_any
from chronopipe.channels.queues import as_input

_fork = multiprocess.get_context("fork")


@pytest.fixture(params=["thread", "process"])
def mode(request) -> str:
    return request.param


def write_later(ch: cp.Channel, delay: float, *, close: bool = False) -> object:
    """After ``delay`` seconds, put the time it is then (time.monotonic(), the same clock in every
    process) on ``ch``, from a thread for a thread channel and from a forked process for a process
    channel; or close it. Returns the thread or process: join() it."""

    def write() -> None:
        time.sleep(delay)
        if close:
            ch.close()
        else:
            ch.put(time.monotonic())
            ch.flush()

    writer = threading.Thread(target=write) if ch.mode == "thread" else _fork.Process(target=write)
    writer.start()
    return writer


def wake_delays(make_channels, arrives_on: int, rounds: int = 5) -> list[float]:
    """Seconds from a record's put to wait_any's return, per round (the record's own stamp)."""
    delays = []
    for _ in range(rounds):
        channels = make_channels()
        writer = write_later(channels[arrives_on], 0.03)
        ready = wait_any(channels, timeout=5)
        returned = time.monotonic()
        writer.join()
        assert ready == [channels[arrives_on]]
        delays.append(returned - channels[arrives_on].get_batch(0)[0])
    return delays


# -- what it returns ---------------------------------------------------------------------------
def test_it_returns_at_once_the_channels_that_have_something_in_the_order_given(mode):
    a, b, c = (cp.Channel(mode=mode, name=n) for n in "abc")
    c.put(1)
    a.put(2)
    c.flush()
    a.flush()
    time.sleep(0.01)  # a pipe's batch reaches the other end
    started = time.monotonic()
    assert wait_any([a, b, c], timeout=5) == [a, c]
    assert time.monotonic() - started < 0.5


def test_it_takes_nothing_from_the_channels(mode):
    ch = cp.Channel(mode=mode)
    ch.put_many([1, 2, 3])
    ch.flush()
    assert wait_any([ch], timeout=5) == [ch]
    assert wait_any([ch], timeout=5) == [ch]
    assert ch.get_batch(0) == [1, 2, 3]


def test_it_returns_nothing_once_the_timeout_passed(mode):
    silent = [cp.Channel(mode=mode), cp.Channel(mode=mode)]
    started = time.monotonic()
    assert wait_any(silent, timeout=0.1) == []
    assert 0.1 <= time.monotonic() - started < 0.6


def test_a_zero_timeout_only_looks(mode):
    ch = cp.Channel(mode=mode)
    started = time.monotonic()
    assert wait_any([ch], timeout=0) == []
    assert time.monotonic() - started < 0.1


# -- what wakes it -----------------------------------------------------------------------------
@pytest.mark.parametrize("arrives_on", [0, 2])
def test_a_record_on_any_of_several_channels_wakes_it_within_milliseconds(mode, arrives_on):
    delays = wake_delays(lambda: [cp.Channel(mode=mode) for _ in range(3)], arrives_on)
    assert statistics.median(delays) < 0.005, delays


@pytest.mark.parametrize("arrives_on", ["thread", "process"])
def test_a_record_wakes_it_when_thread_and_process_channels_are_mixed(arrives_on):
    modes = ["thread", "process", "thread", "process"]
    delays = wake_delays(lambda: [cp.Channel(mode=k) for k in modes], modes.index(arrives_on))
    assert statistics.median(delays) < 0.005, delays


def test_a_channel_closed_while_it_waits_wakes_it_with_its_end(mode):
    quiet, closing = cp.Channel(mode=mode), cp.Channel(mode=mode)
    writer = write_later(closing, 0.03, close=True)
    started = time.monotonic()
    assert wait_any([quiet, closing], timeout=5) == [closing]
    assert time.monotonic() - started < 1
    writer.join()
    assert closing.get_batch(0) == [cp.END]


def test_a_channel_that_ended_stays_ready(mode):
    ch = cp.Channel(mode=mode)
    ch.close()
    assert ch.get_batch(5) == [cp.END]
    assert wait_any([ch], timeout=5) == [ch]


def test_an_aborted_channel_is_returned_and_its_get_raises(mode):
    quiet, broken = cp.Channel(mode=mode), cp.Channel(mode=mode)
    timer = threading.Timer(0.03, broken.abort)
    timer.start()
    assert wait_any([quiet, broken], timeout=5) == [broken]
    timer.join()
    with pytest.raises(cp.ChannelBroken):
        broken.get_batch(0)


def test_a_process_channel_is_not_ready_until_its_last_writer_ended():
    ch = cp.Channel(mode="process", writers=2)
    ch.close()  # one writer's END of two: nothing to get yet
    assert wait_any([ch], timeout=0.1) == []
    write_later(ch, 0, close=True).join()  # the other writer, in its process
    assert wait_any([ch], timeout=5) == [ch] and ch.get_batch(0) == [cp.END]


def test_a_foreign_queue_is_polled_and_seen_within_a_few_milliseconds():
    foreign = queue.Queue()
    source = as_input(foreign, "foreign")
    threading.Timer(0.05, lambda: foreign.put(time.monotonic())).start()
    assert wait_any([source, cp.Channel(mode="thread")], timeout=5) == [source]
    assert time.monotonic() - source.get_batch(0)[0] < 0.05


# -- what it refuses ---------------------------------------------------------------------------
def test_it_refuses_to_wait_on_no_channel():
    with pytest.raises(ValueError, match="at least one channel"):
        wait_any([], timeout=1)


@pytest.mark.parametrize("timeout", [-1, float("inf"), float("nan")])
def test_every_wait_has_a_finite_timeout(timeout):
    with pytest.raises(ValueError, match="timeout must be"):
        wait_any([cp.Channel(mode="thread")], timeout=timeout)


@pytest.mark.parametrize("foreign", [queue.Queue(), [1, 2]], ids=["queue", "list"])
def test_something_that_is_not_a_channel_is_refused_with_a_type_error_naming_it(foreign):
    with pytest.raises(TypeError, match=f"waits on Channels, not {type(foreign).__name__}: read a queue through"):
        wait_any([cp.Channel(mode="thread"), foreign], timeout=0.1)


@pytest.mark.parametrize("timeout", [None, "1"])
def test_a_timeout_that_is_not_a_number_is_refused_with_a_type_error(timeout):
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        wait_any([cp.Channel(mode="thread")], timeout=timeout)
