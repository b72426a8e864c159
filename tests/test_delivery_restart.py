"""A replaying node's worker process that dies is restarted, and the batch it had taken is
replayed on the new one (issue 17; delivery/restart.py). Real processes, killed for real."""

from __future__ import annotations

import os
import signal
import time

import pytest

from chronopipe.actors import ActorError
from chronopipe.delivery import read_dead_letters, restart
from chronopipe.graph import Node, Pipeline
from processes_helper import children

pytestmark = pytest.mark.timeout(60)
N = 100_000


class KillOnce(Node):
    """Kills its own process at record ``at`` the first time (a marker file says it happened)."""

    def __init__(self, name: str, at: int, marker: str, how: str = "sigkill", **kw) -> None:
        super().__init__(name, **kw)
        self.at, self.marker, self.how = at, marker, how

    def process(self, item: int) -> None:
        if item == self.at and not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
        self.push(item)


class Poison(Node):
    """SIGKILLs its process at record ``at`` every time, noting each attempt in a file."""

    def __init__(self, name: str, at: int | set[int], attempts: str, **kw) -> None:
        super().__init__(name, **kw)
        self.at, self.attempts = at if isinstance(at, set) else {at}, attempts

    def process(self, item: int) -> None:
        if item in self.at:
            with open(self.attempts, "a") as f:
                f.write("x\n")
            os.kill(os.getpid(), signal.SIGKILL)
        self.push(item)


class DieInBegin(Node):
    def begin(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def process(self, item: int) -> None:
        self.push(item)


class Collect(Node):
    mode = "threads"

    def begin(self) -> None:
        self.got: list[int] = []

    def process(self, item: int) -> None:
        self.got.append(item)


@pytest.mark.parametrize(("how", "workers", "n"), [("sigkill", 1, 1_000_000), ("exit", 1, N), ("sigkill", 2, N)])
def test_a_killed_worker_is_restarted_and_every_record_reaches_the_sink(tmp_path, how, workers, n):
    before = {p.pid for p in children()}
    letters: list = []
    sink = Collect("sink")
    pipeline = Pipeline(KillOnce("work", n // 2 + 123, str(tmp_path / "killed"), how, workers=workers) | sink,
                        mode="processes", guarantee="replay", dead_letter=letters.append)
    started = time.monotonic()
    pipeline.consume(range(n))
    assert time.monotonic() - started < 45
    assert (tmp_path / "killed").exists()
    assert set(sink.got) == set(range(n))  # every id, after the replay
    stats = pipeline.statistics()
    duplicates = len(sink.got) - n
    assert 0 <= duplicates <= stats.duplicates_possible <= 1000  # at most one batch per kill
    assert stats.restarts == 1 and stats.nodes[0].restarts == 1 and not letters
    assert stats.nodes[0].received == n
    assert "1 worker restart" in stats.summary
    assert {p.pid for p in children()} <= before  # the dead worker and its replacement are gone


def test_one_replaying_node_in_a_none_pipeline_is_restarted(tmp_path):
    sink = Collect("sink")
    node = KillOnce("work", 3_000, str(tmp_path / "killed"), guarantee="replay")
    pipeline = Pipeline(node | sink, mode="processes", dead_letter=str(tmp_path / "dl.jsonl"))
    pipeline.consume(range(10_000))
    assert set(sink.got) == set(range(10_000))
    assert pipeline.statistics().restarts == 1


class Pass(Node):
    def process(self, item: int) -> None:
        self.push(item)


def test_a_worker_killed_after_one_of_its_writers_ended_still_ends(tmp_path):
    # two upstream workers write into the killed node's inbox; the first one's END was read by
    # the dead worker: the new one must not wait for it again (the journal counts ENDs read)
    sink = Collect("sink")
    up = Pass("up", workers=2)
    pipeline = Pipeline(up | KillOnce("work", 9_999, str(tmp_path / "killed")) | sink, mode="processes",
                        guarantee="replay", dead_letter=str(tmp_path / "dl.jsonl"))
    pipeline.consume(range(10_000))
    assert set(sink.got) == set(range(10_000))
    assert pipeline.statistics().nodes[1].restarts == 1


def test_a_record_that_kills_its_worker_every_time_is_dead_lettered(tmp_path):
    attempts = tmp_path / "attempts"
    letters: list = []
    sink = Collect("sink")
    pipeline = Pipeline(Poison("parse", 4321, str(attempts)) | sink, mode="processes", guarantee="replay",
                        max_retries=2, dead_letter=letters.append)
    pipeline.consume(range(10_000))
    assert attempts.read_text().count("x") == 3  # K = 1 + max_retries attempts, then the dead letter
    assert sorted(set(sink.got)) == [i for i in range(10_000) if i != 4321]
    [letter] = letters
    assert (letter.node, letter.attempts, letter.record) == ("parse", 3, 4321)
    assert letter.error_type.endswith("WorkerKilledError")
    assert letter.error == "killed its worker 3 times (SIGKILL)"
    stats = pipeline.statistics()
    assert stats.restarts == 3 and stats.dead_lettered == 1
    assert stats.nodes[0].received == 10_000


def test_two_poison_records_in_one_batch_each_go_to_the_dead_letters(tmp_path):
    attempts = tmp_path / "attempts"
    letters: list = []
    sink = Collect("sink")
    pipeline = Pipeline(Poison("parse", {2500, 2700}, str(attempts)) | sink, mode="processes",
                        guarantee="replay", max_retries=0, dead_letter=letters.append)
    pipeline.consume(range(5000))
    assert attempts.read_text().count("x") == 4  # K is at least 2: twice each
    assert sorted(set(sink.got)) == [i for i in range(5000) if i not in (2500, 2700)]
    assert sorted((d.record, d.attempts) for d in letters) == [(2500, 2), (2700, 2)]
    assert pipeline.statistics().dead_lettered == 2


def test_the_restart_limit_fails_the_run_naming_the_node(tmp_path, monkeypatch):
    monkeypatch.setattr(restart, "BACKOFF", (0.0, 0.01))
    before = {p.pid for p in children()}
    pipeline = Pipeline(DieInBegin("fragile") | Collect("sink"), mode="processes", guarantee="replay",
                        dead_letter=str(tmp_path / "dl.jsonl"))
    started = time.monotonic()
    with pytest.raises(ActorError) as info:
        pipeline.consume(range(1000))
    assert time.monotonic() - started < 20
    error = info.value
    assert error.actor == "fragile"
    assert "SIGKILL" in str(error)
    assert f"restarted {restart.MAX_RESTARTS} times" in str(error)
    assert f"died {restart.MAX_RESTARTS + 1} times in a row" in str(error)
    assert {p.pid for p in children()} <= before


@pytest.mark.parametrize("limit", [0, 2])
def test_the_restart_limit_is_a_pipeline_setting(tmp_path, limit):
    pipeline = Pipeline(DieInBegin("fragile") | Collect("sink"), mode="processes", guarantee="replay",
                        dead_letter=str(tmp_path / "dl.jsonl"), max_restarts=limit)
    with pytest.raises(ActorError) as info:
        pipeline.consume(range(1000))
    assert f"died {limit + 1} times in a row" in str(info.value)
    assert f"limit {limit} in a row" in str(info.value)
    assert pipeline.statistics().restarts == limit


def test_a_bad_restart_limit_is_refused():
    with pytest.raises(ValueError, match="max_restarts must be an int >= 0"):
        Pipeline(Node("a"), max_restarts=-1)


def test_guarantee_none_still_fails_the_run(tmp_path):
    pipeline = Pipeline(KillOnce("work", 500, str(tmp_path / "killed")) | Collect("sink"), mode="processes")
    with pytest.raises(ActorError) as info:
        pipeline.consume(range(5000))
    assert info.value.actor == "work"
    assert "SIGKILL" in str(info.value)
    assert "restart" not in str(info.value)


class TwiceKilledFanOut(Node):
    """Pushes each record twice; SIGKILLs its process at 2,100, then at 2,700 (while the new
    worker replays that batch record by record and has sent part of its outputs on)."""

    marker = ""

    def process(self, item: int) -> None:
        for at, marker in ((2100, self.marker + ".1"), (2700, self.marker + ".2")):
            if self.marker and item == at and not os.path.exists(marker):
                with open(marker, "w"):
                    pass
                os.kill(os.getpid(), signal.SIGKILL)
        self.push(item)
        self.push(item)


@pytest.mark.parametrize("kill", ["once", "twice"])
def test_a_killed_ordered_worker_is_restarted_and_the_order_is_kept(tmp_path, kill):
    marker = str(tmp_path / "killed")
    if kill == "once":
        with open(marker + ".2", "w"):
            pass
    node = TwiceKilledFanOut("work", marker=marker, workers=2, ordered=True)
    pipeline = Pipeline(node | Collect("sink"), mode="processes", guarantee="replay",
                        dead_letter=str(tmp_path / "dl.jsonl"))
    pipeline.consume(range(5000))
    got = pipeline["sink"].got
    assert got == sorted(got)  # in the order of the input, as ordered=True promises
    assert set(got) == set(range(5000))
    stats = pipeline.statistics()
    assert stats.restarts == (1 if kill == "once" else 2)
    assert len(got) - 10_000 <= stats.duplicates_possible


class EverySeventh(Node):
    def process(self, item: int) -> None:
        if item % 7 == 0:
            raise ValueError(f"bad {item}")
        self.push(item)


@pytest.mark.parametrize("workers", [1, 3])
def test_a_worker_killed_while_replaying_dead_letters_goes_on_after_what_it_had_sent(tmp_path, workers):
    letters = tmp_path / "letters.jsonl"
    Pipeline(EverySeventh("work") | Collect("first"), mode="processes", guarantee="replay", max_retries=0,
             dead_letter=str(letters)).consume(range(N))
    bad = set(range(0, N, 7))
    sink = Collect("sink")
    fixed = KillOnce("work", 50_001, str(tmp_path / "killed"), workers=workers)
    pipeline = Pipeline(fixed | sink, mode="processes", guarantee="replay")
    pipeline.replay(str(letters), dead_letter=str(tmp_path / "again.jsonl"))
    assert (tmp_path / "killed").exists() and set(sink.got) == bad
    stats = pipeline.statistics()
    assert 0 <= len(sink.got) - len(bad) <= stats.duplicates_possible <= 1000  # not every letter again
    assert stats.restarts == 1 and stats.nodes[0].received == len(bad)


class TwiceKilledDoubler(Node):
    """Pushes each record and a half step after it; SIGKILLs its process at 5,100 and then at
    5,800 (one marker file each): the second death comes while the new worker replays the batch
    record by record, after it sent on 1,000 of its outputs, which the third worker sends again."""

    marker = ""

    def process(self, record: dict) -> None:
        for at, marker in ((5100, self.marker + ".1"), (5800, self.marker + ".2")):
            if self.marker and record["t"] == at and not os.path.exists(marker):
                with open(marker, "w"):
                    pass
                os.kill(os.getpid(), signal.SIGKILL)
        self.push(record)
        self.push({"t": record["t"] + 0.5})


def test_a_merge_after_a_restarted_branch_drops_its_repeats_and_stays_in_order(tmp_path):
    from chronopipe.graph import merge_branches
    from chronopipe.testing import ListSink

    top, sink = _Pass("top"), ListSink("sink")
    left, right = TwiceKilledDoubler("left", marker=str(tmp_path / "k")), TwiceKilledDoubler("right")
    top | [left, right]
    merge_branches([left, right], key="t") | sink
    pipeline = Pipeline(top, mode="processes", guarantee="replay", dead_letter=[].append)
    pipeline.consume([{"t": i} for i in range(20_000)])
    keys = [r["t"] for r in sink.items]
    assert keys == sorted(keys)
    assert set(keys) == {i / 2 for i in range(40_000)}
    stats = pipeline.statistics()
    merge = next(n for n in stats.nodes if n.name == "sink")
    assert stats.restarts == 2 and merge.dropped > 0
    assert len(keys) - 80_000 <= stats.duplicates_possible  # (both branches push every key)
    assert "dropped as repeats" in stats.summary


class _Pass(Node):
    def process(self, item):
        self.push(item)


class DieInEndOnce(Node):
    """Pushes its count in end(), having SIGKILLed its process there the first time."""

    marker = ""

    def begin(self) -> None:
        self.n = 0

    def process(self, item: int) -> None:
        self.n += 1
        self.push(item)

    def end(self) -> None:
        if not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os.kill(os.getpid(), signal.SIGKILL)
        self.push(("count", self.n))


def test_a_worker_killed_in_end_is_restarted_and_ends_again(tmp_path):
    pipeline = Pipeline(DieInEndOnce("work", marker=str(tmp_path / "killed")) | Collect("sink"), mode="processes",
                        guarantee="replay", dead_letter=str(tmp_path / "dl.jsonl"))
    pipeline.consume(range(5000))
    got = pipeline["sink"].got
    assert sorted(x for x in got if isinstance(x, int)) == list(range(5000))
    assert [x for x in got if isinstance(x, tuple)] == [("count", 0)]  # the new worker's: it saw no records
    assert pipeline.statistics().restarts == 1


class BufferingSink(Node):
    """Writes the records it got to a file only in commit() (as a sink loading batches into a
    store does); SIGKILLs its process at record 2,500 the first time."""

    path = ""
    marker = ""

    def begin(self) -> None:
        self.file = open(self.path, "a")  # noqa: SIM115
        self.pending: list[str] = []

    def process(self, item: int) -> None:
        if item == 2500 and not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os.kill(os.getpid(), signal.SIGKILL)
        self.pending.append(f"{item}\n")

    def commit(self) -> None:
        self.file.writelines(self.pending)
        self.file.flush()
        self.pending.clear()

    def end(self) -> None:
        self.commit()
        self.file.close()


@pytest.mark.parametrize("guarantee", ["replay", "replay+state"])
def test_a_sink_worker_commits_each_batch_before_it_is_acknowledged(tmp_path, guarantee):
    out = tmp_path / "out.txt"
    sink = BufferingSink("sink", path=str(out), marker=str(tmp_path / "killed"))
    state = {"state_dir": tmp_path / "state"} if guarantee.endswith("state") else {}

    class Rows(list):
        resume_key = "rows"

    pipeline = Pipeline(_Pass("pass") | sink, mode="processes", guarantee="replay",
                        dead_letter=str(tmp_path / "dl.jsonl"), **state)
    pipeline.consume(Rows(range(5000)))
    assert pipeline.statistics().restarts == 1
    assert {int(line) for line in out.read_text().split()} == set(range(5000))  # the acknowledged batches too


class FailsSomeThenDies(Node):
    """Every 7th record raises; the process SIGKILLs itself at 3,500 the first time, after
    dead-lettering the 7th records of its batch before it."""

    marker = ""

    def process(self, item: int) -> None:
        if item == 3500 and not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os.kill(os.getpid(), signal.SIGKILL)
        if item % 7 == 0:
            raise ValueError(f"bad {item}")
        self.push(item)


def test_a_restarted_worker_does_not_dead_letter_again_what_its_predecessor_did(tmp_path):
    letters = tmp_path / "dl.jsonl"
    pipeline = Pipeline(FailsSomeThenDies("work", marker=str(tmp_path / "killed")) | Collect("sink"),
                        mode="processes", guarantee="replay", max_retries=0, dead_letter=str(letters))
    pipeline.consume(range(5000))
    failing = [i for i in range(5000) if i % 7 == 0]
    records = [d.record for d in read_dead_letters(letters)]
    assert sorted(records) == failing  # each once
    stats = pipeline.statistics()
    assert stats.restarts == 1 and stats.dead_lettered == len(failing)
    assert set(pipeline["sink"].got) == set(range(5000)) - set(failing)
