"""consecution compatibility: the behaviours consecution 0.2.0's own test suite checks (written
afresh, run in every mode where a run is involved), and a differential test running the same
small pipelines on the real consecution (skipped when it is not installed) and on chronopipe."""

from __future__ import annotations

import io
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace

import pytest

import chronopipe
from chronopipe.graph import Clock, GlobalState, GroupByNode, Node, Pipeline


# -- helpers: items that remember the nodes they went through -------------------------------------
def path(item: tuple) -> str:
    value, hops = item
    return "|".join([str(value), *hops])


class Hop(Node):
    """Pushes the item with its own name added to the item's path."""

    def process(self, item):
        value, hops = item
        self.push((value, (*hops, self.name)))


class Keep(Node):
    """Appends what it gets to global_state.final_items."""

    def process(self, item):
        self.global_state.final_items.append(item)


def generated(n: int = 2) -> list[tuple]:
    return [(i, ("generator",)) for i in range(1, n + 1)]


def even_odd(item):
    return ["even", "odd"][item[0] % 2]


def even_odd_pipeline(mode: str = "sync") -> Pipeline:
    """a | b | [c, d] | [even, odd, even_odd] | g, as in consecution's own tests."""
    a, b, c, d, even, odd, g = (Hop(x) for x in ("a", "b", "c", "d", "even", "odd", "g"))
    a | b | [c, d] | [even, odd, even_odd] | g
    return Pipeline(a, global_state=GlobalState(final_items=[]), mode=mode)


def fourteen(dsl: bool) -> dict[str, Node]:
    """consecution's 14-node graph, wired with | or with add_downstream."""
    n = {x: Node(x) for x in "abcdefghijklmn"}
    if dsl:
        n["a"] | [n["b"], n["c"] | [n["d"], n["e"] | [n["f"], n["g"], n["h"], n["i"]] | n["j"]] | n["k"]] | n["l"] | [
            n["m"], n["n"]]
    else:
        for up, downs in {"a": "bc", "c": "de", "e": "fghi", "f": "j", "g": "j", "h": "j", "i": "j", "d": "k",
                          "j": "k", "b": "l", "k": "l", "l": "mn"}.items():
            for down in downs:
                n[up].add_downstream(n[down])
    return n


EDGES = {"a": "bc", "b": "l", "c": "de", "d": "k", "e": "fghi", "f": "j", "g": "j", "h": "j", "i": "j", "j": "k",
         "k": "l", "l": "mn", "m": "", "n": ""}


# -- nodes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dsl", [True, False], ids=["pipes", "add_downstream"])
def test_wiring_with_pipes_or_add_downstream_gives_the_same_edges(dsl: bool) -> None:
    n = fourteen(dsl)
    assert {k: "".join(sorted(d.name for d in v._downstream_nodes)) for k, v in n.items()} == EDGES


@pytest.mark.parametrize("start", list("abcdefghijklmn"))
def test_all_nodes_and_top_node_are_the_same_from_any_node(start: str) -> None:
    n = fourteen(True)
    assert (n[start].all_nodes, n[start].top_node) == (set(n.values()), n["a"])


@pytest.mark.parametrize("name", list("abcdefghijklmn"))
def test_adding_a_node_with_a_taken_name_anywhere_is_a_value_error(name: str) -> None:
    n = fourteen(True)
    with pytest.raises(ValueError):
        n["a"].add_downstream(Node(name))


@pytest.mark.parametrize("name", list("abcdefghijklmn"))
def test_connecting_any_node_back_to_the_top_is_a_value_error(name: str) -> None:
    n = fourteen(True)
    with pytest.raises(ValueError):
        n[name].add_downstream(n["a"])


def test_a_second_root_makes_top_node_a_value_error() -> None:
    n = fourteen(True)
    Node("dual_root").add_downstream(n["b"])
    with pytest.raises(ValueError):
        _ = n["a"].top_node


def test_the_printed_lines_of_a_graph_with_a_router() -> None:
    n = fourteen(True)
    n["l"].remove_downstream(n["m"])
    n["l"].remove_downstream(n["n"])
    n["l"] | [n["m"], n["n"], lambda item: "m"]
    n["l"]._downstream_nodes[0].name = "l.my_router"  # consecution's test names its router function my_router
    lines = sorted(line.strip() for line in str(Pipeline(n["a"])).split("\n")[3:-2])
    assert lines == ["a | [b, c]", "b | l", "c | [d, e]", "d | k", "e | [f, g, h, i]", "f | j", "g | j", "h | j",
                     "i | j", "j | k", "k | l", "l | l.my_router", "l.my_router | [m, n]"]


def test_top_down_call_calls_each_node_after_its_parents() -> None:
    called: list[str] = []

    class Ends(Node):
        def end(self):
            called.append(self.name)

    a, b, c, d, e, f, g = (Ends(x) for x in "abcdefg")
    a | [b | c, d | e | f] | g
    a.top_node.top_down_call("end")
    assert all(called.index(x) < called.index(y) for x, y in ("ab", "bc", "cg", "ad", "de", "ef", "fg"))


def test_breadth_first_walk_down_goes_level_by_level_through_routers() -> None:
    a, b, c, d, e, f, h, i = (Node(x) for x in "abcdefhi")
    a | [b, c] | [d, e, f, lambda item: "d"] | [h, i]
    order = a.breadth_first_walk("down", as_ordered_list=True)
    levels = [set(order[:1]), set(order[1:3]), order[3:5], set(order[5:8]), set(order[8:])]
    assert (levels[0], levels[1], len(levels[2]), levels[3], levels[4]) == ({a}, {b, c}, 2, {d, e, f}, {h, i})


def test_breadth_first_walk_up_goes_level_by_level_through_routers() -> None:
    a, b, c, d, e, f, h = (Node(x) for x in "abcdefh")
    a | [b, c] | [d, e, f, lambda item: "d"] | h
    order = h.breadth_first_walk("up", as_ordered_list=True)
    assert (order[0], set(order[1:4]), set(order[6:8]), order[8]) == (h, {d, e, f}, {b, c}, a)


def test_a_callable_object_routes_like_a_function() -> None:
    class ClassRouter:
        def __call__(self, item):
            return item

    a, b, c, d, e = (Node(x) for x in "abcde")
    a | [b, c, ClassRouter()] | [d, e, lambda item: 0]
    assert [n.name for n in a._downstream_nodes] == ["a.ClassRouter"]


def test_exposed_slots_reject_a_bad_side() -> None:
    with pytest.raises(ValueError):
        Node("a")._get_exposed_slots(Node("b"), "bad_arg")


def test_top_down_make_repr_outside_a_pipeline_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Node("a").top_down_make_repr()


def test_plot_failing_to_run_graphviz_says_so_on_stderr(monkeypatch) -> None:
    class FailingGraph:
        format = None

        def render(self, *args, **kwargs):
            raise RuntimeError("fake runtime error")

    monkeypatch.setattr(Node, "_build_pydot_graph", lambda self: FailingGraph())
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(RuntimeError):
        (Node("a") | Node("b")).plot()
    assert "graphviz" in err.getvalue()


def test_pipeline_plot_passes_its_defaults_to_the_top_node() -> None:
    pipeline = even_odd_pipeline()
    calls = []
    pipeline.top_node.plot = lambda *args, **kwargs: calls.append((args, kwargs))
    pipeline.plot()
    assert calls == [(("pipeline", "png"), {})]


# -- pipelines -----------------------------------------------------------------------------------
def test_the_even_odd_pipeline_prints_on_thirteen_lines() -> None:
    assert len(repr(even_odd_pipeline()).split("\n")) == 13


def test_merging_from_a_list_prints_both_merge_lines() -> None:
    a, b, c, d = (Node(x) for x in "abcd")
    text = str(Pipeline(a | ([b, c] | d)))
    assert ("a | [b, c]" in text, "b | d" in text, "c | d" in text) == (True, True, True)


def test_a_nested_list_prints_as_a_broadcast() -> None:
    assert "a | [b, c]" in str(Pipeline(Hop("a") | [[Node("b"), Node("c")]]))


def test_consuming_sends_each_item_through_its_routes(pipeline_mode: str) -> None:
    pipeline = even_odd_pipeline(pipeline_mode)
    pipeline["g"].add_downstream(Keep("result_node"))
    pipeline.consume(generated())
    assert {path(i) for i in pipeline.global_state.final_items} == {
        "1|generator|a|b|c|odd|g", "1|generator|a|b|d|odd|g", "2|generator|a|b|c|even|g", "2|generator|a|b|d|even|g"}


def test_manual_push_then_end_feeds_the_pipeline(pipeline_mode: str) -> None:
    class Collect(Node):
        def begin(self):
            self.global_state.out_list = []

        def process(self, item):
            self.global_state.out_list.append(item)

    pipeline = Pipeline(Hop("a") | Collect("b"), mode=pipeline_mode)
    for item in generated():
        pipeline.push(item)
    pipeline.end()
    assert len(pipeline.global_state.out_list) == 2


def test_logging_prints_a_header_then_the_logged_items(pipeline_mode: str) -> None:
    pipeline = Pipeline(Hop("a") | Hop("b"), mode=pipeline_mode)
    pipeline["a"].log("output")
    pipeline["b"].log("input")
    out = io.StringIO()
    with redirect_stdout(out):
        pipeline.consume(generated())
    lines = [line for line in out.getvalue().splitlines() if line]
    assert (lines[0], Counter(lines[1:])) == ("node_log,what,node_name,item", Counter([
        "node_log,output,a,(1, ('generator', 'a'))", "node_log,input,b,(1, ('generator', 'a'))",
        "node_log,output,a,(2, ('generator', 'a'))", "node_log,input,b,(2, ('generator', 'a'))"]))


def test_logging_the_input_of_a_merge_shows_both_routes(pipeline_mode: str) -> None:
    pipeline = even_odd_pipeline(pipeline_mode)
    pipeline["g"].log("input")
    out = io.StringIO()
    with redirect_stdout(out):
        pipeline.consume(generated())
    routes = Counter(line.split("'")[-2] for line in out.getvalue().splitlines() if line.startswith("node_log,input"))
    assert routes == {"even": 2, "odd": 2}


def test_replacing_the_top_node_changes_what_flows(pipeline_mode: str) -> None:
    class TimesTen(Node):
        def process(self, item):
            value, hops = item
            self.push((10 * value, (*hops, self.name)))

    pipeline = even_odd_pipeline(pipeline_mode)
    pipeline["a"] = TimesTen("a")
    pipeline["g"].add_downstream(Keep("keep"))
    pipeline.consume(generated())
    assert sorted(v for v, _ in pipeline.global_state.final_items) == [10, 10, 20, 20]


def test_replacing_a_routed_node_keeps_routing_to_it(pipeline_mode: str) -> None:
    class TimesTen(Node):
        def process(self, item):
            value, hops = item
            self.push((10 * value, (*hops, self.name)))

    pipeline = even_odd_pipeline(pipeline_mode)
    pipeline["even"] = TimesTen("even")
    pipeline["g"].add_downstream(Keep("keep"))
    pipeline.consume(generated())
    assert sorted(v for v, _ in pipeline.global_state.final_items) == [1, 1, 20, 20]


def test_replacing_a_node_without_router_keeps_the_edge() -> None:
    pipeline = Pipeline(Hop("a") | Hop("b"))
    pipeline["b"] = Hop("b")
    assert "a | b" in str(pipeline)


def test_reset_runs_every_nodes_reset_after_a_run(pipeline_mode: str) -> None:
    class Resets(Node):
        def begin(self):
            self.was_reset = False

        def process(self, item):
            self.push(item)

        def reset(self):
            self.was_reset = True

    pipeline = Pipeline(Resets("a") | Resets("b"), mode=pipeline_mode)
    pipeline.consume(range(3))
    before = (pipeline["a"].was_reset, pipeline["b"].was_reset)
    pipeline.reset()
    assert (before, (pipeline["a"].was_reset, pipeline["b"].was_reset)) == ((False, False), (True, True))


def test_groupby_batches_by_key(pipeline_mode: str) -> None:
    class Batch(GroupByNode):
        def begin(self):
            self.global_state.batches = []

        def key(self, item):
            return item // 3

        def process(self, batch):
            self.global_state.batches.append(batch)

    pipeline = Pipeline(Batch("a"), mode=pipeline_mode)
    pipeline.consume(range(9))
    assert pipeline.global_state.batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_groupby_without_key_is_not_implemented(pipeline_mode: str) -> None:
    class NoKey(GroupByNode):
        def process(self, batch):
            pass

    with pytest.raises(NotImplementedError):
        Pipeline(NoKey("a"), mode=pipeline_mode).consume(range(9))


def test_groupby_without_process_is_not_implemented(pipeline_mode: str) -> None:
    class NoProcess(GroupByNode):
        def key(self, item):
            return item

    with pytest.raises(NotImplementedError):
        Pipeline(NoProcess("a"), mode=pipeline_mode).consume(range(9))


def test_push_in_begin_is_an_attribute_error() -> None:
    class Early(Node):
        def begin(self):
            self.push(1)

    with pytest.raises(AttributeError):
        Pipeline(Early("a") | Hop("b")).begin()


# -- Clock (its time source made controllable) -------------------------------------------------
@pytest.fixture
def ticks(monkeypatch) -> SimpleNamespace:
    now = SimpleNamespace(t=0.0)
    monkeypatch.setattr("chronopipe.graph.clock.time.perf_counter", lambda: now.t)
    return now


def test_clock_prints_its_watches_longest_first(ticks: SimpleNamespace) -> None:
    clock = Clock()
    with clock.running("a", "b", "c"), clock.paused("a"):
        ticks.t += 1
        with clock.paused("b"):
            ticks.t += 1
    assert [line.split()[-1] for line in str(clock).splitlines()[1:]] == ["c", "b", "a"]


def test_clock_get_time_of_a_running_watch_counts_up_to_now(ticks: SimpleNamespace) -> None:
    clock = Clock()
    clock.start("a")
    ticks.t += 2
    assert clock.get_time("a") == 2


def test_clock_stop_without_names_stops_every_watch(ticks: SimpleNamespace) -> None:
    clock = Clock()
    clock.start("a", "b")
    ticks.t += 1
    clock.stop()
    ticks.t += 1
    assert clock.get_time() == {"a": 1, "b": 1}


def test_clock_start_twice_keeps_the_first_start(ticks: SimpleNamespace) -> None:
    clock = Clock()
    clock.start("a")
    ticks.t += 1
    clock.start("a")
    ticks.t += 1
    clock.stop("a")
    assert clock.get_time("a") == 2


# -- the names a consecution user imports ----------------------------------------------------------
@pytest.mark.parametrize("name", ["Node", "GroupByNode", "Pipeline", "GlobalState", "Clock"])
def test_consecutions_public_names_exist_in_chronopipe_graph(name: str) -> None:
    assert hasattr(chronopipe.graph, name)


# -- differential: the real consecution against chronopipe ---------------------------------------------
def library(which: str) -> SimpleNamespace:
    if which == "consecution":
        lib = pytest.importorskip("consecution")
        return SimpleNamespace(Node=lib.Node, GroupByNode=lib.GroupByNode, Pipeline=lib.Pipeline,
                               GlobalState=lib.GlobalState, kwargs={})
    return SimpleNamespace(Node=Node, GroupByNode=GroupByNode, Pipeline=Pipeline, GlobalState=GlobalState,
                           kwargs={"mode": which})


def build(lib: SimpleNamespace, shape: str):
    """The same small pipelines on either library; nodes record into global_state.out."""

    class Inc(lib.Node):
        def process(self, item):
            self.push(item + 1)

    class Tagger(lib.Node):
        def process(self, item):
            self.push((self.name, item))

    class Out(lib.Node):
        def process(self, item):
            self.global_state.out.append(item)

    class Lifecycle(lib.Node):
        def begin(self):
            self.global_state.out.append(("begin", self.name))

        def process(self, item):
            self.push(item)

        def end(self):
            self.global_state.out.append(("end", self.name))

    class Total(lib.Node):
        def begin(self):
            self.total = 0

        def process(self, item):
            self.total += item[1] if isinstance(item, tuple) else item

        def end(self):
            self.global_state.totals[self.name] = self.total

    class Batches(lib.GroupByNode):
        def key(self, item):
            return item // 4

        def process(self, batch):
            self.global_state.out.append(list(batch))

    def parity(item):
        return "even" if item % 2 == 0 else "odd"

    if shape == "chain":
        top = Inc("a") | Inc("b") | Out("out")
    elif shape == "broadcast":
        top = Inc("a") | [Tagger("b"), Tagger("c"), Tagger("d")] | Out("out")
    elif shape == "route":
        top = Inc("a") | [Tagger("even"), Tagger("odd"), parity] | Out("out")
    elif shape == "merge":
        top = Inc("a") | [Inc("b") | Tagger("b2"), Tagger("c")] | Out("out")
    elif shape == "groupby":
        top = Inc("a") | Batches("batches")
    elif shape == "global_state":
        top = Inc("a") | [Tagger("even"), Tagger("odd"), parity] | [Total("t1"), Total("t2")]
    elif shape == "lifecycle":
        top = Lifecycle("a") | Lifecycle("b") | Lifecycle("c")
    else:
        raise AssertionError(shape)
    return lib.Pipeline(top, global_state=lib.GlobalState(out=[], totals={}), **lib.kwargs)


def run_both(shape: str, mode: str, items=range(20)):
    results = []
    for which in ("consecution", mode):
        pipeline = build(library(which), shape)
        pipeline.consume(items)
        results.append((pipeline.global_state.out, pipeline.global_state.totals, pipeline))
    return results


@pytest.mark.parametrize("shape", ["chain", "route", "groupby", "lifecycle"])
def test_same_output_in_the_same_order_as_consecution(shape: str, pipeline_mode: str) -> None:
    (theirs, _, _), (ours, _, _) = run_both(shape, pipeline_mode)
    if shape == "route" and pipeline_mode != "sync":  # order kept per branch, not across branches
        theirs, ours = sorted(theirs), sorted(ours)
    if shape == "lifecycle" and pipeline_mode in ("processes", "ray"):
        # a list several node processes append to comes back node by node (graph/state.py); the
        # real-time order of begin/end is checked with timestamps in test_graph_modes.py
        theirs, ours = sorted(theirs), sorted(ours)
    assert ours == theirs


@pytest.mark.parametrize("shape", ["broadcast", "merge"])
def test_same_multiset_as_consecution(shape: str, pipeline_mode: str) -> None:
    (theirs, _, _), (ours, _, _) = run_both(shape, pipeline_mode)
    assert Counter(ours) == Counter(theirs)


def test_same_global_state_as_consecution(pipeline_mode: str) -> None:
    (_, theirs, _), (_, ours, _) = run_both("global_state", pipeline_mode)
    assert ours == theirs


@pytest.mark.parametrize("shape", ["chain", "lifecycle"])
def test_same_printed_pipeline_as_consecution(shape: str) -> None:
    (_, _, theirs), (_, _, ours) = run_both(shape, "sync")
    assert str(ours) == str(theirs)


def test_same_node_logs_as_consecution(pipeline_mode: str) -> None:
    outputs = []
    for which in ("consecution", pipeline_mode):
        pipeline = build(library(which), "route")
        pipeline["a"].log("output")
        pipeline["out"].log("input")
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            pipeline.consume(range(6))
        outputs.append(Counter(buffer.getvalue().splitlines()))
    assert outputs[1] == outputs[0]
