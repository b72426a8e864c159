"""SCLSyntaxError: position, token, message and excerpt for each class of bad input; fuzz: nothing else escapes."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronopipe import scl

DEEP = 5_000


def error_of(text: str) -> scl.SCLSyntaxError:
    with pytest.raises(scl.SCLSyntaxError) as info:
        scl.parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "column", "token", "message"),
    [
        # unbalanced parentheses
        ("a=(b=1", 1, 7, "", "end of input, expected a key or ')' (the '(' at line 1, column 3 is not closed)"),
        ("a=(b=(c=1)", 1, 11, "", "(the '(' at line 1, column 3 is not closed)"),
        ("a=1)", 1, 4, ")", "unexpected ')', expected a key or the end of the input (no '(' is open)"),
        ("a=(b=1))", 1, 8, ")", "(no '(' is open)"),
        ("(a=1)", 1, 1, "(", "unexpected '(', expected a key or the end of the input"),
        # unterminated strings
        ('a="abc', 1, 3, '"abc', "unterminated string"),
        ('a="abc\\"', 1, 3, '"abc\\"', "unterminated string"),
        ('a="abc\ndef"', 1, 3, '"abc', "unterminated string"),
        # empty keys, values, parentheses
        ("=v", 1, 1, "=", "unexpected '=', expected a key or the end of the input"),
        ("a=1 =v", 1, 5, "=", "unexpected '='"),
        ("a=", 1, 3, "", "unexpected end of input, expected a value or '('"),
        ("a=(b= )", 1, 7, ")", "unexpected ')', expected a value or '('"),
        ("a", 1, 2, "", "unexpected end of input, expected '='"),
        ("a=()", 1, 4, ")", "unexpected ')', expected a key: empty parentheses"),
        ("a=v( )", 1, 6, ")", "empty parentheses"),
        ("a=(", 1, 4, "", "unexpected end of input, expected a key (the '(' at line 1, column 3 is not closed)"),
        # keys must be words
        ("123=x", 1, 1, "123", "unexpected number '123', expected a key"),
        ('"k"=x', 1, 1, '"k"', "unexpected string '\"k\"', expected a key"),
        ("a=b=c", 1, 4, "=", "unexpected '=', expected a key, '(' or the end of the input"),
        ("a=b c", 1, 6, "", "unexpected end of input, expected '='"),
        # neither a number nor a word
        ("a=1.2.3", 1, 3, "1.2.3", "unexpected '1.2.3': neither a number nor a word"),
        ("a=1-2", 1, 3, "1-2", "neither a number nor a word"),
        ("a=+x", 1, 3, "+x", "neither a number nor a word"),
        ("a=b.c", 1, 3, "b.c", "neither a number nor a word"),
        ("a=1e+", 1, 3, "1e+", "neither a number nor a word"),
        ("a=1e99999999999999999999", 1, 3, "1e99999999999999999999", "out of range"),
        # characters that are no token
        ("a=b;c", 1, 4, ";", "unexpected character ';'"),
        ("a=\xa0b", 1, 3, "\xa0", "unexpected character '\\xa0'"),
        ("a=b,c=d", 1, 4, ",", "unexpected character ','"),
        # positions on later lines
        ("a=1\nb=2\n  c=)", 3, 5, ")", "unexpected ')'"),
        ("a=(\nb=1\n", 2, 4, "", "(the '(' at line 1, column 3 is not closed)"),
        ("a=1\r\nb=;\r\n", 2, 3, ";", "unexpected character ';'"),
    ],
)
def test_bad_input_reports_line_column_token_and_message(text, line, column, token, message):
    err = error_of(text)
    assert (err.line, err.column, err.token) == (line, column, token)
    assert message in err.message and err.message.startswith("unexpected")


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [("unclosed=(" * DEEP, 1, 10 * DEEP + 1), ("a=1" + ")" * DEEP, 1, 4), ('a="' + "x" * 1_000_000, 1, 3),
     ("(" * DEEP, 1, 1), ('"' * 1_000_000, 1, 1), ("a=" + "1." * 500_000, 1, 3)],
)
def test_huge_bad_input_is_a_syntax_error_at_its_position(text, line, column):
    err = error_of(text)
    assert (err.line, err.column) == (line, column)
    assert len(str(err)) < 400


def test_str_shows_position_message_and_caret_excerpt():
    assert str(error_of("a=1 b=(c=2))")) == (
        "line 1, column 12: unexpected ')', expected a key or the end of the input (no '(' is open)\n"
        "a=1 b=(c=2))\n"
        "           ^"
    )


def test_the_excerpt_keeps_tabs_so_the_caret_lines_up():
    assert error_of("\ta=\t;").excerpt == "\ta=\t;\n\t  \t^"


def test_the_excerpt_of_a_long_line_is_a_window_around_the_column():
    text = " ".join(f"k{i}=v" for i in range(2_000)) + " oops ; " + "z=1 " * 2_000
    err = error_of(text)
    shown, caret = err.excerpt.split("\n")
    assert len(shown) <= 86 and shown.startswith("...") and shown.endswith("...")
    assert shown[caret.index("^")] == ";"


def test_the_excerpt_shows_control_characters_as_question_marks():
    assert error_of("a=\x00").excerpt == "a=?\n  ^"


def test_a_long_token_is_shortened_in_the_message():
    err = error_of('a="' + "x" * 5_000)
    assert err.token == '"' + "x" * 5_000
    assert "(5,001 characters)" in err.message and len(err.message) < 200


def test_it_is_a_value_error():
    assert isinstance(error_of("a="), ValueError)


def test_it_pickles_with_its_fields():
    err = error_of("a=1\nb=)")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.message, copy.line, copy.column, copy.token, copy.excerpt, str(copy)) == (
        err.message, 2, 3, ")", err.excerpt, str(err))


def test_bad_input_prints_nothing(capsys):
    for text in ["a=(", "a=)", '"x', "=1", "a=1.2.3", "a=;"]:
        error_of(text)
    assert capsys.readouterr() == ("", "")


def test_a_later_line_of_parse_lines_reports_its_own_line_number():
    [good, bad] = scl.parse_lines("a=1\nb=(c=;)", errors="yield")
    assert good.error is None and (bad.error.line, bad.error.column) == (2, 6)
    assert str(bad.error).startswith("line 2, column 6: unexpected character ';'")


SCL_CHARS = [*'ab_19eE.+-=()" \\\t\n\r', "é", "٣", "\x00", "\xa0", ";", "\u2028"]
PIECES = ["a=", "b=1", "(", ")", '"x"', '"', "=", " ", "\\", "1e5", "-.5", "c=(d=2)", "\n"]


def check(text: str) -> None:
    """``parse`` gives statements that round-trip, or an SCLSyntaxError that points into the text."""
    try:
        stmts = scl.parse(text)
    except scl.SCLSyntaxError as err:
        assert err.line >= 1 and err.column >= 1 and "^" in err.excerpt
        assert err.line <= text.count("\n") + 1
        return
    assert isinstance(stmts, list)
    assert scl.parse(scl.dumps(stmts)) == stmts


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.sampled_from(SCL_CHARS), max_size=40))
def test_fuzz_scl_characters_raise_nothing_but_syntax_errors(text):
    check(text)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(PIECES), max_size=25).map("".join))
def test_fuzz_scl_pieces_raise_nothing_but_syntax_errors(text):
    check(text)


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_fuzz_any_text_raises_nothing_but_syntax_errors(text):
    check(text)


@settings(max_examples=200)
@given(st.text(st.sampled_from(SCL_CHARS), max_size=60))
def test_fuzz_parse_lines_yields_a_line_for_every_line(text):
    lines = list(scl.parse_lines(text, errors="yield"))
    assert [line.number for line in lines] == list(range(1, len(lines) + 1))
    assert all((line.statements is None) != (line.error is None) for line in lines)
