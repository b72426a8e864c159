"""CSVBatches (chronopipe.runs.csvtable): a CSV file as typed Arrow Tables, nothing lost.

Real data: the UCI occupancy files in examples/data (a header of 7 names, rows of 8 fields
whose first is a quoted row index) and files of their shape written under tmp_path; the
oddities they lack (bad values, wrong field counts, blank lines, quoted newlines, bad bytes)
are written there too, each at a known physical line.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from chronopipe.readers import CSVReader, ReaderError
from chronopipe.runs.csvtable import CSVBatches

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
TRAINING = DATA / "datatraining.txt"
TRAINING_ROWS = 8143  # data lines of datatraining.txt (8144 lines, header included)
UCI_COLUMNS = ["row", "date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio", "Occupancy"]


def uci_lines(n: int) -> list[str]:
    """A header and ``n`` data lines of the occupancy shape (datatraining's rows, fresh indices)."""
    lines = TRAINING.read_text().splitlines()
    body = [line.split(",", 1)[1] for line in lines[1:]]
    return [lines[0], *(f'"{i + 1}",{body[i % len(body)]}' for i in range(n))]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def read_all(reader: CSVBatches) -> pa.Table:
    tables = list(reader)
    return pa.concat_tables(tables) if tables else pa.table({})


def test_uci_layout_names_the_index_column_row_as_csvreader_does_and_types_the_columns():
    reader = CSVBatches(TRAINING)
    table = read_all(reader)
    csv_reader = CSVReader(TRAINING, typed=True)
    records = list(csv_reader)
    assert reader.columns == csv_reader.columns == UCI_COLUMNS
    assert reader.schema == pa.schema([("row", pa.int64()), ("date", pa.timestamp("us")),
                                       *((n, pa.float64()) for n in UCI_COLUMNS[2:7]), ("Occupancy", pa.int64())])
    assert table.to_pylist() == records  # same names, same values as CSVReader's typed records
    assert records[0]["date"] == datetime(2015, 2, 4, 17, 51)
    assert (reader.rows, reader.rejected, reader.blank) == (TRAINING_ROWS, 0, 0)


def test_counts_add_up_rows_plus_rejected_is_data_lines_minus_blank(tmp_path):
    lines = uci_lines(3000)
    lines[10] = ""  # blank
    lines[20] = lines[20] + ",9"  # a field too many
    lines[2500] = lines[2500].replace(",1", ",x", 1)  # a value that is not a number
    lines[2999] = ",,,,,,,"  # only empty fields: blank
    reader = CSVBatches(write(tmp_path / "mixed.csv", lines), size=1000)
    read_all(reader)
    assert (reader.blank, reader.rejected) == (2, 2)
    assert reader.rows + reader.rejected == (len(lines) - 1) - reader.blank
    assert reader.lines == len(lines)


def test_a_bad_number_far_into_a_big_file_is_rejected_at_its_exact_line_and_the_rest_kept(tmp_path):
    lines = uci_lines(200_000)
    lines[999] = ""  # blank lines before the bad row must not shift its number
    lines[50_000] = ""
    bad_line = 123_457
    fields = lines[bad_line - 1].split(",")
    fields[5] = "abc"  # CO2
    lines[bad_line - 1] = ",".join(fields)
    reader = CSVBatches(write(tmp_path / "big.csv", lines))
    table = read_all(reader)
    [reject] = reader.rejects
    assert (reject.line, reject.reason) == (bad_line, "column CO2: 'abc' is not a number")
    assert reject.file == str(tmp_path / "big.csv") and "abc" in reject.text
    assert table.num_rows == reader.rows == 200_000 - 2 - 1
    index = table.column("row").to_pylist()
    assert fields[0].strip('"') not in {str(i) for i in index[120_000:125_000]}
    assert index[-1] == 200_000 and index[:2] == [1, 2]


def test_a_row_with_the_wrong_number_of_fields_is_rejected_with_its_line(tmp_path):
    lines = uci_lines(150_000)
    lines[5] = ""
    lines[130_000] = lines[130_000] + ",extra"
    lines[140_000] = '"140000",23.1'
    reader = CSVBatches(write(tmp_path / "widths.csv", lines), size=50_000)
    table = read_all(reader)
    assert [(r.line, r.reason) for r in reader.rejects] == [(130_001, "expected 8 fields, got 9"),
                                                           (140_001, "expected 8 fields, got 2")]
    assert reader.rejects[1].text == '"140000",23.1'
    assert table.num_rows == 150_000 - 1 - 2


def test_an_unquoted_empty_field_is_null_and_a_quoted_empty_one_an_empty_string(tmp_path):
    path = write(tmp_path / "nulls.csv", ["id,name,note", '1,,""', '2,"",x', "3,NA,", ",y,z"])
    reader = CSVBatches(path)
    assert read_all(reader).to_pylist() == [
        {"id": 1, "name": None, "note": ""}, {"id": 2, "name": "", "note": "x"}, {"id": 3, "name": "NA", "note": None},
        {"id": None, "name": "y", "note": "z"}]
    assert reader.blank == 0  # only a row of nothing but unquoted empty fields is blank


def test_a_quoted_empty_string_in_a_numeric_column_is_a_reject_not_a_null(tmp_path):
    lines = ["id,v", *(f"{i},{i * 1.5}" for i in range(200)), '200,""']
    reader = CSVBatches(write(tmp_path / "numbers.csv", lines))
    table = read_all(reader)
    assert table.schema.field("v").type == pa.float64() and table.num_rows == 200
    assert [(r.line, r.reason.split(" (")[0]) for r in reader.rejects] == [(202, "column v: '' is not a number")]


def test_every_batch_has_the_first_batchs_schema_and_a_later_misfit_is_rejected(tmp_path):
    lines = ["id,count,when", *(f"{i},{i},2015-02-04 17:51:{i % 60:02d}" for i in range(300))]
    lines[250] = "249,2.5,2015-02-04 17:52:00"  # count became int64 in the first batch: 2.5 is a misfit
    lines[260] = "259,7,"  # a NULL time fits
    reader = CSVBatches(write(tmp_path / "drift.csv", lines), size=100)
    tables = list(reader)
    assert [t.num_rows for t in tables] == [100, 100, 99]
    assert all(t.schema == tables[0].schema == reader.schema for t in tables)
    assert tables[0].schema.field("count").type == pa.int64()
    assert [(r.line, r.reason) for r in reader.rejects] == [(251, "column count: '2.5' is not an integer")]


def test_column_types_pin_a_column(tmp_path):
    lines = ["id,count", *(f"{i},{i}" for i in range(10))]
    reader = CSVBatches(write(tmp_path / "pinned.csv", lines), column_types={"count": "float", "id": "str"})
    table = read_all(reader)
    assert table.schema.types == [pa.string(), pa.float64()]
    with pytest.raises(ReaderError, match="column_types names columns the file does not have: \\['nope'\\]"):
        list(CSVBatches(tmp_path / "pinned.csv", column_types={"nope": "int"}))


def test_reading_again_gives_identical_batches_of_exactly_size_rows(tmp_path):
    lines = uci_lines(150_000)
    lines[7000] = ""
    lines[90_000] = lines[90_000] + ",1"
    reader = CSVBatches(write(tmp_path / "again.csv", lines), size=40_000)  # batches straddle pyarrow's blocks
    first, second = list(reader), list(reader)
    assert [t.num_rows for t in first] == [40_000] * 3 + [150_000 - 2 - 3 * 40_000]
    assert len(first) == len(second) and all(a.equals(b) for a, b in zip(first, second, strict=True))
    assert [ipc_bytes(t) for t in first] == [ipc_bytes(t) for t in second]  # what content ids hash
    assert all(col.num_chunks == 1 for t in first for col in t.columns)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_limit_stops_after_that_many_rows_and_counts_only_the_lines_before(tmp_path):
    lines = uci_lines(1000)
    lines[100] = ""
    lines[300] = lines[300] + ",9"
    reader = CSVBatches(write(tmp_path / "limit.csv", lines), size=100, limit=250)
    tables = list(reader)
    assert [t.num_rows for t in tables] == [100, 100, 50]
    assert tables[-1].column("row")[-1].as_py() == 251  # one blank line before it: the 251st index
    assert (reader.rows, reader.blank, reader.rejected, reader.complete) == (250, 1, 0, False)
    assert reader.lines == 252


def test_limit_counts_nothing_after_its_last_row(tmp_path):
    reader = CSVBatches(write(tmp_path / "exact.csv", ["a,b", "1,2", "3,4", "5,6,7", ""]), limit=2)
    assert read_all(reader).to_pylist() == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert (reader.rows, reader.rejected, reader.blank, reader.lines, reader.complete) == (2, 0, 0, 3, False)


def test_limit_zero_reads_no_rows(tmp_path):
    reader = CSVBatches(write(tmp_path / "none.csv", ["a,b", "1,2", "3"]), limit=0)
    assert (list(reader), reader.rows, reader.rejected, reader.complete) == ([], 0, 0, False)


def test_values_spanning_lines_do_not_shift_later_line_numbers(tmp_path):
    lines = ["id,note,v", '1,"two\nlines",1.5', "2,plain,2.5", '3,"three\nphysical\nlines",3.5',
             '4,"a wrong\nwidth",1,1', "5,x,oops", "6,y,1,1"]
    reader = CSVBatches(write(tmp_path / "spans.csv", lines), column_types={"v": "float"})
    table = read_all(reader)
    assert table.column("note").to_pylist() == ["two\nlines", "plain", "three\nphysical\nlines"]
    assert [(r.line, r.end_line, r.reason) for r in reader.rejects] == [
        (8, 9, "expected 3 fields, got 4"), (10, None, "column v: 'oops' is not a number"),
        (11, None, "expected 3 fields, got 4")]
    assert reader.lines == 11


def test_values_spanning_lines_across_pyarrows_blocks_are_read_whole(tmp_path):
    note = "a note of two lines, long enough to fill pyarrow's blocks of 4 MiB\nsecond line"
    lines = ["id,note,v", *(f'{i},"{note}",{i}.5' for i in range(60_000)), "60000,last,oops"]
    reader = CSVBatches(write(tmp_path / "long.csv", lines), size=25_000)
    table = read_all(reader)
    assert table.num_rows == 60_000 and set(table.column("note").to_pylist()) == {note}
    assert [(r.line, r.reason) for r in reader.rejects] == [(2 + 2 * 60_000, "column v: 'oops' is not a number")]


def test_a_header_name_spanning_lines_does_not_shift_line_numbers(tmp_path):
    reader = CSVBatches(write(tmp_path / "header.csv", ['id,"two\nlines"', "1,2", "3,4,5"]))
    assert read_all(reader).to_pylist() == [{"id": 1, "two\nlines": 2}]
    assert [(r.line, r.text) for r in reader.rejects] == [(4, "3,4,5")]


def test_bytes_that_are_not_utf8_reject_only_their_row(tmp_path):
    path = tmp_path / "bytes.csv"
    path.write_bytes(b"id,name\n1,caf\xc3\xa9\n2,caf\xe9\n3,ok\n")
    reader = CSVBatches(path)
    assert read_all(reader).to_pylist() == [{"id": 1, "name": "café"}, {"id": 3, "name": "ok"}]
    assert [(r.line, r.text, r.reason) for r in reader.rejects] == [
        (3, "2,caf\\xe9", "column name: not valid UTF-8 (wrong encoding=?)")]


def test_max_rejects_caps_the_list_kept_not_the_count(tmp_path):
    lines = ["id,v", *(f"{i},{i}" for i in range(1000)), *(f"{i},x,y" for i in range(30))]
    reader = CSVBatches(write(tmp_path / "many.csv", lines), max_rejects=5)
    read_all(reader)
    assert (reader.rejected, len(reader.rejects), reader.rows) == (30, 5, 1000)
    assert reader.statistics()["rejected"] == 30


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file: no header line"),
    (b"\n1,2\n", "the first line is blank"),
    (b"caf\xe9,b\n1,2\n", "header: not valid utf-8"),
])
def test_a_file_without_a_readable_header_is_a_one_line_reader_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ReaderError, match=message) as caught:
        list(CSVBatches(path))
    assert str(caught.value).startswith(f"{path}:1: ") and "\n" not in str(caught.value)


def test_a_missing_file_is_an_oserror_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        list(CSVBatches(tmp_path / "nowhere.csv"))


def test_a_semicolon_file_with_unnamed_trailing_columns_drops_them_and_rejects_values_under_them(tmp_path):
    path = write(tmp_path / "air.csv", ["Date;Time;T;;", "10/03/2004;18.00.00;13.6;;", "10/03/2004;19.00.00;13.3;;x"])
    reader = CSVBatches(path)
    assert read_all(reader).to_pylist() == [{"Date": "10/03/2004", "Time": "18.00.00", "T": 13.6}]
    assert [(r.line, r.reason) for r in reader.rejects] == [(3, "a value under an unnamed trailing column: 'x'")]
