"""chronopipe.scl.parse and parse_lines: every value form, whitespace, nesting, limits, threads, build once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from ply import lex, yacc

from chronopipe import scl
from chronopipe.scl.lexer import base_lexer, tokenize
from chronopipe.scl.parser import build_parser

SEED_INPUT = r'key=value(key1=value1 key2=value2 key3="string \(\"paren quoted\"\)")'
SEED_OUTPUT = (
    '[{"key": "key", "value": "value", "children": [{"key": "key1", "value": "value1"}, '
    '{"key": "key2", "value": "value2"}, {"key": "key3", "value": "string (\\"paren quoted\\")"}]}]'
)
SRC = Path(__file__).resolve().parents[1] / "src"


def value_of(text: str):
    """The value of the single statement ``k=<text>``."""
    [stmt] = scl.parse(f"k={text}")
    assert list(stmt) == ["key", "value"]
    return stmt["value"]


def depth_and_leaf(stmts: list[dict]) -> tuple[int, dict]:
    """Nesting depth of a chain of single children, and its innermost statement (no recursion)."""
    depth, stmt = 1, stmts[0]
    while "children" in stmt:
        assert len(stmt["children"]) == 1
        depth, stmt = depth + 1, stmt["children"][0]
    return depth, stmt


def test_the_seed_readme_example_gives_exactly_its_output():
    assert scl.to_json(scl.parse(SEED_INPUT)) == SEED_OUTPUT


def test_the_seed_readme_example_gives_plain_dicts_in_key_value_children_order():
    [stmt] = scl.parse(SEED_INPUT)
    assert list(stmt) == ["key", "value", "children"]
    assert [list(child) for child in stmt["children"]] == [["key", "value"]] * 3
    assert stmt["children"][2]["value"] == 'string ("paren quoted")'


@pytest.mark.parametrize(
    "text",
    ["1", "1.2", "+1.3", "-1.4", ".21", "+.22", "3e1", "+3E2", "-4.1E+7", "1.", "-0", "007", "1e-5", "2.50",
     "-1.5e-3", "0.1000000000000000000000001", "123456789012345678901234567890", "1E+999999999"],
)
def test_a_number_is_the_exact_decimal_of_its_text(text):
    value = value_of(text)
    assert type(value) is Decimal and repr(value) == repr(Decimal(text))


@pytest.mark.parametrize(
    "text", ["value", "123_hello", "1e5x", "1_000", "e5", "_", "ABC123", "été", "٣", "NaN", "Infinity"]
)
def test_a_word_is_its_text(text):
    assert value_of(text) == text and type(value_of(text)) is str


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'"string \(\"paren quoted\"\)"', 'string ("paren quoted")'),
        ('""', ""),
        ('"two words"', "two words"),
        ('"(not=children)"', "(not=children)"),
        (r'"back\\slash"', "back\\slash"),
        (r'"line\nbreak\ttab\rcr"', "line\nbreak\ttab\rcr"),
        (r'"\q\u\'"', "qu'"),
        ('"123"', "123"),
        ('"ünï ☃"', "ünï ☃"),
        ('"raw\ttab"', "raw\ttab"),
    ],
)
def test_a_string_is_its_unescaped_text(text, value):
    assert value_of(text) == value


@pytest.mark.parametrize(
    "text",
    ["a=1 b=x", "a = 1  b = x", " \ta\t=\t1\t\tb=\tx ", "a=1\nb=x\n", "a=1\r\nb=x\r\n", "\n\na=\n1\x0b\x0cb\n=\nx"],
)
def test_whitespace_around_tokens_is_insignificant(text):
    assert scl.parse(text) == [{"key": "a", "value": Decimal(1)}, {"key": "b", "value": "x"}]


@pytest.mark.parametrize("text", ["g=v(a=1 b=(c=x))", "g = v ( a = 1 b = ( c = x ) ) ", "g=v(a=1\nb=(c=x)\n)"])
def test_whitespace_around_parentheses_is_insignificant(text):
    assert scl.parse(text) == [{"key": "g", "value": "v", "children": [
        {"key": "a", "value": Decimal(1)}, {"key": "b", "value": None, "children": [{"key": "c", "value": "x"}]}]}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a="x"b=1', [{"key": "a", "value": "x"}, {"key": "b", "value": Decimal(1)}]),
        ("a=(b=1)c=2", [{"key": "a", "value": None, "children": [{"key": "b", "value": Decimal(1)}]},
                        {"key": "c", "value": Decimal(2)}]),
    ],
)
def test_statements_need_no_space_where_a_token_ends_them(text, expected):
    assert scl.parse(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "\t\r\n"])
def test_blank_text_has_no_statements(text):
    assert scl.parse(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [("k=v(c=1)", "v"), ("k=7(c=1)", Decimal(7)), ('k="s"(c=1)', "s"), ("k=(c=1)", None)],
)
def test_children_follow_any_value_or_none(text, value):
    assert scl.parse(text) == [{"key": "k", "value": value, "children": [{"key": "c", "value": Decimal(1)}]}]


def test_children_keep_their_order_and_siblings():
    [stmt] = scl.parse("root=(a=1 b=(c=2 d=(e=3)) f=4)")
    assert [child["key"] for child in stmt["children"]] == ["a", "b", "f"]
    assert stmt["children"][1]["children"][1] == {"key": "d", "value": None, "children": [{"key": "e",
                                                                                           "value": Decimal(3)}]}


@pytest.mark.parametrize("depth", [50, 1_000, 5_000])
def test_nesting_to_any_depth_parses(depth):
    stmts = scl.parse("a=(" * (depth - 1) + "z=1" + ")" * (depth - 1))
    assert depth_and_leaf(stmts) == (depth, {"key": "z", "value": Decimal(1)})


def test_ten_thousand_statements_on_a_line_parse():
    stmts = scl.parse(" ".join(f"k{i}={i}" for i in range(10_000)))
    assert len(stmts) == 10_000 and stmts[-1] == {"key": "k9999", "value": Decimal(9999)}


@pytest.mark.parametrize(("value", "expected"), [('"' + "x" * 1_000_000 + '"', "x" * 1_000_000),
                                                 ("w" * 1_000_000, "w" * 1_000_000)])
def test_a_one_megabyte_value_parses(value, expected):
    assert scl.parse(f"k={value}") == [{"key": "k", "value": expected}]


def test_a_million_digit_number_parses_exactly():
    [stmt] = scl.parse("k=" + "9" * 1_000_000)
    assert stmt["value"] == Decimal("9" * 1_000_000)


def test_the_lexer_tries_number_before_word():
    pattern = base_lexer().lexre[0][0].pattern
    assert pattern.index("(?P<t_NUMBER>") < pattern.index("(?P<t_WORD>")


@pytest.mark.parametrize(
    ("text", "kinds"),
    [("123", ["NUMBER"]), ("123_hello", ["WORD"]), ("1e5", ["NUMBER"]), ("1e5x", ["WORD"]), ('"1"', ["STRING"]),
     ("a=(b)", ["WORD", "EQUALS", "LPAREN", "WORD", "RPAREN"])],
)
def test_tokenize_gives_the_token_kinds(text, kinds):
    assert [kind for kind, _, _ in tokenize(text)] == kinds


def test_parse_rejects_bytes_with_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        scl.parse(b"a=1")  # type: ignore[arg-type]


def test_parse_lines_numbers_every_line_from_one():
    lines = list(scl.parse_lines("a=1\n\nb=(c=x)\n"))
    assert lines == [
        scl.Line(1, [{"key": "a", "value": Decimal(1)}]),
        scl.Line(2, []),
        scl.Line(3, [{"key": "b", "value": None, "children": [{"key": "c", "value": "x"}]}]),
    ]


def test_parse_lines_reads_an_open_file_with_crlf(tmp_path):
    path = tmp_path / "commands.scl"
    path.write_bytes(b"a=1\r\nb=2\r\n")
    with path.open(encoding="utf-8") as f:
        assert [(line.number, line.statements) for line in scl.parse_lines(f)] == [
            (1, [{"key": "a", "value": Decimal(1)}]), (2, [{"key": "b", "value": Decimal(2)}])]


def test_parse_lines_does_not_join_a_statement_across_lines():
    with pytest.raises(scl.SCLSyntaxError) as info:
        list(scl.parse_lines("a=(\nb=1)"))
    assert (info.value.line, info.value.column) == (1, 4)


def test_parse_lines_raises_at_the_first_bad_line_after_yielding_the_lines_before():
    lines = scl.parse_lines("a=1\nb=2\nc=)\nd=4")
    assert [line.number for line in (next(lines), next(lines))] == [1, 2]
    with pytest.raises(scl.SCLSyntaxError) as info:
        next(lines)
    assert (info.value.line, info.value.column, info.value.token) == (3, 3, ")")


def test_parse_lines_with_errors_yield_gives_the_error_and_goes_on():
    lines = list(scl.parse_lines(["a=1", "c=)", "d=4"], errors="yield"))
    assert [(line.number, line.statements is None, line.error is None) for line in lines] == [
        (1, False, True), (2, True, False), (3, False, True)]
    assert lines[1].error.line == 2


def test_parse_lines_rejects_an_unknown_errors_mode():
    with pytest.raises(ValueError, match="errors must be"):
        list(scl.parse_lines("a=1", errors="ignore"))  # type: ignore[arg-type]


def test_threads_parsing_at_once_get_the_results_of_one_thread():
    texts = [" ".join(f'k{i}_{j}=v{j}(n={i}.{j} s="{i} \\" {j}" g=(x=y))' for j in range(150)) for i in range(8)]
    texts += ["a=(" * 200 + "b=1", 'x="unterminated']  # errors too: their state must not leak either

    def outcome(text: str):
        try:
            return scl.parse(text)
        except scl.SCLSyntaxError as exc:
            return str(exc)

    expected = [outcome(text) for text in texts]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, mid-parse
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(outcome, texts * 6))
    finally:
        sys.setswitchinterval(old)
    assert results == expected * 6


def test_the_tables_are_not_rebuilt_for_a_new_thread(monkeypatch):
    scl.parse("a=1")

    def no_build(*args, **kwargs):
        raise AssertionError("PLY tables rebuilt")

    monkeypatch.setattr(yacc, "yacc", no_build)
    monkeypatch.setattr(lex, "lex", no_build)
    results = []
    thread = threading.Thread(target=lambda: results.append(scl.parse("b=2")))
    thread.start()
    thread.join()
    assert results == [[{"key": "b", "value": Decimal(2)}]]


def test_the_grammar_has_no_conflicts_nor_warnings():
    class Log:
        def __init__(self):
            self.messages = []

        def warning(self, msg, *args, **kwargs):
            self.messages.append(msg % args)

        error = critical = info = debug = warning

    log = Log()
    build_parser(errorlog=log)
    assert log.messages == []


CHILD = """
import json, sys, threading
from ply import yacc, lex
from chronopipe import scl
builds = {"yacc": 0, "lex": 0}
def counting(name, build):
    def wrapper(*args, **kwargs):
        builds[name] += 1
        return build(*args, **kwargs)
    return wrapper
yacc.yacc, lex.lex = counting("yacc", yacc.yacc), counting("lex", lex.lex)
ok = []
threads = [threading.Thread(target=lambda: ok.append(scl.parse("a=(b=1)") is not None)) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
for bad in ["a=(", "a=)", '"x', "=1"]:
    try:
        scl.parse(bad)
    except scl.SCLSyntaxError:
        ok.append(True)
sys.stdout.write(json.dumps({"builds": builds, "ok": ok.count(True)}))
"""


def test_a_process_builds_once_writes_no_file_and_prints_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env=env)
    assert done.stderr == ""
    assert json.loads(done.stdout) == {"builds": {"yacc": 1, "lex": 1}, "ok": 12}
    assert list(tmp_path.iterdir()) == []
    assert not [p for p in (SRC / "chronopipe").rglob("*") if p.name in ("parsetab.py", "parser.out", "lextab.py")]


def test_the_grammar_survives_python_minus_oo_which_strips_docstrings():
    code = "from chronopipe import scl; print(scl.to_json(scl.parse('a=1(b=x)')))"
    done = subprocess.run([sys.executable, "-OO", "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert (done.stdout, done.stderr) == ('[{"key": "a", "value": 1, "children": [{"key": "b", "value": "x"}]}]\n', "")
