"""The idempotent sink (issue 17): UpsertStore, a keyed SQLite table written by upserts, and the
UpsertSink node that writes each record under its key, in the three pipeline modes, with worker
copies, into a file or a dict. A record written twice is one row, and the second write counts as
replaced; a key that cannot be computed is a failing record like any other."""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import threading

import pytest

from chronopipe import ActorError
from chronopipe.delivery import UpsertStore
from chronopipe.graph import Node, Pipeline, UpsertSink

pytestmark = pytest.mark.timeout(60)


# -- the store -----------------------------------------------------------------------------
def test_the_same_record_twice_is_one_row_and_counts_as_replaced(tmp_path):
    with UpsertStore(tmp_path / "s.sqlite") as store:
        assert store.upsert_many([("a", {"n": 1}), ("b", [1, 2])]) == 0
        assert store.upsert_many([("a", {"n": 1}), ("a", {"n": 2})]) == 2
        assert len(store) == 2 and store["a"] == {"n": 2} and store.version("a") == 3
        stats = store.statistics()
        assert (stats.rows, stats.written, stats.replaced, stats.commits) == (2, 4, 2, 2)


def test_it_survives_a_reopen_and_keeps_the_first_write_order(tmp_path):
    path = tmp_path / "s.sqlite"
    store = UpsertStore(path, table="orders")
    store[2] = "two"
    store["1"] = ("one",)
    store[1] = 1.5
    store.close()
    again = UpsertStore(path, table="orders")
    assert list(again) == [2, "1", 1] and again["1"] == ("one",) and again[1] == 1.5  # 1 and "1": two keys
    del again[2]
    assert 2 not in again and dict(again) == {"1": ("one",), 1: 1.5}
    with pytest.raises(KeyError):
        del again[2]
    again.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_json_format_is_readable_by_other_tools(tmp_path):
    with UpsertStore(tmp_path / "s.sqlite", format="json") as store:
        store["k"] = {"a": [1, 2]}
    assert sqlite3.connect(tmp_path / "s.sqlite").execute("SELECT key, value, version FROM records").fetchall() == [
        ("k", '{"a": [1, 2]}', 1)]


def test_a_bad_key_or_value_writes_nothing_of_its_batch(tmp_path):
    with UpsertStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(TypeError, match="must be a str or an int, not bool"):
            store.upsert_many([("a", 1), (True, 2)])
        with pytest.raises(TypeError, match="cannot be written as pickle"):
            store.upsert_many([("a", 1), ("b", threading.Lock())])
        assert len(store) == 0 and True not in store and store.get(1.5) is None
    with pytest.raises(ValueError, match="table must be a name"):
        UpsertStore(tmp_path / "s.sqlite", table="x; DROP TABLE y")
    with pytest.raises(ValueError, match="format must be one of"):
        UpsertStore(tmp_path / "s.sqlite", format="yaml")  # type: ignore[arg-type]


def test_a_pickled_store_is_where_it_is_not_its_connection(tmp_path):
    store = UpsertStore(tmp_path / "s.sqlite", table="t")
    store["a"] = 1
    copy = pickle.loads(pickle.dumps(store))
    assert copy["a"] == 1 and copy.written == 0 and copy.table == "t"
    store.close()
    copy.close()


def test_a_forked_child_opens_its_own_connection(tmp_path):
    store = UpsertStore(tmp_path / "s.sqlite")
    store["parent"] = 1
    pid = os.fork()
    if pid == 0:  # the child: writes through the same object, on a connection of its own
        try:
            store["child"] = 2
            os._exit(0 if store._conn is not None and store._pid == os.getpid() else 1)
        except BaseException:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    store["parent"] = 3  # the parent's connection still works
    assert dict(store) == {"parent": 3, "child": 2}
    store.close()


# -- the node, through real pipelines --------------------------------------------------------
def orders(n=60, distinct=20):
    return [{"id": i % distinct, "amount": i % distinct * 10} for i in range(n)]


def test_the_sink_upserts_by_key_in_every_mode(tmp_path, pipeline_mode):
    path = tmp_path / "orders.sqlite"
    sink = UpsertSink("load", key="id", store=path)
    Pipeline(sink, mode=pipeline_mode).consume(orders())
    assert (sink.written, sink.replaced) == (60, 40)
    with UpsertStore(path) as store:
        assert dict(store) == {i: {"id": i, "amount": i * 10} for i in range(20)}
    Pipeline(sink, mode=pipeline_mode).consume(orders(20))  # again, another run: all replaced
    assert (sink.written, sink.replaced) == (20, 20)
    with UpsertStore(path) as store:
        assert len(store) == 20 and store.version(0) == 4


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_worker_copies_share_the_file_and_their_counts_add_up(tmp_path, mode):
    class Source(Node):
        def process(self, item):
            for i in range(item * 500, item * 500 + 500):
                self.push({"id": i % 700, "n": i})

    sink = UpsertSink("load", key="id", store=UpsertStore(tmp_path / "w.sqlite"), workers=2, commit_every=50)
    Pipeline(Source("source") | sink, mode=mode).consume(range(4))
    assert (sink.written, sink.replaced) == (2000, 1300)
    assert len(sink.tallies) == 2
    with UpsertStore(tmp_path / "w.sqlite") as store:
        assert len(store) == 700 and sum(store.version(k) for k in store) == 2000


def test_a_dict_store_in_every_mode(pipeline_mode):
    rows: dict = {}
    sink = UpsertSink("load", key=lambda r: f"order-{r['id']}", store=rows)
    Pipeline(sink, mode=pipeline_mode).consume(orders())
    assert len(rows) == 20 and rows["order-3"] == {"id": 3, "amount": 30}
    assert (sink.written, sink.replaced) == (60, 40)


def test_a_key_that_raises_is_dead_lettered_under_replay(tmp_path, pipeline_mode):
    letters = []
    sink = UpsertSink("load", key="id", store=tmp_path / "o.sqlite")
    Pipeline(sink, mode=pipeline_mode, guarantee="replay", max_retries=1, dead_letter=letters.append).consume(
        [{"id": 1}, {"no id": 2}, {"id": [3]}, {"id": 1}])
    assert [(d.node, d.attempts, d.error_type, d.record) for d in letters] == [
        ("load", 2, "KeyError", {"no id": 2}), ("load", 2, "TypeError", {"id": [3]})]
    assert (sink.written, sink.replaced) == (2, 1)
    with UpsertStore(tmp_path / "o.sqlite") as store:
        assert dict(store) == {1: {"id": 1}}


def test_a_key_that_raises_fails_the_run_under_none(tmp_path):
    def key(record):
        raise LookupError(f"no key for {record}")

    with pytest.raises(ActorError, match="no key for 7"):
        Pipeline(UpsertSink("load", key=key, store=tmp_path / "o.sqlite"), mode="threads").consume([7])


def test_it_commits_at_every_commit_and_every_commit_every_records(tmp_path):
    sink = UpsertSink("load", key="id", store=tmp_path / "c.sqlite", commit_every=10_000)
    sink.begin()
    for i in range(5):
        sink.process({"id": i})
    with UpsertStore(tmp_path / "c.sqlite") as other:
        assert len(other) == 0  # waiting for the batch
    sink.commit()
    with UpsertStore(tmp_path / "c.sqlite") as other:
        assert len(other) == 5
    sink.end()


class KilledOnce(UpsertSink):
    """Kills its own process (SIGKILL) at id 150, the first time (a flag file remembers)."""

    def process(self, record):
        if record["id"] == 150 and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        super().process(record)


def test_a_sink_worker_killed_mid_batch_leaves_each_record_once(tmp_path):
    """Exactly once: the restarted worker writes its predecessor's batch again (what of it was
    committed is replaced, and counted as replaced)."""
    sink = KilledOnce("load", key="id", store=tmp_path / "k.sqlite", flag=str(tmp_path / "killed"))
    pipeline = Pipeline(sink, mode="processes", guarantee="replay")
    pipeline.consume({"id": i} for i in range(300))
    assert pipeline.statistics().restarts == 1 and os.path.exists(tmp_path / "killed")
    with UpsertStore(tmp_path / "k.sqlite") as store:
        assert list(store) == list(range(300))
        twice = [k for k in store if store.version(k) == 2]
    assert len(twice) == sink.replaced and all(k < 150 for k in twice)  # only what the dead worker had committed


def test_bad_arguments_are_refused_at_once():
    with pytest.raises(TypeError, match="key must be a field name or a callable"):
        UpsertSink("load", key=3, store={})
    with pytest.raises(TypeError, match="store must be a path, an UpsertStore or a MutableMapping"):
        UpsertSink("load", key="id", store=[])
    with pytest.raises(ValueError, match="commit_every must be an int >= 1"):
        UpsertSink("load", key="id", store={}, commit_every=0)


def test_copies_opening_a_new_file_at_once_all_open_it(tmp_path):
    # Switching a new file to WAL takes an exclusive lock: SQLite refuses all but one opener at once.
    def open_store(path, errors):
        try:
            with UpsertStore(path) as store:
                len(store)
        except Exception as exc:  # collected for the assertion
            errors.append(exc)

    errors: list = []
    for round_ in range(20):
        threads = [threading.Thread(target=open_store, args=(tmp_path / f"{round_}.sqlite", errors))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
