"""Stages of runs from YAML (issue 19): batches named by content, a manifest several writers
(threads, forked processes) append to, done marks, release after every producer, damage reported."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chronopipe.runs.batch import Batch, content_id
from chronopipe.runs.stages import MANIFEST, BatchRef, LocalStage, ParquetStage, Stage, StageError, open_stage

FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=[LocalStage, ParquetStage], ids=["local", "parquet"])
def stage_class(request) -> type[Stage]:
    return request.param


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": i, "name": f"r{i}", "value": i / 4} for i in range(start, start + n)]


def batch(consumer: str, seq: int, data) -> Batch:
    b = Batch(data, consumer=consumer, seq=seq)
    b.id = content_id(consumer, seq, b)
    return b


def uci_table(n: int, start: int = 0) -> pa.Table:
    """The shape of the UCI occupancy data: id, date, five floats, occupancy."""
    ids = pa.array(range(start, start + n), pa.int64())
    base = pa.scalar(dt.datetime(2015, 2, 4, 17, 51), pa.timestamp("s")).value
    columns = {"id": ids, "date": pa.array([base + 60 * i for i in range(start, start + n)], pa.timestamp("s"))}
    for k, name in enumerate(["Temperature", "Humidity", "Light", "CO2", "HumidityRatio"]):
        columns[name] = pa.array([(i * (k + 3)) % 997 / 7 for i in range(start, start + n)], pa.float64())
    columns["Occupancy"] = pa.array([i % 2 for i in range(start, start + n)], pa.int64())
    return pa.table(columns)


def manifest_lines(path: Path) -> list[str]:
    return [line for line in (path / MANIFEST).read_text().splitlines() if line]


def batch_files(path: Path, stage: Stage) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.endswith(stage.suffix) and p.name.count("-") == 2)


# -- Batch and content ids -------------------------------------------------------------------
def test_content_id_is_the_same_in_another_process():
    code = ("from chronopipe.runs.batch import Batch, content_id; import pyarrow as pa; "
            "print(content_id('c', 3, Batch([{'a': 1, 'b': 'x'}])), "
            "content_id('c', 3, Batch(pa.table({'a': [1, 2]}))))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    here = [content_id("c", 3, Batch([{"a": 1, "b": "x"}])), content_id("c", 3, Batch(pa.table({"a": [1, 2]})))]
    assert other == here


@pytest.mark.parametrize("change", ["consumer", "seq", "value", "key"])
def test_content_id_changes_with_consumer_seq_or_content(change):
    data = [{"a": 1}]
    other = {"consumer": ("d", 0, data), "seq": ("c", 1, data), "value": ("c", 0, [{"a": 2}]),
             "key": ("c", 0, [{"b": 1}])}[change]
    assert content_id("c", 0, Batch(data)) != content_id(other[0], other[1], Batch(other[2]))


def test_content_id_of_a_table_does_not_depend_on_its_chunks():
    table = uci_table(100)
    chunked = pa.concat_tables([table.slice(0, 30), table.slice(30)])
    assert chunked.column(0).num_chunks == 2
    assert content_id("c", 0, Batch(chunked)) == content_id("c", 0, Batch(table))


def test_a_batch_converts_once_and_only_when_asked():
    b = Batch([{"a": 1}, {"a": 2}])
    assert b.num_rows == 2 and b._table is None
    assert b.table is b.table and b.table.column("a").to_pylist() == [1, 2]
    t = Batch(pa.table({"a": [1]}))
    assert t._rows is None and t.rows is t.rows == [{"a": 1}]


def test_a_batch_of_anything_but_dict_rows_or_a_table_is_refused():
    with pytest.raises(TypeError, match="list of dict rows or a pyarrow Table, not tuple"):
        Batch(({"a": 1},))
    with pytest.raises(TypeError, match="not list"):
        Batch([[1, 2]])


def test_a_local_stage_round_trip_of_rows_never_imports_pyarrow(tmp_path):
    code = ("import sys; from chronopipe.runs.batch import Batch; from chronopipe.runs.stages import LocalStage; "
            f"s = LocalStage({str(tmp_path)!r}); b = Batch([{{'a': 1}}], consumer='c'); assert s.put(b); "
            "assert s.load(b.id).rows == [{'a': 1}]; print('pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- put and load ----------------------------------------------------------------------------
def test_put_then_load_gives_the_rows_back_with_their_names(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    b = batch("ws_1", 4, rows(5))
    assert stage.put(b) is True
    loaded = stage.load(b.id)
    assert loaded.rows == rows(5) and (loaded.id, loaded.consumer, loaded.seq) == (b.id, "ws_1", 4)


def test_put_names_the_file_by_consumer_seq_and_content_id_and_lists_it(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    b = Batch(rows(3), consumer="ws_1", seq=12)
    stage.put(b)  # an empty id is the content id
    name = f"ws_1-000000012-{content_id('ws_1', 12, Batch(rows(3)))}{stage.suffix}"
    assert batch_files(tmp_path, stage) == [name]
    assert [json.loads(line) for line in manifest_lines(tmp_path)] == [
        {"batch": b.id, "consumer": "ws_1", "seq": 12, "rows": 3, "file": name}]


def test_a_rerun_puts_the_same_batches_and_writes_nothing(stage_class, tmp_path):
    first = stage_class(tmp_path)
    assert all(first.put(batch("c", seq, rows(4, 4 * seq))) for seq in range(5))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    manifest = (tmp_path / MANIFEST).read_bytes()
    rerun = stage_class(tmp_path)
    assert [rerun.put(batch("c", seq, rows(4, 4 * seq))) for seq in range(5)] == [False] * 5
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    assert (tmp_path / MANIFEST).read_bytes() == manifest
    assert rerun.statistics()["skipped"] == 5


def test_a_batch_file_a_crash_left_unlisted_is_listed_once_on_rerun_without_rewriting_it(stage_class, tmp_path):
    stage_class(tmp_path).put(batch("c", 0, rows(3)))
    (tmp_path / MANIFEST).write_bytes(b"")  # the crash came between the file and its manifest line
    (file,) = tmp_path.glob(f"c-*{stage_class.suffix}")
    inode = file.stat().st_ino
    assert stage_class(tmp_path).put(batch("c", 0, rows(3))) is True
    assert file.stat().st_ino == inode and len(manifest_lines(tmp_path)) == 1


def test_a_parquet_stage_keeps_a_table_in_arrow_both_ways(tmp_path, monkeypatch):
    def no_rows(self):
        raise AssertionError("converted through Python rows")

    table = uci_table(100_000)
    monkeypatch.setattr(Batch, "rows", property(no_rows))
    stage = ParquetStage(tmp_path)
    b = batch("uci", 0, table)
    assert stage.put(b)
    loaded = stage.load(b.id)
    assert loaded.table.equals(table) and loaded.num_rows == 100_000
    assert pq.ParquetFile(tmp_path / stage.complete(["uci"])[0].file).metadata.row_group(0).column(0).compression \
        == "ZSTD"


def test_a_local_stage_writes_datetimes_as_iso_text_and_bytes_as_base64(tmp_path):
    stage = LocalStage(tmp_path)
    b = batch("c", 0, [{"at": dt.datetime(2015, 2, 4, 17, 51, 30), "raw": b"\x00\xffA", "price": Decimal("1.10"),
                        "day": dt.date(2015, 2, 4)}])
    stage.put(b)
    assert stage.load(b.id).rows == [{"at": "2015-02-04T17:51:30", "raw": "AP9B", "price": "1.10", "day": "2015-02-04"}]


def test_rows_parquet_cannot_type_raise_a_stage_error_and_stage_nothing(tmp_path):
    stage = ParquetStage(tmp_path)
    with pytest.raises(StageError, match=r"c-000000000-\w+\.parquet: cannot stage the batch: "):
        stage.put(batch("c", 0, [{"a": 1}, {"a": "one"}]))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_consumer_name_unfit_for_a_file_name_is_refused(stage_class, tmp_path):
    with pytest.raises(ValueError, match=r"consumer name '../x' is not usable in a file name"):
        stage_class(tmp_path).put(Batch(rows(1), consumer="../x"))


# -- several writers -------------------------------------------------------------------------
def test_two_forked_processes_stage_200_batches_each_into_one_folder(stage_class, tmp_path):
    stage = stage_class(tmp_path)  # inherited by both children

    def produce(consumer):
        for seq in range(200):
            assert stage.put(batch(consumer, seq, rows(2, seq)))

    children = [FORK.Process(target=produce, args=(name,)) for name in ("a", "b")]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]
    lines = manifest_lines(tmp_path)
    assert len(lines) == 400 and all(line.endswith("}") for line in lines)
    refs = stage.complete(["a", "b"])
    assert len({ref.id for ref in refs}) == 400
    assert all(stage.load(ref.id).num_rows == 2 for ref in refs)


def test_two_processes_staging_the_same_batches_list_each_once(stage_class, tmp_path):
    def produce():
        stage = stage_class(tmp_path)
        for seq in range(100):
            stage.put(batch("c", seq, rows(1, seq)))

    children = [FORK.Process(target=produce) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]
    assert len(manifest_lines(tmp_path)) == 100
    assert len(batch_files(tmp_path, stage_class(tmp_path))) == 100


def test_threads_share_one_stage_object(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    errors = []

    def produce(consumer):
        try:
            for seq in range(25):
                stage.put(batch(consumer, seq, rows(1, seq)))
                stage.put(batch(consumer, seq, rows(1, seq)))  # each twice: listed once
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(manifest_lines(tmp_path)) == 200 and stage.statistics()["batches"] == 200


def test_a_torn_last_manifest_line_is_ignored_and_the_next_line_starts_afresh(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    first = batch("c", 0, rows(1))
    stage.put(first)
    with open(tmp_path / MANIFEST, "ab") as f:
        f.write(b'{"batch":"0123","consumer":"c","se')  # a writer died mid-line
    assert [ref.id for ref in stage_class(tmp_path).complete(["c"])] == [first.id]
    second = batch("c", 1, rows(1, 1))
    assert stage.put(second)
    reopened = stage_class(tmp_path)
    assert [ref.id for ref in reopened.complete(["c"])] == [first.id, second.id]
    assert reopened.statistics()["ignored_lines"] == 1


# -- done marks and release ------------------------------------------------------------------
def test_release_deletes_only_after_every_listed_producer_marked_the_batch_done(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    b = batch("c", 0, rows(2))
    stage.put(b)
    file = tmp_path / stage.complete(["c"])[0].file
    stage.mark_done("csv_out", b.id)
    assert stage.release(b.id, ["csv_out", "pg"]) is False and file.exists()
    stage.mark_done("pg", b.id)
    assert stage.release(b.id, ["csv_out", "pg"]) is True and not file.exists()
    assert stage.release(b.id, ["csv_out", "pg"]) is False  # nothing left to delete


def test_a_stage_that_keeps_its_batches_releases_nothing(stage_class, tmp_path):
    stage = stage_class(tmp_path, keep=True)
    b = batch("c", 0, rows(2))
    stage.put(b)
    stage.mark_done("p", b.id)
    assert stage.release(b.id, ["p"]) is False and stage.load(b.id).rows == rows(2)


def test_release_without_producers_is_refused(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    b = batch("c", 0, rows(1))
    stage.put(b)
    with pytest.raises(ValueError, match="needs the producers that read the batch"):
        stage.release(b.id, [])


def test_done_marks_survive_reopening_the_stage(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    ids = [batch("c", seq, rows(1, seq)).id for seq in range(3)]
    for seq in range(3):
        stage.put(batch("c", seq, rows(1, seq)))
    stage.mark_done("p", ids[0])
    stage.mark_done("p", ids[2])
    stage.mark_done("p", ids[2])  # twice: one line
    reopened = stage_class(tmp_path)
    assert reopened.done("p") == {ids[0], ids[2]} and reopened.done("q") == set()
    assert len((tmp_path / "done-p.jsonl").read_text().splitlines()) == 2


def test_a_loaded_batch_released_already_is_reported_missing(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    b = batch("c", 0, rows(1))
    stage.put(b)
    stage.mark_done("p", b.id)
    stage.release(b.id, ["p"])
    with pytest.raises(StageError, match=r"c-000000000-\w+\.\w+: missing \(released already, or deleted\)$"):
        stage.load(b.id)


# -- leftovers and damage --------------------------------------------------------------------
def test_temporary_files_are_never_batches_and_a_dead_process_s_are_removed(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    b = batch("c", 0, rows(1))
    stage.put(b)
    dead = tmp_path / f".c-000000001-ab{stage.suffix}.tmp-999999999-0a1b"  # no such pid
    live = tmp_path / f".c-000000002-cd{stage.suffix}.tmp-{os.getpid()}-0a1b"  # a writer still at work
    dead.write_text("half")
    live.write_text("half")
    reopened = stage_class(tmp_path)
    assert [ref.id for ref in reopened.complete(["c"])] == [b.id]
    assert not dead.exists() and live.exists() and reopened.statistics()["temps_removed"] == 1


def test_loading_a_truncated_parquet_file_names_the_file(tmp_path):
    stage = ParquetStage(tmp_path)
    b = batch("c", 0, uci_table(1000))
    stage.put(b)
    file = tmp_path / stage.complete(["c"])[0].file
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(StageError, match=rf"^{file}: damaged: ") as caught:
        stage.load(b.id)
    assert "\n" not in str(caught.value)


def test_loading_a_damaged_json_lines_file_names_the_file_and_line(tmp_path):
    stage = LocalStage(tmp_path)
    b = batch("c", 0, rows(3))
    stage.put(b)
    file = tmp_path / stage.complete(["c"])[0].file
    lines = file.read_text().splitlines(keepends=True)
    file.write_text(lines[0] + "{oops\n" + lines[2])
    with pytest.raises(StageError, match=rf"^{file}: damaged: line 2 is not JSON \("):
        stage.load(b.id)


def test_a_file_with_another_row_count_than_listed_is_damaged(tmp_path):
    stage = LocalStage(tmp_path)
    b = batch("c", 0, rows(3))
    stage.put(b)
    file = tmp_path / stage.complete(["c"])[0].file
    file.write_text("".join(file.read_text().splitlines(keepends=True)[:2]))
    with pytest.raises(StageError, match=r"damaged: 2 rows where the manifest lists 3"):
        stage.load(b.id)


def test_loading_an_unlisted_batch_names_the_manifest(stage_class, tmp_path):
    with pytest.raises(StageError, match=rf"{MANIFEST}: no complete batch 'nope' listed"):
        stage_class(tmp_path).load("nope")


def test_a_stage_path_that_is_a_file_is_refused(stage_class, tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(StageError, match=r"f: cannot use it as a stage folder"):
        stage_class(tmp_path / "f")


# -- opening, pickling, statistics -----------------------------------------------------------
def test_open_stage_makes_the_named_type_and_refuses_others(tmp_path):
    assert type(open_stage("local", tmp_path / "a")) is LocalStage
    assert type(open_stage("parquet", tmp_path / "b", keep=True)) is ParquetStage
    with pytest.raises(ValueError, match=r"unknown stage type 'csv' \(known: local, parquet\)"):
        open_stage("csv", tmp_path)


def test_a_pickled_stage_works_on_the_same_folder(stage_class, tmp_path):
    stage = stage_class(tmp_path, keep=True)
    first = batch("c", 0, rows(1))
    stage.put(first)
    copy = pickle.loads(pickle.dumps(stage))
    assert copy.keep and copy.put(batch("c", 1, rows(1, 1)))
    assert [ref.seq for ref in stage.complete(["c"])] == [0, 1]


def test_complete_lists_only_the_given_consumers_in_manifest_order(stage_class, tmp_path):
    stage = stage_class(tmp_path)
    for consumer, seq in [("a", 0), ("b", 0), ("a", 1)]:
        stage.put(batch(consumer, seq, rows(1, seq)))
    assert [(r.consumer, r.seq) for r in stage.complete(["a"])] == [("a", 0), ("a", 1)]
    assert all(isinstance(r, BatchRef) and r.rows == 1 for r in stage.complete("b"))
    assert stage.statistics()["batches"] == 3 and stage.statistics()["rows"] == 3


@pytest.mark.parametrize("rows", [slice(0, 5), slice(5, 5)], ids=["head", "tail"])
def test_content_id_of_a_slice_hashes_its_rows_alone(rows):
    # a batch cut from a bigger table (CSVBatches does) has the same id whatever follows it in the file
    ten = pa.table({"id": list(range(10)), "s": [str(i) for i in range(10)]})
    eleven = pa.table({"id": list(range(11)), "s": [str(i) for i in range(11)]})
    cut = [Batch(table.slice(rows.start, rows.stop)) for table in (ten, eleven)]
    assert content_id("c", 0, cut[0]) == content_id("c", 0, cut[1])
    assert content_id("c", 0, cut[0]) == content_id("c", 0, Batch(pa.table(cut[0].table.to_pydict())))
