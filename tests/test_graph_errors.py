"""A failing node stops the pipeline in every mode: no hang, an ActorError naming the node with its
traceback and item, nothing left running; Ctrl-C tears a running pipeline down."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from chronopipe import ActorError
from chronopipe.graph import GlobalState, GroupByNode, Node, OutOfOrderError, Pipeline, RouteError, merge_branches
from chronopipe.testing import ListSink, ListSource, MapNode
from processes_helper import of_ray

GONE_WITHIN = 3.0



class FailOn(Node):
    """Raises ValueError on item `bad`, passes the others on."""

    bad = 3

    def process(self, item):
        if item == self.bad:
            raise ValueError(f"cannot take {item}")
        self.push(item)


class FailInBegin(Node):
    def begin(self):
        raise KeyError("no config")

    def process(self, item):
        self.push(item)


class FailInEnd(Node):
    def process(self, item):
        self.push(item)

    def end(self):
        raise ZeroDivisionError("nothing to divide")


class PushInBegin(Node):
    def begin(self):
        self.push(1)

    def process(self, item):
        self.push(item)


class BadKey(GroupByNode):
    def key(self, item):
        return item["group"]

    def process(self, batch):
        self.push(batch)


def leftovers() -> list[str]:
    """Processes and runtime threads still running, once given a moment to end."""
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        procs = [p for p in psutil.Process().children(recursive=True)
                 if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and not of_ray(p)]
        threads = [t.name for t in threading.enumerate() if t.name.startswith("chronopipe:")]
        if (not procs and not threads) or time.monotonic() > deadline:
            return [f"pid {p.pid}" for p in procs] + threads
        time.sleep(0.01)


def run(top: Node, mode: str, items=range(10), **kwargs) -> Pipeline:
    pipeline = Pipeline(top, mode=mode, **kwargs)
    pipeline.consume(items)
    return pipeline


# -- what the caller gets ----------------------------------------------------------------------
def test_a_failing_node_raises_an_actor_error_naming_it(pipeline_mode: str) -> None:
    with pytest.raises(ActorError) as caught:
        run(MapNode("src", lambda x: x) | FailOn("picky") | ListSink("sink"), pipeline_mode)
    assert (caught.value.actor, caught.value.exc_type, caught.value.message) == ("picky", "ValueError",
                                                                                  "cannot take 3")


def test_the_error_carries_the_item_being_processed(pipeline_mode: str) -> None:
    with pytest.raises(ActorError) as caught:
        run(MapNode("src", lambda x: x) | FailOn("picky"), pipeline_mode)
    assert caught.value.record == 3


def test_the_error_carries_the_nodes_traceback(pipeline_mode: str) -> None:
    with pytest.raises(ActorError) as caught:
        run(FailOn("picky"), pipeline_mode)
    assert 'raise ValueError(f"cannot take {item}")' in caught.value.traceback


def test_the_error_is_also_of_the_original_type(pipeline_mode: str) -> None:
    with pytest.raises(ValueError, match="cannot take 3"):
        run(FailOn("picky"), pipeline_mode)


def test_an_error_in_begin_names_the_node(pipeline_mode: str) -> None:
    with pytest.raises(KeyError) as caught:
        run(MapNode("src", lambda x: x) | FailInBegin("configured"), pipeline_mode)
    assert (isinstance(caught.value, ActorError), caught.value.actor, caught.value.record) == (True, "configured",
                                                                                                None)


def test_an_error_in_end_names_the_node(pipeline_mode: str) -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        run(MapNode("src", lambda x: x) | FailInEnd("closing"), pipeline_mode)
    assert (caught.value.actor, caught.value.record) == ("closing", None)


def test_push_in_begin_is_an_attribute_error_naming_the_node(pipeline_mode: str) -> None:
    with pytest.raises(AttributeError, match="push.. in begin") as caught:
        run(PushInBegin("eager") | ListSink("sink"), pipeline_mode)
    assert caught.value.actor == "eager"


def test_a_node_without_process_is_a_not_implemented_error(pipeline_mode: str) -> None:
    with pytest.raises(NotImplementedError, match="process"):
        run(Node("lazy"), pipeline_mode)


def test_a_bad_route_name_is_a_route_error_listing_the_valid_ones(pipeline_mode: str) -> None:
    with pytest.raises(RouteError, match=r"router 'src.<lambda>' returned 'blue'.*\['even', 'odd'\]"):
        run(MapNode("src", lambda x: x) | [ListSink("even"), ListSink("odd"), lambda x: "blue"], pipeline_mode)


def test_a_bad_route_is_a_value_error_as_in_consecution(pipeline_mode: str) -> None:
    with pytest.raises(ValueError):
        run(MapNode("src", lambda x: x) | [ListSink("even"), ListSink("odd"), lambda x: "blue"], pipeline_mode)


def test_a_groupby_key_error_names_the_node_and_item(pipeline_mode: str) -> None:
    with pytest.raises(KeyError) as caught:
        run(MapNode("src", lambda x: {"id": x}) | BadKey("groups"), pipeline_mode, items=[1])
    assert (caught.value.actor, caught.value.record) == ("groups", {"id": 1})


def test_an_error_in_a_worker_names_the_node(pipeline_mode: str) -> None:
    with pytest.raises(ActorError) as caught:
        run(MapNode("src", lambda x: x) | FailOn("picky", workers=2), pipeline_mode, items=range(5000))
    assert (caught.value.actor, caught.value.record) == ("picky", 3)


def test_an_error_in_an_ordered_worker_names_the_node(pipeline_mode: str) -> None:
    with pytest.raises(ActorError) as caught:
        run(FailOn("picky", workers=2, ordered=True) | ListSink("sink"), pipeline_mode, items=range(5000))
    assert (caught.value.actor, caught.value.record) == ("picky", 3)


def test_a_branch_out_of_key_order_in_merge_sorted_names_the_merging_node(pipeline_mode: str) -> None:
    src, b, c, out = MapNode("src", lambda x: x), MapNode("b", lambda x: {"t": x}), MapNode("c", lambda x: {
        "t": 5}), ListSink("out")
    src | [b, c]
    merge_branches([b, c], key="t") | out
    with pytest.raises(OutOfOrderError, match="branch 'b'") as caught:
        run(src, pipeline_mode, items=[1, 2, 0])
    assert caught.value.actor == "out"


def test_an_error_from_the_input_iterable_is_raised_as_it_is(pipeline_mode: str) -> None:
    with pytest.raises(RuntimeError, match="failing at item 5") as caught:
        run(MapNode("src", lambda x: x) | ListSink("sink"), pipeline_mode, items=ListSource(range(10), raise_at=5))
    assert not isinstance(caught.value, ActorError)


# -- stopping --------------------------------------------------------------------------------
def test_a_failure_stops_taking_input(pipeline_mode: str) -> None:
    source = ListSource(range(200_000))
    with pytest.raises(ValueError):
        run(MapNode("src", lambda x: x) | FailOn("picky"), pipeline_mode, items=source)
    assert source.taken < 200_000


def test_a_failure_of_an_endless_run_does_not_hang(pipeline_mode: str) -> None:
    with pytest.raises(ValueError):
        run(MapNode("src", lambda x: x) | [FailOn("picky", bad=50_000), ListSink("other")], pipeline_mode,
            items=itertools.count())


def test_a_failure_leaves_no_process_or_thread_running(pipeline_mode: str) -> None:
    with pytest.raises(ValueError):
        run(MapNode("src", lambda x: x, workers=2) | FailOn("picky", bad=5000), pipeline_mode,
            items=itertools.count())
    assert leftovers() == []


def test_a_finished_run_leaves_no_process_or_thread_running(pipeline_mode: str) -> None:
    run(MapNode("src", lambda x: x, workers=2, ordered=True) | ListSink("sink"), pipeline_mode, items=range(3000))
    assert leftovers() == []


def test_a_pipeline_that_failed_can_run_again(pipeline_mode: str) -> None:
    sink = ListSink("sink")
    pipeline = Pipeline(FailOn("picky") | sink, mode=pipeline_mode)
    with pytest.raises(ValueError):
        pipeline.consume(range(5))
    pipeline["picky"].bad = None
    pipeline.consume(range(5))
    assert sink.items[-5:] == [0, 1, 2, 3, 4]


def test_a_failed_run_does_not_end_its_nodes(pipeline_mode: str) -> None:
    class Ender(Node):
        def process(self, item):
            pass

        def end(self):
            self.global_state.ended = True

    pipeline = Pipeline(FailOn("picky") | Ender("ender"), global_state=GlobalState(ended=False), mode=pipeline_mode)
    with pytest.raises(ValueError):
        pipeline.consume(range(5))
    assert pipeline.global_state.ended is False


def test_statistics_say_the_run_failed(pipeline_mode: str) -> None:
    pipeline = Pipeline(FailOn("picky"), mode=pipeline_mode)
    with pytest.raises(ValueError):
        pipeline.consume(range(5))
    assert pipeline.statistics().state == "failed"


# -- settings refused before anything starts ---------------------------------------------------
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_workers_must_be_a_positive_int(mode: str) -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        run(MapNode("src", lambda x: x, workers=0), mode)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_node_mode_must_be_threads_or_processes(mode: str) -> None:
    with pytest.raises(ValueError, match="'threads', 'processes' or 'ray'"):
        run(MapNode("src", lambda x: x, mode="gpu"), mode)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_groupby_node_cannot_have_workers(mode: str) -> None:
    with pytest.raises(ValueError, match="GroupByNode"):
        run(BadKey("groups", workers=2), mode)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_ordered_workers_need_a_single_parent(mode: str) -> None:
    a = MapNode("a", lambda x: x)
    a | [MapNode("b", lambda x: x), MapNode("c", lambda x: x)] | MapNode("d", lambda x: x, workers=2, ordered=True)
    with pytest.raises(ValueError, match="ordered=True"):
        run(a, mode)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_merge_sorted_refuses_an_unordered_branch_with_workers(mode: str) -> None:
    a, b, c = MapNode("a", lambda x: x), MapNode("b", lambda x: x, workers=2), MapNode("c", lambda x: x)
    a | [b, c]
    merge_branches([b, c], key=lambda x: x) | ListSink("out")
    with pytest.raises(ValueError, match="ordered=True"):
        run(a, mode)


def test_an_unknown_pipeline_mode_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'sync', 'threads', 'processes'"):
        Pipeline(Node("a"), mode="cluster")


# -- Ctrl-C -----------------------------------------------------------------------------------
SCRIPT = """
import itertools, sys
from chronopipe.graph import Node, Pipeline

class Ready(Node):
    said = False
    def process(self, item):
        if not self.said:
            print("READY", flush=True)
            self.said = True

class Work(Node):
    def process(self, item):
        self.push(item * 2)

try:
    Pipeline(Work("work", workers=2) | Ready("ready"), mode=sys.argv[1]).consume(itertools.count())
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_tears_a_running_pipeline_down(pipeline_mode: str, tmp_path: Path) -> None:
    script = tmp_path / "endless.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script), pipeline_mode], stdout=subprocess.PIPE, text=True)
    try:
        # (Ray prefixes what its workers print with the worker's name)
        assert proc.stdout is not None and proc.stdout.readline().strip().endswith("READY")
        descendants = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    gone_by = time.monotonic() + GONE_WITHIN
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in descendants):
        assert time.monotonic() < gone_by, "actor processes outlived the interrupted script"
        time.sleep(0.01)
    assert (proc.returncode, out.strip()) == (130, "INTERRUPTED")


class _FailsOn(Node):
    def process(self, item):
        if item == self.bad:
            raise ValueError(f"fails on {item}")


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_the_records_lost_behind_a_broadcast_are_what_was_sent_and_not_handled(mode):
    top, kept, failing = MapNode("a", lambda x: x), ListSink("b"), _FailsOn("c", bad=4999)
    _ = top | [kept, failing]
    with pytest.raises(ActorError) as caught:
        Pipeline(top, mode=mode).consume(range(5000))
    error = caught.value
    sent = error.progress["a"][1]
    handled = error.progress["b"][0] + error.progress["c"][0]
    # each copy sent counted once, not a's whole output charged to each branch (15,000 of 10,000)
    assert error.in_flight["b+c"] == sent - handled > 0
    assert error.lost == sum(error.in_flight.values()) <= sent <= 10_000


def test_an_interrupted_feed_does_not_wait_for_a_linger_timer_stuck_on_a_full_channel() -> None:
    # Ctrl-C while the feed's timer is blocked sending to a channel nobody reads any more
    # (its readers were told to stop): unwinding must not join that timer forever.
    from chronopipe.graph.wiring import lingering

    stuck, release = threading.Event(), threading.Event()

    class StuckPort:
        lock = None

        def flush_due(self, now: float) -> None:
            stuck.set()
            release.wait(30)  # a put into a full channel

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), lingering([StuckPort()]):
        stuck.wait(5)
        raise KeyboardInterrupt
    assert time.monotonic() - started < 2.0
    release.set()
