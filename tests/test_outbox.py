"""Outbox (channels/outbox.py): the one batching mechanism of actors, pipeline ports, readers and
the process channel's write buffer. Real channels of both modes; no mocks."""

from __future__ import annotations

import threading
import time

import pytest

import chronopipe as cp
from chronopipe.channels.outbox import BATCH, Outbox, batch_limit


@pytest.fixture(params=["thread", "process"])
def mode(request) -> str:
    return request.param


def drain(ch: cp.Channel, count: int) -> list:
    """The first ``count`` records of ``ch`` (waiting for them)."""
    got: list = []
    while len(got) < count:
        got += ch.get_batch(timeout=5)
    return got


# -- size: whole batches leave, a partial one waits ----------------------------------------
def test_whole_batches_leave_as_they_fill_and_the_rest_waits(mode):
    ch = cp.Channel(mode=mode)
    box = Outbox(ch, limit=3)
    assert [box.put(n) for n in range(7)] == [0, 0, 3, 0, 0, 3, 0]
    assert drain(ch, 6) == [0, 1, 2, 3, 4, 5]
    assert box.pending == [6] and (box.sent, box.batches) == (6, 2)
    with pytest.raises(TimeoutError):
        ch.get_batch(timeout=0.1)


def test_put_many_sends_the_whole_batches_of_a_list_and_keeps_the_rest(mode):
    ch = cp.Channel(mode=mode)
    box = Outbox(ch, limit=3)
    assert box.put_many(list(range(8))) == 6
    assert box.pending == [6, 7] and box.batches == 2
    assert drain(ch, 6) == list(range(6))


def test_put_many_takes_any_iterable(mode):
    ch = cp.Channel(mode=mode)
    box = Outbox(ch, limit=4)
    assert box.put_many(n for n in range(5)) == 4
    assert box.pending == [4]


def test_flush_sends_the_partial_batch(mode):
    ch = cp.Channel(mode=mode)
    box = Outbox(ch, limit=100)
    box.put_many(["a", "b"])
    assert box.flush() == 2 and box.pending == [] and box.since is None
    ch.close()
    assert list(ch) == ["a", "b"]


def test_no_batch_is_larger_than_the_limit():
    ch = cp.Channel(mode="process", batch_size=4)
    box = Outbox(ch)
    box.pending.extend(range(10))  # a hot loop's appends, unchecked until its flush
    box.flush()
    ch.close()
    sizes = []
    while (batch := ch.get_batch(timeout=5))[-1] is not cp.END:
        sizes.append(len(batch))
    assert sizes == [4, 4, 2]


def test_records_leave_in_the_order_they_were_put(mode):
    ch = cp.Channel(mode=mode)
    box = Outbox(ch, limit=7)
    box.put("first")
    box.put_many(range(20))
    box.put_many(iter(range(20, 23)))
    box.pending.append("appended")
    box.put("last")
    box.flush()
    ch.close()
    assert list(ch) == ["first", *range(23), "appended", "last"]


def test_the_limit_is_the_smallest_batch_size_of_the_channels():
    thread, small = cp.Channel(mode="thread"), cp.Channel(8, mode="process")
    assert Outbox([thread, small]).limit == 8 == batch_limit([thread, small])
    assert Outbox(thread).limit == BATCH
    assert Outbox(thread, limit=5).limit == 5


@pytest.mark.parametrize("options", [{"limit": 0}, {"linger": -1.0}])
def test_a_limit_below_one_or_a_negative_linger_is_refused(options):
    with pytest.raises(ValueError, match="limit >= 1 and linger >= 0"):
        Outbox(cp.Channel(mode="thread"), **options)


# -- time: a partial batch is due once it has lingered ---------------------------------------
def test_a_partial_batch_is_due_linger_seconds_after_it_began_waiting(mode):
    ch = cp.Channel(mode=mode)
    box = Outbox(ch, limit=100, linger=0.5)
    box.put("x")
    began = box.since
    assert began is not None
    assert box.flush_due(began + 0.4) == 0 and box.pending == ["x"]
    assert box.flush_due(began + 0.5) == 1 and box.pending == []
    assert ch.get(timeout=5) == "x"


def test_with_no_linger_a_partial_batch_is_due_at_once(mode):
    box = Outbox(cp.Channel(mode=mode), limit=100)
    box.put("x")
    assert box.flush_due(time.monotonic()) == 1


def test_records_appended_directly_wait_from_the_first_check_that_sees_them():
    box = Outbox(cp.Channel(mode="thread"), limit=100, linger=0.5)
    box.pending.append("x")
    assert box.flush_due(10.0) == 0 and box.since == 10.0
    assert box.flush_due(10.5) == 1


def test_on_wait_is_told_when_a_partial_batch_falls_due():
    deadlines: list[float] = []
    box = Outbox(cp.Channel(mode="thread"), limit=3, linger=0.5, on_wait=deadlines.append)
    box.put(1)
    box.put(2)
    assert box.since is not None and deadlines == [box.since + 0.5]
    box.put_many([3, 4])  # a whole batch leaves; 4 waits from now
    assert box.pending == [4] and deadlines[1:] == [box.since + 0.5]


def test_a_due_partial_batch_also_leaves_a_process_channels_own_buffer():
    ch = cp.Channel(mode="process", linger=60.0)  # its own linger would hold the record a minute
    box = Outbox(ch, limit=100)
    box.put("x")
    box.flush_due(time.monotonic())
    assert ch.get(timeout=5) == "x"


def test_flush_hands_a_partial_batch_over_and_the_process_channel_may_still_hold_it():
    ch = cp.Channel(mode="process", linger=60.0)
    box = Outbox(ch, limit=100)
    box.put("x")
    box.flush()  # an actor's flush after each input batch: the channel may coalesce it with more
    with pytest.raises(TimeoutError):
        ch.get(timeout=0.2)
    ch.flush()
    assert ch.get(timeout=5) == "x"


# -- where batches go --------------------------------------------------------------------------
def test_every_channel_gets_every_batch(mode):
    a, b = cp.Channel(mode=mode), cp.Channel(mode=mode)
    box = Outbox([a, b], limit=2)
    box.put_many(range(5))
    box.flush()
    a.close()
    b.close()
    assert list(a) == list(b) == list(range(5))
    assert box.sent == 5  # records, not copies


def test_deal_sends_each_batch_to_the_next_channel_in_turn(mode):
    a, b = cp.Channel(mode=mode), cp.Channel(mode=mode)
    box = Outbox([a, b], limit=2, deal=True)
    box.put_many(range(7))
    box.flush()
    a.close()
    b.close()
    assert (list(a), list(b)) == ([0, 1, 4, 5], [2, 3, 6])


def test_a_sender_function_gets_the_batches():
    batches: list[list[int]] = []
    box = Outbox(lambda batch, timeout: batches.append(list(batch)), limit=2)
    box.put_many(range(5))
    box.flush()
    assert batches == [[0, 1], [2, 3], [4]]


# -- failure and backpressure ------------------------------------------------------------------
def test_a_send_that_raises_leaves_its_batch_first_in_line(mode):
    ch = cp.Channel(mode=mode, name="shut")
    ch.close()
    box = Outbox(ch, limit=2)
    box.put(1)
    with pytest.raises(ValueError, match="put after close"):
        box.put(2)
    assert box.pending == [1, 2] and (box.sent, box.batches) == (0, 0)
    with pytest.raises(ValueError, match="put after close"):
        box.put_many([3, 4])
    assert box.pending == [1, 2, 3, 4]


def test_a_whole_list_that_fails_to_leave_waits_first_in_line(mode):
    ch = cp.Channel(mode=mode, name="shut")
    ch.close()
    box = Outbox(ch, limit=2)
    with pytest.raises(ValueError, match="put after close"):
        box.put_many([1, 2, 3])
    assert box.pending == [1, 2, 3] and box.sent == 0


def test_a_full_bounded_channel_blocks_the_put_until_the_reader_takes(mode):
    ch = cp.Channel(4, mode=mode, **({"batch_size": 2} if mode == "process" else {}))
    box = Outbox(ch, limit=2)
    writer = threading.Thread(target=box.put_many, args=(list(range(20)),), daemon=True)
    writer.start()
    writer.join(0.3)
    assert writer.is_alive() and box.sent < 20  # blocked: backpressure
    assert drain(ch, 20) == list(range(20))
    writer.join(5)
    assert not writer.is_alive() and box.sent == 20


# -- shared with a timer thread: the process channel's write buffer ----------------------------
def test_records_put_while_the_linger_thread_sends_are_neither_lost_nor_repeated():
    ch = cp.Channel(mode="process", linger=0.0002, name="busy")
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(ch), daemon=True)
    reader.start()
    for n in range(30_000):
        ch.put(n)
        if n % 500 == 0:
            time.sleep(0.001)  # let partial batches linger and leave from the linger thread
    ch.close()
    reader.join(30)
    assert got == list(range(30_000))
