"""Per-record retries and dead letters (issue 17, guarantee="replay"), in the three pipeline modes.

Every test runs in sync, threads and processes mode (the ``pipeline_mode`` fixture): real
threads and processes, no mocks. What a node process counts comes home in its own attributes
(a dict merged key by key), so the attempt counts are the node's, wherever it ran.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys
import time
from datetime import datetime

import pytest

from chronopipe import ActorError
from chronopipe.delivery import DeadLetter, DeadLetterSinkError, read_dead_letters
from chronopipe.graph import GroupByNode, Node, Pipeline
from chronopipe.testing import ListSink

pytestmark = pytest.mark.timeout(60)


# -- nodes ---------------------------------------------------------------------------------
class Parse(Node):
    """int(item) * 10, pushed; counts its calls per item in ``calls`` (brought home in processes)."""

    def begin(self):
        self.calls = {}

    def process(self, item):
        self.calls[item] = self.calls.get(item, 0) + 1
        self.push(int(item) * 10)


class Flaky(Node):
    """Fails the first ``fails`` attempts of every item, pushing something first each time."""

    fails = 2

    def begin(self):
        self.calls = {}

    def process(self, item):
        self.calls[item] = n = self.calls.get(item, 0) + 1
        self.push(("attempt", item, n))  # held back: only the successful attempt's pushes go on
        if n <= self.fails:
            raise ConnectionError(f"attempt {n} of {item!r} failed")


class Count(Node):
    """Pushes what it gets; counts calls per item."""

    def begin(self):
        self.calls = {}

    def process(self, item):
        self.calls[item] = self.calls.get(item, 0) + 1
        self.push(item)


class Fixable(Node):
    """Fails on negative numbers until ``fixed`` is set."""

    fixed = False

    def process(self, item):
        if item < 0 and not self.fixed:
            raise ValueError(f"negative: {item}")
        self.push(abs(item))


def letters_of(sink_list):
    return [(d.node, d.attempts, d.record, d.error_type) for d in sink_list]


# -- a poison record ------------------------------------------------------------------------
def test_a_poison_record_is_tried_exactly_one_plus_max_retries_times(pipeline_mode):
    parse, out, letters = Parse("parse"), ListSink("out"), []
    Pipeline(parse | out, mode=pipeline_mode, guarantee="replay", max_retries=3,
             dead_letter=letters.append).consume(["1", "x", "2"])
    assert parse.calls == {"1": 1, "x": 4, "2": 1}
    assert out.items == [10, 20]
    assert letters_of(letters) == [("parse", 4, "x", "ValueError")]


def test_the_dead_letter_says_node_attempts_error_traceback_record_time_and_pipeline(pipeline_mode):
    letters = []
    before = time.time()
    Pipeline(Parse("parse"), mode=pipeline_mode, name="orders", guarantee="replay", max_retries=1,
             dead_letter=letters.append).consume(["x"])
    [letter] = letters
    assert isinstance(letter, DeadLetter)
    assert (letter.pipeline, letter.node, letter.attempts, letter.record) == ("orders", "parse", 2, "x")
    assert (letter.error_type, letter.error) == ("ValueError", "invalid literal for int() with base 10: 'x'")
    assert letter.traceback.startswith("Traceback (most recent call last):")
    assert "in process\n    self.push(int(item) * 10)" in letter.traceback
    assert "During handling" not in letter.traceback  # the last attempt's own, not chained to the earlier ones
    assert before <= letter.timestamp <= time.time()


def test_max_retries_zero_dead_letters_the_record_at_its_first_failure(pipeline_mode):
    parse, letters = Parse("parse"), []
    pipeline = Pipeline(parse, mode=pipeline_mode, guarantee="replay", max_retries=0, dead_letter=letters.append)
    pipeline.consume(["x", "1"])
    assert parse.calls == {"x": 1, "1": 1}
    assert letters_of(letters) == [("parse", 1, "x", "ValueError")]
    assert pipeline.statistics().retried == 0


# -- a flaky node ----------------------------------------------------------------------------
def test_a_flaky_node_succeeds_on_a_retry_without_a_dead_letter(pipeline_mode):
    flaky, out, letters = Flaky("flaky", fails=2), ListSink("out"), []
    pipeline = Pipeline(flaky | out, mode=pipeline_mode, guarantee="replay", max_retries=2,
                        dead_letter=letters.append)
    pipeline.consume(["a", "b"])
    assert letters == [] and flaky.calls == {"a": 3, "b": 3}
    assert pipeline.statistics().retried == 4


def test_pushes_of_a_failed_attempt_never_reach_downstream(pipeline_mode):
    flaky, out = Flaky("flaky", fails=2), ListSink("out")
    Pipeline(flaky | out, mode=pipeline_mode, guarantee="replay", max_retries=5, dead_letter=[].append).consume(["a"])
    assert out.items == [("attempt", "a", 3)]


# -- the dead-letter file ----------------------------------------------------------------------
def test_the_dead_letter_file_is_json_lines_with_the_record_as_json_and_pickled(pipeline_mode, tmp_path):
    path = tmp_path / "dl.jsonl"
    record = ("x", 1.5, datetime(2024, 5, 1, 10, 0))

    class Reject(Node):
        def process(self, item):
            raise KeyError(item[0])

    Pipeline(Reject("reject"), mode=pipeline_mode, name="orders", guarantee="replay", max_retries=0,
             dead_letter=path).consume([record])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert {k: data[k] for k in ("v", "pipeline", "node", "attempts", "error_type", "error")} == {
        "v": 1, "pipeline": "orders", "node": "reject", "attempts": 1, "error_type": "KeyError", "error": "'x'"}
    assert data["record"] == ["x", 1.5, "datetime.datetime(2024, 5, 1, 10, 0)"]  # JSON, repr for the rest
    assert pickle.loads(base64.b64decode(data["pickle"])) == record  # and the object itself
    assert datetime.fromisoformat(data["timestamp"]).tzinfo is not None
    [letter] = read_dead_letters(path)
    assert letter.record == record and letter.exact


def test_a_run_that_dead_letters_nothing_writes_no_file(pipeline_mode, tmp_path):
    path = tmp_path / "dl.jsonl"
    pipeline = Pipeline(Parse("parse"), mode=pipeline_mode, guarantee="replay", dead_letter=path)
    pipeline.consume(["1", "2"])
    assert not path.exists() and pipeline.statistics().dead_letters == str(path)


def test_dead_letters_are_appended_to_an_existing_file(pipeline_mode, tmp_path):
    path = tmp_path / "dl.jsonl"
    for _ in range(2):
        Pipeline(Parse("parse"), mode=pipeline_mode, guarantee="replay", max_retries=0,
                 dead_letter=path).consume(["x"])
    assert [d.record for d in read_dead_letters(path)] == ["x", "x"]


def test_the_default_dead_letter_file_is_named_after_the_pipeline(pipeline_mode, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Pipeline(Parse("parse"), mode=pipeline_mode, name="orders", guarantee="replay", max_retries=0).consume(["x"])
    assert [d.node for d in read_dead_letters(tmp_path / "orders.dead-letters.jsonl")] == ["parse"]


def test_dead_letters_are_never_written_onto_the_input(pipeline_mode, tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("1\nx\n")
    pipeline = Pipeline(Parse("parse"), mode=pipeline_mode, guarantee="replay", dead_letter=path)
    with open(path) as lines, pytest.raises(ValueError, match="never written onto an input"):
        pipeline.consume(lines)
    assert path.read_text() == "1\nx\n"


# -- replay ------------------------------------------------------------------------------------
def test_replay_after_fixing_the_node_gives_the_records_to_the_node_that_failed_them(pipeline_mode, tmp_path):
    path = tmp_path / "dl.jsonl"
    top, fixable, out = Count("top"), Fixable("fixable"), ListSink("out")
    pipeline = Pipeline(top | fixable | out, mode=pipeline_mode, guarantee="replay", max_retries=1, dead_letter=path)
    pipeline.consume([1, -2, 3, -4])
    assert out.items == [1, 3] and [d.record for d in read_dead_letters(path)] == [-2, -4]

    fixable.fixed = True
    again = tmp_path / "again.jsonl"
    pipeline.replay(path, dead_letter=again)
    assert out.items == [1, 3, 2, 4]  # ListSink keeps what earlier runs gave it
    assert top.calls == {}  # re-injected at fixable, not at the top
    assert not again.exists()


def test_replay_refuses_to_write_dead_letters_onto_the_file_it_replays(pipeline_mode, tmp_path):
    path = tmp_path / "dl.jsonl"
    pipeline = Pipeline(Fixable("fixable"), mode=pipeline_mode, guarantee="replay", max_retries=0, dead_letter=path)
    pipeline.consume([-1])
    with pytest.raises(ValueError, match="would write its dead letters onto the file it replays"):
        pipeline.replay(path)


def test_records_that_fail_again_on_replay_are_dead_lettered_again(pipeline_mode, tmp_path):
    path, again = tmp_path / "dl.jsonl", tmp_path / "again.jsonl"
    pipeline = Pipeline(Fixable("fixable"), mode=pipeline_mode, guarantee="replay", max_retries=0, dead_letter=path)
    pipeline.consume([-1, 2])
    pipeline.replay(path, dead_letter=again)
    assert [(d.node, d.record) for d in read_dead_letters(again)] == [("fixable", -1)]


def test_replay_refuses_a_file_naming_a_node_the_pipeline_does_not_have(pipeline_mode, tmp_path):
    path = tmp_path / "dl.jsonl"
    path.write_text(DeadLetter.of("other", "gone", 1, ValueError("x"), 5).to_line() + "\n")
    with pytest.raises(ValueError, match=r"nodes this pipeline does not have: \['gone'\]"):
        Pipeline(Fixable("fixable"), mode=pipeline_mode).replay(path, dead_letter=tmp_path / "again.jsonl")


# -- the guarantees, per pipeline and per node ------------------------------------------------
def test_none_fails_the_run_with_the_same_error_as_before(pipeline_mode, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as caught:
        Pipeline(Parse("parse") | ListSink("out"), mode=pipeline_mode).consume(["1", "x"])
    error = caught.value
    assert isinstance(error, ActorError) and (error.actor, error.record) == ("parse", "x")
    assert "invalid literal for int()" in str(error)
    assert list(tmp_path.iterdir()) == []  # no dead-letter file


def test_a_node_guarantee_overrides_the_pipelines(pipeline_mode):
    letters = []
    parse, strict = Parse("parse", guarantee="replay", max_retries=1), Fixable("strict", guarantee="none")
    pipeline = Pipeline(parse | strict, mode=pipeline_mode, dead_letter=letters.append)
    pipeline.consume(["1", "x"])
    assert letters_of(letters) == [("parse", 2, "x", "ValueError")]
    with pytest.raises(ValueError, match="strict"):
        Pipeline(Count("top") | Fixable("strict2", guarantee="none"), mode=pipeline_mode,
                 guarantee="replay", dead_letter=letters.append).consume([-1])


def test_an_error_downstream_is_the_downstream_nodes_not_a_retry_upstream(pipeline_mode):
    pipeline = Pipeline(Count("top") | Fixable("strict", guarantee="none"), mode=pipeline_mode, guarantee="replay",
                        dead_letter=[].append)
    with pytest.raises(ValueError) as caught:
        pipeline.consume([-1])
    assert caught.value.actor == "strict"
    top = pipeline.statistics().nodes[0]  # a failed run brings no node state home: the counts say it
    assert (top.name, top.retried, top.dead_lettered) == ("top", 0, 0)


def test_unknown_guarantees_and_bad_retry_counts_are_refused():
    with pytest.raises(ValueError, match="guarantee must be one of"):
        Pipeline(Node("a"), guarantee="exactly-once")
    with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
        Pipeline(Node("a"), guarantee="replay", max_retries=-1)
    with pytest.raises(TypeError, match="dead_letter must be a file path or a callable"):
        Pipeline(Node("a"), dead_letter=42)
    with pytest.raises(ValueError, match="node 'b': guarantee must be one of"):
        Pipeline(Node("b", guarantee="always")).consume([])


def test_a_group_by_node_under_replay_is_refused_with_what_to_do(pipeline_mode):
    class Pairs(GroupByNode):
        batch_size = 2

        def process(self, batch):
            self.push(batch)

    with pytest.raises(ValueError, match="GroupByNode 'pairs' cannot have guarantee='replay' yet"):
        Pipeline(Pairs("pairs"), mode=pipeline_mode, guarantee="replay").consume([1])
    Pipeline(Pairs("pairs", guarantee="none"), mode=pipeline_mode, guarantee="replay").consume([1])


# -- the sink ------------------------------------------------------------------------------------
def test_a_sink_that_raises_fails_the_run_with_an_error_naming_the_sink(pipeline_mode):
    def full(letter):
        raise OSError("disk full")

    with pytest.raises(DeadLetterSinkError) as caught:
        Pipeline(Parse("parse"), mode=pipeline_mode, guarantee="replay", max_retries=0,
                 dead_letter=full).consume(["1", "x", "2"])
    assert caught.value.actor == "dead-letters"
    assert "dead-letter sink " in str(caught.value) and ".full failed on a dead letter of node 'parse'" in str(
        caught.value) and "OSError: disk full" in str(caught.value)


# -- accounting ------------------------------------------------------------------------------------
def test_statistics_count_retries_and_dead_letters_and_nothing_is_lost(pipeline_mode):
    parse, out = Parse("parse"), ListSink("out")
    pipeline = Pipeline(parse | out, mode=pipeline_mode, guarantee="replay", max_retries=2, dead_letter=[].append)
    pipeline.consume(["1", "x", "2", "y", "3"])
    stats = pipeline.statistics()
    node = {n.name: n for n in stats.nodes}
    assert (node["parse"].received, node["parse"].retried, node["parse"].dead_lettered) == (5, 4, 2)
    assert node["parse"].sent == node["parse"].received - node["parse"].dead_lettered == 3
    assert node["out"].received == 3 and (stats.retried, stats.dead_lettered) == (4, 2)
    assert stats.summary.startswith("finished: parse 5 in = 3 handled + 2 dead-lettered (4 retries); out 3 in")


def test_ordered_workers_under_replay_keep_the_order_and_count_every_worker(pipeline_mode):
    parse, out, letters = Parse("parse", workers=2, ordered=True), ListSink("out"), []
    pipeline = Pipeline(parse | out, mode=pipeline_mode, guarantee="replay", max_retries=1,
                        dead_letter=letters.append)
    items = [str(i) if i % 7 else "x" for i in range(1, 200)]
    pipeline.consume(items)
    assert out.items == [int(i) * 10 for i in items if i != "x"]
    stats = {n.name: n for n in pipeline.statistics().nodes}["parse"]
    assert (stats.dead_lettered, stats.retried, len(letters)) == (28, 28, 28)


def test_what_a_replaying_node_pushes_in_end_goes_on(pipeline_mode):
    class Total(Node):
        def begin(self):
            self.total = 0

        def process(self, item):
            self.total += int(item)

        def end(self):
            self.push(("total", self.total))

    out = ListSink("out")
    Pipeline(Total("total") | out, mode=pipeline_mode, guarantee="replay", dead_letter=[].append).consume(
        ["1", "x", "2"])
    assert out.items == [("total", 3)]


def test_replay_at_a_node_merging_branches_by_key(pipeline_mode, tmp_path):
    from chronopipe.graph import merge_branches

    class Tag(Node):
        def process(self, item):
            self.push({"timestamp": item, "by": self.name})

    class Check(Node):
        fixed = False

        def process(self, record):
            if record["timestamp"] == 2 and not self.fixed:
                raise ValueError("two")
            self.push((record["timestamp"], record["by"]))

    top, a, b, check, out = Count("top"), Tag("a"), Tag("b"), Check("check"), ListSink("out")
    top | [a, b]
    merge_branches([a, b], key="timestamp") | check | out
    path = tmp_path / "dl.jsonl"
    pipeline = Pipeline(top, mode=pipeline_mode, guarantee="replay", max_retries=0, dead_letter=path)
    pipeline.consume([1, 2, 3])
    assert out.items == [(1, "a"), (1, "b"), (3, "a"), (3, "b")]
    check.fixed = True
    pipeline.replay(path, dead_letter=tmp_path / "again.jsonl")
    assert out.items[4:] == [(2, "a"), (2, "b")]


@pytest.mark.parametrize("opened", ["stdin", "descriptor"])
def test_the_dead_letter_file_opened_any_way_is_refused_as_input(tmp_path, monkeypatch, opened):
    path = tmp_path / "dl.jsonl"
    path.write_text('{"a": 1}\n')
    pipeline = Pipeline(Node("a"), guarantee="replay", dead_letter=str(path))
    with open(os.open(path, os.O_RDONLY)) as f:  # no name: only the descriptor says which file it is
        if opened == "stdin":
            monkeypatch.setattr("sys.stdin", f)
        source = sys.stdin if opened == "stdin" else f
        with pytest.raises(ValueError, match="dead letters are never written onto an input"):
            pipeline.consume(source)
    assert path.read_text() == '{"a": 1}\n'


@pytest.mark.parametrize("guarantee", ["none", "track", "replay"])
def test_a_router_that_raises_fails_the_run_naming_the_node_before_it_in_the_sync_mode(guarantee):
    def route(item):
        if item == 3:
            raise KeyError("router bug")
        return "b"

    class Pass(Node):
        def process(self, item):
            self.push(item)

    top = Pass("src")
    top | [ListSink("b"), ListSink("c"), route]
    with pytest.raises(ActorError) as caught:
        Pipeline(top, guarantee=guarantee, dead_letter=[].append).consume(range(10))
    assert caught.value.actor == "src" and "router bug" in str(caught.value)
