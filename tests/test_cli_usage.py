"""Routine mistakes on the command line: one line naming the file, the documented exit status, no traceback.

Every case runs the real command in a subprocess (main.py, or ``python -m chronopipe.cli``) on real
files made in a scratch folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronopipe.cli.outputs import AtomicOutput, UsageError, check_outputs

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "tests" / "data" / "captures" / "taps" / "ssh.client-side-half-duplex.pcap"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A scratch folder: two small CSV files, a capture, a folder, a rules file that does not parse."""
    (tmp_path / "a.csv").write_text("date,value\n2020-01-01 00:00:00,1\n2020-01-01 00:00:02,2\n")
    (tmp_path / "b.csv").write_text("date,value\n2020-01-01 00:00:01,3\n")
    shutil.copy(CAPTURE, tmp_path / "tap.pcap")
    (tmp_path / "folder").mkdir()
    (tmp_path / "broken.py").write_text("def rules(:\n")
    (tmp_path / "typo.yml").write_text("chekcs:\n  clock: false\n")
    (tmp_path / "badopt.yml").write_text("checks:\n  hosts: {alow: [10.0.0.1]}\n")
    (tmp_path / "notes.txt").write_text("not a capture at all, just words\n" * 10)
    return tmp_path


MAIN = [sys.executable, str(ROOT / "main.py")]
CLI = [sys.executable, "-m", "chronopipe.cli"]

# (command, arguments, exit status, text the one-line message must contain)
BAD = [
    (MAIN, ["--files", "missing.csv"], 2, "missing.csv: no such file"),
    (MAIN, ["--files", "folder"], 2, "folder: is a directory"),
    (MAIN, ["--files", "*.nothing"], 2, "matches no file"),
    (MAIN, ["--files", "a.csv", "b.csv", "--output", "a.csv"], 2, "a.csv: is also an input"),
    (MAIN, ["--files", "a.csv", "--output", "no/such/folder/out.csv"], 2, "no such folder"),
    (MAIN, ["--files", "a.csv", "--output", "folder"], 2, "folder: is a directory"),
    (MAIN, ["--files", "a.csv", "b.csv", "--key", "nope"], 2, "nope"),
    (MAIN, ["--direction", "sideways"], 2, "invalid choice: 'sideways'"),
    (MAIN, ["--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
    (CLI, [], 2, "give a command"),
    (CLI, ["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (CLI, ["merge"], 2, "give the captures to merge"),
    (CLI, ["merge", "missing.pcap"], 2, "missing.pcap: no such file"),
    (CLI, ["merge", "folder"], 2, "folder: is a directory"),
    (CLI, ["merge", "tap.pcap", "-w", "tap.pcap"], 2, "tap.pcap: is also an input"),
    (CLI, ["merge", "tap.pcap", "-w", "no/such/folder/out.pcapng"], 2, "no such folder"),
    (CLI, ["merge", "tap.pcap", "--offset", "tap.pcap=abc"], 2, "tap.pcap=abc"),
    (CLI, ["merge", "tap.pcap", "--offset", "other.pcap=1"], 2, "other.pcap=1"),
    (CLI, ["merge", "tap.pcap", "--reorder", "-1"], 2, "--reorder"),
    (CLI, ["merge", "tap.pcap", "--reorder", "inf"], 2, "--reorder"),
    (CLI, ["merge", "tap.pcap", "-w", "-"], 2, "standard output is not supported"),
    (CLI, ["validate", "tap.pcap", "--scl-port", "70000"], 2, "--scl-port"),
    (CLI, ["validate", "tap.pcap", "--rules", "typo.yml"], 2, "rules file typo.yml: unknown key(s) chekcs"),
    (CLI, ["validate", "tap.pcap", "--rules", "badopt.yml"], 2, "rules file badopt.yml: a check was given an option"),
    (CLI, ["merge", "--files", "a.csv"], 2, "merge-csv"),
    (CLI, ["merge-csv", "--files", "missing.csv"], 2, "missing.csv: no such file"),
    (CLI, ["merge-csv", "--files", "a.csv", "b.csv", "./a.csv"], 2, "a.csv: given twice"),
    (CLI, ["merge", "tap.pcap", "tap.pcap"], 2, "tap.pcap: given twice"),
    (CLI, ["merge-csv", "--files", "a.csv", "b.csv", "--output", "b.csv"], 2, "b.csv: is also an input"),
    (CLI, ["validate", "missing.pcap"], 2, "missing.pcap: no such file"),
    (CLI, ["validate", "folder"], 2, "folder: is a directory"),
    (CLI, ["validate", "notes.txt"], 2, "notes.txt"),
    (CLI, ["validate", "tap.pcap", "--json", "no/such/folder/r.json"], 2, "no such folder"),
    (CLI, ["validate", "tap.pcap", "--html", "tap.pcap"], 2, "tap.pcap: is also an input"),
    (CLI, ["validate", "tap.pcap", "--json", "r.txt", "--html", "r.txt"], 2, "r.txt: is also the path given"),
    (CLI, ["validate", "tap.pcap", "--rules", "missing.py"], 2, "missing.py: no such file"),
    (CLI, ["validate", "tap.pcap", "--rules", "broken.py"], 2, "broken.py"),
    (CLI, ["validate", "tap.pcap", "--check-processes", "-1"], 2, "--check-processes"),
    (CLI, ["validate", "tap.pcap", "--offset", "tap.pcap=abc"], 2, "tap.pcap=abc"),
    (CLI, ["scl", "missing.scl"], 2, "missing.scl: no such file"),
    (CLI, ["scl", "folder"], 2, "folder: is a directory"),
]


@pytest.mark.parametrize(("command", "args", "status", "says"), BAD,
                         ids=[f"{'main' if c is MAIN else 'chronopipe'} {' '.join(a)}" for c, a, _, _ in BAD])
def test_a_bad_invocation_gets_one_line_and_its_exit_status(work, command, args, status, says):
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, cwd=work)
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    assert says in done.stderr
    reasons = [line for line in done.stderr.splitlines() if line and not line.startswith(("usage:", " "))]
    assert len(reasons) == 1, done.stderr


def test_a_refused_output_leaves_the_input_untouched(work):
    before = (work / "a.csv").read_bytes()
    subprocess.run([*MAIN, "--files", "a.csv", "b.csv", "--output", "a.csv"], cwd=work, timeout=60)
    assert (work / "a.csv").read_bytes() == before


def test_an_output_linked_to_an_input_is_refused(work):
    os.link(work / "tap.pcap", work / "same-inode.pcap")
    done = subprocess.run([*CLI, "merge", "tap.pcap", "-w", "same-inode.pcap"], capture_output=True, text=True,
                          timeout=60, cwd=work)
    assert done.returncode == 2 and "is also an input" in done.stderr
    assert (work / "tap.pcap").stat().st_size == CAPTURE.stat().st_size


def test_a_symlinked_output_onto_an_input_is_refused(tmp_path):
    (tmp_path / "in.csv").write_text("date\n1\n")
    (tmp_path / "out.csv").symlink_to(tmp_path / "in.csv")
    with pytest.raises(UsageError, match="is also an input"):
        check_outputs({"--output": tmp_path / "out.csv"}, [tmp_path / "in.csv"])


def test_an_atomic_output_left_by_an_exception_leaves_nothing_behind(tmp_path):
    target = tmp_path / "merged.pcapng"
    target.write_text("the previous run's output")
    with pytest.raises(RuntimeError), AtomicOutput(target) as out:
        out.path.write_text("half written")
        raise RuntimeError("the run failed")
    assert target.read_text() == "the previous run's output"
    assert [p.name for p in tmp_path.iterdir()] == ["merged.pcapng"]


def test_an_atomic_output_keeps_the_suffix_so_writers_choose_the_format(tmp_path):
    with AtomicOutput(tmp_path / "out.pcap") as out:
        assert out.path.suffix == ".pcap" and out.path.parent == tmp_path
        out.discard()


@pytest.mark.parametrize("command", [["--version"], ["version"]])
def test_the_version_is_printed(command):
    done = subprocess.run([*CLI, *command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and re.fullmatch(r"chronopipe \d+\.\d+\.\d+\n", done.stdout)


@pytest.mark.parametrize("command", [[], ["merge"], ["merge-csv"], ["validate"], ["scl"]])
def test_help_lists_the_exit_statuses_in_plain_text(command):
    done = subprocess.run([*CLI, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "3    an actor or worker died" in done.stdout and "143  terminated (SIGTERM)" in done.stdout
    assert "``" not in done.stdout and ":class:" not in done.stdout


CONSOLE = [str(Path(sys.executable).parent / "chronopipe"), "merge-csv", "--files",
           *(str(ROOT / "examples" / "data" / n) for n in ("datatest.txt", "datatraining.txt", "datatest2.txt"))]


@pytest.mark.parametrize("command", [MAIN, CONSOLE], ids=["main.py", "chronopipe"])
@pytest.mark.parametrize("delay", [0.03, 0.06, 0.1, 0.15, 0.2, 0.25])
def test_ctrl_c_while_the_command_starts_is_exit_status_130_without_a_traceback(command, delay):
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    if proc.returncode == 0:
        pytest.skip(f"the run finished within {delay} s, before the signal")
    if "Traceback" in stderr and "chronopipe/" not in stderr and "main.py" not in stderr:
        pytest.skip("the signal came while the interpreter itself started (frozen modules), before main.py ran")
    # -2: the report was out and the interpreter was exiting when the signal came: it died of it
    assert proc.returncode in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def test_sigterm_during_a_csv_merge_leaves_no_output_and_no_temporary_file(tmp_path):
    for n in range(2):
        with (tmp_path / f"big{n}.csv").open("w") as f:
            f.write("date,value\n")
            f.writelines(f"{t:012d},{t}\n" for t in range(n, 1_200_000, 2))
    proc = subprocess.Popen([*CLI, "merge-csv", "--files", "big0.csv", "big1.csv", "--output", "out.csv"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    if proc.returncode == 0:
        pytest.skip("the merge finished before the signal")
    assert proc.returncode == 143, stderr
    assert "out.csv: not written" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big0.csv", "big1.csv"]


def test_an_output_that_is_a_device_is_written_in_place_not_replaced():
    with AtomicOutput("/dev/null") as out:
        out.path.write_text("discarded")
        out.commit()
    assert Path("/dev/null").is_char_device()
