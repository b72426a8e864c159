"""``chronopipe scl FILE|-``: one JSON document per input line, errors on stderr with line numbers, exit 0/1."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from chronopipe.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from chronopipe.cli import main; sys.exit(main())", "scl"]
GOOD = 'a=1 b=(c="x y")\n\nn=-4.1E+7 w=123_hello\n'
GOOD_JSON = ['[{"key": "a", "value": 1}, {"key": "b", "value": null, "children": [{"key": "c", "value": "x y"}]}]',
             "[]", '[{"key": "n", "value": -4.1E+7}, {"key": "w", "value": "123_hello"}]']


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=60, cwd=ROOT)


def test_a_file_gives_one_json_document_per_line_and_exit_0(tmp_path):
    (tmp_path / "ok.scl").write_text(GOOD, encoding="utf-8")
    done = run(str(tmp_path / "ok.scl"))
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode().splitlines() == GOOD_JSON


def test_stdin_is_read_for_dash():
    done = run("-", stdin=GOOD.encode())
    assert (done.returncode, done.stdout.decode().splitlines()) == (0, GOOD_JSON)


def test_crlf_lines_and_a_missing_last_newline_are_read():
    done = run("-", stdin=b"a=1\r\nb=2")
    assert done.stdout.decode().splitlines() == ['[{"key": "a", "value": 1}]', '[{"key": "b", "value": 2}]']


def test_numbers_stay_exact_in_the_json():
    done = run("-", stdin=b"x=0.1000000000000000000000001 y=2.50\n")
    [doc] = done.stdout.decode().splitlines()
    assert json.loads(doc, parse_float=Decimal) == [{"key": "x", "value": Decimal("0.1000000000000000000000001")},
                                                    {"key": "y", "value": Decimal("2.50")}]
    assert "2.50" in doc


def test_a_bad_line_gives_null_an_error_with_its_line_on_stderr_and_exit_1(tmp_path):
    path = tmp_path / "bad.scl"
    path.write_text("a=1\nb=(c=1\nd=2\ne=;\n", encoding="utf-8")
    done = run(str(path))
    assert done.returncode == 1
    assert done.stdout.decode().splitlines() == ['[{"key": "a", "value": 1}]', "null", '[{"key": "d", "value": 2}]',
                                                 "null"]
    assert done.stderr.decode().splitlines() == [
        f"{path}:2:7: unexpected end of input, expected a key or ')' (the '(' at line 2, column 3 is not closed)",
        "b=(c=1",
        "      ^",
        f"{path}:4:3: unexpected character ';'",
        "e=;",
        "  ^",
        "chronopipe scl: 2 of 4 lines failed",
    ]


def test_stdin_errors_are_named_stdin():
    done = run("-", stdin=b"ok=1\n)\n")
    assert done.returncode == 1 and done.stderr.decode().startswith("<stdin>:2:1: unexpected ')'")


def test_a_missing_file_exits_1_with_a_message(tmp_path):
    done = run(str(tmp_path / "missing.scl"))
    assert (done.returncode, done.stdout) == (1, b"")
    assert b"No such file or directory" in done.stderr


def test_bytes_that_are_not_utf8_stop_with_their_line_and_column():
    done = run("-", stdin=b'a=1\nb="\xc3\xa9\xff"\nc=3\n')
    assert done.returncode == 1
    assert done.stdout.decode().splitlines() == ['[{"key": "a", "value": 1}]']
    assert done.stderr.decode() == "chronopipe scl: <stdin>:2:5: not UTF-8 text (invalid start byte): stopped there\n"


def test_a_line_nested_5000_deep_is_written_as_json():
    depth = 5_000
    done = run("-", stdin=("a=(" * (depth - 1) + "z=1" + ")" * (depth - 1)).encode())
    assert done.returncode == 0, done.stderr[-500:]
    doc = done.stdout.decode().strip()
    assert doc.count('"children"') == depth - 1 and doc.endswith('[{"key": "z", "value": 1}]' + "}]" * (depth - 1))


def test_the_help_names_file_or_dash(capsys):
    with pytest.raises(SystemExit) as info:
        main(["scl", "--help"])
    assert info.value.code == 0 and "FILE|-" in capsys.readouterr().out


def test_main_runs_scl_in_process(tmp_path, capsys):
    (tmp_path / "ok.scl").write_text(GOOD, encoding="utf-8")
    assert main(["scl", str(tmp_path / "ok.scl")]) == 0
    assert capsys.readouterr().out.splitlines() == GOOD_JSON


def test_the_installed_chronopipe_command_runs_scl():
    script = Path(sys.executable).with_name("chronopipe")
    if not script.exists():
        pytest.skip("no chronopipe console script next to this python")
    done = subprocess.run([str(script), "scl", "-"], input=b"k=v\n", capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, b'[{"key": "k", "value": "v"}]\n')
