"""Pipeline's API around the run: lookup and replacement, printing, plotting, reset, hooks,
statistics, GlobalState and Clock."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from chronopipe.graph import Clock, GlobalState, Node, Pipeline, merge_branches
from chronopipe.testing import ListSink, MapNode


class Tag(Node):
    def process(self, item):
        self.push((self.name, item))


class Times10(Node):
    def process(self, item):
        self.push(item * 10)


def parity(item):
    return "even" if item % 2 == 0 else "odd"


def body(pipeline: Pipeline) -> list[str]:
    """The lines between the two rules of print(pipeline)."""
    lines = str(pipeline).split("\n")
    return lines[3:-2]


# -- lookup and replacement ------------------------------------------------------------------
def test_pipeline_lookup_finds_a_node_by_name() -> None:
    b = Tag("b")
    assert Pipeline(Tag("a") | b)["b"] is b


def test_pipeline_lookup_of_an_unknown_name_is_a_key_error_listing_the_names() -> None:
    with pytest.raises(KeyError, match=r"no node named 'c'.*\['a', 'b'\]"):
        Pipeline(Tag("a") | Tag("b"))["c"]


def test_replacing_a_node_rewires_its_neighbours(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    pipeline = Pipeline(MapNode("src", lambda x: x) | Tag("mid") | sink, mode=pipeline_mode)
    pipeline["mid"] = Times10("mid")
    pipeline.consume([1, 2])
    assert sink.items == [10, 20]


def test_replacing_a_routed_node_keeps_the_route(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    pipeline = Pipeline(MapNode("src", lambda x: x) | [ListSink("even"), Tag("odd"), parity] | sink,
                        mode=pipeline_mode)
    pipeline["odd"] = Times10("odd")
    pipeline.consume(range(4))
    assert sorted(sink.items) == [0, 2, 10, 30]


def test_replacing_the_top_node_makes_the_replacement_the_top() -> None:
    pipeline = Pipeline(Tag("a") | Tag("b"))
    new = Times10("a")
    pipeline["a"] = new
    assert pipeline.top_node is new


def test_replacing_a_merge_sorted_node_keeps_the_sorted_merge() -> None:
    src, b, c = MapNode("src", lambda x: x), Tag("b"), Tag("c")
    src | [b, c]
    merge_branches([b, c], key=lambda pair: pair[1]) | ListSink("out")
    pipeline = Pipeline(src)
    pipeline["out"] = ListSink("out")
    assert pipeline["out"]._merge is not None


def test_a_replacement_must_have_the_same_name() -> None:
    pipeline = Pipeline(Tag("a") | Tag("b"))
    with pytest.raises(ValueError, match="named 'b'"):
        pipeline["b"] = Tag("c")


# -- printing --------------------------------------------------------------------------------
def test_printing_shows_one_line_per_node_with_downstreams() -> None:
    pipeline = Pipeline(Tag("extract") | Tag("transform") | Tag("load"))
    assert body(pipeline) == ["  extract | transform", "transform | load"]


def test_printing_lists_several_downstreams_sorted_in_brackets() -> None:
    pipeline = Pipeline(Tag("a") | [Tag("c"), Tag("b")])
    assert body(pipeline) == ["a | [b, c]"]


def test_printing_shows_a_router_as_its_own_line() -> None:
    pipeline = Pipeline(Tag("a") | [Tag("even"), Tag("odd"), parity])
    assert body(pipeline) == ["       a | a.parity", "a.parity | [even, odd]"]


def test_printing_frames_the_lines_with_a_title_and_rules() -> None:
    text = str(Pipeline(Tag("a") | Tag("b")))
    assert text == "\nPipeline\n" + "-" * 68 + "\na | b\n" + "-" * 68 + "\n"


def test_printing_a_threads_pipeline_says_its_mode() -> None:
    assert "Pipeline (mode=threads)" in str(Pipeline(Tag("a"), mode="threads"))


def test_printing_notes_workers_modes_and_sorted_merges() -> None:
    a, b, c = Tag("a", workers=2, ordered=True), Tag("b", mode="processes"), Tag("c")
    a | b
    merge_branches([b], key="t") | c
    assert body(Pipeline(a))[-3:] == ["a: workers=2, ordered", "b: mode=processes",
                                      "c: merge_branches(key='t', direction='min')"]


def test_repr_is_the_printed_form() -> None:
    pipeline = Pipeline(Tag("a") | Tag("b"))
    assert repr(pipeline) == str(pipeline)


# -- plotting --------------------------------------------------------------------------------
def test_plot_builds_a_graphviz_graph_with_every_node_and_edge() -> None:
    pytest.importorskip("graphviz")
    source = Pipeline(Tag("a") | [Tag("b"), Tag("c"), parity]).top_node._build_pydot_graph().source
    assert ("a -> a.parity" in source.replace('"', ""), "a.parity -> b" in source.replace('"', ""),
            "shape=oval" in source) == (True, True, True)


def test_plot_rejects_an_unknown_kind() -> None:
    pytest.importorskip("graphviz")
    with pytest.raises(ValueError, match="png"):
        Pipeline(Tag("a")).plot(kind="gif")


def test_plot_without_graphviz_programs_says_how_to_install_them(monkeypatch, tmp_path: Path) -> None:
    graphviz = pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` to be found
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        Pipeline(Tag("a")).plot(str(tmp_path / "p"))
    assert graphviz is not None


def test_plot_without_the_graphviz_package_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match="pip install graphviz"):
        Pipeline(Tag("a")).plot()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_plot_writes_the_image(tmp_path: Path) -> None:
    Pipeline(Tag("a") | Tag("b")).plot(str(tmp_path / "pipeline.png"))
    assert (tmp_path / "pipeline.png").stat().st_size > 0


# -- reset and hooks ---------------------------------------------------------------------------
def test_reset_calls_every_nodes_reset() -> None:
    class Resettable(Node):
        was_reset = False

        def process(self, item):
            self.push(item)

        def reset(self):
            self.was_reset = True

    pipeline = Pipeline(Resettable("a") | Resettable("b"))
    pipeline.consume(range(3))
    pipeline.reset()
    assert (pipeline["a"].was_reset, pipeline["b"].was_reset) == (True, True)


def test_subclass_hooks_run_around_the_nodes_without_super(pipeline_mode: str) -> None:
    class Recorder(Node):
        def begin(self):
            self.global_state.log.append("node begin")

        def process(self, item):
            pass

        def end(self):
            self.global_state.log.append("node end")

    class Hooked(Pipeline):
        def begin(self):
            self.global_state.log.append("pipeline begin")

        def end(self):
            self.global_state.log.append("pipeline end")

        def reset(self):
            self.global_state.log.append("pipeline reset")

    pipeline = Hooked(Recorder("r"), global_state=GlobalState(log=[]), mode=pipeline_mode)
    pipeline.consume([1])
    pipeline.reset()
    assert pipeline.global_state.log == ["pipeline begin", "node begin", "node end", "pipeline end",
                                         "pipeline reset"]


def test_a_global_state_replaced_before_begin_reaches_the_nodes(pipeline_mode: str) -> None:
    class Counting(Node):
        def process(self, item):
            self.global_state.n += 1

    pipeline = Pipeline(Counting("count"), mode=pipeline_mode)
    pipeline.global_state = GlobalState(n=0)
    pipeline.consume(range(3))
    assert pipeline.global_state.n == 3


def test_end_without_begin_does_nothing() -> None:
    assert Pipeline(Tag("a")).end() is None


def test_push_outside_a_pipeline_says_how_to_run_the_node() -> None:
    with pytest.raises(RuntimeError, match="not running in a pipeline"):
        Tag("a").push(1)


# -- statistics --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_statistics_count_what_each_node_received_and_sent(mode: str) -> None:
    pipeline = Pipeline(MapNode("a", lambda x: x) | [Tag("b"), Tag("c")], mode=mode)
    pipeline.consume(range(10))
    assert [(n.name, n.received, n.sent) for n in pipeline.statistics().nodes] == [
        ("a", 10, 20), ("b", 10, 0), ("c", 10, 0)]


def test_statistics_of_a_sync_run_name_every_node_without_counts() -> None:
    pipeline = Pipeline(Tag("a") | Tag("b"))
    pipeline.consume(range(3))
    stats = pipeline.statistics()
    assert (stats.mode, stats.state, [(n.name, n.received) for n in stats.nodes]) == (
        "sync", "finished", [("a", None), ("b", None)])


def test_statistics_say_how_each_node_was_hosted() -> None:
    pipeline = Pipeline(MapNode("a", lambda x: x) | MapNode("b", lambda x: x, mode="processes", workers=2),
                        mode="threads")
    pipeline.consume(range(3))
    assert [(n.mode, n.workers) for n in pipeline.statistics().nodes] == [("threads", 1), ("processes", 2)]


# -- GlobalState and Clock ---------------------------------------------------------------------
def test_global_state_takes_keyword_arguments_as_attributes() -> None:
    state = GlobalState(custom_name="custom")
    assert (state.custom_name, state["custom_name"]) == ("custom", "custom")


def test_global_state_items_are_attributes() -> None:
    state = GlobalState()
    state["a"] = 1
    assert state.a == 1


def test_global_state_prints_its_attribute_names() -> None:
    assert str(GlobalState(b=1, a=2)) == "GlobalState('a', 'b')"


def test_a_pipeline_gets_a_global_state_by_default() -> None:
    assert isinstance(Pipeline(Tag("a")).global_state, GlobalState)


def test_every_node_shares_the_pipelines_global_state() -> None:
    state = GlobalState()
    pipeline = Pipeline(Tag("a") | Tag("b"), global_state=state)
    assert pipeline["a"].global_state is pipeline["b"].global_state is state


def test_clock_adds_up_the_time_of_named_watches() -> None:
    clock = Clock()
    clock.start("a")
    clock.stop("a")
    clock.start("a")
    clock.stop("a")
    assert list(clock.delta) == ["a"] and clock.get_time("a") >= 0


def test_clock_paused_leaves_the_block_out() -> None:
    clock = Clock()
    with clock.running("a", "b"), clock.paused("a"):
        pass
    assert set(clock.get_time()) == {"a", "b"}


def test_clock_start_without_a_name_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Clock().start()


def test_clock_reset_forgets_every_watch() -> None:
    clock = Clock()
    with clock.running("a"):
        pass
    clock.reset()
    assert clock.get_time() == {}


def test_every_node_has_a_clock() -> None:
    assert isinstance(Tag("a").clock, Clock)


def test_node_log_rejects_anything_but_input_or_output() -> None:
    with pytest.raises(ValueError, match="'input' or 'output'"):
        Tag("a").log("everything")
