"""Resume after the main process is killed (issue 17): Pipeline(state_dir=...), kill -9, rerun.

The run is tests/scripts/resume_run.py (a FileReader over JSON lines, parse, two worker
processes, a sink appending ids to a file, flushed at every commit()). The caller is SIGKILLed
once the sink wrote 10%, 50% or 90% of the records; its node processes must go with it; the
rerun with the same state folder must finish, and every id must be in the output, duplicates
within the in-flight window the rerun reports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from chronopipe.delivery import StateError, StateFile
from chronopipe.graph import Node, Pipeline
from chronopipe.graph.acking import WINDOW
from chronopipe.testing import ListSink

SCRIPT = Path(__file__).parent / "scripts" / "resume_run.py"
RECORDS = 400_000


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "records.jsonl"
    with path.open("w") as f:
        f.writelines(json.dumps({"id": i}) + "\n" for i in range(RECORDS))
    return path


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, psutil.Error, PermissionError):
            continue
    return found


def _run(jsonl: Path, state: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(jsonl), str(state), str(out)], capture_output=True,
                          text=True, timeout=90)


def _kill_at(jsonl: Path, state: Path, out: Path, fraction: float, everything: bool = False) -> None:
    """SIGKILL the run's main process (``everything``: all its processes at once) when the sink
    wrote ``fraction`` of the records; wait until no process of the run is left."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(jsonl), str(state), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while _lines(out) < fraction * RECORDS:
        assert proc.poll() is None, f"the run ended before {fraction:.0%}: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.002)
    if everything:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stderr.close()
    deadline = time.monotonic() + 10
    while (left := _session_processes(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes of the killed run left behind: {[p.pid for p in left]}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("fraction", "everything"), [(0.1, False), (0.5, False), (0.9, False), (0.5, True)],
                         ids=["main-at-10%", "main-at-50%", "main-at-90%", "all-at-50%"])
def test_a_run_whose_main_process_is_killed_is_finished_by_a_rerun_without_loss(
        jsonl: Path, tmp_path: Path, fraction: float, everything: bool) -> None:
    state, out = tmp_path / "state", tmp_path / "ids.txt"
    _kill_at(jsonl, state, out, fraction, everything)
    saved = json.loads(next(state.glob("*.state.json")).read_text())
    done = _run(jsonl, state, out)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    ids = Counter(int(line) for line in out.read_text().split())
    assert set(ids) == set(range(RECORDS)), f"lost: {sorted(set(range(RECORDS)) - set(ids))[:10]}"
    duplicates = sum(ids.values()) - RECORDS
    again = re.search(r"(?:resumed after record ([\d,]+) )?\(up to ([\d,]+) records handled twice\)", summary)
    assert again, summary
    resumed, bound = (int((g or "0").replace(",", "")) for g in again.groups())
    assert resumed == saved["confirmed"]
    assert duplicates <= bound <= WINDOW
    assert f"{RECORDS:,} fed, {RECORDS:,} confirmed" in summary


def test_a_finished_run_is_not_fed_again(jsonl: Path, tmp_path: Path) -> None:
    state, out = tmp_path / "state", tmp_path / "ids.txt"
    assert _run(jsonl, state, out).returncode == 0
    again = _run(jsonl, state, out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _lines(out) == RECORDS
    assert f"resumed after record {RECORDS:,} (up to 0 records handled twice)" in again.stdout


def test_records_appended_to_a_finished_input_are_all_that_a_rerun_feeds(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("".join(f"{i}\n" for i in range(2500)))
    sink = ListSink("sink")
    pipeline = Pipeline(_Int("int") | sink, mode="threads", state_dir=tmp_path / "state")
    with source.open() as f:
        pipeline.consume(f)
    with source.open("a") as f:
        f.write("".join(f"{i}\n" for i in range(2500, 2600)))
    del sink.items[:]
    with source.open() as f:
        pipeline.consume(f)
    assert sink.items == list(range(2500, 2600))


def test_a_state_of_another_source_is_refused_before_anything_runs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("1\n2\n")
    b.write_text("3\n")
    pipeline = Pipeline(_Int("int") | ListSink("sink"), state_dir=tmp_path / "state")
    with a.open() as f:
        pipeline.consume(f)
    with b.open() as f, pytest.raises(StateError, match="the saved state is of source"):
        pipeline.consume(f)


def test_an_input_whose_beginning_changed_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("1\n2\n3\n")
    pipeline = Pipeline(_Int("int") | ListSink("sink"), state_dir=tmp_path / "state")
    with source.open() as f:
        pipeline.consume(f)
    source.write_text("9\n2\n3\n4\n")
    with source.open() as f, pytest.raises(StateError, match="changed since the state was saved"):
        pipeline.consume(f)


def test_a_source_that_names_no_file_cannot_be_resumed(tmp_path: Path) -> None:
    pipeline = Pipeline(_Int("int"), state_dir=tmp_path)
    with pytest.raises(StateError, match="resume_key"):
        pipeline.consume(["1"])
    assert not list(tmp_path.iterdir())


def test_a_resume_key_makes_any_source_resumable(tmp_path: Path) -> None:
    class Rows(list):
        resume_key = "rows-2026-12-06"

    sink = ListSink("sink")
    pipeline = Pipeline(_Int("int") | sink, mode="processes", state_dir=tmp_path)
    pipeline.consume(Rows(str(i) for i in range(1500)))
    state = StateFile(tmp_path, pipeline.name).load()
    assert state is not None and state["confirmed"] == 1500 and state["finished"] is True
    del sink.items[:]
    pipeline.consume(Rows(str(i) for i in range(1800)))
    assert sink.items == list(range(1500, 1800))


def test_a_torn_state_file_is_a_one_line_error(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("1\n")
    (tmp_path / "int.state.json").write_text('{"v": 1, "confi')
    pipeline = Pipeline(_Int("int"), state_dir=tmp_path)
    with source.open() as f, pytest.raises(StateError, match="not a chronopipe state file"):
        pipeline.consume(f)


class _Int(Node):
    def process(self, line: str) -> None:
        self.push(int(line))


def test_a_source_shorter_than_the_state_is_refused_before_any_node_runs(tmp_path: Path) -> None:
    import psutil

    class Rows(list):
        resume_key = "rows"

    pipeline = Pipeline(_Int("int") | ListSink("sink"), mode="processes", state_dir=tmp_path)
    pipeline.consume(Rows(str(i) for i in range(5000)))
    before = StateFile(tmp_path, pipeline.name).load()
    with pytest.raises(StateError, match="confirmed 5,000 records but the source has 100"):
        pipeline.consume(Rows(str(i) for i in range(100)))
    assert not psutil.Process().children(recursive=True)
    assert StateFile(tmp_path, pipeline.name).load() == before  # untouched


def test_pipelines_whose_names_differ_only_in_odd_characters_keep_apart_states(tmp_path: Path) -> None:
    assert len({StateFile(tmp_path, name).path for name in ("a/b", "a_b", "a b")}) == 3


def test_a_second_run_on_the_same_state_at_the_same_time_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("1\n2\n")
    pipeline = Pipeline(_Int("int"), state_dir=tmp_path / "state")
    other = StateFile(tmp_path / "state", pipeline.name)
    other.lock()  # as another run holds it
    try:
        with source.open() as f, pytest.raises(StateError, match="another run of this pipeline uses this state"):
            pipeline.consume(f)
    finally:
        other.unlock()
    with source.open() as f:
        pipeline.consume(f)  # free again


def test_a_last_line_without_newline_that_grew_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("1\n2\n3")
    sink = ListSink("sink")
    pipeline = Pipeline(_Int("int") | sink, state_dir=tmp_path / "state")
    with source.open() as f:
        pipeline.consume(f)
    with source.open("a") as f:
        f.write("4\n5\n")  # "3" becomes "34"
    with source.open() as f, pytest.raises(StateError, match="had no newline"):
        pipeline.consume(f)


def test_a_file_rewritten_beyond_its_first_64_kib_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    lines = [f"{i:07d}\n" for i in range(20_000)]  # 160 KB
    source.write_text("".join(lines))
    pipeline = Pipeline(_Int("int"), state_dir=tmp_path / "state")
    with source.open() as f:
        pipeline.consume(f)
    lines[-1] = "9999999\n"  # the same size and beginning, another end
    source.write_text("".join(lines) + "1\n")
    with source.open() as f, pytest.raises(StateError, match="changed since the state was saved"):
        pipeline.consume(f)


def test_an_open_file_is_known_by_what_it_reads_not_by_its_relative_name(tmp_path: Path, monkeypatch) -> None:
    from chronopipe.delivery import source_identity

    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "r.txt").write_text("1\n")
    (tmp_path / "y" / "r.txt").write_text("2\n")
    monkeypatch.chdir(tmp_path / "x")
    with open("r.txt") as f:
        monkeypatch.chdir(tmp_path / "y")
        assert source_identity(f)["source"] == str((tmp_path / "x" / "r.txt").resolve())


@pytest.mark.parametrize("bad", ["", 42])
def test_a_state_dir_that_is_not_a_path_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="state_dir must be a folder's path"):
        Pipeline(_Int("int"), state_dir=bad)


def test_a_state_dir_that_cannot_be_written_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    source = tmp_path / "in.txt"
    source.write_text("1\n")
    with source.open() as f, pytest.raises(StateError, match="cannot (keep a state there|read the state file)"):
        Pipeline(_Int("int"), state_dir=blocker / "state").consume(f)
