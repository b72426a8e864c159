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


def test_main_reports_rejected_rows_with_file_and_line(tmp_path):
    (tmp_path / "a.csv").write_text("date,value\n2020-01-01 00:00:00,1\n2020-01-01 00:00:02,2,extra\n")
    (tmp_path / "b.csv").write_text("date,value\n2020-01-01 00:00:01,3\n")
    done = run_main("--files", str(tmp_path / "*.csv"))
    assert done.returncode == 0, done.stderr
    assert re.search(r"^merged +2$", done.stdout, re.MULTILINE)
    assert re.search(r"^rejected \S*a\.csv:3: expected 2 fields, got 3$", done.stdout, re.MULTILINE)


def test_a_glob_that_matches_nothing_is_a_usage_error(tmp_path):
    done = run_main("--files", str(tmp_path / "*.nothing"))
    assert done.returncode == 2 and "matches no file" in done.stderr


def test_ctrl_c_stops_a_long_merge_promptly_with_no_traceback_and_no_process_left(tmp_path):
    for n in range(3):
        with (tmp_path / f"big{n}.csv").open("w") as f:
            f.write("date,value\n")
            f.writelines(f"{t:012d},{t}\n" for t in range(n, 1_500_000, 3))
    proc = subprocess.Popen([sys.executable, str(MAIN), "--files", str(tmp_path / "*.csv")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 3
    assert "Traceback" not in stderr
    gone_by = time.monotonic() + 2
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_chronopipe_console_script_runs_the_same_job():
    script = Path(sys.executable).parent / "chronopipe"
    done = subprocess.run([str(script), "merge-csv"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "merged              20,560" in done.stdout
