"""scl.dumps writes canonical SCL that parses back to the same statements; to_json / from_json keep Decimals exact."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronopipe import scl
from chronopipe.scl.lexer import NUMBER_PATTERN

NUMBER = re.compile(NUMBER_PATTERN)
DEEP = 5_000

words = st.from_regex(r"\w+", fullmatch=True).filter(lambda w: NUMBER.fullmatch(w) is None)
number_texts = st.from_regex(r"[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,6})?", fullmatch=True)
decimals = st.decimals(allow_nan=False, allow_infinity=False) | number_texts.map(Decimal)
values = words | st.text() | decimals


def statements(children: st.SearchStrategy[list[dict]]) -> st.SearchStrategy[list[dict]]:
    leaf = st.builds(lambda k, v: {"key": k, "value": v}, words, values)
    nested = st.builds(lambda k, v, c: {"key": k, "value": v, "children": c}, words, st.none() | values, children)
    return st.lists(leaf | nested, min_size=1, max_size=4)


leaves = st.lists(st.builds(lambda k, v: {"key": k, "value": v}, words, values), min_size=1, max_size=4)
trees = st.just([]) | st.recursive(leaves, statements, max_leaves=25)


@settings(max_examples=300)
@given(trees)
def test_parse_of_dumps_gives_back_the_same_statements(stmts):
    back = scl.parse(scl.dumps(stmts))
    assert back == stmts
    assert repr(back) == repr(stmts)  # the same Decimal digits and exponents, the same types


@settings(max_examples=200)
@given(trees)
def test_dumps_is_canonical(stmts):
    text = scl.dumps(stmts)
    assert scl.dumps(scl.parse(text)) == text


@settings(max_examples=200)
@given(trees)
def test_from_json_of_to_json_gives_back_the_same_statements(stmts):
    assert repr(scl.from_json(scl.to_json(stmts))) == repr(stmts)


@settings(max_examples=200)
@given(st.text(), st.text(max_size=5).filter(lambda t: "\n" not in t))
def test_a_dumped_line_is_one_line_for_parse_lines(value, other):
    stmts = [{"key": "a", "value": value}, {"key": "b", "value": other}]
    assert [line.statements for line in scl.parse_lines(scl.dumps(stmts) + "\n")] == [stmts]


@pytest.mark.parametrize(
    ("stmts", "text"),
    [
        ([], ""),
        ([{"key": "a", "value": "x"}, {"key": "b", "value": Decimal("1.50")}], "a=x b=1.50"),
        ([{"key": "a", "value": "two words"}], 'a="two words"'),
        ([{"key": "a", "value": ""}], 'a=""'),
        ([{"key": "a", "value": "123"}], 'a="123"'),
        ([{"key": "a", "value": "1e5"}], 'a="1e5"'),
        ([{"key": "a", "value": "123_hello"}], "a=123_hello"),
        ([{"key": "a", "value": 'q"b\\n\nr\rt\t(x)'}], 'a="q\\"b\\\\n\\nr\\rt\t(x)"'),
        ([{"key": "a", "value": Decimal("3e1")}], "a=3E+1"),
        ([{"key": "a", "value": Decimal("-0")}], "a=-0"),
        ([{"key": "a", "value": Decimal(".21")}], "a=0.21"),
        ([{"key": "a", "value": Decimal("1E-7")}], "a=1E-7"),
        ([{"key": "a", "value": 42}], "a=42"),
        ([{"key": "a", "value": None, "children": [{"key": "b", "value": "c", "children": [{"key": "d", "value": 1}]},
                                                  {"key": "e", "value": "f"}]}], "a=(b=c(d=1) e=f)"),
        ([{"key": "k", "children": [{"key": "c", "value": 1}]}], "k=(c=1)"),
    ],
)
def test_dumps_writes_canonical_scl(stmts, text):
    assert scl.dumps(stmts) == text


def test_dumps_of_the_seed_example_drops_the_needless_escapes():
    text = r'key=value(key1=value1 key2=value2 key3="string \(\"paren quoted\"\)")'
    assert scl.dumps(scl.parse(text)) == r'key=value(key1=value1 key2=value2 key3="string (\"paren quoted\")")'


@pytest.mark.parametrize(
    ("stmts", "error", "match"),
    [
        ([{"key": "a", "value": Decimal("NaN")}], ValueError, "not an SCL number"),
        ([{"key": "a", "value": Decimal("-Infinity")}], ValueError, "not an SCL number"),
        ([{"key": "a", "value": Decimal("sNaN")}], ValueError, "not an SCL number"),
        ([{"key": "a", "value": None}], ValueError, "needs children"),
        ([{"key": "a", "value": 1, "children": []}], ValueError, "non-empty list"),
        ([{"key": "a", "value": 1, "children": "b=1"}], ValueError, "non-empty list"),
        ([{"key": "123", "value": 1}], ValueError, "not a word"),
        ([{"key": "a b", "value": 1}], ValueError, "not a word"),
        ([{"key": "", "value": 1}], ValueError, "not a word"),
        ([{"key": 1, "value": 1}], ValueError, "not a word"),
        ([{"value": 1}], ValueError, "not a word"),
        ([{"key": "a", "value": 1, "extra": 2}], ValueError, "a statement is a mapping"),
        (["a=1"], ValueError, "a statement is a mapping"),
        ([{"key": "a", "value": 1.5}], TypeError, "not float"),
        ([{"key": "a", "value": True}], TypeError, "not bool"),
        ([{"key": "a", "value": ["x"]}], TypeError, "not list"),
    ],
)
def test_dumps_refuses_what_scl_cannot_write(stmts, error, match):
    with pytest.raises(error, match=match):
        scl.dumps(stmts)


def test_dumps_writes_a_tree_nested_5000_deep():
    text = "a=(" * (DEEP - 1) + "z=1" + ")" * (DEEP - 1)
    assert scl.dumps(scl.parse(text)) == text


def test_to_json_writes_a_tree_nested_5000_deep():
    stmts = scl.parse("a=(" * (DEEP - 1) + "z=1" + ")" * (DEEP - 1))
    opening = '[{"key": "a", "value": null, "children": '
    expected = opening * (DEEP - 1) + '[{"key": "z", "value": 1}]' + "}]" * (DEEP - 1)
    assert scl.to_json(stmts) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("0.1000000000000000000000001"), "0.1000000000000000000000001"), (Decimal("-0"), "-0"),
     (Decimal("1E+999999999"), "1E+999999999"), (Decimal("2.50"), "2.50"), (Decimal("123456789" * 5), "123456789" * 5)],
)
def test_to_json_writes_decimals_exactly(value, text):
    assert scl.to_json([value]) == f"[{text}]"
    assert repr(scl.from_json(f"[{text}]")[0]) == repr(value)


json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_data, st.sampled_from([None, 0, 2, "\t"]), st.booleans())
def test_to_json_formats_like_json_dumps(data, indent, ensure_ascii):
    assert scl.to_json(data, indent=indent, ensure_ascii=ensure_ascii) == json.dumps(
        data, indent=indent, ensure_ascii=ensure_ascii)


@pytest.mark.parametrize(
    ("data", "error"),
    [(Decimal("NaN"), ValueError), (float("inf"), ValueError), ([float("nan")], ValueError), ({1: 2}, TypeError),
     ({"a": {1}}, TypeError), (b"x", TypeError)],
)
def test_to_json_refuses_what_json_cannot_hold(data, error):
    with pytest.raises(error):
        scl.to_json(data)


def test_from_json_reads_every_number_as_a_decimal():
    assert repr(scl.from_json('{"i": 1, "f": 1.0, "e": -2e-3}')) == (
        "{'i': Decimal('1'), 'f': Decimal('1.0'), 'e': Decimal('-0.002')}")
