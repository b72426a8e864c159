"""``chronopipe dead-letters FILE``: one line per letter and a count; exit 0 none, 1 some, 2 a bad file.

``--replay PIPELINE``: the real command (a subprocess) replays a real file through a pipeline module
written to tmp_path, fixed by a flag file; exit 0 all handled, 1 some dead-lettered again, 2 a
usage error, 3 a failed run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chronopipe.cli import main
from chronopipe.delivery import DeadLetter, read_dead_letters
from chronopipe.graph import Node, Pipeline

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-c", "import sys; from chronopipe.cli import main; sys.exit(main())", "dead-letters"]


class Parse(Node):
    def process(self, item):
        self.push(int(item))


@pytest.fixture
def letters_file(tmp_path, pipeline_mode):
    """The dead letters of a real run (in each pipeline mode): two bad rows of node 'parse'."""
    path = tmp_path / "dl.jsonl"
    Pipeline(Parse("parse"), mode=pipeline_mode, name="orders", guarantee="replay", max_retries=2,
             dead_letter=path).consume(["1", "x", "2", "3;4"])
    return path


def run(capsys, *args):
    status = main(["dead-letters", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def test_it_lists_node_attempts_error_and_record_then_a_count_with_exit_1(capsys, letters_file):
    status, out, err = run(capsys, letters_file)
    assert (status, err) == (1, [])
    assert out == [
        """1  parse  3 attempts  ValueError: invalid literal for int() with base 10: 'x'  record "x\"""",
        """2  parse  3 attempts  ValueError: invalid literal for int() with base 10: '3;4'  record "3;4\"""",
        f"2 dead letters in {letters_file}: parse 2",
    ]


def test_verbose_adds_the_pipeline_the_time_and_the_traceback(capsys, letters_file):
    status, out, _ = run(capsys, letters_file, "--verbose")
    assert status == 1 and out[1].startswith("   pipeline 'orders', given up at ")
    assert "   | Traceback (most recent call last):" in out
    assert "   | ValueError: invalid literal for int() with base 10: 'x'" in out


def test_an_empty_file_is_no_dead_letters_and_exit_0(capsys, tmp_path):
    (tmp_path / "dl.jsonl").write_text("")
    assert run(capsys, tmp_path / "dl.jsonl") == (0, [f"0 dead letters in {tmp_path / 'dl.jsonl'}"], [])


def test_a_missing_file_is_one_line_and_exit_2(capsys, tmp_path):
    assert run(capsys, tmp_path / "none.jsonl") == (
        2, [], [f"chronopipe dead-letters: {tmp_path / 'none.jsonl'}: no such file"])


def test_a_directory_is_one_line_and_exit_2(capsys, tmp_path):
    assert run(capsys, tmp_path) == (2, [], [f"chronopipe dead-letters: {tmp_path}: is a directory, not a file"])


@pytest.mark.parametrize(("content", "reason"), [
    (b"{not json\n", "2: not JSON (Expecting property name enclosed in double quotes, column 2)"),
    (b'{"a": 1}\n', "2: not a chronopipe dead letter (no pipeline, node, attempts, error_type, error, traceback, "
                    "timestamp, record)"),
    (b'[1, 2]\n', "2: not a chronopipe dead letter (no pipeline, node, attempts, error_type, error, traceback, "
                  "timestamp, record)"),
    (b"\xff\xfe\n", "2: not UTF-8 text"),
], ids=["not-json", "other-json", "not-an-object", "binary"])
def test_a_corrupt_file_names_the_line_and_exits_2(capsys, tmp_path, content, reason):
    path = tmp_path / "dl.jsonl"
    path.write_bytes(DeadLetter.of("p", "parse", 1, ValueError("bad"), 1).to_line().encode() + b"\n" + content)
    assert run(capsys, path) == (2, [], [f"chronopipe dead-letters: {path}:{reason}"])


def test_the_command_never_prints_a_traceback_and_says_its_exit_status(tmp_path):
    path = tmp_path / "dl.jsonl"
    path.write_bytes(b"\x00garbage")
    done = subprocess.run([*CLI, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert "Traceback" not in done.stderr
    helped = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert "Exit status 1 if there are any" in helped.stdout and "2    usage error or unreadable input" in helped.stdout


# -- --replay PIPELINE: a real pipeline module, run by the real command ----------------------
JOBS = '''
"""A pipeline to replay dead letters through: its parser is fixed by writing a flag file."""
import os
from pathlib import Path

from chronopipe.graph import Node, Pipeline, UpsertSink

HERE = Path(__file__).parent


class Parse(Node):
    """int(item); once HERE/fixed says "partly", also "3;4" (-> 34); "fully", also "x" (-> -1)."""

    def process(self, item):
        fix = (HERE / "fixed").read_text() if (HERE / "fixed").exists() else ""
        if fix in ("partly", "fully"):
            item = item.replace(";", "")
        if fix == "fully" and item == "x":
            item = "-1"
        self.push(int(item))


def make():
    return Pipeline(Parse("parse") | UpsertSink("load", key=lambda n: n, store=HERE / "out.sqlite"),
                    mode=os.environ.get("JOB_MODE", "sync"), name="orders", guarantee="replay", max_retries=1,
                    dead_letter=HERE / "live.jsonl")


pipeline = make()
strict = Pipeline(Parse("parse"), name="strict")
not_a_pipeline = 42


def broken():
    raise RuntimeError("no database today")
'''


@pytest.fixture
def jobs(tmp_path):
    """tmp_path/jobs.py (the pipeline) and tmp_path/dl.jsonl (two letters of node 'parse': "x", "3;4")."""
    (tmp_path / "jobs.py").write_text(JOBS)
    Pipeline(Parse("parse"), name="orders", guarantee="replay", max_retries=1,
             dead_letter=tmp_path / "dl.jsonl").consume(["1", "x", "2", "3;4"])
    return tmp_path


def chronopipe(*args, cwd, mode="sync"):
    """The installed command, in ``cwd``: (exit status, stdout lines, stderr lines)."""
    env = {**os.environ, "JOB_MODE": mode}
    done = subprocess.run([sys.executable, "-m", "chronopipe", "dead-letters", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout.splitlines(), done.stderr.splitlines()


def stored(folder):
    from chronopipe.delivery import UpsertStore

    with UpsertStore(folder / "out.sqlite") as store:
        return dict(store.items())


@pytest.mark.parametrize("mode", ["sync", "threads", "processes"])
def test_replay_after_the_fix_handles_every_letter_and_exits_0(jobs, mode):
    (jobs / "fixed").write_text("fully")
    status, out, err = chronopipe("dl.jsonl", "--replay", "jobs:pipeline", cwd=jobs, mode=mode)
    assert (status, err) == (0, [])
    assert out[0].startswith("finished: parse 2 in = 2 handled + 0 dead-lettered")
    assert out[1:] == ["replayed 2 dead letters of dl.jsonl: all handled, none dead-lettered again"]
    assert stored(jobs) == {-1: -1, 34: 34}
    assert not (jobs / "dl.replay.jsonl").exists() and not (jobs / "live.jsonl").exists()


@pytest.mark.parametrize("mode", ["sync", "processes"])
def test_records_that_fail_again_go_beside_the_file_and_exit_1(jobs, mode):
    (jobs / "fixed").write_text("partly")
    status, out, err = chronopipe(jobs / "dl.jsonl", "--replay", jobs / "jobs.py:make", cwd="/", mode=mode)
    assert (status, err) == (1, [])
    assert out[0].startswith("finished: parse 2 in = 1 handled + 1 dead-lettered (1 retry)")
    assert out[1] == (f"replayed 2 dead letters of {jobs / 'dl.jsonl'}: 1 dead-lettered again into "
                      f"{jobs / 'dl.replay.jsonl'}")
    assert stored(jobs) == {34: 34}
    again = read_dead_letters(jobs / "dl.replay.jsonl")
    assert [(d.node, d.record, d.attempts) for d in again] == [("parse", "x", 2)]
    assert chronopipe("dl.replay.jsonl", cwd=jobs)[1][-1] == "1 dead letter in dl.replay.jsonl: parse 1"


def test_dead_letter_chooses_where_they_go_and_a_second_replay_is_idempotent(jobs):
    (jobs / "fixed").write_text("partly")
    assert chronopipe("dl.jsonl", "--replay", "jobs:pipeline", "--dead-letter", "again.jsonl", cwd=jobs)[0] == 1
    assert [d.record for d in read_dead_letters(jobs / "again.jsonl")] == ["x"]
    assert not (jobs / "dl.replay.jsonl").exists()
    (jobs / "fixed").write_text("fully")
    status, out, _ = chronopipe("dl.jsonl", "--replay", "jobs:pipeline", "--dead-letter", "again.jsonl", cwd=jobs)
    assert status == 0 and out[-1] == "replayed 2 dead letters of dl.jsonl: all handled, none dead-lettered again"
    assert stored(jobs) == {-1: -1, 34: 34}  # 34 written twice: upserted, one row


def test_a_node_that_raises_under_guarantee_none_fails_the_replay_with_exit_3(jobs):
    status, out, err = chronopipe("dl.jsonl", "--replay", "jobs:strict", cwd=jobs)
    assert (status, out, len(err)) == (3, [], 1), err
    assert err[0].startswith("chronopipe dead-letters: ") and "ValueError" in err[0] and "parse" in err[0]


CORRUPT = "corrupt.jsonl"


@pytest.mark.parametrize(("args", "message"), [
    (["dl.jsonl", "--replay", "jobs"], "--replay jobs: give MODULE:ATTRIBUTE or FILE.py:ATTRIBUTE"),
    (["dl.jsonl", "--replay", "nosuch:pipeline"], "--replay nosuch:pipeline: no module named 'nosuch'"),
    (["dl.jsonl", "--replay", "nosuch.py:pipeline"], "--replay nosuch.py:pipeline: nosuch.py: no such file"),
    (["dl.jsonl", "--replay", "jobs:nothing"], "--replay jobs:nothing: jobs has no attribute 'nothing'"),
    (["dl.jsonl", "--replay", "jobs:not_a_pipeline"],
     "--replay jobs:not_a_pipeline: not_a_pipeline is not a chronopipe.graph.Pipeline (it is int 42)"),
    (["dl.jsonl", "--replay", "jobs.py:broken"],
     "--replay jobs.py:broken: broken() raised RuntimeError: no database today"),
    (["dl.jsonl", "--replay", "badmod:pipeline"],
     "--replay badmod:pipeline: importing badmod failed: ZeroDivisionError: division by zero"),
    (["none.jsonl", "--replay", "jobs:pipeline"], "none.jsonl: no such file"),
    ([CORRUPT, "--replay", "jobs:pipeline"], "corrupt.jsonl:1: not JSON (Expecting value, column 1)"),
    (["other.jsonl", "--replay", "jobs:pipeline"],
     "other.jsonl: dead letters of nodes jobs:pipeline does not have: enrich (its nodes: load, parse)"),
    (["dl.jsonl", "--replay", "jobs:pipeline", "--dead-letter", "dl.jsonl"],
     "--dead-letter dl.jsonl: is also an input; refusing to overwrite it"),
    (["dl.jsonl", "--dead-letter", "again.jsonl"],
     "--dead-letter OUT goes with --replay PIPELINE (it says where records that fail again go)"),
], ids=["no-colon", "no-module", "no-file", "no-attribute", "not-a-pipeline", "factory-raises", "import-raises",
        "no-letters-file", "corrupt-letters", "unknown-node", "onto-itself", "dead-letter-alone"])
def test_each_usage_error_is_one_line_and_exit_2_and_nothing_runs(jobs, args, message):
    (jobs / "badmod.py").write_text("1 / 0\n")
    (jobs / CORRUPT).write_text("oops\n")
    (jobs / "other.jsonl").write_text(DeadLetter.of("orders", "enrich", 1, ValueError("bad"), 1).to_line() + "\n")
    (jobs / "fixed").write_text("fully")
    assert chronopipe(*args, cwd=jobs) == (2, [], [f"chronopipe dead-letters: {message}"])
    assert not (jobs / "out.sqlite").exists() and not (jobs / "dl.replay.jsonl").exists()


SCRIPT = '''
"""A script whose records are of a class it defines itself: pickled as __main__.Order."""
import sys
from dataclasses import dataclass

from chronopipe.graph import Node, Pipeline


@dataclass
class Order:
    qty: str


class Parse(Node):
    def process(self, order):
        self.push(int(order.qty.replace("x", "0") if "--fixed" in sys.argv or FIXED else order.qty))


FIXED = False


def fixed():
    global FIXED
    FIXED = True
    return Pipeline(Parse("parse"), name="orders", guarantee="replay", max_retries=0, dead_letter="again.jsonl")


if __name__ == "__main__":
    Pipeline(Parse("parse"), name="orders", guarantee="replay", max_retries=0,
             dead_letter="dl.jsonl").consume([Order("1"), Order("x")])
'''


def test_letters_of_records_a_script_defined_replay_through_that_script(tmp_path):
    (tmp_path / "shop.py").write_text(SCRIPT)
    subprocess.run([sys.executable, "shop.py"], cwd=tmp_path, check=True, timeout=60)
    status, out, err = chronopipe("dl.jsonl", "--replay", "shop.py:fixed", cwd=tmp_path)
    assert (status, err) == (0, []), out
    assert out[-1] == "replayed 1 dead letter of dl.jsonl: all handled, none dead-lettered again"
