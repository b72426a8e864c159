"""``chronopipe dead-letters FILE``: one line per letter and a count; exit 0 none, 1 some, 2 a bad file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chronopipe.cli import main
from chronopipe.delivery import DeadLetter
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
    (b"{not json\n", "2: not JSON (Expecting property name enclosed in double quotes at column 2)"),
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
