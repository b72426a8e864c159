"""main.py: the chronological merge of the bundled UCI occupancy files, as a user runs it."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"


def run_main(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MAIN), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_main_merges_the_three_bundled_files_and_reports_each():
    done = run_main()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "datatest.txt         2,665         0" in lines
    assert "datatraining.txt     8,143         0" in lines
    assert "datatest2.txt        9,752         0" in lines
    assert "merged              20,560" in lines
    assert "first date: 2015-02-02 14:19:00" in lines and "last date:  2015-02-18 09:19:00" in lines
    assert "rows/s" in lines[-1]


def test_main_writes_every_row_in_chronological_order(tmp_path):
    merged = tmp_path / "merged.csv"
    done = run_main("--files", str(ROOT / "examples/data/data*.txt"), "--output", str(merged))
    assert done.returncode == 0, done.stderr
    with merged.open(newline="") as f:
        dates = [row["date"] for row in csv.DictReader(f)]
    assert len(dates) == 20_560 and dates == sorted(dates)


def test_main_reports_rejected_rows_with_file_and_line_and_exit_status_1(tmp_path):
    (tmp_path / "a.csv").write_text("date,value\n2020-01-01 00:00:00,1\n2020-01-01 00:00:02,2,extra\n")
    (tmp_path / "b.csv").write_text("date,value\n2020-01-01 00:00:01,3\n")
    done = run_main("--files", str(tmp_path / "*.csv"))
    assert done.returncode == 1, done.stderr
    assert re.search(r"^merged +2$", done.stdout, re.MULTILINE)
    assert re.search(r"^rejected \S*a\.csv:3: expected 2 fields, got 3$", done.stdout, re.MULTILINE)


def test_a_glob_that_matches_nothing_is_a_usage_error(tmp_path):
    done = run_main("--files", str(tmp_path / "*.nothing"))
    assert done.returncode == 2 and "matches no file" in done.stderr


def write_big_files(folder: Path, rows: int = 1_500_000) -> None:
    """Three interleaved files of ``rows`` rows in all: a merge of them lasts seconds."""
    for n in range(3):
        with (folder / f"big{n}.csv").open("w") as f:
            f.write("date,value\n")
            f.writelines(f"{t:012d},{t}\n" for t in range(n, rows, 3))


def interrupt_once_readers_run(*args: str) -> tuple[subprocess.Popen[str], str, float, list[psutil.Process]]:
    """Start main.py, send SIGINT once its three reader processes run; (process, stderr, seconds it took
    to end, the reader processes)."""
    proc = subprocess.Popen([sys.executable, str(MAIN), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        me = psutil.Process(proc.pid)
        while len(me.children()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = me.children(recursive=True)
        assert len(children) >= 3, "the reader processes did not start"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    return proc, stderr, time.monotonic() - sent, children


def assert_all_gone(children: list[psutil.Process]) -> None:
    gone_by = time.monotonic() + 2
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_ctrl_c_stops_a_long_merge_promptly_with_no_traceback_and_no_process_left(tmp_path):
    write_big_files(tmp_path)
    proc, stderr, took, children = interrupt_once_readers_run("--files", str(tmp_path / "*.csv"))
    assert proc.returncode == 130, stderr
    assert took < 3
    assert "Traceback" not in stderr
    assert_all_gone(children)


def test_ctrl_c_mid_merge_leaves_no_output_and_no_temporary_file_and_says_so(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_big_files(inputs, 3_000_000)
    merged = tmp_path / "merged.csv"
    proc, stderr, _, children = interrupt_once_readers_run("--files", str(inputs / "*.csv"), "--output", str(merged))
    assert proc.returncode == 130, stderr
    assert list(tmp_path.iterdir()) == [inputs]  # neither merged.csv nor .merged.csv.*.part.csv
    assert f"{merged}: not written" in stderr
    assert_all_gone(children)


def test_an_output_matched_by_the_input_glob_is_refused_and_left_whole(tmp_path):
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_bytes((ROOT / "examples/data/datatest.txt").read_bytes())
    done = run_main("--files", str(tmp_path / "*.csv"), "--output", str(tmp_path / "b.csv"))
    assert done.returncode == 2 and "b.csv: is also an input" in done.stderr
    assert (tmp_path / "b.csv").read_bytes() == (ROOT / "examples/data/datatest.txt").read_bytes()
    assert done.stdout == ""


def test_direction_max_on_the_ascending_bundled_files_stops_before_merging_naming_file_and_lines():
    done = run_main("--direction", "max")
    assert done.returncode == 2, done.stderr
    assert re.search(r"datatest\.txt: lines 2-4 are in ascending date order .* against --direction max",
                     done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr


def test_late_rows_are_written_beside_the_output_and_make_the_exit_status_1(tmp_path):
    (tmp_path / "a.csv").write_text("date,value\n2020-01-01 00:00:00,1\n2020-01-01 00:00:05,2\n"
                                    "2020-01-01 00:00:01,late\n")
    merged = tmp_path / "out.csv"
    done = run_main("--files", str(tmp_path / "a.csv"), "--output", str(merged))
    assert done.returncode == 1, done.stderr
    with (tmp_path / "out.late.csv").open(newline="") as f:
        assert list(csv.DictReader(f)) == [{"date": "2020-01-01 00:00:01", "value": "late",
                                            "source_file": str(tmp_path / "a.csv"), "source_line": "4"}]
    assert "rows in 3 = merged 2 + rejected 0 + late 1" in done.stdout.splitlines()


def test_main_with_typed_keys_rejects_an_empty_key_and_writes_the_rest(tmp_path):
    (tmp_path / "m3.csv").write_text("date,v\n1,a\n2,b\n,c\n4,d\n")
    done = run_main("--files", str(tmp_path / "m3.csv"), "--typed", "--output", str(tmp_path / "mx.csv"))
    assert done.returncode == 1 and done.stderr == "", done.stderr
    assert (tmp_path / "mx.csv").read_text().splitlines() == ["date,v", "1,a", "2,b", "4,d"]
    assert re.search(r"^rejected \S*m3\.csv:4: empty key 'date'$", done.stdout, re.MULTILINE)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_main_says_which_output_could_not_be_written_and_why():
    done = run_main("--output", "/dev/full")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.endswith("chronopipe merge-csv: --output /dev/full: No space left on device; not written\n")


def test_a_key_naming_no_column_is_one_line_naming_the_key_the_file_and_its_columns():
    done = run_main("--key", "Date")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert re.fullmatch(r"chronopipe merge-csv: --key Date: \S*datatest\.txt has no column 'Date' "
                        r"\(its columns: row, date, Temperature, Humidity, Light, CO2, HumidityRatio, Occupancy\)\n",
                        done.stderr)


def test_a_directory_given_as_a_file_is_said_to_be_a_directory(tmp_path):
    done = run_main("--files", str(tmp_path))
    assert done.returncode == 2 and "is a directory" in done.stderr and "no such file" not in done.stderr


def test_a_merge_longer_than_two_seconds_writes_no_progress_to_a_pipe(tmp_path):
    write_big_files(tmp_path, 3_000_000)
    done = run_main("--files", str(tmp_path / "*.csv"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_chronopipe_console_script_runs_the_same_job():
    script = Path(sys.executable).parent / "chronopipe"
    done = subprocess.run([str(script), "merge-csv", "--files", "examples/data/data*.txt"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "merged              20,560" in done.stdout


def test_the_console_script_without_files_is_a_usage_error_saying_to_give_them(tmp_path):
    # the installed library reads no file of the repository: main.py gives the bundled files
    script = Path(sys.executable).parent / "chronopipe"
    done = subprocess.run([str(script), "merge-csv"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("chronopipe merge-csv: give the CSV files to merge: chronopipe merge-csv --files PATH... "
                           "(main.py in the repository merges its bundled examples/data files)\n")


def test_main_py_gives_the_bundled_files_unless_told_which(tmp_path):
    (tmp_path / "a.csv").write_text("date,value\n2020-01-01 00:00:00,1\n")
    a = str(tmp_path / "a.csv")
    for files in (["--files", a], [f"--files={a}"], ["--fi", a]):
        done = run_main(*files)
        assert done.returncode == 0 and re.search(r"^merged +1$", done.stdout, re.MULTILINE), (files, done.stderr)
