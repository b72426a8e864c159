"""Chaos (issue 17): worker processes of a replaying pipeline SIGKILLed at random during a run.

A CI-sized tests/scripts/chaos_run.py: 3 runs of 2,000,000 records (about 2 s each here) with a
random live worker of ``parse`` or ``map`` SIGKILLed every 0.2 to 0.6 s, each run in a forked
process watched for 30 s (a hang fails the test instead of holding it). The issue's figure
(20 runs of 10,000,000, a kill every 0.5 to 2 s) is the script's
``--records 10000000 --runs 20``.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import signal
import struct
import sys
from pathlib import Path

import pytest

from chronopipe.channels.pipe import ProcessChannel, framed
from chronopipe.delivery.restart import Journal
from chronopipe.graph import Node, Pipeline
from chronopipe.graph.wiring import LIMIT
from processes_helper import children

_SCRIPT = Path(__file__).parent / "scripts" / "chaos_run.py"
_spec = importlib.util.spec_from_file_location("chaos_run", _SCRIPT)
assert _spec is not None and _spec.loader is not None
chaos_run = importlib.util.module_from_spec(_spec)
sys.modules["chaos_run"] = chaos_run
_spec.loader.exec_module(chaos_run)

RECORDS = 2_000_000
RUNS = 3
EVERY = (0.2, 0.6)


@pytest.mark.timeout(120)
def test_random_kills_lose_nothing_and_duplicate_at_most_a_batch_each():
    kills = 0
    for run in range(RUNS):
        # in a forked process watched for 30 s: a hang is a result, not a stuck test
        # kills stop once parse has every record: a worker killed while it closes its outputs is
        # not restarted (docs/delivery.md), the one window this test leaves out
        result = chaos_run.run_watched(RECORDS, 1700 + run, EVERY, deadline=30.0, kill_for=10.0, spare_end=True)
        assert not result["hang"], result
        assert result["error"] is None, result
        assert result["lost"] == 0, result
        assert result["dead_letters"] == 0, result
        # at most one batch per kill, and never more than the run itself says it may have sent twice
        assert 0 <= result["duplicates"] <= result["kills"] * LIMIT, result
        assert result["duplicates"] <= result["duplicates_possible"], result
        # every kill landed on a replaying worker and was followed by exactly one restart
        assert result["restarts"] == result["kills"], result
        assert result["left_behind"] == [], "a node process outlived its run"
        kills += result["kills"]
    assert kills >= RUNS, f"only {kills} kills landed in {RUNS} runs: the chaos was too quiet to say anything"


@pytest.mark.timeout(60)
def test_one_kill_in_process_is_restarted_and_leaves_no_process(tmp_path):
    # in this process: nothing of the run is left among our children afterwards
    before = {p.pid for p in children()}
    result = chaos_run.chaos_once(1_000_000, seed=5, every=(0.3, 0.3), folder=str(tmp_path), kill_for=0.35)
    assert result["error"] is None and result["lost"] == 0, result
    assert result["restarts"] == result["kills"] and result["duplicates"] <= result["kills"] * LIMIT, result
    assert result["left_behind"] == [] and {p.pid for p in children()} <= before


def test_the_script_reports_one_line_per_run_and_a_total(capsys):
    assert chaos_run.main(["--records", "20000", "--runs", "2", "--every", "5", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    import json

    runs = [json.loads(line) for line in lines[:2]]
    total = json.loads(lines[2])
    assert [r["run"] for r in runs] == [1, 2] and all(r["ok"] and not r["hang"] for r in runs)
    assert {k: total[k] for k in ("lost", "kills", "runs", "hangs", "failures")} == \
        {"lost": 0, "kills": 0, "runs": 2, "hangs": 0, "failures": 0}


class KillTwice(Node):
    """SIGKILLs its process at record ``at`` the first time, then its successor in begin()."""

    at = 0
    folder = ""

    def begin(self) -> None:
        first, second = Path(self.folder, "first"), Path(self.folder, "second")
        if first.exists() and not second.exists():
            second.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    def process(self, item: int) -> None:
        first = Path(self.folder, "first")
        if item == self.at and not first.exists():
            first.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        self.push(item)


class Collect(Node):
    mode = "threads"

    def begin(self) -> None:
        self.got: list[int] = []

    def process(self, item: int) -> None:
        self.got.append(item)


@pytest.mark.timeout(60)
def test_a_batch_survives_a_successor_killed_before_it_took_the_batch(tmp_path):
    # the chaos run's first finding: a worker killed in its begin() (before it journaled the batch
    # its predecessor died in) lost that batch, the journal being empty at its death
    sink = Collect("sink")
    pipeline = Pipeline(KillTwice("work", at=5_500, folder=str(tmp_path)) | sink, mode="processes",
                        guarantee="replay", dead_letter=str(tmp_path / "dl.jsonl"))
    pipeline.consume(range(20_000))
    assert (tmp_path / "second").exists()
    assert set(sink.got) == set(range(20_000))
    stats = pipeline.statistics()
    assert stats.restarts == 2 and len(sink.got) - 20_000 <= stats.duplicates_possible <= LIMIT


# -- the pipe windows the chaos runs found (channels/pipe.py, delivery/restart.py) --------------
@pytest.mark.timeout(30)
def test_a_writer_killed_mid_frame_holding_the_lock_blocks_nobody_and_its_half_frame_is_dropped():
    ch = ProcessChannel(name="shared", writers=2, batch_size=1000)
    pid = os.fork()
    if pid == 0:  # a writer that takes the turn, writes half a frame and is SIGKILLed
        ch._send_lock.acquire(1.0)
        payload = pickle.dumps(list(range(5000)), 5)
        frame = struct.pack("!i", 16 + len(payload)) + framed(payload)
        os.write(ch._writer.fileno(), frame[: len(frame) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    ch.put_many(list(range(1000)))  # the other writer: its turn comes at once
    assert ch.get_batch(5) == list(range(1000))
    assert 0 < ch.damaged < len(pickle.dumps(list(range(5000)), 5))  # the half frame, dropped


@pytest.mark.timeout(30)
def test_a_journaled_reader_killed_inside_a_read_leaves_the_frame_to_its_successor():
    ch = ProcessChannel(name="inbox")
    ch.put_many(list(range(1000)))
    journal = Journal(kills=2)
    # what a kill in the middle of receive() leaves: part of the frame moved into the journal
    assert os.splice(ch._reader.fileno(), journal._fd, 100, offset_dst=0) == 100
    assert journal.died(-9) == 0.0 and journal.resume is None  # nothing whole to replay yet
    ch.tap = journal.took  # the next worker's first read completes that frame from the pipe
    assert ch.get_batch(5) == list(range(1000))
    assert journal.died(-9) is not None and journal.resume.records == list(range(1000))  # journaled whole
