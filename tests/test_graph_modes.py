"""The same pipelines in the three modes (sync, threads, processes) give the same results."""

from __future__ import annotations

import os
import time
from collections import Counter

import multiprocess
import pytest

from chronopipe.graph import GlobalState, GroupByNode, Node, Pipeline, merge_branches
from chronopipe.testing import FilterNode, ListSink, ListSource, MapNode


# -- nodes ---------------------------------------------------------------------------------
class Tag(Node):
    """Pushes (its name, item)."""

    def process(self, item):
        self.push((self.name, item))


class Repeat(Node):
    """Pushes each item `times` times."""

    times = 2

    def process(self, item):
        for _ in range(self.times):
            self.push(item)


class Sum(Node):
    """Adds up what it gets, pushes the total at the end and leaves it in global_state.totals."""

    def begin(self):
        self.total = 0

    def process(self, item):
        self.total += item

    def end(self):
        self.push(self.total)
        self.global_state.totals[self.name] = self.total


class Lifecycle(Node):
    """Records when (monotonic ns, comparable across processes) its hooks run."""

    def begin(self):
        self.began = time.monotonic_ns()
        self.first_item = None

    def process(self, item):
        if self.first_item is None:
            self.first_item = time.monotonic_ns()
        self.push(item)

    def end(self):
        self.ended = time.monotonic_ns()


class Pid(Node):
    """Remembers the process it runs in."""

    def process(self, item):
        self.pid = os.getpid()
        self.push(item)


class ByTens(GroupByNode):
    def key(self, item):
        return item // 10

    def process(self, batch):
        self.push(list(batch))


class Chunks(GroupByNode):
    batch_size = 4

    def process(self, batch):
        self.push(list(batch))


class Collect(Node):
    """Appends what it gets to global_state.seen (a list every node shares)."""

    def process(self, item):
        self.global_state.seen.append(item)


def parity(item):
    return "even" if item % 2 == 0 else "odd"


def first_half(item):
    return "early" if item["timestamp"] < 50_000 else "late"


# -- shapes --------------------------------------------------------------------------------
def test_chain_delivers_items_in_input_order(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("inc", lambda x: x + 1) | MapNode("double", lambda x: 2 * x) | sink,
             mode=pipeline_mode).consume(range(5000))
    assert sink.items == [2 * (x + 1) for x in range(5000)]


def test_a_node_may_push_several_items_or_none_per_item(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(Repeat("twice") | FilterNode("odd", lambda x: x % 2) | sink, mode=pipeline_mode).consume(range(6))
    assert sink.items == [1, 1, 3, 3, 5, 5]


def test_broadcast_gives_every_item_to_every_branch(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("src", lambda x: x) | [Tag("b"), Tag("c")] | sink, mode=pipeline_mode).consume(range(100))
    assert Counter(sink.items) == Counter([("b", x) for x in range(100)] + [("c", x) for x in range(100)])


def test_broadcast_keeps_the_order_within_each_branch(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("src", lambda x: x) | [Tag("b"), Tag("c")] | sink, mode=pipeline_mode).consume(range(3000))
    assert [x for name, x in sink.items if name == "c"] == list(range(3000))


def test_route_gives_each_item_to_the_branch_the_router_names(pipeline_mode: str) -> None:
    even, odd = ListSink("even"), ListSink("odd")
    Pipeline(MapNode("src", lambda x: x) | [even, odd, parity], mode=pipeline_mode).consume(range(10))
    assert (even.items, odd.items) == ([0, 2, 4, 6, 8], [1, 3, 5, 7, 9])


def test_merge_gets_the_items_of_every_branch(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("src", lambda x: x) | [Tag("even"), Tag("odd"), parity] | sink,
             mode=pipeline_mode).consume(range(10))
    assert sorted(sink.items) == sorted((parity(x), x) for x in range(10))


def test_a_node_added_after_the_pipeline_was_built_takes_part(pipeline_mode: str) -> None:
    pipeline = Pipeline(MapNode("src", lambda x: x) | Tag("a"), mode=pipeline_mode)
    sink = ListSink("late")
    pipeline["a"].add_downstream(sink)
    pipeline.consume([1])
    assert sink.items == [("a", 1)]


# -- GroupByNode ---------------------------------------------------------------------------
def test_groupby_batches_consecutive_items_with_equal_keys(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(ByTens("tens") | sink, mode=pipeline_mode).consume([1, 2, 11, 12, 13, 25, 3])
    assert sink.items == [[1, 2], [11, 12, 13], [25], [3]]


def test_groupby_with_batch_size_batches_by_size(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(Chunks("chunks") | sink, mode=pipeline_mode).consume(range(10))
    assert sink.items == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_groupby_processes_its_last_batch_before_its_own_end(pipeline_mode: str) -> None:
    class Seen(GroupByNode):
        def key(self, item):
            return item // 10

        def process(self, batch):
            self.global_state.events.append(("batch", batch))

        def end(self):
            self.global_state.events.append(("end", None))

    pipeline = Pipeline(Seen("seen"), global_state=GlobalState(events=[]), mode=pipeline_mode)
    pipeline.consume([1, 15])
    assert pipeline.global_state.events == [("batch", [1]), ("batch", [15]), ("end", None)]


# -- begin and end -------------------------------------------------------------------------
def diamond() -> Lifecycle:
    a, b, c, d = Lifecycle("a"), Lifecycle("b"), Lifecycle("c"), Lifecycle("d")
    a | [b, c] | d
    return a


def test_every_node_begins_before_any_item_is_processed(pipeline_mode: str) -> None:
    pipeline = Pipeline(diamond(), mode=pipeline_mode)
    pipeline.consume(range(100))
    nodes = [pipeline[n] for n in "abcd"]
    assert max(n.began for n in nodes) < min(n.first_item for n in nodes)


def test_a_node_begins_after_its_parents(pipeline_mode: str) -> None:
    pipeline = Pipeline(diamond(), mode=pipeline_mode)
    pipeline.consume(range(10))
    a, b, c, d = (pipeline[n] for n in "abcd")
    assert a.began < b.began < d.began and a.began < c.began < d.began


def test_a_node_ends_after_its_parents(pipeline_mode: str) -> None:
    pipeline = Pipeline(diamond(), mode=pipeline_mode)
    pipeline.consume(range(10))
    a, b, c, d = (pipeline[n] for n in "abcd")
    assert a.ended < b.ended < d.ended and a.ended < c.ended < d.ended


def test_what_end_pushes_reaches_the_nodes_below(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    pipeline = Pipeline(Sum("sum") | sink, global_state=GlobalState(totals={}), mode=pipeline_mode)
    pipeline.consume(range(101))
    assert sink.items == [5050]


# -- state ---------------------------------------------------------------------------------
def test_global_state_written_in_end_reaches_the_caller(pipeline_mode: str) -> None:
    pipeline = Pipeline(MapNode("src", lambda x: x) | [Sum("evens"), Sum("odds"), lambda x: "evens" if x % 2 == 0
                                                        else "odds"],
                        global_state=GlobalState(totals={}), mode=pipeline_mode)
    pipeline.consume(range(10))
    assert pipeline.global_state.totals == {"evens": 20, "odds": 25}


def test_global_state_lists_appended_by_several_nodes_get_every_item(pipeline_mode: str) -> None:
    pipeline = Pipeline(MapNode("src", lambda x: x) | [Collect("b"), Collect("c")],
                        global_state=GlobalState(seen=[]), mode=pipeline_mode)
    pipeline.consume(range(50))
    assert Counter(pipeline.global_state.seen) == Counter(list(range(50)) * 2)


def test_a_dict_works_as_global_state(pipeline_mode: str) -> None:
    class Count(Node):
        def process(self, item):
            self.global_state["n"] = self.global_state.get("n", 0) + 1

    state: dict = {}
    Pipeline(Count("count"), global_state=state, mode=pipeline_mode).consume(range(7))
    assert state == {"n": 7}


def test_node_attributes_set_in_the_run_are_read_on_the_pipeline_node(pipeline_mode: str) -> None:
    pipeline = Pipeline(MapNode("src", lambda x: x) | Sum("sum"), global_state=GlobalState(totals={}),
                        mode=pipeline_mode)
    pipeline.consume(range(5))
    assert pipeline["sum"].total == 10


def test_list_sink_fills_the_list_it_was_given(pipeline_mode: str) -> None:
    out: list = []
    Pipeline(MapNode("src", str) | ListSink("sink", out), mode=pipeline_mode).consume(range(3))
    assert out == ["0", "1", "2"]


def test_consume_twice_runs_the_pipeline_twice(pipeline_mode: str) -> None:
    pipeline = Pipeline(MapNode("src", lambda x: x) | Sum("sum"), global_state=GlobalState(totals={}),
                        mode=pipeline_mode)
    pipeline.consume(range(5))
    pipeline.consume(range(3))
    assert pipeline["sum"].total == 3


# -- workers -------------------------------------------------------------------------------
def test_workers_process_every_item_once(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("square", lambda x: x * x, workers=3) | sink, mode=pipeline_mode).consume(range(5000))
    assert sorted(sink.items) == [x * x for x in range(5000)]


def test_ordered_workers_keep_the_input_order(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("square", lambda x: x * x, workers=3, ordered=True) | sink,
             mode=pipeline_mode).consume(range(5000))
    assert sink.items == [x * x for x in range(5000)]


def test_ordered_workers_keep_the_order_of_what_they_push_per_item(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("src", lambda x: x) | Repeat("twice", workers=2, ordered=True) | FilterNode(
        "no5", lambda x: x % 5) | sink, mode=pipeline_mode).consume(range(3000))
    assert sink.items == [x for x in range(3000) for _ in range(2) if x % 5]


def test_ordered_workers_at_the_top_keep_the_input_order(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(Repeat("twice", workers=2, ordered=True) | sink, mode=pipeline_mode).consume(range(2500))
    assert sink.items == [x for x in range(2500) for _ in range(2)]


def test_a_list_sink_with_workers_gets_every_item(pipeline_mode: str) -> None:
    sink = ListSink("sink", workers=2)
    Pipeline(MapNode("src", lambda x: x) | sink, mode=pipeline_mode).consume(range(3000))
    assert sorted(sink.items) == list(range(3000))


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_workers_run_as_that_many_actors_sharing_the_items(mode: str) -> None:
    pipeline = Pipeline(MapNode("src", lambda x: x) | MapNode("work", lambda x: x, workers=2), mode=mode)
    pipeline.consume(range(20_000))
    work = pipeline.statistics().nodes[1]
    assert (work.workers, work.received) == (2, 20_000)


# -- sorted merge ----------------------------------------------------------------------------
def stamped(x):
    return {"timestamp": x}


def test_merge_sorted_merges_the_branches_in_key_order(pipeline_mode: str) -> None:
    src, b, c, out = MapNode("src", stamped), FilterNode("b", lambda r: r["timestamp"] % 3 == 0), FilterNode(
        "c", lambda r: r["timestamp"] % 3 != 0), ListSink("out")
    src | [b, c]
    merge_branches([b, c], key="timestamp") | out
    Pipeline(src, mode=pipeline_mode).consume(range(3000))
    assert [r["timestamp"] for r in out.items] == list(range(3000))


def test_merge_sorted_gives_ties_to_the_earlier_branch(pipeline_mode: str) -> None:
    src, b, c, out = MapNode("src", lambda x: x), Tag("b"), Tag("c"), ListSink("out")
    src | [b, c]
    merge_branches([c, b], key=lambda pair: pair[1]) | out
    Pipeline(src, mode=pipeline_mode).consume(range(3))
    assert out.items == [("c", 0), ("b", 0), ("c", 1), ("b", 1), ("c", 2), ("b", 2)]


def test_merge_sorted_with_direction_max_merges_descending(pipeline_mode: str) -> None:
    src, b, c, out = MapNode("src", stamped), FilterNode("b", lambda r: r["timestamp"] % 2), FilterNode(
        "c", lambda r: r["timestamp"] % 2 == 0), ListSink("out")
    src | [b, c]
    merge_branches([b, c], key="timestamp", direction="max") | out
    Pipeline(src, mode=pipeline_mode).consume(range(99, -1, -1))
    assert [r["timestamp"] for r in out.items] == list(range(99, -1, -1))


def test_merge_sorted_does_not_wait_forever_on_a_branch_silent_for_long(pipeline_mode: str) -> None:
    src, early, late, out = MapNode("src", stamped), MapNode("early", dict), MapNode("late", dict), ListSink("out")
    src | [early, late, first_half]
    merge_branches([early, late], key="timestamp") | out
    Pipeline(src, mode=pipeline_mode).consume(range(100_000))
    assert len(out.items) == 100_000


# -- where nodes run -------------------------------------------------------------------------
def test_processes_mode_runs_each_node_in_its_own_process() -> None:
    pipeline = Pipeline(Pid("a") | Pid("b"), mode="processes")
    pipeline.consume([1])
    assert len({os.getpid(), pipeline["a"].pid, pipeline["b"].pid}) == 3


def test_threads_mode_runs_the_nodes_in_this_process() -> None:
    pipeline = Pipeline(Pid("a") | Pid("b"), mode="threads")
    pipeline.consume([1])
    assert {pipeline["a"].pid, pipeline["b"].pid} == {os.getpid()}


def test_a_node_can_run_in_a_process_inside_a_threads_pipeline() -> None:
    pipeline = Pipeline(Pid("a") | Pid("heavy", mode="processes"), mode="threads")
    pipeline.consume([1])
    assert (pipeline["a"].pid == os.getpid(), pipeline["heavy"].pid == os.getpid()) == (True, False)


def test_a_node_can_run_on_a_thread_inside_a_processes_pipeline() -> None:
    pipeline = Pipeline(Pid("a") | Pid("light", mode="threads"), mode="processes")
    pipeline.consume([1])
    assert (pipeline["a"].pid == os.getpid(), pipeline["light"].pid == os.getpid()) == (False, True)


# -- feeding ---------------------------------------------------------------------------------
def test_manual_push_then_end_processes_every_item(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    pipeline = Pipeline(MapNode("inc", lambda x: x + 1) | sink, mode=pipeline_mode)
    for x in range(3):
        pipeline.push(x)
    pipeline.end()
    assert sink.items == [1, 2, 3]


class Signal(Node):
    """Sets its `arrived` event (shared with node processes) when an item reaches it."""

    def process(self, item):
        self.arrived.set()


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_lone_pushed_item_reaches_the_last_node_before_end(mode: str) -> None:
    arrived = multiprocess.Event()
    pipeline = Pipeline(MapNode("a", lambda x: x) | MapNode("b", lambda x: x) | Signal("last", arrived=arrived),
                        mode=mode)
    pipeline.push(1)
    reached = arrived.wait(10)
    pipeline.end()
    assert reached


def test_consume_takes_any_iterable(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("src", lambda x: x) | sink, mode=pipeline_mode).consume(ListSource(range(3)))
    assert sink.items == [0, 1, 2]


def test_consume_returns_what_the_pipelines_end_returns(pipeline_mode: str) -> None:
    class Counting(Pipeline):
        def end(self):
            return self["sum"].total

    pipeline = Counting(MapNode("src", lambda x: x) | Sum("sum"), global_state=GlobalState(totals={}),
                        mode=pipeline_mode)
    assert pipeline.consume(range(4)) == 6


# -- logging ---------------------------------------------------------------------------------
def test_node_log_prints_what_a_node_gets_and_pushes(pipeline_mode: str, capsys) -> None:
    pipeline = Pipeline(MapNode("a", lambda x: x * 10) | ListSink("b"), mode=pipeline_mode)
    pipeline["a"].log("output")
    pipeline["b"].log("input")
    pipeline.consume([1, 2])
    lines = capsys.readouterr().out.splitlines()
    assert (lines[0], sorted(lines[1:])) == ("node_log,what,node_name,item", [
        "node_log,input,b,10", "node_log,input,b,20", "node_log,output,a,10", "node_log,output,a,20"])


# -- the same results everywhere ---------------------------------------------------------------
def etl() -> Node:
    parse = MapNode("parse", lambda x: {"id": x, "value": x % 7})
    keep = FilterNode("keep", lambda r: r["value"] != 3)
    enrich = MapNode("enrich", lambda r: {**r, "score": r["value"] * 2}, workers=2, ordered=True)
    low, high = MapNode("low", lambda r: ("low", r["id"])), MapNode("high", lambda r: ("high", r["id"]))
    parse | keep | enrich | [low, high, lambda r: "low" if r["value"] < 4 else "high"] | ListSink("out")
    return parse


def test_every_mode_gives_the_same_multiset_as_sync(pipeline_mode: str) -> None:
    expected = Pipeline(etl())
    expected.consume(range(2000))
    got = Pipeline(etl(), mode=pipeline_mode)
    got.consume(range(2000))
    assert Counter(got["out"].items) == Counter(expected["out"].items)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_record_of_a_pausing_source_reaches_a_node_with_workers_before_the_next_one_comes(mode):
    arrived = multiprocess.get_context("fork").Event()

    class Note(Node):
        workers = 2

        def process(self, item):
            arrived.set()

    def pausing_source():
        yield 1
        if not arrived.wait(5):  # a live source: the next record comes only later
            raise AssertionError("the first record was held back until the next one came")
        yield 2

    Pipeline(Note("note"), mode=mode).consume(pausing_source())
