"""Channel: bounded, ordered, closable, iterable; END and the seed's queue.Empty alias."""

from __future__ import annotations

import pickle
import queue
import threading
import time

import pytest

import chronopipe as cp


@pytest.fixture(params=["thread", "process"])
def mode(request) -> str:
    return request.param


def test_records_come_out_in_the_order_they_went_in(mode):
    ch = cp.Channel(mode=mode, name="order")
    ch.put_many(range(5000))
    ch.close()
    assert list(ch) == list(range(5000))


def test_get_returns_end_after_the_last_record_and_keeps_returning_it(mode):
    ch = cp.Channel(mode=mode)
    ch.put("a")
    ch.close()
    assert [ch.get(), ch.get(), ch.get()] == ["a", cp.END, cp.END]


def test_putting_queue_empty_ends_the_stream_like_the_seed(mode):
    ch = cp.Channel(mode=mode)
    ch.put("value_1")
    ch.put(queue.Empty)
    assert ch.get() == "value_1"
    assert ch.get() == queue.Empty  # the seed's loop test: `if item == Queue.Empty: break`


def test_end_survives_pickling_as_the_same_object():
    assert pickle.loads(pickle.dumps(cp.END)) is cp.END
    assert cp.is_end(cp.END) and cp.is_end(queue.Empty) and not cp.is_end(None)


def test_a_channel_with_two_writers_ends_after_both_closed(mode):
    ch = cp.Channel(mode=mode, writers=2)
    for name, records in (("odd", [1, 3, 5]), ("even", [2, 4, 6])):
        cp.Actor(name, source=records, outputs=ch, mode=mode).start()
    assert sorted(ch) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("writer_mode", ["thread", "process"])
def test_a_process_channel_with_two_writers_in_one_process_gets_every_record_and_ends(writer_mode):
    ch = cp.Channel(mode="process", name="shared", writers=2)
    writers = [cp.Actor(name, source=range(start, start + 1000), outputs=ch, mode=writer_mode).start()
               for name, start in (("low", 0), ("high", 1000))]
    assert sorted(ch) == list(range(2000))  # each writer's close sends its own END
    for writer in writers:
        writer.join(5)
        assert writer.state == "finished"


def test_get_raises_timeout_error_when_nothing_arrives(mode):
    ch = cp.Channel(mode=mode, name="quiet")
    with pytest.raises(TimeoutError, match="quiet"):
        ch.get(timeout=0.05)


def test_a_full_thread_channel_blocks_the_producer():
    ch = cp.Channel(3, mode="thread", name="small")
    ch.put_many([1, 2, 3])
    with pytest.raises(TimeoutError, match="small"):
        ch.put(4, timeout=0.1)
    assert ch.get() == 1
    ch.put(4, timeout=0.1)  # room again


def test_a_full_process_channel_blocks_the_producer():
    ch = cp.Channel(2, mode="process", name="small", batch_size=1)
    ch.put(1)
    ch.put(2)  # two batches in flight fill the two slots
    with pytest.raises(TimeoutError, match="small"):
        ch.put(3, timeout=0.1)
    assert ch.get() == 1  # frees a slot; the held record goes with the next flush
    ch.flush()
    ch.close()
    assert list(ch) == [2, 3]


def test_abort_wakes_a_blocked_reader_with_channel_broken(mode):
    ch = cp.Channel(mode=mode, name="doomed")
    threading.Timer(0.1, ch.abort).start()
    started = time.monotonic()
    with pytest.raises(cp.ChannelBroken, match="doomed"):
        ch.get()
    assert time.monotonic() - started < 2


def test_put_after_close_is_an_error(mode):
    ch = cp.Channel(mode=mode, name="shut")
    ch.close()
    with pytest.raises(ValueError, match="put after close"):
        ch.put(1)
        ch.flush()


def test_maxsize_must_be_positive_because_channels_are_bounded():
    with pytest.raises(ValueError, match="bounded"):
        cp.Channel(0)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="'thread', 'process' or 'ray'"):
        cp.Channel(mode="carrier-pigeon")


def test_a_process_channel_cannot_be_pickled_and_says_what_to_do():
    with pytest.raises(TypeError, match="give it to an Actor"):
        pickle.dumps(cp.Channel(mode="process", name="p"))


def test_a_lone_record_leaves_a_process_channel_within_the_linger_time():
    ch = cp.Channel(mode="process", linger=0.005)
    ch.put("lonely")  # a partial batch: the linger thread must send it
    assert ch.get(timeout=1.0) == "lonely"


def test_an_unpicklable_record_in_a_process_channel_is_a_clear_error():
    ch = cp.Channel(mode="process", name="strict")
    ch.put(lambda: None)
    with pytest.raises(TypeError, match="cannot be pickled"):
        ch.flush()


@pytest.mark.parametrize("rows", [
    pytest.param([(i, "tapA", i * 1.5, b"\x00" * (i % 7), None, True) for i in range(2500)], id="flat tuples"),
    pytest.param([{"timestamp": i, "value": [i]} for i in range(2500)], id="dicts"),
    pytest.param([(0, "row")] + [(i, {"nested": i}) for i in range(1, 2500)], id="tuples then nested tuples"),
])
def test_a_process_channel_delivers_equal_records_whatever_their_shape(rows):
    ch = cp.Channel(mode="process", name="shapes")
    ch.put_many(rows)
    ch.close()
    assert list(ch) == rows


def test_a_cycle_behind_a_flat_first_row_still_crosses_a_process_channel():
    loop: list = [1]
    loop.append(loop)
    ch = cp.Channel(mode="process", name="cycle")
    ch.put_many([(0, "flat"), (1, loop)])
    ch.close()
    first, second = list(ch)
    assert first == (0, "flat") and second[1][1] is second[1]


def test_statistics_count_records_and_are_frozen(mode):
    ch = cp.Channel(mode=mode, name="counted")
    ch.put_many([1, 2, 3])
    ch.close()
    assert list(ch) == [1, 2, 3]
    stats = ch.statistics()
    assert (stats.name, stats.mode, stats.items_put, stats.items_got, stats.ended) == ("counted", mode, 3, 3, True)
    with pytest.raises(AttributeError):
        stats.items_put = 0


def test_a_process_channel_sends_no_batch_larger_than_its_batch_size():
    ch = cp.Channel(mode="process", batch_size=4)
    ch.put_many(list(range(10)))  # two whole batches leave as they are; 8, 9 wait for the linger
    ch.close()
    sizes = []
    while (batch := ch.get_batch(timeout=5))[-1] is not cp.END:
        sizes.append(len(batch))
    assert sizes == [4, 4, 2]


def test_a_process_channel_with_no_linger_sends_a_lone_record_at_once():
    ch = cp.Channel(mode="process", linger=0.0)
    ch.put("now")  # due at once: the linger thread sends it without waiting
    assert ch.get(timeout=1.0) == "now"
