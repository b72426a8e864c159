"""scl.stream.parse_json: SCL straight to JSON, the same text and the same errors as to_json(parse(...)),
in memory linear in the input and without building the statements."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronopipe import scl
from chronopipe.scl.stream import CHUNK_STATEMENTS, parse_json
from test_scl_errors import PIECES, SCL_CHARS
from test_scl_roundtrip import trees

SEED_LINE = (r'key=value(key1=value1 key2=value2 key3="string \(\"paren quoted\"\)") i=1 f=1.2 p=+1.3 m=-1.4 '
             'd=.21 pd=+.22 e=3e1 pe=+3E2 me=-4.1E+7 w=123_hello s="plain string" g=(a=1 b=(c=x d="y"))')


def outcome(convert, text: str) -> tuple[str, object]:
    """("json", text) or ("error", its fields) for one way of converting ``text``."""
    try:
        return "json", convert(text)
    except scl.SCLSyntaxError as err:
        return "error", (err.message, err.line, err.column, err.token, err.excerpt)


def same_as_parse(text: str) -> None:
    assert outcome(lambda t: "".join(parse_json(t)), text) == outcome(lambda t: scl.to_json(scl.parse(t)), text)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=25).map("".join))
def test_scl_pieces_give_the_json_or_the_error_of_parse(text):
    same_as_parse(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.sampled_from(SCL_CHARS), max_size=60))
def test_scl_characters_give_the_json_or_the_error_of_parse(text):
    same_as_parse(text)


@settings(max_examples=200)
@given(trees)
def test_dumped_statements_give_the_json_of_to_json(stmts):
    assert "".join(parse_json(scl.dumps(stmts))) == scl.to_json(stmts)


@pytest.mark.parametrize("text", [
    "", "  ", "a=()", "a=v( )", "a=1e99999999999999999999(b=)", "a=1e99999999999999999999(b=1)",
    "k=(a=1(b=2)) z=1", 'w=héllo s="tab\\there"', "a=(" * 300 + "z=1" + ")" * 300,
])
def test_edge_cases_give_the_json_or_the_error_of_parse(text):
    same_as_parse(text)


def test_a_long_line_comes_in_chunks_and_reports_its_progress():
    text = " ".join([SEED_LINE] * 1_000)  # 20,000 statements
    offsets: list[int] = []
    chunks = parse_json(text, progress=offsets.append)
    assert "".join(chunks) == scl.to_json(scl.parse(text))
    assert len(offsets) >= 20_000 // CHUNK_STATEMENTS
    assert offsets == sorted(offsets) and 0 < offsets[0] < offsets[-1] <= len(text)


def test_the_error_of_a_later_line_names_its_line():
    with pytest.raises(scl.SCLSyntaxError) as info:
        parse_json("a=(", first_line=7)
    assert (info.value.line, info.value.column) == (7, 4)


def test_bytes_are_refused_with_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        parse_json(b"a=1")  # type: ignore[arg-type]


def test_a_one_megabyte_line_needs_less_than_five_times_its_size():
    text = " ".join([SEED_LINE] * (1_000_000 // len(SEED_LINE)))
    parse_json("a=1")  # the tables, built once per process
    tracemalloc.start()
    try:
        chunks = parse_json(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    json_size = sum(map(len, chunks))
    assert json_size < 4 * len(text)
    assert peak < 5 * len(text), f"peak {peak:,} bytes for a {len(text):,}-character line"


def test_a_deeply_nested_line_comes_in_chunks_too():
    depth = 10_000
    text = "a=(" * (depth - 1) + "z=1" + ")" * (depth - 1)
    chunks = parse_json(text)
    assert len(chunks) > 2 * depth // CHUNK_STATEMENTS
    assert "".join(chunks) == scl.to_json(scl.parse(text))
