"""The control API of a running pipeline (issue 20): Pipeline(control=...), PushInput, Features,
POST /stop's drain, and Runtime(control=...). A real server on 127.0.0.1 in every test, real
actor processes, psutil to check them."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import chronopipe as cp
from chronopipe.control import InputClosed, InputFull
from chronopipe.control.features import Features
from chronopipe.control.inputs import PushInput
from chronopipe.graph import Node, Pipeline
from chronopipe.readers import CSVReader
from chronopipe.testing import ListSink, MapNode
from control_helper import call, idle_actors

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
WAIT = 20.0


# -- helpers ---------------------------------------------------------------------------
class Running:
    """``pipeline.consume(iterable)`` on a thread; ``server()`` waits for its control server."""

    def __init__(self, pipeline: Pipeline, iterable: Any) -> None:
        cp.Runtime()  # made on the main thread (its signal handlers), not the consuming one
        self.pipeline, self.error = pipeline, None
        self.thread = threading.Thread(target=self._consume, args=(iterable,), daemon=True)
        self.thread.start()

    def _consume(self, iterable: Any) -> None:
        try:
            self.pipeline.consume(iterable)
        except BaseException as exc:  # re-raised by join()
            self.error = exc

    def server(self) -> Any:
        wait_for(lambda: self.pipeline.control is not None or not self.thread.is_alive(), "the control server")
        assert self.pipeline.control is not None, f"consume ended first: {self.error!r}"
        return self.pipeline.control

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "consume() did not return"
        if self.error is not None:
            raise self.error


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.01)
    return value


def rows_by_name(url: str) -> dict[str, dict[str, Any]]:
    status, _, body = call(url, "GET", "/stats")
    assert status == 200
    return {row["name"]: row for row in body["actors"]}


def stop(server: Any, timeout: float = 10.0) -> dict[str, Any]:
    status, _, body = call(server.url, "POST", "/stop", token=server.token, body={"timeout": timeout})
    assert status == 200, body
    return body


def push(server: Any, name: str, records: list[Any]) -> tuple[int, dict[str, str], Any]:
    return call(server.url, "POST", "/push", token=server.token, body={"input": name, "records": records})


def port_closed(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError:
        return True
    return False


class Gate(Node):
    """Passes records on once ``opened`` is set (threads and sync modes: the same object)."""

    def begin(self) -> None:
        self.opened = getattr(self, "opened", None) or threading.Event()

    def process(self, item: Any) -> None:
        self.opened.wait(WAIT)
        self.push(item)


class Slow(Node):
    """Takes a little time per record: a run that lasts long enough to be stopped midway."""

    def process(self, item: Any) -> None:
        time.sleep(0.0002)
        self.push(item)


def counted(n: int | None, taken: list[int]) -> Iterator[int]:
    """0, 1, 2, ... (``n`` of them, or without end), counting in ``taken[0]`` what was taken."""
    i = 0
    while n is None or i < n:
        taken[0] = i + 1
        yield i
        i += 1


# -- GET /stats: live rows of a processes-mode pipeline ---------------------------------
def test_stats_of_a_running_processes_pipeline_show_live_counts_rss_and_pids_of_its_node_processes():
    orders, sink = PushInput("orders"), ListSink("sink")
    pipeline = Pipeline(MapNode("parse", dict) | MapNode("price", lambda r: {**r, "p": r["n"] * 2}) | sink,
                        mode="processes", control="127.0.0.1:0")
    run = Running(pipeline, orders)
    server = run.server()
    assert push(server, "orders", [{"n": i} for i in range(50)])[0] == 200
    rows = wait_for(lambda: (r := rows_by_name(server.url)) and r["sink"]["received"] == 50 and r, "50 at the sink")
    assert push(server, "orders", [{"n": i} for i in range(50, 120)])[0] == 200
    rows = wait_for(lambda: (r := rows_by_name(server.url)) and r["sink"]["received"] == 120 and r, "120 at the sink")
    children = {p.pid for p in psutil.Process().children()}
    for name in ("parse", "price", "sink"):
        row = rows[name]
        assert row["mode"] == "process" and row["state"] == "running" and row["received"] == 120
        assert row["pid"] in children and row["pid"] != os.getpid()
        real = psutil.Process(row["pid"]).memory_info().rss
        assert 0.5 * real < row["rss"] < 2 * real
    assert rows["parse"]["emitted"] == rows["price"]["emitted"] == 120
    stop(server)
    run.join()
    assert len(sink.items) == 120


# -- POST /push ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "threads", "processes"])
def test_records_pushed_into_a_push_input_reach_the_sink(mode: str):
    sink = ListSink("sink")
    run = Running(Pipeline(MapNode("inc", lambda r: {**r, "seen": True}) | sink, mode=mode, control="127.0.0.1:0"),
                  PushInput("orders"))
    server = run.server()
    status, _, body = push(server, "orders", [{"id": i} for i in range(3)])
    assert (status, body) == (200, {"input": "orders", "accepted": 3})
    assert push(server, "orders", [{"id": 3}])[2]["accepted"] == 1
    assert stop(server)["state"] == "finished"
    run.join()
    assert sink.items == [{"id": i, "seen": True} for i in range(4)]


def test_a_push_to_an_unknown_input_is_404_naming_the_inputs():
    run = Running(Pipeline(ListSink("sink"), control="127.0.0.1:0"), PushInput("orders"))
    server = run.server()
    status, _, body = push(server, "invoices", [1])
    assert status == 404 and "orders" in body["error"]
    stop(server)
    run.join()


def test_a_push_that_does_not_fit_is_429_with_retry_after_and_takes_none_of_its_records():
    sink = ListSink("sink")
    run = Running(Pipeline(sink, mode="threads", control="127.0.0.1:0"), PushInput("orders", maxsize=3))
    server = run.server()
    status, headers, body = push(server, "orders", [1, 2, 3, 4])
    assert status == 429 and int(headers["retry-after"]) >= 1 and "none taken" in body["error"]
    assert push(server, "orders", [5, 6])[0] == 200
    stop(server)
    run.join()
    assert sink.items == [5, 6]


def test_a_push_input_takes_all_or_none_of_a_request():
    orders = PushInput("orders", maxsize=3)
    assert orders.put_many([1, 2]) == 2
    with pytest.raises(InputFull):
        orders.put_many([3, 4])
    assert orders.qsize() == 2 and orders.statistics()["refused"] == 2
    orders.close()
    assert list(orders) == [1, 2]
    with pytest.raises(InputClosed):
        orders.put_many([5])


def test_a_push_after_the_input_was_closed_is_409():
    gate, sink = Gate("gate"), ListSink("sink")
    gate.opened = threading.Event()
    orders = PushInput("orders")
    run = Running(Pipeline(gate | sink, mode="threads", control="127.0.0.1:0"), orders)
    server = run.server()
    assert push(server, "orders", [1])[0] == 200
    orders.close()  # the run goes on: the gate holds its record
    status, _, body = push(server, "orders", [2])
    assert status == 409 and "closed" in body["error"]
    gate.opened.set()
    run.join()
    assert sink.items == [1]


# -- POST /stop: the drain -------------------------------------------------------------
def test_stop_drains_every_record_fed_to_the_sink_and_answers_the_sinks_counts():
    taken, sink = [0], ListSink("sink")
    pipeline = Pipeline(MapNode("inc", lambda x: x + 1) | Slow("slow") | sink, mode="processes",
                        control="127.0.0.1:0")
    run = Running(pipeline, counted(None, taken))  # a source without end: only the stop ends it
    server = run.server()
    wait_for(lambda: rows_by_name(server.url)["sink"]["received"] > 200, "records at the sink")
    answer = stop(server)
    run.join()
    assert answer["state"] == "finished" and answer["run"] == "finished"
    assert sink.items == list(range(1, taken[0] + 1))  # every record taken from the source, none lost
    assert answer["nodes"]["sink"]["received"] == len(sink.items) == answer["nodes"]["inc"]["received"]
    assert answer["totals"]["received"] == 3 * len(sink.items)
    assert pipeline.statistics().nodes[-1].received == len(sink.items)


@pytest.mark.parametrize("mode", ["sync", "processes"])
def test_stop_ends_the_feed_of_a_range_between_two_slices_and_the_sink_has_a_prefix_of_it(mode: str):
    sink = ListSink("sink")
    run = Running(Pipeline(Slow("slow") | sink, mode=mode, control="127.0.0.1:0"), range(10**9))
    server = run.server()
    at_sink = (lambda: len(sink.items)) if mode == "sync" else (lambda: rows_by_name(server.url)["sink"]["received"])
    wait_for(lambda: at_sink() > 100, "records at the sink")
    answer = stop(server)
    run.join()
    assert 0 < len(sink.items) < 10**9 and sink.items == list(range(len(sink.items)))
    if mode == "processes":
        assert answer["nodes"]["sink"]["received"] == len(sink.items)


def test_stop_feeds_what_a_push_input_held_before_it_ends():
    sink = ListSink("sink")
    run = Running(Pipeline(Slow("slow") | sink, mode="threads", control="127.0.0.1:0"), PushInput("orders"))
    server = run.server()
    for start in range(0, 1000, 100):
        assert push(server, "orders", list(range(start, start + 100)))[2]["accepted"] == 100
    answer = stop(server)
    run.join()
    assert sink.items == list(range(1000)) and answer["nodes"]["sink"]["received"] == 1000


def test_a_stop_that_times_out_answers_stopping_with_the_counts_so_far():
    gate, sink = Gate("gate"), ListSink("sink")
    gate.opened = threading.Event()
    orders = PushInput("orders")
    run = Running(Pipeline(gate | sink, mode="threads", control="127.0.0.1:0"), orders)
    server = run.server()
    push(server, "orders", [1, 2])
    wait_for(lambda: orders.taken == 2, "the feed taking the records")
    answer = stop(server, timeout=0.2)
    assert answer["state"] == "stopping" and answer["run"] == "stopping"
    gate.opened.set()
    run.join()
    assert sink.items == [1, 2]


class Lines:
    """A resumable source (``resume_key``) of JSON lines that gives them no faster than a live one
    would (a pause every 100 lines), so that a stop comes long before its end."""

    resume_key = "numbered-lines"

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[str]:
        for i in range(self.n):
            if i % 100 == 0:
                time.sleep(0.002)
            yield json.dumps({"id": i})


def test_a_stopped_run_with_a_state_dir_confirms_what_it_fed_and_a_rerun_resumes_after_it(tmp_path: Path):
    n, state = 50_000, tmp_path / "state"

    def pipeline(sink: ListSink) -> Pipeline:
        return Pipeline(MapNode("parse", json.loads) | MapNode("double", lambda r: {**r, "x": 2 * r["id"]}) | sink,
                        mode="processes", name="resumed", state_dir=state, control="127.0.0.1:0")

    first = ListSink("sink")
    run = Running(pipeline(first), Lines(n))
    server = run.server()
    wait_for(lambda: rows_by_name(server.url)["sink"]["received"] > 2000, "records at the sink")
    answer = stop(server)
    run.join()
    assert answer["fed"] == answer["confirmed"] == len(first.items) < n
    assert answer["nodes"]["sink"]["received"] == len(first.items)
    second = ListSink("sink")
    again = pipeline(second)
    again.consume(Lines(n))
    stats = again.statistics()
    assert stats.resumed_at == len(first.items) and stats.duplicates_possible == 0
    ids = [r["id"] for r in first.items + second.items]
    assert ids == list(range(n))  # nothing lost, nothing twice


# -- GET /features ---------------------------------------------------------------------
def test_features_name_the_fields_and_types_of_the_csv_records_fed():
    gate = Gate("gate")
    gate.opened = threading.Event()
    reader = CSVReader(str(DATA / "datatest.txt"), typed=True)
    run = Running(Pipeline(gate | ListSink("sink"), control="127.0.0.1:0"), reader)
    server = run.server()
    status, _, body = call(server.url, "GET", "/features")
    gate.opened.set()  # the file's end ends the run
    run.join()
    assert status == 200
    assert body["features"] == {"datatest.txt": {
        "CO2": ["float"], "Humidity": ["float"], "HumidityRatio": ["float"], "Light": ["float"],
        "Occupancy": ["int"], "Temperature": ["float"], "date": ["datetime"], "row": ["int"]}}


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_features_name_the_fields_of_a_generator_fed_to_actor_nodes(mode: str):
    held = threading.Event()

    def readings() -> Iterator[dict[str, Any]]:
        yield from ({"sensor": f"s{i % 3}", "value": i * 0.5} for i in range(3000))
        held.wait(WAIT)  # the run goes on until the test has looked

    sink = ListSink("sink")
    run = Running(Pipeline(MapNode("same", lambda r: r) | sink, mode=mode, control="127.0.0.1:0"), readings())
    server = run.server()
    wait_for(lambda: call(server.url, "GET", "/features")[2]["features"]["input"], "the fields of a record")
    status, _, body = call(server.url, "GET", "/features")
    held.set()
    run.join()
    assert status == 200 and body["features"] == {"input": {"sensor": ["str"], "value": ["float"]}}
    assert len(run.pipeline["sink"].items) == 3000


def test_features_keep_a_bounded_number_of_fields_and_the_newest_types():
    features = Features(max_fields=2, max_types=2)
    for value in (1, "x", 2.5):
        features.see({"a": value, "b": None, "c": 0})
    assert features.snapshot() == {"a": ["float", "str"], "b": ["NoneType"]}
    assert features.dropped == 3


# -- the server's life -----------------------------------------------------------------
def test_the_server_is_gone_once_consume_returned():
    pipeline = Pipeline(MapNode("inc", lambda x: x + 1) | ListSink("sink"), mode="processes",
                        control="127.0.0.1:0")
    run = Running(pipeline, PushInput("orders"))
    server = run.server()
    thread, token_file = server._thread, server.token_file
    assert call(server.url, "GET", "/health")[0] == 200 and token_file is not None and token_file.exists()
    stop(server)
    run.join()
    assert port_closed(server.address)
    assert not thread.is_alive() and not token_file.exists()


def test_info_names_the_pipeline_its_mode_nodes_and_inputs():
    run = Running(Pipeline(MapNode("inc", lambda x: x) | ListSink("sink"), mode="threads", name="orders-run",
                           control="127.0.0.1:0"), PushInput("orders"))
    server = run.server()
    status, _, info = call(server.url, "GET", "/info")
    stop(server)
    run.join()
    assert status == 200 and info["kind"] == "pipeline" and info["name"] == "orders-run"
    assert info["mode"] == "threads" and info["nodes"] == ["inc", "sink"] and info["inputs"] == ["orders"]
    assert set(info["running"]) == {"inc", "sink"}


def test_a_control_address_that_is_not_host_port_is_refused_when_the_pipeline_is_made():
    with pytest.raises(ValueError, match="HOST:PORT"):
        Pipeline(ListSink("sink"), control="localhost")


def test_without_control_a_pipeline_serves_nothing():
    pipeline = Pipeline(ListSink("sink"), mode="threads")
    pipeline.consume(range(3))
    assert pipeline.control is None


# -- Runtime(control=...) --------------------------------------------------------------
def test_runtime_control_lists_the_runtimes_actors_until_shutdown():
    runtime = cp.Runtime(control="127.0.0.1:0")
    server = runtime.control
    assert server is not None and cp.Runtime().control is server
    actors, _ = idle_actors("thread", 2)
    status, _, body = call(server.url, "GET", "/actors")
    assert status == 200 and {"echo0", "echo1"} <= {row["name"] for row in body["actors"]}
    runtime.shutdown()
    assert runtime.control is None and port_closed(server.address)
    assert all(a.state != "running" for a in actors)


class Fails(Node):
    """Fails at record 100, once ``feed_waits`` is set (an Event a forked process sees too)."""

    feed_waits: Any = None

    def process(self, item: Any) -> None:
        if item == 100:
            self.feed_waits.wait(WAIT)
            raise ValueError("record 100 is bad")
        self.push(item)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_run_whose_node_failed_is_failed_in_stats_and_in_the_stop_answer(mode: str):
    held, feed_waits = threading.Event(), multiprocessing.get_context("fork").Event()

    def records() -> Iterator[int]:
        yield from range(200)
        feed_waits.set()  # the node fails now, while the feed waits here until the test has looked
        held.wait(WAIT)

    fails = Fails("fails")
    fails.feed_waits = feed_waits
    run = Running(Pipeline(fails | ListSink("sink"), mode=mode, control="127.0.0.1:0"), records())
    server = run.server()
    wait_for(lambda: call(server.url, "GET", "/stats")[2]["state"] == "failed", "a failed state while it ends")
    answers: list[Any] = []
    stopping = threading.Thread(target=lambda: answers.append(stop(server)))
    stopping.start()
    wait_for(lambda: run.pipeline._control._pending, "the stop to be waiting")
    held.set()
    stopping.join(WAIT)
    with pytest.raises(ValueError, match="record 100 is bad"):
        run.join()
    assert answers and answers[0]["state"] == "failed" and answers[0]["run"] == "failed"
