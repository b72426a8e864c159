"""``chronopipe scl FILE|-``: one JSON document per input line, errors on stderr with line numbers, exit 0/1."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from chronopipe.cli import main
from chronopipe.scl.stream import CHUNK_STATEMENTS

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


def test_a_missing_file_exits_2_unreadable_input_with_a_message(tmp_path):
    done = run(str(tmp_path / "missing.scl"))
    assert (done.returncode, done.stdout) == (2, b"")
    assert b"no such file" in done.stderr.lower()


@pytest.mark.parametrize(("stdin", "column", "excerpt"), [
    (b'b="\xc3\xa9\xff"', 5, ['b="\u00e9\ufffd"', "    ^"]),  # a byte that starts nothing
    (b"\xc3(", 1, ["\ufffd(", "^"]),  # a sequence cut short
    (b"k=v \xed\xa0\x80", 5, ["k=v \ufffd\ufffd\ufffd", "    ^"]),  # a surrogate
])
def test_a_line_that_is_not_utf8_gives_null_and_its_error_and_the_next_lines_are_read(stdin, column, excerpt):
    done = run("-", stdin=b"a=1\n" + stdin + b"\nc=3\n")
    assert done.returncode == 1
    assert done.stdout.decode().splitlines() == ['[{"key": "a", "value": 1}]', "null", '[{"key": "c", "value": 3}]']
    [error, *shown, summary] = done.stderr.decode().splitlines()
    assert error.startswith(f"<stdin>:2:{column}: not UTF-8 text (") and error.endswith("): line skipped")
    assert (shown, summary) == (excerpt, "chronopipe scl: 1 of 3 lines failed")


def test_lines_not_utf8_and_lines_that_do_not_parse_are_both_counted(tmp_path):
    path = tmp_path / "mixed.scl"
    path.write_bytes(b"\xff\na=(\nb=2\n")
    done = run(str(path))
    assert (done.returncode, done.stdout.decode().splitlines()) == (1, ["null", "null", '[{"key": "b", "value": 2}]'])
    assert done.stderr.decode().splitlines()[-1] == "chronopipe scl: 2 of 3 lines failed"


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


SEED_LINE = (r'key=value(key1=value1 key2=value2 key3="string \(\"paren quoted\"\)") i=1 f=1.2 p=+1.3 m=-1.4 '
             'd=.21 pd=+.22 e=3e1 pe=+3E2 me=-4.1E+7 w=123_hello s="plain string" g=(a=1 b=(c=x d="y"))')
MEASURE = """
import resource, sys, time
from chronopipe.cli import main
from chronopipe.scl.stream import CHUNK_STATEMENTS
started = time.perf_counter()
status = main(["scl", sys.argv[1]])
print(f"{time.perf_counter() - started} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}",
      file=sys.stderr)
sys.exit(status)
"""


def one_line_file(path: Path, megabytes: float) -> Path:
    """A file of one line of about ``megabytes`` MB: the seed line's 20 statements, repeated."""
    path.write_text(" ".join([SEED_LINE] * int(megabytes * 1e6 / (len(SEED_LINE) + 1))) + "\n", encoding="utf-8")
    return path


def measure(path: Path) -> tuple[float, int]:
    """Seconds of ``chronopipe scl path`` in a fresh process, and that process's peak RSS in bytes."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-500:]
    seconds, rss = done.stderr.decode().split()
    return float(seconds), int(rss)


def test_a_4_mb_line_needs_less_than_10_times_its_size_beyond_the_interpreter(tmp_path):
    path = one_line_file(tmp_path / "big.scl", 4)
    _, baseline = measure(one_line_file(tmp_path / "small.scl", 0.001))
    _, rss = measure(path)
    assert rss - baseline < 10 * path.stat().st_size, f"{rss - baseline:,} bytes for {path.stat().st_size:,}"


def test_time_grows_linearly_with_the_line(tmp_path):
    small, _ = measure(one_line_file(tmp_path / "small.scl", 1))
    large, _ = measure(one_line_file(tmp_path / "large.scl", 4))
    assert large / small < 8, f"1 MB: {small:.2f} s, 4 MB: {large:.2f} s"


class RecordingBar:
    """Stands for the tqdm bar that ``progress`` gives on a terminal: records each update."""

    disable = False

    def __init__(self) -> None:
        self.updates: list[int] = []

    def __enter__(self) -> RecordingBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        self.updates.append(n)


def test_a_terminal_bar_counts_the_bytes_within_one_long_line(tmp_path, monkeypatch):
    from chronopipe.cli import progress as progress_module

    bar = RecordingBar()
    monkeypatch.setattr(progress_module, "progress", lambda unit, **kwargs: bar)
    path = one_line_file(tmp_path / "long.scl", 0.5)  # 50,000 statements: several chunks
    assert main(["scl", str(path)]) == 0
    assert sum(bar.updates) == path.stat().st_size
    assert len([n for n in bar.updates if n > 0]) >= 50_000 // CHUNK_STATEMENTS  # during the line, not at its end


def test_the_bar_is_asked_for_in_bytes_with_the_file_size_as_total(tmp_path, monkeypatch):
    from chronopipe.cli import progress as progress_module

    asked: list[tuple[str, dict]] = []
    real = progress_module.progress
    monkeypatch.setattr(progress_module, "progress", lambda unit, **kw: asked.append((unit, kw)) or real(unit, **kw))
    (tmp_path / "ok.scl").write_text(GOOD, encoding="utf-8")
    assert main(["scl", str(tmp_path / "ok.scl")]) == 0
    [(unit, kwargs)] = asked
    assert (unit, kwargs["total"]) == ("B", len(GOOD.encode()))
