"""The seed's usages that must work as the seed wrote them (issue 13): a list sort key is a path,
QueueMultiplexer is a round-robin FIFO, and EventManager takes the user's own pathos pool."""

from __future__ import annotations

import queue

import pytest

import chronopipe as cp
from chronopipe.multiplex import key_function

TIMEOUT = 60.0


# -- sort keys: a list is a path, a tuple is a compound key ------------------------------
def sorted_merge(streams: list[list[dict]], sort_key: object) -> list[dict]:
    mux = cp.SortedQueueMultiplexer(sort_key=sort_key, kind="thread")  # type: ignore[arg-type]
    queues = [mux.input_queue() for _ in streams]
    for q, stream in zip(queues, streams, strict=True):
        q.put_many(stream)
        q.put(cp.END)
    return list(mux)


def test_a_list_sort_key_is_a_path_into_nested_records():
    streams = [[{"meta": {"ts": t}} for t in (1, 4, 9)], [{"meta": {"ts": t}} for t in (2, 3, 10)]]
    merged = sorted_merge(streams, ["meta", "ts"])
    assert [r["meta"]["ts"] for r in merged] == [1, 2, 3, 4, 9, 10]


def test_a_list_path_and_a_dotted_path_reach_the_same_field():
    record = {"a": {"b": {"c": 42}}}
    assert key_function(["a", "b", "c"])(record) == key_function("a.b.c")(record) == 42


def test_a_list_path_item_is_one_field_name_even_with_a_dot():
    assert key_function(["a.b"])({"a.b": 1, "a": {"b": 2}}) == 1


def test_an_int_in_a_list_path_indexes_a_sequence():
    assert key_function(["hops", -1, "ip"])({"hops": [{"ip": "a"}, {"ip": "b"}]}) == "b"


def test_a_tuple_of_paths_is_a_compound_key_of_dotted_and_list_paths():
    key = key_function(("day", "meta.seq", ["meta", "seq"]))
    assert key({"day": 2, "seq": 7, "meta": {"seq": 5}}) == (2, 5, 5)


def test_a_compound_key_orders_the_merge_by_each_path_in_turn():
    streams = [[{"day": d, "at": {"seq": s}} for d, s in ((1, 5), (2, 1), (2, 8))],
               [{"day": d, "at": {"seq": s}} for d, s in ((1, 2), (2, 3), (3, 0))]]
    merged = sorted_merge(streams, ("day", ["at", "seq"]))
    assert [(r["day"], r["at"]["seq"]) for r in merged] == [(1, 2), (1, 5), (2, 1), (2, 3), (2, 8), (3, 0)]


def test_merge_sorted_takes_a_list_path_as_key():
    merged = cp.merge_sorted([{"m": {"t": 1}}, {"m": {"t": 5}}], [{"m": {"t": 3}}], key=["m", "t"])
    assert [r["m"]["t"] for r in merged] == [1, 3, 5]


@pytest.mark.parametrize("sort_key", [[], ()], ids=["empty-list", "empty-tuple"])
def test_an_empty_path_or_compound_key_is_refused_when_the_multiplexer_is_made(sort_key):
    with pytest.raises(ValueError, match="sort_key"):
        cp.SortedQueueMultiplexer(sort_key=sort_key)


# -- QueueMultiplexer: a round-robin FIFO --------------------------------------------------
def drain(channel) -> list:
    """The seed's consumer loop: get until the single END (== queue.Empty)."""
    items = []
    while True:
        item = channel.get(timeout=10)
        if item == queue.Empty:
            return items
        items.append(item)


SEED_ROUND_ROBIN = ["value_1_1", "value_2_1", "value_1_2", "value_2_2", "value_2_3"]
INPUTS = {
    "thread-channel": lambda mux: mux.input_queue(),
    "queue.Queue": lambda mux: mux.input_queue(queue.Queue()),
    "manager-queue": lambda mux: mux.input_queue(cp.Runtime().manager().Queue()),
}


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("second", list(INPUTS))
def test_records_waiting_on_two_inputs_come_out_round_robin_on_every_output(kind, second):
    multiplexer = cp.QueueMultiplexer(kind=kind)
    input_queue_1, input_queue_2 = multiplexer.input_queue(), INPUTS[second](multiplexer)
    outputs = [multiplexer.output_queue(), multiplexer.output_queue()]
    for value in ("value_1_1", "value_1_2"):
        input_queue_1.put(value)
    for value in ("value_2_1", "value_2_2", "value_2_3"):
        input_queue_2.put(value)
    input_queue_1.put(queue.Empty)
    input_queue_2.put(queue.Empty)
    multiplexer.run()  # the multiplexer reads only now: every record is waiting
    assert [drain(out) for out in outputs] == [SEED_ROUND_ROBIN, SEED_ROUND_ROBIN]


def test_three_inputs_of_different_lengths_interleave_until_each_runs_out():
    mux = cp.QueueMultiplexer(kind="thread")
    for name, n in (("a", 4), ("b", 1), ("c", 3)):
        ch = mux.input_queue()
        ch.put_many([f"{name}{i}" for i in range(n)])
        ch.put(cp.END)
    assert list(mux) == ["a0", "b0", "c0", "a1", "c1", "a2", "c2", "a3"]


def test_large_waiting_inputs_interleave_record_by_record_and_keep_their_order():
    mux = cp.QueueMultiplexer(kind="thread", maxsize=100_000)
    for n in range(3):
        ch = mux.input_queue()
        ch.put_many([(n, i) for i in range(20_000)])
        ch.put(cp.END)
    merged = [record for batch in mux.batches() for record in batch]
    assert merged == [(n, i) for i in range(20_000) for n in range(3)]
