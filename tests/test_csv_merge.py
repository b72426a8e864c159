"""The CSV merge (chronopipe merge-csv, main.py): nothing lost on bad input.

Every row read is merged, rejected or late, and the report says which; the outputs are written
whole or not at all. Inputs are real files written under tmp_path; the merge runs here with its
reader processes, as the command runs it (tests/test_main.py runs main.py itself).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chronopipe.cli.merge import merge_csv, run_merge
from chronopipe.cli.outputs import UsageError
from chronopipe.readers import CSVReader


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def ts(second: int) -> str:
    return f"2020-01-01 {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def merge(files: list[Path], **options):
    """(figures, report text) of merge_csv."""
    out = io.StringIO()
    figures = merge_csv(files, out=out, err=io.StringIO(), **options)
    return figures, out.getvalue()


@pytest.fixture
def stepping_back(tmp_path) -> list[Path]:
    """a.csv steps back twice (lines 4 and 5 come before line 3); b.csv is in order."""
    a = write(tmp_path / "a.csv", f"date,value\n{ts(0)},a1\n{ts(10)},a2\n{ts(5)},a3\n{ts(6)},a4\n{ts(20)},a5\n")
    b = write(tmp_path / "b.csv", f"date,value\n{ts(1)},b1\n{ts(11)},b2\n")
    return [a, b]


# -- late rows: never discarded ------------------------------------------------------------
def test_late_rows_go_to_a_late_file_beside_the_output_with_source_file_and_line(tmp_path, stepping_back):
    output = tmp_path / "out" / "merged.csv"
    output.parent.mkdir()
    figures, _ = merge(stepping_back, output=output)
    assert [r["value"] for r in rows_of(output)] == ["a1", "b1", "a2", "b2", "a5"]
    late = rows_of(tmp_path / "out" / "merged.late.csv")
    assert late == [
        {"date": ts(5), "value": "a3", "source_file": str(stepping_back[0]), "source_line": "4"},
        {"date": ts(6), "value": "a4", "source_file": str(stepping_back[0]), "source_line": "5"},
    ]
    assert figures.late_output == tmp_path / "out" / "merged.late.csv"


def test_without_output_late_rows_are_listed_and_counted_per_file_name(stepping_back):
    figures, report = merge(stepping_back)
    assert figures.late_per_file == {"a.csv": 2, "b.csv": 0}
    assert re.search(rf"^late \S*a\.csv:4: date {ts(5)} comes after {ts(10)}$", report, re.MULTILINE)
    assert re.search(r"^late \S*a\.csv:5: ", report, re.MULTILINE)
    assert re.search(r"^late rows: 2 \(a\.csv 2\)", report, re.MULTILINE)
    assert "merge.in0" not in report


def test_late_rows_beyond_ten_are_counted_in_the_report(tmp_path):
    back = "".join(f"{ts(s)},late\n" for s in range(1, 26))  # 25 rows before the first one
    a = write(tmp_path / "a.csv", f"date,value\n{ts(100)},first\n{ts(101)},second\n{back}")
    figures, report = merge([a])
    assert figures.late == 25 and len(re.findall(r"^late \S+:\d+: ", report, re.MULTILINE)) == 10
    assert re.search(r"^late \.\.\. and 15 more in a\.csv$", report, re.MULTILINE)


def test_a_late_row_makes_the_exit_status_1(stepping_back):
    assert run_merge(stepping_back, out=io.StringIO(), err=io.StringIO()) == 1


def test_a_merge_with_nothing_rejected_or_late_has_exit_status_0(tmp_path):
    a = write(tmp_path / "a.csv", f"date,v\n{ts(0)},1\n{ts(2)},2\n")
    b = write(tmp_path / "b.csv", f"date,v\n{ts(1)},3\n")
    assert run_merge([a, b], out=io.StringIO(), err=io.StringIO()) == 0


def test_no_late_rows_file_is_left_when_no_row_is_late(tmp_path):
    a = write(tmp_path / "a.csv", f"date,v\n{ts(0)},1\n{ts(2)},2\n")
    merge([a], output=tmp_path / "merged.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "merged.csv"]


def test_descending_files_merge_with_direction_max(tmp_path):
    a = write(tmp_path / "a.csv", f"date,v\n{ts(9)},a\n{ts(5)},b\n{ts(1)},c\n")
    b = write(tmp_path / "b.csv", f"date,v\n{ts(7)},d\n{ts(3)},e\n")
    figures, _ = merge([a, b], direction="max", output=tmp_path / "m.csv")
    assert [r["v"] for r in rows_of(tmp_path / "m.csv")] == ["a", "d", "b", "e", "c"]
    assert (figures.merged, figures.late) == (5, 0)


# -- a file in the wrong direction: stopped before anything is merged ------------------------
def test_a_file_whose_first_rows_run_against_the_direction_stops_the_run_naming_file_and_lines(tmp_path):
    a = write(tmp_path / "a.csv", f"date,v\n{ts(0)},1\n{ts(1)},2\n{ts(2)},3\n")
    with pytest.raises(UsageError, match=r"a\.csv: lines 2-4 are in ascending date order .*--direction max"):
        merge([a], direction="max", output=tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_a_single_early_step_back_is_late_rows_not_a_wrong_direction(tmp_path):
    a = write(tmp_path / "a.csv", f"date,v\n{ts(9)},glitch\n{ts(1)},1\n{ts(2)},2\n{ts(10)},3\n")
    figures, _ = merge([a])
    assert (figures.merged, figures.late) == (2, 2)


# -- every row accounted for ---------------------------------------------------------------
def test_the_summary_says_rows_in_equals_merged_plus_rejected_plus_late(tmp_path, stepping_back):
    c = write(tmp_path / "c.csv", f"date,value\n{ts(2)},c1\n{ts(3)},c2,extra\n{ts(4)}\n")
    figures, report = merge([*stepping_back, c])
    assert (figures.rows_in, figures.merged, figures.rejected, figures.late) == (10, 6, 2, 2)
    assert "rows in 10 = merged 6 + rejected 2 + late 2" in report.splitlines()


def test_an_unmatched_quote_costs_one_row_of_the_merge_not_the_rows_after_it(tmp_path):
    lines = [f"{ts(2 * i)},{i}\n" for i in range(10_000)]
    lines[3_000] = f'{ts(6_000)},"unclosed\n'
    a = write(tmp_path / "a.csv", "date,v\n" + "".join(lines))
    b = write(tmp_path / "b.csv", "date,v\n" + "".join(f"{ts(2 * i + 1)},b\n" for i in range(10)))
    figures, report = merge([a, b])
    assert (figures.merged, figures.rejected, figures.late) == (10_009, 1, 0)
    assert re.search(r"^rejected \S*a\.csv:3002: malformed CSV: unmatched quote", report, re.MULTILINE)


def test_one_unquoted_comma_in_the_first_row_rejects_that_row_only(tmp_path):
    a = write(tmp_path / "comma2.csv", "date,v\n1,Smith, John\n2,Doe\n3,x\n")
    figures, report = merge([a], output=tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_text().splitlines() == ["date,v", "2,Doe", "3,x"]
    assert (figures.rows_in, figures.merged, figures.rejected, figures.first) == (3, 2, 1, "2")
    assert re.search(r"^rejected \S*comma2\.csv:2: expected 2 fields, got 3$", report, re.MULTILINE)


def test_two_unmatched_quotes_on_consecutive_lines_are_two_rejects_and_the_next_line_merges(tmp_path):
    a = write(tmp_path / "q4.csv", 'date,v\n1,q1\n2,"q2\n3,"q3\n4,q4\n')
    _, report = merge([a], output=tmp_path / "m.csv")
    assert [r["v"] for r in rows_of(tmp_path / "m.csv")] == ["q1", "q4"]
    assert "rows in 4 = merged 2 + rejected 2 + late 0" in report.splitlines()
    assert [line.split(":")[1] for line in report.splitlines() if line.startswith("rejected ")] == ["3", "4"]


def test_a_bad_row_spanning_lines_is_reported_with_its_lines_and_blank_lines_separately(tmp_path):
    a = write(tmp_path / "a.csv", 'date,v\n1,a\n\n2,"x\ny",z\n3,b\n')
    figures, report = merge([a])
    assert (figures.rows_in, figures.merged, figures.rejected, figures.blank) == (3, 2, 1, 1)
    assert re.search(r"^rejected \S*a\.csv:4-5: expected 2 fields, got 3$", report, re.MULTILINE)
    assert "blank lines skipped: 1 (a.csv 1); they are no rows" in report.splitlines()


@pytest.mark.parametrize("typed", [False, True])
def test_a_row_with_an_empty_key_is_rejected_and_the_merge_goes_on(tmp_path, typed):
    a = write(tmp_path / "m3.csv", "date,v\n1,a\n2,b\n,c\n4,d\n")
    figures, report = merge([a], typed=typed, output=tmp_path / "mx.csv")
    assert [r["v"] for r in rows_of(tmp_path / "mx.csv")] == ["a", "b", "d"]
    assert (figures.rows_in, figures.merged, figures.rejected) == (4, 3, 1)
    assert re.search(r"^rejected \S*m3\.csv:4: empty key 'date'$", report, re.MULTILINE)
    assert "object at" not in report


@pytest.mark.parametrize("odd", ["abc", "nan", "2015-02-03"])
def test_with_typed_an_odd_first_key_is_its_rows_reject_not_the_columns_type(tmp_path, odd):
    a = write(tmp_path / "a.csv", f"date,v\n{odd},a\n1,b\n2,c\n3,d\n")
    b = write(tmp_path / "b.csv", "date,v\n1,e\n2,f\n3,g\n")
    figures, report = merge([a, b], typed=True, output=tmp_path / "out.csv")
    assert (figures.rows_in, figures.merged, figures.rejected, figures.late) == (7, 6, 1, 0), report
    assert re.search(r"^rejected \S*a\.csv:2: column 'date': .* is not a number$", report, re.MULTILINE)


def test_a_file_given_twice_has_its_own_name_and_rows_in_sums_every_file(tmp_path):
    from chronopipe.cli.merge import MergeFigures, _names
    names = _names([Path("a.csv"), Path("a.csv"), Path("./a.csv")])
    assert names == ["a.csv", "a.csv (2)", "a.csv (3)"]
    figures = MergeFigures(files=names, paths=["a.csv"] * 3, rows=dict.fromkeys(names, 2),
                           rejected_per_file=dict.fromkeys(names, 1), late_per_file=dict.fromkeys(names, 0),
                           merged=6, columns=["date"])
    assert (figures.rows_in, figures.merged + figures.rejected + figures.late) == (9, 9)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("rows", [2, 100_000])
def test_an_output_that_cannot_be_written_is_named_with_the_reason_and_not_written(tmp_path, rows):
    a = write(tmp_path / "a.csv", "date,v\n" + "".join(f"{i:06d},x\n" for i in range(rows)))
    with pytest.raises(UsageError, match=r"^--output /dev/full: No space left on device; not written$"):
        merge([a], output=Path("/dev/full"))


_KEYS = st.sampled_from(["1", "2", "3", "", '"', "1,x", '"2'])
_REST = st.lists(st.sampled_from(["a", ",", ",", '"', "b c", ""]), max_size=4).map("".join)
_ROWS = st.lists(st.tuples(_KEYS, _REST).map(",".join) | st.sampled_from(["", ",", '"']), max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_ROWS, typed=st.booleans())
def test_rows_in_is_merged_plus_rejected_plus_late_whatever_the_lines(tmp_path, rows, typed):
    path = write(tmp_path / "p.csv", "date,v\n" + "".join(f"{r}\n" for r in rows))
    try:
        figures, report = merge([path], typed=typed, output=tmp_path / "m.csv")
    except UsageError as exc:  # keys in the wrong direction, or --typed numbers beside text
        assume("order" not in str(exc) and "cannot be compared" not in str(exc))
        raise
    alone = CSVReader(path, typed=typed, key="date")  # the same file, read here
    n = len(list(alone))
    assert figures.rows_in == figures.merged + figures.rejected + figures.late == n + alone.rejected
    assert (figures.blank, len(rows_of(tmp_path / "m.csv"))) == (alone.blank, figures.merged)
    assert f"rows in {figures.rows_in} = merged {figures.merged} + rejected {figures.rejected}" in report


# -- columns -------------------------------------------------------------------------------
def test_the_output_has_the_union_of_the_columns_in_first_seen_order_missing_values_empty(tmp_path):
    a = write(tmp_path / "a.csv", f"date,temp\n{ts(0)},20\n{ts(2)},21\n")
    b = write(tmp_path / "b.csv", f"humidity,date\n40,{ts(1)}\n")
    merge([a, b], output=tmp_path / "m.csv")
    with (tmp_path / "m.csv").open(newline="") as f:
        assert list(csv.reader(f)) == [["date", "temp", "humidity"], [ts(0), "20", ""], [ts(1), "", "40"],
                                       [ts(2), "21", ""]]


def test_a_header_only_input_is_named_in_the_report_and_the_output_keeps_the_header(tmp_path):
    a = write(tmp_path / "a.csv", f"date,v\n{ts(0)},1\n")
    empty = write(tmp_path / "empty.csv", "")
    header_only = write(tmp_path / "header.csv", "date,v,w\n")
    figures, report = merge([a, empty, header_only], output=tmp_path / "m.csv")
    assert rows_of(tmp_path / "m.csv") == [{"date": ts(0), "v": "1", "w": ""}]
    assert "empty.csv: no rows (empty file)" in report.splitlines()
    assert "header.csv: no rows (header only)" in report.splitlines()
    assert figures.exit_status == 0


def test_header_only_inputs_alone_give_an_output_with_their_header(tmp_path):
    header_only = write(tmp_path / "header.csv", "date,v\n")
    figures, _ = merge([header_only], output=tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_bytes() == b"date,v\r\n" and figures.merged == 0


# -- refused before anything is opened -------------------------------------------------------
def test_a_key_naming_no_column_names_the_key_the_file_and_its_columns(tmp_path):
    a = write(tmp_path / "a.csv", f"Date,temp\n{ts(0)},20\n")
    with pytest.raises(UsageError, match=r"--key date: \S*a\.csv has no column 'date' \(its columns: Date, temp\)"):
        merge([a], key="date")


def test_the_late_rows_file_may_not_be_an_input(tmp_path):
    a = write(tmp_path / "merged.late.csv", f"date,v\n{ts(0)},1\n")
    with pytest.raises(UsageError, match="late rows file .*is also an input"):
        merge([a], output=tmp_path / "merged.csv")
    assert a.read_text() == f"date,v\n{ts(0)},1\n"


# -- written whole or not at all -------------------------------------------------------------
def test_a_run_that_fails_midway_leaves_no_output_nor_temporary_file_and_says_so(tmp_path):
    a = write(tmp_path / "a.csv", "n,v\n1,x\n2,y\n")
    b = write(tmp_path / "b.csv", f"n,v\n{ts(0)},z\n")  # typed: ints and timestamps do not compare
    err = io.StringIO()
    with pytest.raises(UsageError, match="--key n: sort keys cannot be compared"):
        merge_csv([a, b], key="n", typed=True, output=tmp_path / "m.csv", out=io.StringIO(), err=err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]
    assert f"{tmp_path / 'm.csv'}: not written" in err.getvalue()


# -- progress ----------------------------------------------------------------------------------
def test_no_progress_lines_reach_a_stream_that_is_not_a_terminal(tmp_path):
    files = []
    for n in range(2):
        with (tmp_path / f"big{n}.csv").open("w") as f:
            f.write("date,v\n")
            f.writelines(f"{t:012d},{t}\n" for t in range(n, 1_200_000, 2))
        files.append(tmp_path / f"big{n}.csv")
    err = io.StringIO()
    merge_csv(files, out=io.StringIO(), err=err)
    assert err.getvalue() == ""
