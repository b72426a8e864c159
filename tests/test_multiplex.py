"""QueueMultiplexer and SortedQueueMultiplexer: the seed's usage, order, ties, lateness."""

from __future__ import annotations

import queue
import time
from types import SimpleNamespace

import pytest

import chronopipe as cp
from chronopipe.channels.base import POLL_INTERVAL


def drain(channel) -> list:
    """The seed's consumer loop: get until the single END (== queue.Empty)."""
    items = []
    while True:
        item = channel.get(timeout=10)
        if item == queue.Empty:
            return items
        items.append(item)


def test_the_seeds_fifo_usage_works_as_written():
    multiplexer = cp.QueueMultiplexer().run()
    input_queue_1 = multiplexer.input_queue()
    input_queue_2 = multiplexer.input_queue(cp.Runtime().manager().Queue())
    output_queue = multiplexer.output_queue()
    multiplexer.run()
    input_queue_1.put("value_1")
    input_queue_2.put("value_2")
    input_queue_1.put(queue.Empty)
    input_queue_2.put(queue.Empty)
    assert sorted(drain(output_queue)) == ["value_1", "value_2"]


def test_the_seeds_sorted_usage_gives_the_seeds_order():
    multiplexer = cp.SortedQueueMultiplexer(sort_key="timestamp", sort_direction="min", max_size=100).run()
    input_queue_1 = multiplexer.input_queue()
    input_queue_2 = multiplexer.input_queue(cp.Runtime().manager().Queue())
    output_queue = multiplexer.output_queue()
    multiplexer.run()
    for t in (1010, 1020, 1030):
        input_queue_1.put({"timestamp": t})
    for t in (1019, 1020, 1021):
        input_queue_2.put({"timestamp": t})
    input_queue_1.put(queue.Empty)
    input_queue_2.put(queue.Empty)
    assert [r["timestamp"] for r in drain(output_queue)] == [1010, 1019, 1020, 1020, 1021, 1030]


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_fifo_keeps_each_inputs_order_and_ends_once(kind):
    mux = cp.QueueMultiplexer(channel_mode=kind)
    inputs = [mux.input_queue() for _ in range(3)]
    out = mux.output_queue()
    mux.run()
    for n, ch in enumerate(inputs):
        ch.put_many([(n, i) for i in range(2000)])
        ch.close()
    got = drain(out)
    for n in range(3):
        assert [i for src, i in got if src == n] == list(range(2000))
    assert out.get(timeout=1) is cp.END


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_fifo_interleaves_records_waiting_on_several_inputs_one_at_a_time(kind):
    mux = cp.QueueMultiplexer(channel_mode=kind)
    a, b = mux.input_queue(), mux.input_queue()
    a.put_many(["a1", "a2"])
    b.put_many(["b1", "b2", "b3"])
    a.close()
    b.close()
    time.sleep(0.05)  # everything waits in the inputs before the merge starts
    assert list(mux) == ["a1", "b1", "a2", "b2", "b3"]


@pytest.mark.parametrize("mux_class", [cp.QueueMultiplexer, cp.SortedQueueMultiplexer])
@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_lone_record_is_handed_on_within_milliseconds(mux_class, kind):
    mux = mux_class(channel_mode=kind, **({"sort_key": lambda r: r} if mux_class is cp.SortedQueueMultiplexer else {}))
    a = mux.input_queue()
    out = mux.output_queue(cp.Channel(mode="thread"))
    mux.run()
    delays = []
    for i in range(5):
        time.sleep(0.02)  # the merge is waiting
        sent = time.monotonic()
        a.put(i)
        a.flush()
        assert out.get(timeout=5) == i
        delays.append(time.monotonic() - sent)
    a.close()
    assert out.get(timeout=5) is cp.END
    assert sorted(delays)[2] < 0.005, delays


@pytest.mark.parametrize("mux_class", [cp.QueueMultiplexer, cp.SortedQueueMultiplexer])
@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_multiplexer_stopped_while_it_waits_ends_within_the_poll_interval(mux_class, kind):
    mux = mux_class(channel_mode=kind)
    mux.input_queue()
    mux.input_queue()
    mux.output_queue()
    mux.run()
    time.sleep(0.1)  # both inputs silent: the merge waits
    asked = time.monotonic()
    mux.stop()
    assert mux.wait(5) and time.monotonic() - asked < POLL_INTERVAL + 0.1
    assert mux.state == "stopped"


@pytest.mark.parametrize("mux_class", [cp.QueueMultiplexer, cp.SortedQueueMultiplexer])
def test_every_output_gets_every_record_exactly_once(mux_class):
    mux = mux_class(channel_mode="thread")
    a, b = mux.input_queue(), mux.input_queue()
    outs = [mux.output_queue() for _ in range(3)]
    mux.run()
    a.put_many([{"timestamp": t} for t in range(0, 100, 2)])
    b.put_many([{"timestamp": t} for t in range(1, 100, 2)])
    a.close()
    b.close()
    for out in outs:
        assert sorted(r["timestamp"] for r in drain(out)) == list(range(100))


def merge(streams, **options):
    """Run a sorted merge of in-memory streams; the output records and the multiplexer."""
    mux = cp.SortedQueueMultiplexer(channel_mode="thread", **options)
    inputs = [mux.input_queue() for _ in streams]
    out = mux.output_queue()
    mux.run()
    for ch, records in zip(inputs, streams, strict=True):
        ch.put_many(records)
        ch.close()
    records = drain(out)
    mux.join(timeout=10)
    return records, mux


def test_ties_come_out_in_input_registration_order():
    a = [{"timestamp": t, "src": "a"} for t in (1, 2, 2, 3)]
    b = [{"timestamp": t, "src": "b"} for t in (2, 2, 3)]
    records, _ = merge([b, a])  # b registered first
    assert [(r["timestamp"], r["src"]) for r in records] == [
        (1, "a"), (2, "b"), (2, "b"), (2, "a"), (2, "a"), (3, "b"), (3, "a")
    ]


def test_equal_input_gives_identical_output_every_run():
    streams = [[{"timestamp": t // 3, "i": i, "s": s} for i, t in enumerate(range(300))] for s in range(4)]
    first, _ = merge(streams)
    for _ in range(3):
        again, _ = merge(streams)
        assert again == first


def test_max_direction_merges_descending_inputs():
    records, _ = merge([[{"t": t} for t in (9, 5, 1)], [{"t": t} for t in (8, 5, 2)]], sort_key="t",
                       sort_direction="max")
    assert [r["t"] for r in records] == [9, 8, 5, 5, 2, 1]


@pytest.mark.parametrize(
    ("sort_key", "make"),
    [
        ("a.b", lambda t: {"a": {"b": t}}),
        (["a", "b"], lambda t: {"a": {"b": t}}),
        (("day", "seq"), lambda t: {"day": t // 10, "seq": t % 10}),
        (("day", ["at", "seq"]), lambda t: {"day": t // 10, "at": {"seq": t % 10}}),
        (lambda r: r["when"], lambda t: {"when": t}),
        ("timestamp", lambda t: SimpleNamespace(timestamp=t)),
    ],
    ids=["nested", "list-path", "tuple-of-keys", "tuple-of-paths", "callable", "attribute"],
)
def test_sort_keys_of_every_documented_form(sort_key, make):
    records, _ = merge([[make(t) for t in range(0, 40, 3)], [make(t) for t in range(1, 40, 2)]], sort_key=sort_key)
    keys = [cp.multiplex.key_function(sort_key)(r) for r in records]
    assert keys == sorted(keys) and len(records) == 14 + 20


def test_an_input_that_steps_back_is_reported_and_never_emitted_out_of_order():
    good = [{"timestamp": t} for t in range(0, 20, 2)]
    bad = [{"timestamp": t} for t in (1, 3, 5, 4, 7, 2, 9)]
    records, mux = merge([good, bad])
    keys = [r["timestamp"] for r in records]
    assert keys == sorted(keys)
    report = mux.join()
    assert report.out_of_order == {mux.inputs()[1].name: 2}
    assert report.first_out_of_order[mux.inputs()[1].name] == ({"timestamp": 4}, 5)
    assert mux.late_records == [{"timestamp": 4}, {"timestamp": 2}]
    assert len(records) + len(mux.late_records) == len(good) + len(bad)  # nothing lost


def test_late_records_go_to_the_late_queue_when_there_is_one():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread")
    a, out, late = mux.input_queue(), mux.output_queue(), mux.late_queue()
    mux.run()
    a.put_many([{"timestamp": t} for t in (1, 5, 3, 6)])
    a.close()
    assert [r["timestamp"] for r in drain(out)] == [1, 5, 6]
    assert drain(late) == [{"timestamp": 3}]


def test_idle_timeout_moves_on_without_a_silent_input_and_marks_its_old_records_late():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread", idle_timeout=0.2)
    live, silent = mux.input_queue(), mux.input_queue()
    out = mux.output_queue()
    mux.run()
    silent.put({"timestamp": 0})
    live.put_many([{"timestamp": t} for t in (1, 2, 3)])
    started = time.monotonic()
    assert [out.get(timeout=5)["timestamp"] for _ in range(3)] == [0, 1, 2]  # 3 waits for silent
    assert out.get(timeout=5)["timestamp"] == 3  # silent said nothing for 0.2 s: moved on
    assert time.monotonic() - started < 3
    silent.put({"timestamp": 2})  # older than what was emitted: late, not out of order
    silent.put({"timestamp": 10})
    live.close()
    silent.close()
    assert [r["timestamp"] for r in drain(out)] == [10]
    assert mux.join().late == 1 and mux.late_records == [{"timestamp": 2}]


def test_inputs_fed_by_reader_actors_in_other_processes():
    mux = cp.SortedQueueMultiplexer(sort_key="timestamp")
    out = mux.output_queue(cp.Channel(mode="thread"))
    for offset in range(4):
        cp.Actor(f"producer-{offset}", source=[{"timestamp": t} for t in range(offset, 4000, 4)],
                 outputs=mux.input_queue(), mode="process").start()
    mux.run()
    assert [r["timestamp"] for r in drain(out)] == list(range(4000))


def test_a_process_hosted_merge_returns_its_report():
    mux = cp.SortedQueueMultiplexer(mode="process")
    a, b, out = mux.input_queue(), mux.input_queue(), mux.output_queue()
    mux.run()
    a.put_many([{"timestamp": t} for t in (1, 3, 2)])
    b.put_many([{"timestamp": t} for t in (0, 4)])
    a.close()
    b.close()
    assert [r["timestamp"] for r in drain(out)] == [0, 1, 3, 4]
    report = mux.join(timeout=10)
    assert report.late == 1 and report.late_records == [{"timestamp": 2}]


def test_a_record_without_the_sort_key_fails_the_merge_clearly():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread")
    a, out = mux.input_queue(), mux.output_queue()
    mux.run()
    a.put_many([{"timestamp": 1}, {"time": 2}])
    a.close()
    with pytest.raises(cp.ActorError, match="no field 'timestamp'"):
        drain(out)


def test_registering_a_queue_on_a_running_process_merge_is_refused():
    mux = cp.SortedQueueMultiplexer(mode="process")
    mux.input_queue()
    mux.output_queue()
    mux.run()
    with pytest.raises(RuntimeError, match="register every queue before run"):
        mux.input_queue()


def test_an_input_registered_while_the_merge_waits_for_the_first_is_merged_too():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread")
    first, out = mux.input_queue(), mux.output_queue()
    mux.run()  # starts waiting on `first`, which has nothing yet
    time.sleep(0.2)
    second = mux.input_queue()
    second.put_many([{"timestamp": t} for t in (1, 3)])
    second.close()
    first.put_many([{"timestamp": t} for t in (2, 4)])
    first.close()
    assert [r["timestamp"] for r in drain(out)] == [1, 2, 3, 4]


# -- merging in the calling thread: ``for record in mux`` -------------------------------------
def test_iterating_a_sorted_multiplexer_merges_in_the_calling_thread():
    mux = cp.SortedQueueMultiplexer(sort_key="timestamp")
    for offset in range(4):
        cp.Actor(f"producer-{offset}", source=[{"timestamp": t} for t in range(offset, 4000, 4)],
                 outputs=mux.input_queue(), mode="process").start()
    assert [r["timestamp"] for r in mux] == list(range(4000))
    report = mux.join(timeout=1)
    assert report.emitted == 4000 and report.late == 0 and mux.state == "finished"


@pytest.mark.parametrize("mux_class", [cp.QueueMultiplexer, cp.SortedQueueMultiplexer])
def test_iterating_a_multiplexer_yields_every_record_of_every_input(mux_class):
    mux = mux_class(channel_mode="thread")
    a, b = mux.input_queue(), mux.input_queue(cp.Runtime().manager().Queue())
    a.put_many([{"timestamp": t} for t in (1, 3)])
    a.put(cp.END)
    for t in (2, 4):
        b.put({"timestamp": t})
    b.put(cp.END)
    assert sorted(r["timestamp"] for r in mux) == [1, 2, 3, 4]


def test_iterating_a_sorted_multiplexer_reports_late_records_too():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread")
    a = mux.input_queue()
    a.put_many([{"timestamp": t} for t in (1, 3, 2)])
    a.close()
    assert [r["timestamp"] for r in mux] == [1, 3]
    assert mux.join().late_records == [{"timestamp": 2}]


def test_breaking_out_of_the_iteration_stops_the_merge():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread")
    a = mux.input_queue()
    a.put_many([{"timestamp": t} for t in range(10)])
    merged = iter(mux)
    assert next(merged)["timestamp"] == 0
    merged.close()
    assert mux.state == "stopped" and mux.join(timeout=1).emitted >= 1


def test_a_multiplexer_with_output_queues_cannot_be_iterated():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread")
    mux.input_queue()
    mux.output_queue()
    with pytest.raises(RuntimeError, match="has output queues"):
        iter(mux)


def test_a_running_multiplexer_cannot_also_be_iterated():
    mux = cp.QueueMultiplexer(channel_mode="thread")
    a, _ = mux.input_queue(), mux.output_queue()
    mux.run()
    with pytest.raises(RuntimeError, match="read its output queues"):
        iter(mux)
    a.close()
    mux.join(timeout=5)


def test_a_record_without_the_sort_key_fails_the_iteration_clearly():
    mux = cp.SortedQueueMultiplexer(channel_mode="thread")
    a = mux.input_queue()
    a.put_many([{"timestamp": 1}, {"time": 2}])
    a.close()
    with pytest.raises(KeyError, match="no field 'timestamp'"):
        list(mux)
    assert mux.state == "failed"


@pytest.mark.parametrize("mux_class", [cp.QueueMultiplexer, cp.SortedQueueMultiplexer])
def test_start_returns_the_multiplexer_and_the_seeds_run_after_it_does_nothing_more(mux_class):
    mux = mux_class(channel_mode="thread")
    a, out = mux.input_queue(), mux.output_queue()
    assert not mux.started
    assert mux.start() is mux and mux.started
    assert mux.run() is mux
    a.put_many([{"timestamp": 1}, {"timestamp": 2}])
    a.close()
    assert [r["timestamp"] for r in out] == [1, 2]


@pytest.mark.parametrize("mux_class", [cp.QueueMultiplexer, cp.SortedQueueMultiplexer])
def test_kind_the_older_name_of_channel_mode_still_works_with_a_deprecation_warning(mux_class):
    with pytest.warns(DeprecationWarning, match="a multiplexer channel_mode="):
        mux = mux_class(kind="thread")
    assert mux.channel_mode == "thread" and mux.input_queue().mode == "thread"


@pytest.mark.parametrize("mux_class", [cp.QueueMultiplexer, cp.SortedQueueMultiplexer])
def test_an_unknown_channel_mode_is_refused_when_the_multiplexer_is_made(mux_class):
    with pytest.raises(ValueError, match="Channel mode must be 'thread', 'process' or 'ray', not 'bogus'"):
        mux_class(channel_mode="bogus")
