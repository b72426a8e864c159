"""guarantee="confirm" / "track" (issue 17): records acknowledged a batch at a time.

The promise tested throughout: when the source hears ``confirm(n)``, every terminal node has
handled (and committed) everything derived from the first ``n`` records; at the end ``n`` is
all of them; a failed run says which records were not confirmed.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import multiprocess
import pytest

from chronopipe.graph import Node, Pipeline, merge_branches
from chronopipe.graph import acking as acking_module
from chronopipe.graph.node import GroupByNode
from chronopipe.testing import ListSink

MODES = ["sync", "threads", "processes"]
_ctx = multiprocess.get_context("fork")


class Add(Node):
    def process(self, item: int) -> None:
        self.push(item + 1)


class Even(Node):
    """Drops odd records: confirmation must not wait for what a node never pushes."""

    def process(self, item: int) -> None:
        if item % 2 == 0:
            self.push(item)


class Counting(Node):
    """A terminal node counting what it handled (and its commits) in shared memory, so the
    caller can compare it with what is confirmed while the run goes on, in every mode."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.handled = _ctx.Value("q", 0, lock=False)
        self.committed = _ctx.Value("q", 0, lock=False)
        self.commits = _ctx.Value("q", 0, lock=False)

    def process(self, item: int) -> None:
        self.handled.value += 1

    def commit(self) -> None:
        self.committed.value = self.handled.value
        self.commits.value += 1


class Source:
    """A source that checks, each time it hears confirm(n), that the sinks committed what the
    first n records gave them (``expect(n)`` per sink)."""

    def __init__(self, n: int, sinks: list[tuple[Counting, Any]] = ()) -> None:
        self.n, self.sinks, self.confirmed = n, list(sinks), []

    def __iter__(self):
        for i in range(self.n):
            if i % 1000 == 999:
                time.sleep(0.002)  # a source that takes its time: confirmations come back meanwhile
            yield i

    def confirm(self, n: int) -> None:
        for sink, expect in self.sinks:
            assert sink.committed.value >= expect(n), f"{sink.name}: confirmed {n} but committed {sink.committed.value}"
        self.confirmed.append(n)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("guarantee", ["confirm", "track"])
def test_the_source_hears_growing_confirmations_ending_with_every_record(mode: str, guarantee: str) -> None:
    sink = Counting("sink")
    source = Source(25_500, [(sink, lambda n: n)])
    Pipeline(Add("add") | sink, mode=mode, guarantee=guarantee).consume(source)
    assert source.confirmed == sorted(set(source.confirmed))
    assert source.confirmed[-1] == 25_500 and len(source.confirmed) > 1  # heard during the run too
    assert sink.handled.value == 25_500


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_confirmation_waits_for_every_branch_and_every_worker(mode: str) -> None:
    left, right = Counting("left"), Counting("right")
    source = Source(30_000, [(left, lambda n: n), (right, lambda n: n // 2)])  # right: the even ones of 1..n
    top = Add("add", workers=2)
    top | [Add("copy") | left, Even("even", workers=2) | right]
    pipeline = Pipeline(top, mode=mode, guarantee="confirm")
    pipeline.consume(source)
    assert source.confirmed[-1] == 30_000
    assert (left.handled.value, right.handled.value) == (30_000, 15_000)
    assert pipeline.statistics().confirmed == 30_000 and not pipeline.statistics().unconfirmed


@pytest.mark.parametrize("mode", MODES)
def test_every_node_commits_after_each_batch(mode: str) -> None:
    sink = Counting("sink")
    Pipeline(Add("add") | sink, mode=mode, guarantee="confirm").consume(range(10_000))
    assert sink.commits.value >= 10  # one per batch of 1,000 (and one for the last mark)
    assert sink.committed.value == 10_000


class Boom(Node):
    def process(self, item: int) -> None:
        if item == 12_345:
            raise ValueError("boom")
        self.push(item)


class Leave(Node):
    """Stops the run at one record: SystemExit is never caught, under any guarantee."""

    def process(self, item: int) -> None:
        if item == 12_345:
            raise SystemExit(3)
        self.push(item)


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_run_says_which_records_were_not_confirmed(mode: str) -> None:
    pipeline = Pipeline(Leave("leave") | ListSink("sink"), mode=mode, guarantee="track")
    with pytest.raises(BaseException) as caught:  # SystemExit, or an ActorError from a node process
        pipeline.consume(range(50_000))
    stats = pipeline.statistics()
    assert stats.state == "failed"
    assert stats.confirmed is not None and stats.confirmed <= 12_000  # the batch holding 12,345 never completed
    assert stats.fed is not None and stats.fed >= 12_346
    assert stats.unconfirmed == range(stats.confirmed, stats.fed)
    assert caught.value.unconfirmed == stats.unconfirmed  # type: ignore[attr-defined]
    assert "not confirmed" in stats.summary


class Picky(Node):
    """Fails at every record divisible by 1,000."""

    def process(self, item: int) -> None:
        if item % 1000 == 0:
            raise ValueError(f"no multiples of 1000: {item}")
        self.push(item)


@pytest.mark.parametrize("mode", MODES)
def test_under_track_failing_records_are_kept_and_the_run_goes_on(mode: str) -> None:
    sink = ListSink("sink")
    pipeline = Pipeline(Picky("picky") | sink, mode=mode, guarantee="track")
    pipeline.consume(range(5_000))
    stats = pipeline.statistics()
    assert stats.state == "finished" and stats.failed == 5
    assert sorted(f.record for f in stats.failures) == [0, 1000, 2000, 3000, 4000]
    assert all(f.node == "picky" and f.attempts == 1 and "no multiples" in f.traceback for f in stats.failures)
    assert len(sink.items) == 4_995 and stats.confirmed == 5_000
    assert "picky 5,000 in = 4,995 handled + 5 failed" in stats.summary or mode == "sync"
    assert "5 records failed (the last 5 in statistics().failures)" in stats.summary


def test_under_confirm_failures_are_counted_not_kept() -> None:
    pipeline = Pipeline(Picky("picky") | ListSink("sink"), mode="threads", guarantee="confirm", max_retries=3)
    pipeline.consume(range(5_000))
    stats = pipeline.statistics()
    assert (stats.failed, stats.failures, stats.retried) == (5, (), 0)  # no retries either


def test_track_keeps_only_the_last_failures() -> None:
    stats_of = Pipeline(Picky("picky"), mode="threads", guarantee="track")
    stats_of.consume(range(150_000))
    stats = stats_of.statistics()
    assert stats.failed == 150 and len(stats.failures) == 100
    assert stats.failures[-1].record == 149_000


@pytest.mark.parametrize("mode", MODES)
def test_dead_lettered_records_count_as_done_with(mode: str) -> None:
    letters: list[Any] = []
    boom = Boom("boom", guarantee="replay", max_retries=1)
    counting = Counting("sink")
    run = Pipeline(boom | counting, mode=mode, guarantee="track", dead_letter=letters.append)
    source = Source(15_000, [(counting, lambda n: n - (n > 12_345))])
    run.consume(source)
    assert source.confirmed[-1] == 15_000
    assert [letter.record for letter in letters] == [12_345]


class Stamped(Node):
    """Wraps each number into a timestamped record (a branch of a chronological merge)."""

    def process(self, item: int) -> None:
        self.push({"t": item})


class CountingKeys(Counting):
    def process(self, item: Any) -> None:
        self.handled.value += 1


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_merge_passes_a_mark_only_once_what_came_before_it_left_the_window(mode: str) -> None:
    top, sink = Add("top"), CountingKeys("sink")
    left, right = Stamped("left"), Stamped("right")
    top | [left, right]
    merge_branches([left, right], key="t") | sink
    source = Source(30_000, [(sink, lambda n: 2 * n)])  # both branches: two records each
    pipeline = Pipeline(top, mode=mode, guarantee="confirm")
    pipeline.consume(source)
    assert source.confirmed[-1] == 30_000 and len(source.confirmed) > 1
    assert sink.handled.value == 60_000


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_ordered_workers_pass_marks_through_their_collector(mode: str) -> None:
    sink = Counting("sink")
    source = Source(30_000, [(sink, lambda n: n)])
    pipeline = Pipeline(Add("add", workers=3, ordered=True) | sink, mode=mode, guarantee="track")
    pipeline.consume(source)
    assert source.confirmed[-1] == 30_000 and len(source.confirmed) > 1
    assert sink.handled.value == 30_000


def test_a_merge_in_the_sync_mode_is_refused_under_acks() -> None:
    top = Add("top")
    left, right = Stamped("left"), Stamped("right")
    top | [left, right]
    merge_branches([left, right], key="t") | ListSink("sink")
    with pytest.raises(ValueError, match="in the sync mode: records cannot be acknowledged"):
        Pipeline(top, guarantee="confirm").consume(range(10))


def test_a_merge_waiting_on_a_silent_branch_does_not_hang_the_feed(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(acking_module, "WINDOW", 3_000)
    monkeypatch.setattr(acking_module, "STALL", 0.5)
    left, right, sink = Stamped("left"), Stamped("right"), ListSink("sink")
    top = Add("top")
    top | [left, right, lambda item: "left"]  # a router: the right branch stays silent
    merge_branches([left, right], key="t") | sink
    pipeline = Pipeline(top, mode="threads", guarantee="confirm")
    pipeline.consume(range(10_000))
    stats = pipeline.statistics()
    assert len(sink.items) == 10_000 and stats.confirmed == 10_000
    assert "feeding on without the window" in caplog.text


def test_a_group_by_node_is_refused_under_acks() -> None:
    class Pairs(GroupByNode):
        batch_size = 2

        def process(self, batch: list[int]) -> None:
            self.push(batch)

    with pytest.raises(ValueError, match="GroupByNode"):
        Pipeline(Pairs("pairs"), guarantee="track").consume(range(4))


def test_a_node_asking_for_track_turns_acks_on_for_the_whole_pipeline() -> None:
    sink = Counting("sink", guarantee="track")
    source = Source(3_000, [(sink, lambda n: n)])
    Pipeline(Add("add") | sink, mode="threads").consume(source)
    assert source.confirmed[-1] == 3_000


def test_the_feed_stays_within_the_window_of_the_confirmed_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acking_module, "WINDOW", 5_000)
    sink = Counting("sink")
    ahead: list[int] = []

    def records():
        for i in range(40_000):
            ahead.append(i - sink.committed.value)
            yield i

    Pipeline(Add("add") | sink, mode="threads", guarantee="confirm").consume(records())
    assert max(ahead) <= 5_000 + 1_000  # the window, and the batch being fed


class KillOnce(Node):
    """SIGKILLs its own worker process at one record, the first time (a flag file says it did)."""

    flag = ""

    def process(self, item: int) -> None:
        if item == 7_777 and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        self.push(item)


def test_a_restarted_worker_passes_the_marks_of_its_replayed_batch(tmp_path: Any) -> None:
    sink = Counting("sink")
    source = Source(20_000, [(sink, lambda n: n)])
    pipeline = Pipeline(KillOnce("kill", flag=str(tmp_path / "killed")) | sink, mode="processes",
                        guarantee="replay", state_dir=tmp_path / "state", dead_letter=[].append)
    source.resume_key = "range-20000"
    pipeline.consume(source)
    stats = pipeline.statistics()
    assert stats.restarts == 1
    assert source.confirmed[-1] == 20_000 and stats.confirmed == 20_000 and len(source.confirmed) > 1
    assert 20_000 <= sink.handled.value <= 20_000 + stats.duplicates_possible


@pytest.mark.parametrize("guarantee", ["none", "track", "replay"])
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_run_stopped_by_a_node_names_the_record_under_every_guarantee(mode: str, guarantee: str) -> None:
    pipeline = Pipeline(Leave("leave") | ListSink("sink"), mode=mode, guarantee=guarantee, dead_letter=[].append)
    with pytest.raises(BaseException) as caught:  # an ActorError (SystemExit in the node)
        pipeline.consume(range(20_000))
    assert caught.value.record == 12_345, str(caught.value)  # type: ignore[attr-defined]
