"""Readers: FileReader / CSVReader on the real UCI files (examples/data) and on small fixtures.

Real files: the three occupancy files (header of 7 names, rows of 8 fields) and the Kaggle
export of the UCI air-quality file (`-200` missing values, one corrupt row at line 4889).
What the real files lack (BOM, `;` + decimal comma, bad bytes, quoted newlines) is written
under tmp_path.
"""

from __future__ import annotations

import csv
import itertools
import multiprocessing
import os
import queue
import time
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chronopipe as cp
from chronopipe.readers import CSVReader, FileReader, ReaderError, ReaderSummary, Reject
from chronopipe.readers.csvlayout import stands_alone

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
OCCUPANCY = {"datatraining.txt": 8143, "datatest.txt": 2665, "datatest2.txt": 9752}
AIR = DATA / "AirQualityUCI.csv"
AIR_ROWS = 9357  # data lines; line 4889 is the corrupt one
AIR_BAD_LINE = 4889
OCCUPANCY_KEYS = ["row", "date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio", "Occupancy"]
# The original UCI layout of the air-quality file: `;`, decimal commas, two empty trailing
# columns, blank trailing rows (the first three data rows of the Kaggle export, rewritten).
UCI_ORIGINAL = (
    "Date;Time;CO(GT);PT08.S1(CO);NMHC(GT);C6H6(GT);PT08.S2(NMHC);NOx(GT);PT08.S3(NOx);NO2(GT);PT08.S4(NO2);"
    "PT08.S5(O3);T;RH;AH;;\n"
    "10/03/2004;18.00.00;2,6;1360;150;11,9;1046;166;1056;113;1692;1268;13,6;48,9;0,7578;;\n"
    "10/03/2004;19.00.00;2;1292;112;9,4;955;103;1174;92;1559;972;13,3;47,7;0,7255;;\n"
    "10/03/2004;20.00.00;2,2;1402;88;9,0;939;131;1140;114;1555;1074;11,9;54,0;0,7502;;\n"
    ";;;;;;;;;;;;;;;;\n"
    ";;;;;;;;;;;;;;;;\n"
)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def drain(q) -> list:
    """Every record from a queue until END, with the seed's loop."""
    items = []
    while True:
        item = q.get(timeout=30)
        if item == queue.Empty:
            return items
        items.append(item)


# -- real data: counts and layout ------------------------------------------------------
@pytest.mark.parametrize(("name", "rows"), OCCUPANCY.items())
def test_occupancy_files_give_one_record_per_data_line_and_no_rejects(name, rows):
    reader = CSVReader(DATA / name)
    assert sum(1 for _ in reader) == rows
    assert reader.rejects == [] and reader.rejected == 0


@pytest.mark.parametrize("name", OCCUPANCY)
def test_the_unnamed_leading_column_of_occupancy_files_is_named_row(name):
    first = next(iter(CSVReader(DATA / name)))
    assert list(first) == OCCUPANCY_KEYS
    assert first["date"].startswith("2015-02-")  # not shifted: "date" holds the timestamp


def test_index_name_none_drops_the_unnamed_leading_column():
    first = next(iter(CSVReader(DATA / "datatest.txt", index_name=None)))
    assert list(first) == OCCUPANCY_KEYS[1:]
    assert first["date"] == "2015-02-02 14:19:00"


def test_row_numbers_of_datatest_start_at_140_and_have_no_gaps():
    rows = [int(r["row"]) for r in CSVReader(DATA / "datatest.txt")]
    assert rows == list(range(140, 2805))


def test_filereader_yields_every_physical_line_without_its_line_ending():
    lines = list(FileReader(DATA / "datatest.txt"))
    assert len(lines) == OCCUPANCY["datatest.txt"] + 1
    assert lines[0] == '"date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"'
    assert not any(line.endswith("\n") for line in lines)


# -- typed values ------------------------------------------------------------------------
def test_typed_converts_ints_floats_and_timestamps():
    first = next(iter(CSVReader(DATA / "datatraining.txt", typed=True)))
    assert first == {"row": 1, "date": datetime(2015, 2, 4, 17, 51), "Temperature": 23.18, "Humidity": 27.272,
                     "Light": 426, "CO2": 721.25, "HumidityRatio": 0.00479298817650529, "Occupancy": 1}


@pytest.mark.parametrize("name", OCCUPANCY)
def test_typed_timestamps_are_datetimes_increasing_through_each_file(name):
    stamps = [r["date"] for r in CSVReader(DATA / name, typed=True)]
    assert all(isinstance(s, datetime) for s in stamps)
    assert all(a < b for a, b in itertools.pairwise(stamps))


def test_quoted_and_unquoted_timestamps_convert_alike():
    quoted = next(iter(CSVReader(DATA / "datatraining.txt", typed=True)))["date"]  # "2015-02-04 17:51:00"
    bare = next(iter(CSVReader(DATA / "datatest2.txt", typed=True)))["date"]  # 2015-02-11 14:48:00
    assert (quoted, bare) == (datetime(2015, 2, 4, 17, 51), datetime(2015, 2, 11, 14, 48))


def test_a_typed_int_column_widens_to_float_on_the_first_decimal():
    light = [r["Light"] for r in itertools.islice(CSVReader(DATA / "datatraining.txt", typed=True), 40)]
    assert light[0] == 426 and isinstance(light[0], int)
    assert all(isinstance(v, (int, float)) for v in light)


def test_air_quality_timestamp_joins_day_first_dates_and_dotted_times_hourly():
    reader = CSVReader(AIR, timestamp=("Date", "Time"))
    stamps = [r["timestamp"] for r in reader]
    assert stamps[0] == datetime(2004, 3, 10, 18) and stamps[-1] == datetime(2005, 4, 4, 14)
    steps = Counter(b - a for a, b in itertools.pairwise(stamps))
    assert steps == {timedelta(hours=1): AIR_ROWS - 3, timedelta(hours=2): 1}  # the gap: the rejected row
    assert datetime(2005, 1, 26, 4) in stamps  # line 7716: single-digit hour "4.00.00"


def test_na_values_become_none_with_the_counts_of_quirks_md():
    rows = list(CSVReader(AIR, typed=True, na_values=["-200"]))
    nones = Counter(k for r in rows for k, v in r.items() if v is None)
    assert {k: nones[k] for k in ("CO(GT)", "NMHC(GT)", "NOx(GT)", "NO2(GT)", "T")} == {
        "CO(GT)": 1682, "NMHC(GT)": 8442, "NOx(GT)": 1638, "NO2(GT)": 1641, "T": 366}
    assert -200 not in {v for r in rows for v in r.values()}


def test_numeric_na_values_also_match_other_spellings_when_typed(tmp_path):
    path = write(tmp_path / "na.csv", "a,b\n1,-200\n2,-200.0\n3,7\n")
    assert [r["b"] for r in CSVReader(path, typed=True, na_values=[-200])] == [None, None, 7]


def test_a_pinned_type_that_does_not_convert_is_a_reject(tmp_path):
    path = write(tmp_path / "pinned.csv", "n,when\n1,01/02/2004\nx,02/02/2004\n3,31/02/2004\n")
    reader = CSVReader(path, types={"n": "int", "when": "date"})
    assert [r["n"] for r in reader] == [1]
    assert [(j.line, j.reason.split(":")[0]) for j in reader.rejects] == [(3, "column 'n'"), (4, "column 'when'")]


# -- rejects -------------------------------------------------------------------------------
def test_typed_air_quality_rejects_exactly_the_corrupt_line():
    reader = CSVReader(AIR, typed=True)
    assert sum(1 for _ in reader) == AIR_ROWS - 1
    assert [j.line for j in reader.rejects] == [AIR_BAD_LINE]


def test_untyped_air_quality_cannot_see_the_glued_row_and_reads_every_line():
    reader = CSVReader(AIR)
    assert sum(1 for _ in reader) == AIR_ROWS
    assert reader.rejected == 0


def test_a_reject_carries_file_line_raw_text_and_reason():
    reader = CSVReader(AIR, typed=True)
    for _ in reader:
        pass
    (reject,) = reader.rejects
    assert (reject.file, reject.line) == (str(AIR), AIR_BAD_LINE)
    assert reject.text == "30/09/2004,09.00.00.-200,1428,-200,20.9,1321,-200,544,-200,1779,1621,18.6,57.2,1.2146,"
    assert reject.reason == "column 'Time': '09.00.00.-200' is not a time"
    assert str(reject).startswith(f"{AIR}:{AIR_BAD_LINE}: ")


def test_on_error_raise_stops_at_the_first_bad_row_naming_file_and_line():
    with pytest.raises(ReaderError, match=rf"AirQualityUCI\.csv:{AIR_BAD_LINE}: column 'Time'"):
        list(CSVReader(AIR, typed=True, on_error="raise"))


def test_on_error_raise_in_an_actor_fails_join_with_file_and_line(mode):
    reader = CSVReader(AIR, typed=True, on_error="raise", start=True, mode=mode)
    with pytest.raises(cp.ActorError, match=rf"AirQualityUCI\.csv:{AIR_BAD_LINE}:"):
        reader.join(timeout=60)


def test_rejects_of_an_actor_reach_the_parent_through_join(mode):
    reader = CSVReader(AIR, typed=True, start=True, mode=mode)
    records = list(reader.queue)
    summary = reader.join(timeout=60)
    assert isinstance(summary, ReaderSummary) and summary.complete
    assert len(records) == summary.records == AIR_ROWS - 1
    assert [j.line for j in summary.rejects] == [j.line for j in reader.rejects] == [AIR_BAD_LINE]
    stats = reader.statistics()
    assert (stats.rejected, stats.records, stats.lines, stats.emitted) == (1, AIR_ROWS - 1, AIR_ROWS + 1, AIR_ROWS - 1)


def test_a_row_with_the_wrong_number_of_fields_is_rejected_with_its_line(tmp_path):
    path = write(tmp_path / "count.csv", "a,b\n1,2\n3,4,5\n6\n7,8\n")
    reader = CSVReader(path)
    assert list(reader) == [{"a": "1", "b": "2"}, {"a": "7", "b": "8"}]
    assert [(j.line, j.text, j.reason) for j in reader.rejects] == [
        (3, "3,4,5", "expected 2 fields, got 3"), (4, "6", "expected 2 fields, got 1")]


def test_undecodable_bytes_reject_the_row_and_reading_goes_on(tmp_path):
    path = write(tmp_path / "latin1.csv", b"city,n\nOslo,1\nM\xfcnchen,2\nRoma,3\n")
    reader = CSVReader(path)
    assert [r["city"] for r in reader] == ["Oslo", "Roma"]
    (reject,) = reader.rejects
    assert (reject.line, reject.text) == (3, "M\\xfcnchen,2")
    assert "undecodable" in reject.reason


def test_the_encoding_option_reads_those_bytes(tmp_path):
    path = write(tmp_path / "latin1.csv", b"city,n\nM\xfcnchen,2\n")
    assert [r["city"] for r in CSVReader(path, encoding="latin-1")] == ["München"]


def test_filereader_rejects_an_undecodable_line_with_its_number(tmp_path):
    path = write(tmp_path / "log.txt", b"ok\n\xff\xfe bad\nok again\n")
    reader = FileReader(path)
    assert list(reader) == ["ok", "ok again"]
    assert [j.line for j in reader.rejects] == [2]


def test_malformed_quoting_is_a_reject_not_a_mangled_value(tmp_path):
    path = write(tmp_path / "quotes.csv", 'a,b\n"x"y,1\nz,2\n')
    reader = CSVReader(path)
    assert list(reader) == [{"a": "z", "b": "2"}]
    assert reader.rejects[0].line == 2 and "malformed CSV" in reader.rejects[0].reason


def test_rejects_beyond_max_rejects_are_counted_not_kept(tmp_path):
    path = write(tmp_path / "many.csv", "a,b\n" + "1\n" * 50 + "1,2\n")
    reader = CSVReader(path, max_rejects=10)
    assert len(list(reader)) == 1
    assert (reader.rejected, len(reader.rejects), reader.statistics().rejected) == (50, 10, 50)


def test_a_wrapper_that_raises_is_fatal_with_file_and_line(tmp_path):
    path = write(tmp_path / "w.csv", "a\n1\n2\n")

    def only_ones(rec):
        if rec["a"] != "1":
            raise KeyError("not one")
        return rec

    with pytest.raises(ReaderError, match=r"w\.csv:3: wrapper only_ones raised KeyError"):
        list(CSVReader(path, wrapper=only_ones))


# -- fixtures for what the real files do not have -----------------------------------------
def test_a_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = write(tmp_path / "bom.csv", "\ufeffdate,value\n2015-02-04,1\n".encode())
    assert list(CSVReader(path)) == [{"date": "2015-02-04", "value": "1"}]


def test_semicolons_and_decimal_commas_are_sniffed(tmp_path):
    path = write(tmp_path / "uci.csv", UCI_ORIGINAL)
    first = next(iter(CSVReader(path, typed=True)))
    assert (first["CO(GT)"], first["C6H6(GT)"], first["AH"], first["PT08.S1(CO)"]) == (2.6, 11.9, 0.7578, 1360)


def test_delimiter_and_decimal_can_be_given(tmp_path):
    path = write(tmp_path / "tabs.tsv", "p,q\tr\n1,5\t2,25\n")  # sniffing would pick "," (a tie goes to ",")
    assert list(CSVReader(path, delimiter="\t", decimal=",", typed=True)) == [{"p,q": 1.5, "r": 2.25}]


def test_the_original_uci_layout_reads_like_the_kaggle_export(tmp_path):
    path = write(tmp_path / "uci.csv", UCI_ORIGINAL)
    reader = CSVReader(path, typed=True, timestamp=("Date", "Time"))
    original = list(reader)
    kaggle = list(itertools.islice(CSVReader(AIR, typed=True, timestamp=("Date", "Time")), 3))
    assert original == kaggle  # trailing ";;" columns dropped, decimal commas honoured
    assert (reader.blank, reader.rejected) == (2, 0)  # the ";;;;" rows: blank, counted, not rejects


def test_quoted_fields_keep_delimiters_quotes_newlines_and_physical_line_numbers(tmp_path):
    text = 'id,note\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines"\n4,"x",extra\n5,ok\n'
    reader = CSVReader(write(tmp_path / "q.csv", text))
    assert [r["note"] for r in reader] == ["a, b", 'say "hi"', "two\nlines", "ok"]
    assert [(j.line, j.reason) for j in reader.rejects] == [(6, "expected 2 fields, got 3")]


def test_a_bad_row_spanning_lines_reports_its_first_and_last_line(tmp_path):
    text = 'id,note\n1,ok\n2,"three\nphysical\nlines",oops\n3,ok\n'
    reader = CSVReader(write(tmp_path / "span.csv", text))
    assert [r["id"] for r in reader] == ["1", "3"]
    assert [(j.line, j.end_line) for j in reader.rejects] == [(3, 5)]


def test_an_unmatched_quote_costs_its_own_line_and_the_rows_after_it_are_read(tmp_path):
    rows = [f"2020-01-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},{i}\n" for i in range(10_000)]
    rows[4_000] = '2020-01-01 01:06:40,"oops\n'  # a quote that never closes: it used to swallow the rest
    reader = CSVReader(write(tmp_path / "stray.csv", "date,value\n" + "".join(rows)))
    values = [r["value"] for r in reader]
    assert len(values) == 9_999 and "4001" in values and "3999" in values
    assert [(j.line, j.end_line, j.text) for j in reader.rejects] == [(4_002, None, '2020-01-01 01:06:40,"oops')]
    assert "quote" in reader.rejects[0].reason


def test_an_unmatched_quote_in_a_quoted_file_rejects_that_line_only(tmp_path):
    text = '"", "date","v"\n"1","2015-02-02 14:19:00",1\n"2","2015-02-02 14:20:00,2\n"3","2015-02-02 14:21:00",3\n'
    reader = CSVReader(write(tmp_path / "q.csv", text.replace('", "', '","')))
    assert [r["row"] for r in reader] == ["1", "3"]
    assert [j.line for j in reader.rejects] == [3]


def test_an_unmatched_quote_closed_by_another_stray_quote_later_loses_only_those_lines(tmp_path):
    text = 'id,v\n1,a\n2,"oops\n3,c\n4,d\n5,"e\n6,f\n'  # line 3 opens a quote, line 6 "closes" it
    reader = CSVReader(write(tmp_path / "q.csv", text))
    assert [r["id"] for r in reader] == ["1", "3", "4", "6"]
    assert [j.line for j in reader.rejects] == [3, 6]


def test_quoted_newlines_after_a_stray_quote_still_make_one_row(tmp_path):
    text = 'id,note\n1,"oops\n2,ok\n3,"two\nlines"\n4,ok\n'
    reader = CSVReader(write(tmp_path / "q.csv", text), line_key="line")
    assert [(r["id"], r["note"], r["line"]) for r in reader] == [("2", "ok", 3), ("3", "two\nlines", 4),
                                                                 ("4", "ok", 6)]
    assert [j.line for j in reader.rejects] == [2]


def test_two_unmatched_quotes_on_consecutive_lines_cost_one_line_each(tmp_path):
    reader = CSVReader(write(tmp_path / "q4.csv", 'date,v\n1,q1\n2,"q2\n3,"q3\n4,q4\n'), line_key="line")
    assert [(r["date"], r["line"]) for r in reader] == [("1", 2), ("4", 5)]
    assert [(j.line, j.end_line, j.text) for j in reader.rejects] == [(3, None, '2,"q2'), (4, None, '3,"q3')]


@pytest.mark.parametrize("text", ['date,v\n1,Smith, John\n2,Doe\n3,x\n', 'date,v\n1,a,b\n2,c\n3,d\n'])
def test_one_extra_field_in_the_first_row_alone_is_a_reject_not_an_index_column(tmp_path, text):
    reader = CSVReader(write(tmp_path / "comma.csv", text))
    assert [list(r) for r in reader] == [["date", "v"], ["date", "v"]]
    assert [(j.line, j.reason) for j in reader.rejects] == [(2, "expected 2 fields, got 3")]


def test_the_index_column_is_decided_by_most_of_the_first_rows(tmp_path):
    text = "date,v\n1,a\n" + "".join(f"{i},{i},x\n" for i in range(2, 8)) + "\n8,y\n"
    reader = CSVReader(write(tmp_path / "index.csv", text), line_key="line")
    assert [(r["row"], r["line"]) for r in reader] == [(str(i), i + 1) for i in range(2, 8)]
    assert [j.line for j in reader.rejects] == [2, 10] and reader.blank == 1


def test_a_row_with_an_empty_key_is_a_reject_typed_or_not(tmp_path):
    path = write(tmp_path / "m3.csv", "date,v\n1,a\n2,b\n,c\n4,d\n")
    for typed in (False, True):
        reader = CSVReader(path, key="date", typed=typed)
        assert [r["v"] for r in reader] == ["a", "b", "d"]
        assert [(j.line, j.reason) for j in reader.rejects] == [(4, "empty key 'date'")]
    with pytest.raises(ValueError, match="key='nope' is not a column"):
        list(CSVReader(path, key="nope"))


_PIECES = st.sampled_from(["1", "ab", "x y", ",", ",", "\"", "\"", "\"\"", " ", ";", "1,ab", "1,\"ab", "ab\",1"])
_LINES = st.lists(st.lists(_PIECES, max_size=6).map("".join), min_size=0, max_size=12)


@settings(max_examples=400, deadline=None)
@given(header=st.sampled_from(["k,v", "k,v,w", '"k","v"']), lines=_LINES, crlf=st.booleans())
def test_every_physical_line_is_in_exactly_one_record_reject_or_blank_row(tmp_path_factory, header, lines, crlf):
    """Stray quotes, commas and newlines anywhere: a record is the parse of the lines from its
    first one, a reject holds its lines, every other line is a blank row; none is in two."""
    end = "\r\n" if crlf else "\n"
    path = write(tmp_path_factory.mktemp("prop") / "p.csv", "".join(f"{x}{end}" for x in [header, *lines]))
    physical = [header, *lines]  # physical[n - 1] is line n
    reader = CSVReader(path, line_key="\0line")
    records = list(reader)
    owner: dict[int, str] = {}

    def claim(first: int, last: int, what: str) -> None:
        for n in range(first, last + 1):
            assert n not in owner, f"line {n} is in {owner[n]} and in {what}"
            owner[n] = what

    width = len([c for c in reader.columns or () if c != "\0line"])  # the fields of a row (index included)
    for j in reader.rejects:
        last = j.end_line or j.line
        assert j.text == end.join(physical[j.line - 1:last]).rstrip("\r\n")
        for n in range(j.line + 1, last + 1):  # a stray quote costs its own line, not a row after it
            assert not stands_alone(physical[n - 1], (width,), {"strict": True}), f"line {n} lost in {j}"
        claim(j.line, last, f"reject {j}")
    for rec in records:
        first = rec.pop("\0line")
        consumed = []
        rows = csv.reader((consumed.append(n) or f"{physical[n - 1]}{end}"  # type: ignore[func-returns-value]
                           for n in range(first, len(physical) + 1)), strict=True)
        assert list(rec.values()) == next(rows)  # the index column, if any, is "row": every field is a value
        claim(first, consumed[-1], f"record {rec}")
    blank = [n for n in range(2, len(physical) + 1) if n not in owner]
    assert all(not any(next(csv.reader([physical[n - 1]]), [])) for n in blank), blank
    assert len(blank) == reader.blank
    assert (reader.records, reader.lines) == (len(records), len(physical))


def test_line_key_gives_each_record_the_physical_line_of_its_first_line(tmp_path):
    text = 'id,note\n1,a\n\n2,"two\nlines"\n3,b,extra\n4,c\n'
    reader = CSVReader(write(tmp_path / "lines.csv", text), line_key="source_line")
    assert [(r["id"], r["source_line"]) for r in reader] == [("1", 2), ("2", 4), ("4", 7)]


def test_line_key_travels_with_records_from_a_reader_process():
    reader = CSVReader(DATA / "datatest.txt", line_key="line", start=True, mode="process")
    lines = [r["line"] for r in reader.queue]
    reader.join(timeout=60)
    assert lines == list(range(2, 2 + OCCUPANCY["datatest.txt"]))


def test_a_line_key_that_is_also_a_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="line_key='v' is also a column"):
        list(CSVReader(write(tmp_path / "c.csv", "id,v\n1,2\n"), line_key="v"))


def test_crlf_line_endings_read_like_lf_with_the_same_line_numbers(tmp_path):
    reader = CSVReader(write(tmp_path / "crlf.csv", "a,b\r\n1,2\r\n3\r\n4,5\r\n"))
    assert list(reader) == [{"a": "1", "b": "2"}, {"a": "4", "b": "5"}]
    assert [(j.line, j.text) for j in reader.rejects] == [(3, "3")]


def test_headerless_files_take_fieldnames_or_numbered_columns(tmp_path):
    path = write(tmp_path / "bare.csv", "1,2\n3,4\n")
    assert list(CSVReader(path, header=False, fieldnames=["x", "y"])) == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]
    assert list(CSVReader(path, header=False))[-1] == {"column_1": "3", "column_2": "4"}


def test_empty_and_repeated_header_names_get_distinct_keys(tmp_path):
    path = write(tmp_path / "names.csv", "a,,a\n1,2,3\n")
    assert list(CSVReader(path)) == [{"a": "1", "column_2": "2", "a_2": "3"}]


def test_empty_and_header_only_files_give_no_records(tmp_path):
    for text in ("", "a,b\n", "\ufeff"):
        reader = CSVReader(write(tmp_path / "e.csv", text))
        assert (list(reader), reader.rejected) == ([], 0)


def test_day_first_dates_and_dotted_times_parse_padded_or_not(tmp_path):
    path = write(tmp_path / "d.csv", "Date,Time\n10/3/2004,18.00.00\n13/03/2004,4.00.00\n")
    assert list(CSVReader(path, typed=True)) == [{"Date": date(2004, 3, 10), "Time": dtime(18)},
                                                 {"Date": date(2004, 3, 13), "Time": dtime(4)}]


# -- as actors ---------------------------------------------------------------------------
def test_start_true_returns_at_once_and_records_arrive_on_the_queue(mode):
    began = time.monotonic()
    reader = CSVReader(DATA / "datatest.txt", start=True, mode=mode)
    assert reader.state in ("running", "finished") and time.monotonic() - began < 5
    assert len(list(reader.queue)) == OCCUPANCY["datatest.txt"]
    assert reader.join(timeout=60).records == OCCUPANCY["datatest.txt"]


def test_start_later_returns_the_reader_hosted_in_its_mode(mode):
    reader = CSVReader(DATA / "datatest.txt", mode=mode)
    assert reader.start() is reader
    assert reader.queue is reader.channel and reader.queue.mode == mode
    assert len(list(reader.queue)) == OCCUPANCY["datatest.txt"]
    reader.join(timeout=60)
    assert (reader.pid != os.getpid()) == (mode == "process")


def test_a_reader_is_a_named_actor_named_after_its_file_by_default():
    assert isinstance(CSVReader(DATA / "datatest.txt"), cp.Actor)
    assert CSVReader(DATA / "datatest.txt").name == "datatest.txt"
    assert CSVReader(DATA / "datatest.txt", name="test-a").name == "test-a"


def test_a_reader_feeds_a_manager_queue_ending_with_end(mode):
    q = cp.Runtime().manager().Queue()
    reader = CSVReader(DATA / "datatest.txt", q, typed=True, start=True, mode=mode)
    records = drain(q)
    assert len(records) == OCCUPANCY["datatest.txt"] and records[0]["row"] == 140
    assert reader.join(timeout=60).rejected == 0


def test_a_reader_in_a_process_loses_nothing_through_a_stdlib_multiprocessing_queue(mode):
    q = multiprocessing.Queue()  # the child must flush its feeder thread before it exits
    reader = CSVReader(DATA / "datatest.txt", q, start=True, mode=mode)
    assert len(drain(q)) == OCCUPANCY["datatest.txt"]
    reader.join(timeout=60)


def test_a_failing_reader_still_ends_a_foreign_queue_so_its_consumer_stops(mode, tmp_path):
    path = write(tmp_path / "bad.csv", "n\n1\n2\nnot a number\n4\n")
    q = cp.Runtime().manager().Queue()
    reader = CSVReader(path, q, typed=True, on_error="raise", start=True, mode=mode)
    assert len(drain(q)) <= 2  # END came after at most the rows before the bad one
    with pytest.raises(cp.ActorError, match=r"bad\.csv:4: column 'n'"):
        reader.join(timeout=60)


def test_one_reader_per_file_into_one_channel_gives_every_row(mode):
    out = cp.Channel(mode=mode, writers=len(OCCUPANCY), name="occupancy")
    readers = [CSVReader(DATA / name, out, start=True, mode=mode) for name in OCCUPANCY]
    assert sum(1 for _ in out) == sum(OCCUPANCY.values())
    assert [r.join(timeout=60).records for r in readers] == list(OCCUPANCY.values())


def test_stop_ends_a_reader_early_and_its_summary_says_so(mode):
    reader = CSVReader(DATA / "datatest2.txt", start=True, mode=mode, maxsize=100)
    reader.stop()
    got = len(list(reader.queue))
    summary = reader.join(timeout=60)
    assert not summary.complete and got == summary.records < OCCUPANCY["datatest2.txt"]


def test_iterating_a_started_reader_is_refused():
    reader = CSVReader(DATA / "datatest.txt", start=True, mode="thread")
    with pytest.raises(RuntimeError, match="iterate its .queue"):
        iter(reader)
    reader.join(timeout=60)


def test_a_missing_file_fails_at_start_not_in_the_actor(tmp_path):
    with pytest.raises(FileNotFoundError):
        CSVReader(tmp_path / "nope.csv", start=True)


@pytest.mark.parametrize("cls", [CSVReader, FileReader])
def test_a_directory_is_named_a_directory_at_start_in_either_mode(tmp_path, mode, cls):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        cls(tmp_path, start=True, mode=mode)


@pytest.mark.parametrize("cls", [CSVReader, FileReader])
def test_a_fifo_is_named_not_a_regular_file_at_start_not_missing(tmp_path, cls):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        cls(fifo, start=True, mode="thread")


@pytest.mark.parametrize("cls", [CSVReader, FileReader])
def test_a_directory_is_named_a_directory_when_iterated(tmp_path, cls):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        list(cls(tmp_path))


def test_rejects_pickle_for_the_trip_back_from_a_process():
    import pickle

    reject = Reject("f.csv", 3, "1,2,3", "expected 2 fields, got 3")
    assert pickle.loads(pickle.dumps(ReaderError(reject))).reject == reject


# -- streaming -----------------------------------------------------------------------------
def test_streaming_memory_stays_flat_on_a_2m_row_file(tmp_path):
    rows = 2_000_000
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("i,v\n")
        for start in range(0, rows, 100_000):
            f.write("".join(f"{i},{i % 97}\n" for i in range(start, start + 100_000)))
    reader = CSVReader(path, start=True, mode="process")
    child = psutil.Process(reader.pid)
    rss = {}
    for n, _ in enumerate(reader.queue, 1):
        if n in (200_000, rows - 20_000):
            rss[n] = child.memory_info().rss
    assert reader.join(timeout=60).records == rows
    growth = rss[rows - 20_000] - rss[200_000]
    assert growth < 16 * 2**20, f"reader process grew by {growth / 2**20:.1f} MB over 1.8M rows"
