"""Sinks of runs from YAML (issue 19): one file per batch written whole and once, CSV read
back equal to what went in, callables by import path, the Sink contract for implementors."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from chronopipe.runs.batch import Batch, content_id
from chronopipe.runs.sinks import CallableSink, CSVSink, ParquetSink, Sink, SinkError, open_sink


@pytest.fixture(params=[CSVSink, ParquetSink], ids=["csv", "parquet"])
def file_sink(request):
    return request.param


def batch(consumer: str, seq: int, data) -> Batch:
    b = Batch(data, consumer=consumer, seq=seq)
    b.id = content_id(consumer, seq, b)
    return b


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def only_file(folder: Path) -> Path:
    (file,) = folder.iterdir()
    return file


# -- CSV -------------------------------------------------------------------------------------
def test_csv_of_rows_reads_back_equal_to_the_rows(tmp_path):
    rows = [{"id": 1, "name": 'says "hi", twice', "v": 0.25}, {"id": 2, "name": "line\nbreak", "v": -3.5}]
    with CSVSink(path=tmp_path) as sink:
        assert sink.write(batch("c", 0, rows)) == 2
    assert read_csv(only_file(tmp_path)) == [{k: str(v) for k, v in row.items()} for row in rows]


def test_csv_of_rows_writes_missing_keys_and_none_empty_bools_lowercase_and_bytes_as_base64(tmp_path):
    with CSVSink(path=tmp_path) as sink:
        sink.write(batch("c", 0, [{"a": None, "b": True}, {"c": b"\x00\xff", "a": [1, {"x": 2}]}]))
    assert read_csv(only_file(tmp_path)) == [{"a": "", "b": "true", "c": ""},
                                             {"a": '[1,{"x":2}]', "b": "", "c": "AP8="}]


def test_csv_of_a_table_is_written_by_pyarrow_and_reads_back_equal(tmp_path, monkeypatch):
    calls = []
    real = pacsv.write_csv
    monkeypatch.setattr(pacsv, "write_csv", lambda *a, **k: calls.append(1) or real(*a, **k))
    table = pa.table({"id": [1, 2], "name": ["a,b", 'q"q'], "v": [1.5, None],
                      "at": pa.array([dt.datetime(2015, 2, 4, 17, 51), None], pa.timestamp("s"))})
    with CSVSink(path=tmp_path) as sink:
        assert sink.write(batch("uci", 3, table)) == 2
    assert calls == [1]
    assert read_csv(only_file(tmp_path)) == [{"id": "1", "name": "a,b", "v": "1.5", "at": "2015-02-04 17:51:00"},
                                             {"id": "2", "name": 'q"q', "v": "", "at": ""}]


def test_csv_of_a_table_with_a_nested_column_writes_it_as_json(tmp_path):
    with CSVSink(path=tmp_path) as sink:
        sink.write(batch("c", 0, pa.table({"id": [1], "tags": [["x", "y"]]})))
    assert read_csv(only_file(tmp_path)) == [{"id": "1", "tags": '["x","y"]'}]


def test_csv_and_callable_sinks_of_rows_never_import_pyarrow(tmp_path):
    code = ("import sys; from chronopipe.runs.batch import Batch; from chronopipe.runs.sinks import CSVSink, "
            f"CallableSink; s = CSVSink({str(tmp_path)!r}); s.open(); "
            "assert s.write(Batch([{'a': 1}], consumer='c')) == 1; "
            "assert CallableSink('builtins:print').write(Batch([{'a': 1}])) == 1; print('pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False"


# -- both file sinks -------------------------------------------------------------------------
def test_a_file_sink_names_each_batch_file_by_consumer_seq_and_id(file_sink, tmp_path):
    with file_sink(path=tmp_path) as sink:
        sink.write(Batch([{"a": 1}], id="0123abcd", consumer="ws_1", seq=42))
    assert only_file(tmp_path).name == f"ws_1-000000042-0123abcd{file_sink.suffix}"


def test_writing_a_batch_again_writes_nothing_and_returns_0(file_sink, tmp_path):
    with file_sink(path=tmp_path) as sink:
        b = batch("c", 0, [{"a": 1}, {"a": 2}])
        assert sink.write(b) == 2
        file = only_file(tmp_path)
        stat = file.stat()
        assert sink.write(batch("c", 0, [{"a": 1}, {"a": 2}])) == 0
    assert (file.stat().st_ino, file.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert sink.statistics() == {"batches": 1, "rows": 2, "skipped": 1}


def test_a_rerun_with_a_new_sink_on_the_same_folder_writes_nothing(file_sink, tmp_path):
    for run in range(2):
        with file_sink(path=tmp_path) as sink:
            written = [sink.write(batch("c", seq, [{"a": seq}])) for seq in range(3)]
        assert written == ([1, 1, 1] if run == 0 else [0, 0, 0])
    assert len(list(tmp_path.iterdir())) == 3


def test_producers_racing_to_write_one_batch_leave_one_whole_file(file_sink, tmp_path):
    results, rows = [], [{"id": i, "v": i / 3} for i in range(2000)]

    def write():
        with file_sink(path=tmp_path) as sink:
            results.append(sink.write(batch("c", 0, list(rows))))

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] * 7 + [2000]
    file = only_file(tmp_path)  # and no temporary file left
    assert (len(read_csv(file)) if file_sink is CSVSink else pq.read_table(file).num_rows) == 2000


def test_a_file_sink_path_that_is_a_file_is_refused(file_sink, tmp_path):
    (tmp_path / "input.csv").write_text("a\n1\n")
    with pytest.raises(ValueError, match=r"sink path '.*input\.csv' is a file: give a folder"):
        file_sink(path=tmp_path / "input.csv")
    assert (tmp_path / "input.csv").read_text() == "a\n1\n"


def test_a_failed_write_raises_a_sink_error_naming_the_file_and_leaves_nothing(tmp_path):
    with ParquetSink(path=tmp_path) as sink, pytest.raises(SinkError, match=r"c-000000000-\w+\.parquet: cannot write"):
        sink.write(batch("c", 0, [{"a": 1}, {"a": "one"}]))  # no Arrow type for the column
    assert list(tmp_path.iterdir()) == [] and sink.statistics()["batches"] == 0


def test_a_parquet_sink_writes_the_table_with_the_given_compression(tmp_path):
    table = pa.table({"id": list(range(100)), "v": [i / 7 for i in range(100)]})
    with ParquetSink(path=tmp_path / "out", compression="gzip") as sink:
        sink.write(batch("c", 0, table))
    file = only_file(tmp_path / "out")
    assert pq.read_table(file).equals(table)
    assert pq.ParquetFile(file).metadata.row_group(0).column(0).compression == "GZIP"


def test_a_parquet_sink_refuses_an_unknown_compression(tmp_path):
    with pytest.raises(ValueError, match=r"compression 'zip': one of zstd, snappy"):
        ParquetSink(path=tmp_path, compression="zip")


# -- callables -------------------------------------------------------------------------------
def test_a_callable_sink_hands_each_batch_to_its_target_and_counts_its_rows():
    seen = []
    sink = CallableSink(seen.append)
    b = batch("c", 0, [{"a": 1}, {"a": 2}])
    assert sink.write(b) == 2 and seen == [b] and sink.statistics() == {"batches": 1, "rows": 2, "skipped": 0}


def test_a_callable_sink_imports_a_target_given_as_a_path(tmp_path, monkeypatch):
    (tmp_path / "my_loads.py").write_text("GOT = []\ndef load(batch):\n    GOT.append(batch.num_rows)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    CallableSink("my_loads:load").write(Batch([{"a": 1}] * 3))
    assert sys.modules["my_loads"].GOT == [3]


@pytest.mark.parametrize(("target", "says"), [
    ("no_such_module_xyz:f", r"cannot import 'no_such_module_xyz': ModuleNotFoundError: No module named"),
    ("os.path:nothing", r"'os.path' has no 'nothing'"),
    ("os:sep", r"is a str, not callable"),
    ("os.path", r"expected 'package.module:function'"),
])
def test_a_callable_sink_target_that_cannot_be_used_is_one_line_naming_it(target, says):
    with pytest.raises(ValueError, match=rf"^callable sink target '{target}'.*{says}") as caught:
        CallableSink(target)
    assert "\n" not in str(caught.value)


def test_what_a_callable_target_raises_reaches_the_producer_unchanged():
    def fail(batch):
        raise KeyError("the database said no")

    sink = CallableSink(fail)
    with pytest.raises(KeyError, match="the database said no"):
        sink.write(Batch([{"a": 1}]))
    assert sink.statistics()["batches"] == 0


# -- the contract for implementors, and open_sink --------------------------------------------
def test_a_sink_subclass_needs_only_write_and_gets_statistics_from_count():
    class Counting(Sink):
        def write(self, batch):
            return self._count(None if batch.id == "old" else batch.num_rows)

    with Counting() as sink:
        assert sink.write(Batch([{"a": 1}] * 2, id="new")) == 2 and sink.write(Batch([], id="old")) == 0
    assert sink.statistics() == {"batches": 1, "rows": 2, "skipped": 1}
    with pytest.raises(TypeError, match="abstract"):
        Sink()  # type: ignore[abstract]


def test_open_sink_makes_a_built_in_sink_and_refuses_unknown_names_and_options(tmp_path):
    assert isinstance(open_sink("csv", path=tmp_path), CSVSink)
    with pytest.raises(ValueError, match=r"unknown sink 'kafka' \(built in: csv, parquet, callable\)"):
        open_sink("kafka")
    with pytest.raises(ValueError, match=r"csv sink: unknown option 'compression' \(accepted: path\)"):
        open_sink("csv", path=tmp_path, compression="zstd")


def test_opening_a_file_sink_removes_what_a_dead_writer_left_and_no_batch(file_sink, tmp_path):
    dead = tmp_path / f".c-000000001-ab{file_sink.suffix}.tmp-999999999-0a1b"  # no such pid
    dead.write_text("half")
    (tmp_path / f"c-000000001-ab{file_sink.suffix}").write_text("a batch, kept")
    with file_sink(path=tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"c-000000001-ab{file_sink.suffix}"]
