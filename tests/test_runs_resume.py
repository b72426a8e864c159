"""A rerun resumes: the batches an earlier run staged are cut again at the same rows and must
come out the same, so no row is staged or loaded twice; an input that changed fails the run."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronopipe.cli import main

RUN = """\
runners:
  - name: rows
    variety: {variety}
    type: consumer
    {option}: {input}
{limit}    stage: {{type: {stage}, path: stage}}
    batch_configuration: {{size: 10}}
  - name: out
    variety: csv
    type: producer
    depends_on: [rows]
    path: out
"""


def write_run(folder: Path, *, variety: str = "csv", stage: str = "parquet", limit: int | None = None) -> Path:
    option, name = ("path", "in.csv") if variety == "csv" else ("filename", "in.txt")
    config = folder / "run.yml"
    config.write_text(RUN.format(variety=variety, option=option, input=name, stage=stage,
                                 limit=f"    limit: {limit}\n" if limit is not None else ""))
    return config


def write_csv(folder: Path, ids: range) -> None:
    (folder / "in.csv").write_text("id,name\n" + "".join(f"{i},row {i}\n" for i in ids))


def loaded(folder: Path) -> list[str]:
    """Every row the csv sink wrote, first field, in no particular order."""
    rows = []
    for file in sorted((folder / "out").glob("*.csv")):
        with open(file, newline="") as f:
            rows += [row[0] for row in list(csv.reader(f))[1:]]
    return rows


@pytest.mark.parametrize("stage", ["parquet", "local"])
def test_rows_appended_to_a_csv_between_runs_are_loaded_and_the_others_not_again(tmp_path, stage):
    write_csv(tmp_path, range(12))
    config = write_run(tmp_path, stage=stage)
    assert main(["run", str(config)]) == 0
    write_csv(tmp_path, range(15))
    assert main(["run", str(config)]) == 0
    assert sorted(loaded(tmp_path), key=int) == [str(i) for i in range(15)]


@pytest.mark.parametrize("variety", ["csv", "file"])
def test_a_run_stopped_mid_batch_then_run_again_loads_every_row_once(tmp_path, variety):
    # the first run stops after 25 rows (its last batch has 5); the rerun cuts its third batch at
    # those 5 rows again, then goes on where it stopped
    if variety == "csv":
        write_csv(tmp_path, range(100))
    else:
        (tmp_path / "in.txt").write_text("".join(f"{i}\n" for i in range(100)))
    assert main(["run", str(write_run(tmp_path, variety=variety, limit=25))]) == 0
    assert len(loaded(tmp_path)) == 25
    assert main(["run", str(write_run(tmp_path, variety=variety))]) == 0
    rows = loaded(tmp_path)
    assert len(rows) == len(set(rows)) == 100


def test_a_csv_whose_rows_changed_since_an_earlier_run_fails_it_in_one_line_exit_2(tmp_path, capsys):
    write_csv(tmp_path, range(30))
    config = write_run(tmp_path)
    assert main(["run", str(config)]) == 0
    (tmp_path / "in.csv").write_text((tmp_path / "in.csv").read_text().replace("row 12", "row twelve"))
    capsys.readouterr()
    assert main(["run", str(config)]) == 2  # the input is not what it was: nothing more is loaded
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the input changed since an earlier run staged it (batch 1, 10 rows, differs)" in err[0]
    assert len(loaded(tmp_path)) == 30  # nothing more was loaded


def test_a_producer_on_its_first_run_skips_nothing(tmp_path, capsys):
    write_csv(tmp_path, range(45))
    assert main(["run", str(write_run(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    producer = next(line for line in out if line.startswith("out "))
    assert producer.split()[3:6] == ["45", "5", "0"]  # rows, batches, skipped


STALLING = """\
import time

def stall():
    yield {"i": 0}
    yield {"i": 1}
    time.sleep(600)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_ctrl_c_stops_a_generator_blocked_in_next_at_once_and_stages_what_it_gave(tmp_path, mode):
    (tmp_path / "stalling.py").write_text(STALLING)
    (tmp_path / "run.yml").write_text(
        "runners:\n  - name: gen\n    variety: generator\n    type: consumer\n    target: 'stalling:stall'\n"
        f"    mode: {mode}\n    stage: {{type: local, path: stage}}\n  - name: out\n    variety: csv\n"
        "    type: producer\n    depends_on: [gen]\n    path: out\n")
    run = subprocess.Popen([sys.executable, "-m", "chronopipe", "run", "run.yml"], cwd=tmp_path,
                           env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # it has read both records and waits inside the generator
        began = time.monotonic()
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, err
    assert time.monotonic() - began < 5.0
    assert "gen: rows in 2 = staged 2" in out
    assert sorted(loaded(tmp_path)) == ["0", "1"]


GENERATED = """\
def rows(count):
    for i in range(count):
        yield {"id": i}
"""


def write_generated(folder: Path, *, limit: int | None = None, seconds: float | None = None) -> Path:
    (folder / "generated.py").write_text(GENERATED)
    config = folder / "gen.yml"
    timing = f", seconds: {seconds}" if seconds is not None else ""
    config.write_text(
        "runners:\n  - name: rows\n    variety: generator\n    type: consumer\n    target: 'generated:rows'\n"
        f"    args: [60]\n{f'    limit: {limit}' + chr(10) if limit is not None else ''}"
        f"    stage: {{type: local, path: stage}}\n    batch_configuration: {{size: 10{timing}}}\n"
        "  - name: out\n    variety: csv\n    type: producer\n    depends_on: [rows]\n    path: out\n")
    return config


@pytest.fixture
def importable(tmp_path):
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("generated", None)


def test_a_generator_stopped_while_it_is_replayed_stages_nothing_twice(importable):
    # run 1 stages 10 + 10 + 5 rows; run 2 stops at row 15, inside the second staged batch;
    # run 3 reads everything: every row once
    for limit in (25, 15, None):
        assert main(["run", str(write_generated(importable, limit=limit))]) == 0
    rows = loaded(importable)
    assert sorted(rows, key=int) == [str(i) for i in range(60)]


def test_a_generator_with_seconds_run_again_loads_nothing_again(importable):
    for _ in range(3):
        assert main(["run", str(write_generated(importable, seconds=0.001))]) == 0
    assert sorted(loaded(importable), key=int) == [str(i) for i in range(60)]


def test_a_csv_cut_shorter_than_what_was_staged_fails_in_one_line_exit_2(tmp_path, capsys):
    write_csv(tmp_path, range(30))
    config = write_run(tmp_path)
    assert main(["run", str(config)]) == 0
    write_csv(tmp_path, range(20))  # cut at a batch's end
    capsys.readouterr()
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the input changed since an earlier run staged it (it ends before batch 2)" in err


def test_rows_appended_to_a_csv_keep_the_types_staged_and_what_does_not_fit_is_rejected(tmp_path, capsys):
    # the first run staged x as integers; appended rows with x = 500.5 are rejects (named), the
    # integers appended are loaded, and nothing staged before is loaded again
    (tmp_path / "in.csv").write_text("id,name\n" + "".join(f"{i},{i}\n" for i in range(20)))
    config = write_run(tmp_path)
    assert main(["run", str(config)]) == 0
    with open(tmp_path / "in.csv", "a") as f:
        f.write("20,20.5\n21,21\n")
    capsys.readouterr()
    assert main(["run", str(config)]) == 1
    assert "in.csv:22: column name: '20.5' is not" in capsys.readouterr().err
    assert sorted(loaded(tmp_path), key=int) == [str(i) for i in range(20)] + ["21"]


def test_a_csv_run_again_with_another_batch_size_loads_nothing_again(tmp_path):
    # x is inferred a float from the first 10 rows; from the first 4 alone it would be an integer
    (tmp_path / "in.csv").write_text("id,x\n" + "".join(f"{i},{i if i < 5 else i + 0.5}\n" for i in range(40)))
    config = write_run(tmp_path)
    assert main(["run", str(config)]) == 0
    config.write_text(config.read_text().replace("size: 10", "size: 4"))
    assert main(["run", str(config)]) == 0
    assert sorted(loaded(tmp_path), key=int) == [str(i) for i in range(40)]
