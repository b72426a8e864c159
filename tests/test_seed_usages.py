"""The seed's usages that must work as the seed wrote them (issue 13): a list sort key is a path,
QueueMultiplexer is a round-robin FIFO, and EventManager takes the user's own pathos pool."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import queue
from concurrent.futures import ProcessPoolExecutor

import multiprocess
import multiprocess.pool
import pytest
from pathos.pools import ParallelPool
from pathos.pools import ProcessPool as PathosProcessPool
from pathos.pools import ThreadPool as PathosThreadPool

import chronopipe as cp
from chronopipe.either import Pending, Right
from chronopipe.events import EventManager
from chronopipe.multiplex import key_function

TIMEOUT = 60.0


# -- sort keys: a list is a path, a tuple is a compound key ------------------------------
def sorted_merge(streams: list[list[dict]], sort_key: object) -> list[dict]:
    mux = cp.SortedQueueMultiplexer(sort_key=sort_key, channel_mode="thread")  # type: ignore[arg-type]
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
    multiplexer = cp.QueueMultiplexer(channel_mode=kind)
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
    mux = cp.QueueMultiplexer(channel_mode="thread")
    for name, n in (("a", 4), ("b", 1), ("c", 3)):
        ch = mux.input_queue()
        ch.put_many([f"{name}{i}" for i in range(n)])
        ch.put(cp.END)
    assert list(mux) == ["a0", "b0", "c0", "a1", "c1", "a2", "c2", "a3"]


def test_large_waiting_inputs_interleave_record_by_record_and_keep_their_order():
    mux = cp.QueueMultiplexer(channel_mode="thread", maxsize=100_000)
    for n in range(3):
        ch = mux.input_queue()
        ch.put_many([(n, i) for i in range(20_000)])
        ch.put(cp.END)
    merged = [record for batch in mux.batches() for record in batch]
    assert merged == [(n, i) for i in range(20_000) for n in range(3)]


# -- EventManager on the user's own pool ---------------------------------------------------
POOLS = {
    "pathos-ProcessPool": lambda: PathosProcessPool(),
    "pathos-ThreadPool": lambda: PathosThreadPool(),
    "multiprocess-Pool": lambda: multiprocess.Pool(2),
    "multiprocessing-Pool": lambda: multiprocessing.get_context("fork").Pool(2),
    "ProcessPoolExecutor": lambda: ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")),
}
PROCESS_POOLS = [name for name in POOLS if name != "pathos-ThreadPool"]


@pytest.fixture
def user_pool():
    """Make one of POOLS; close and join it afterwards (no signals: its workers may have been
    forked with the runtime's handlers), first forgetting any task lost with a dead worker,
    which would keep join() waiting."""
    made = []

    def make(name: str):
        made.append(POOLS[name]())
        return made[-1]

    yield make
    for pool in made:
        if isinstance(pool, ProcessPoolExecutor):
            pool.shutdown(wait=True, cancel_futures=True)
            continue
        (pool._serve() if hasattr(pool, "_serve") else pool)._cache.clear()
        pool.close()
        pool.join()
        if hasattr(pool, "clear"):
            pool.clear()  # pathos keeps its pools by id: forget this one


@pytest.mark.parametrize("pool_name", ["pathos-ProcessPool", "pathos-ThreadPool"])
def test_the_seeds_event_manager_usage_runs_with_a_users_pathos_pool(pool_name, user_pool):
    ProcessPool = lambda: user_pool(pool_name)  # noqa: E731 N806 (the seed's name)
    Manager = multiprocessing.get_context("fork").Manager  # noqa: N806
    with Manager() as manager:
        # The seed's usage, as literally as Python 3 allows (startswith, a comma)
        queue = manager.Queue()
        event_manager = EventManager(queue, async_pool=ProcessPool()).run()

        # register events
        commands = []; responses = [];  # noqa: E702 E703
        event_manager.register(
            callback=lambda event: commands.append(event),
            condition={
                "name.type": [ "command", "response" ],
                "action":    lambda x: x.startswith("test")
            },
            options={ "async": True }
        )
        event_manager.register(lambda event: responses.append(event), condition={ "type": "response" })

        # add events to queue to trigger events
        queue.put({ "name": { "type": "command", }, "action": "testCommand" })
        queue.put({ "type": "response", "value":  "success" })

        # manually trigger events
        complete = event_manager.trigger({ "type": "response", "value": "complete" })

        again = event_manager.trigger({"name": {"type": "command"}, "action": "testAgain"})
        queue.put(cp.END)
        stats = event_manager.join(TIMEOUT)
    assert complete == [Right(None)]
    assert isinstance(again[0], Pending) and again[0].wait(TIMEOUT) == Right(None)
    assert sorted(r["value"] for r in responses) == ["complete", "success"]
    if pool_name == "pathos-ProcessPool":
        assert commands == []  # appended in a pool process, to its copy of the list
    else:
        assert sorted(c["action"] for c in commands) == ["testAgain", "testCommand"]
    assert (stats.events, stats.callbacks, stats.errors, stats.pending) == (4, 4, 0, 0)


@pytest.mark.parametrize("pool_name", list(POOLS))
def test_an_async_callback_on_a_users_pool_settles_to_right_of_its_value(pool_name, user_pool):
    manager = EventManager(async_pool=user_pool(pool_name))
    manager.register(lambda event: event["a"] * 2, {"a": 21}, {"async": True})
    [result] = manager.trigger({"a": 21})
    assert isinstance(result, Pending) and result.wait(TIMEOUT) == Right(42)


@pytest.mark.parametrize("pool_name", list(POOLS))
def test_an_async_callback_that_raises_on_a_users_pool_settles_to_a_left_with_its_traceback(pool_name, user_pool):
    manager = EventManager(async_pool=user_pool(pool_name))
    manager.register(lambda event: int(event["n"]), {"n": "x"}, {"async": True})
    error = manager.trigger({"n": "x"})[0].wait(TIMEOUT).error
    assert isinstance(error, cp.ActorError)
    assert (error.exc_type, error.actor) == ("ValueError", "events:<lambda>")
    assert "invalid literal for int()" in error.message and "int(event" in error.traceback


@pytest.mark.parametrize("pool_name", PROCESS_POOLS)
def test_a_users_pool_worker_that_dies_settles_the_pending_to_a_left_instead_of_a_hang(pool_name, user_pool):
    manager = EventManager(async_pool=user_pool(pool_name))
    manager.register(lambda event: os._exit(3), {"a": 1}, {"async": True})
    [result] = manager.trigger({"a": 1})
    error = result.wait(10).error  # settles within 10 s (a hang fails here with TimeoutError)
    assert isinstance(error, cp.ActorError) and error.exc_type.endswith("BrokenProcessPool")
    assert error.actor == "events:<lambda>"
    if pool_name != "ProcessPoolExecutor":
        assert "pool worker pid" in error.message and "exited with code 3" in error.message


def test_join_settles_an_async_callback_whose_worker_died_on_a_pathos_pool(user_pool):
    manager = EventManager(async_pool=user_pool("pathos-ProcessPool"))
    manager.register(lambda event: os._exit(3), {"a": 1}, {"async": True})
    manager.trigger({"a": 1})
    stats = manager.join(10)
    assert (stats.errors, stats.pending) == (1, 0)


def test_a_pathos_parallel_pool_is_refused_with_the_reason():
    pool = ParallelPool(nodes=1)
    try:
        with pytest.raises(TypeError, match="ships the callback's source code"):
            EventManager(async_pool=pool)
    finally:
        pool.clear()
