"""PostgresSink against a real PostgreSQL (tests/postgres_helper.py; skipped, saying why, where there is
none): tables from Arrow schemas, values that round-trip, each batch exactly once (twice in a row, from
two threads at once, after a process killed mid-load), new columns, errors in one line without the
password; and the helper's own finder and teardown."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal

import psutil
import pyarrow as pa
import pytest

from chronopipe.runs.batch import Batch
from chronopipe.runs.pgbinary import binary_chunks
from chronopipe.runs.postgres import KEEPALIVES, LEDGER, PostgresSink, PostgresSinkError
from chronopipe.runs.profiles import Profile, Secret
from chronopipe.runs.sinks import SinkError
from postgres_helper import (
    NOT_FOUND,
    PostgresUnavailable,
    find_postgres_bin,
    postgres,  # noqa: F401
    processes_of,
    schema,  # noqa: F401
    start_server,
)


@pytest.fixture
def sink(postgres, schema):  # noqa: F811
    with PostgresSink(postgres.connect_options(), schema=schema) as opened:
        yield opened


def query(postgres, sql: str, *params) -> list[tuple]:  # noqa: F811
    with postgres.connect() as conn:
        return conn.execute(sql, params or None).fetchall()


def numbered(first: int, count: int, **extra) -> pa.Table:
    return pa.table({"id": pa.array(range(first, first + count), pa.int64()), **extra})


# -- the helper: finding PostgreSQL, and a server that leaves nothing behind --------------------
def test_the_finder_says_postgresql_not_found_where_there_is_none(tmp_path):
    with pytest.raises(PostgresUnavailable, match=f"^{NOT_FOUND}: .*apt-get install postgresql"):
        find_postgres_bin(root=tmp_path, path="")


def test_the_finder_takes_the_highest_complete_version(tmp_path):
    for version, tools in (("9.6", ("initdb", "pg_ctl", "postgres")), ("15", ("initdb", "pg_ctl", "postgres")),
                           ("16", ("initdb", "pg_ctl"))):  # 16 lacks postgres: not a candidate
        (tmp_path / version / "bin").mkdir(parents=True)
        for tool in tools:
            (tmp_path / version / "bin" / tool).write_text("")
    assert find_postgres_bin(root=tmp_path, path="") == tmp_path / "15" / "bin"


def test_the_finder_falls_back_to_the_path(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("initdb", "pg_ctl", "postgres"):
        (bindir / tool).write_text("#!/bin/sh\n")
        (bindir / tool).chmod(0o755)
    assert find_postgres_bin(root=tmp_path / "none", path=str(bindir)) == bindir


@pytest.mark.timeout(120)
def test_a_stopped_server_leaves_no_process_and_no_folder(postgres):  # noqa: F811 (skips where there is none)
    server = start_server()
    try:
        assert processes_of(server.folder), "the running server should be found by its folder"
        with server.connect() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (server.user,)
    finally:
        server.stop()
    assert processes_of(server.folder) == [] and not server.folder.exists()


# -- tables from Arrow schemas, values that round-trip -----------------------------------------
def test_a_new_table_takes_its_column_types_from_the_arrow_schema(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(pa.table({
        "big": pa.array([1], pa.int64()), "small": pa.array([1], pa.int16()), "f": [1.5], "s": ["x"], "b": [True],
        "ts": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us")),
        "tz": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
        "d": [dt.date(2024, 1, 1)], "n": [Decimal("1.5")], "raw": [b"\x00"], "l": [[1]], "st": [{"a": 1}],
    }), id="b1", consumer="types"))
    assert query(postgres, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                 "AND table_name = 'types' ORDER BY ordinal_position", schema) == [
        ("big", "bigint"), ("small", "integer"), ("f", "double precision"), ("s", "text"), ("b", "boolean"),
        ("ts", "timestamp without time zone"), ("tz", "timestamp with time zone"), ("d", "date"),
        ("n", "numeric"), ("raw", "bytea"), ("l", "jsonb"), ("st", "jsonb")]


TRICKY = ["a,b", 'say "hi"', "two\nlines", "tab\there", "été ✓ 日本", "\\.", "", None, "back\\slash", "  pad  "]


def test_text_round_trips_with_commas_quotes_newlines_and_unicode(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(numbered(0, len(TRICKY), s=pa.array(TRICKY)), id="b1", consumer="texts"))
    assert [s for (s,) in query(postgres, f'SELECT s FROM "{schema}".texts ORDER BY id')] == TRICKY


def test_null_and_the_empty_string_stay_apart(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(numbered(0, 2, s=pa.array(["", None])), id="b1", consumer="nulls"))
    assert query(postgres, f'SELECT s IS NULL, s = \'\' FROM "{schema}".nulls ORDER BY id') == [
        (False, True), (True, None)]


def test_nested_values_are_stored_as_jsonb(postgres, schema, sink):  # noqa: F811
    sink.write(Batch([{"id": 1, "tags": ["a", "b"], "at": {"x": 1.5, "when": dt.datetime(2024, 5, 6, 7, 8)}},
                      {"id": 2, "tags": [], "at": None}], id="b1", consumer="nested"))
    assert query(postgres, f'SELECT tags, at, jsonb_typeof(tags) FROM "{schema}".nested ORDER BY id') == [
        (["a", "b"], {"x": 1.5, "when": "2024-05-06T07:08:00"}, "array"), ([], None, "array")]


NUMBERS = {
    "i": pa.array([1, None, -(2**62), 0], pa.int64()), "j": pa.array([7, 8, None, -9], pa.int32()),
    "f": pa.array([0.1, float("inf"), None, -1e300]), "b": pa.array([True, None, False, True]),
    "ts": pa.array([dt.datetime(1999, 12, 31, 23, 59, 59, 999999), None, dt.datetime(1970, 1, 1),
                    dt.datetime(2038, 1, 19, 3, 14, 8, 1)], pa.timestamp("us")),
    "ns": pa.array([1_700_000_000_123_456_789, None, -1_000, 0], pa.timestamp("ns", tz="Europe/Paris")),
    "d": pa.array([dt.date(2000, 1, 1), dt.date(1900, 3, 1), None, dt.date(2100, 12, 31)]),
}


def test_numbers_dates_and_timestamps_load_the_same_in_binary_as_in_csv(postgres, schema, sink):  # noqa: F811
    binary, csv = pa.table(NUMBERS), pa.table({**NUMBERS, "text": ["x"] * 4})
    sink.write(Batch(binary, id="b1", consumer="binary"))
    sink.write(Batch(csv, id="b1", consumer="csv"))
    assert binary_chunks(binary, sink._columns["binary"]) is not None  # the binary path was taken...
    assert binary_chunks(csv, sink._columns["csv"]) is None  # ...and the other one was not
    columns = ", ".join(NUMBERS)
    got = query(postgres, f'SELECT {columns} FROM "{schema}".binary ORDER BY i NULLS LAST, j')
    assert got == query(postgres, f'SELECT {columns} FROM "{schema}".csv ORDER BY i NULLS LAST, j')
    assert got[0][:4] == (-(2**62), None, None, False) and got[3][:2] == (None, 8)  # ordered by i: -2**62, 0, 1, NULL
    assert got[2][4:] == (dt.datetime(1999, 12, 31, 23, 59, 59, 999999),  # 1 µs before PostgreSQL's epoch
                          dt.datetime(2023, 11, 14, 22, 13, 20, 123457, tzinfo=dt.UTC), dt.date(2000, 1, 1))


def test_integers_into_an_existing_double_column_keep_their_values(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(numbered(0, 1, v=[0.5]), id="b1", consumer="mixed"))
    sink.write(Batch(numbered(1, 1, v=pa.array([3], pa.int64())), id="b2", consumer="mixed"))
    assert query(postgres, f'SELECT v FROM "{schema}".mixed ORDER BY id') == [(0.5,), (3.0,)]


# -- exactly once ------------------------------------------------------------------------------
def test_the_same_batch_twice_loads_its_rows_once(postgres, schema, sink):  # noqa: F811
    batch = Batch(numbered(0, 100), id="same", consumer="twice")
    assert (sink.write(batch), sink.write(batch)) == (100, 0)
    assert query(postgres, f'SELECT count(*) FROM "{schema}".twice') == [(100,)]
    assert sink.statistics()["batches"] == 1 and sink.statistics()["skipped"] == 1


@pytest.mark.timeout(60)
def test_two_sinks_loading_one_batch_at_once_load_it_once(postgres, schema):  # noqa: F811
    batch, start, results = Batch(numbered(0, 50_000), id="race", consumer="race"), threading.Barrier(2), []

    def load() -> None:
        with PostgresSink(postgres.connect_options(), schema=schema) as each:
            start.wait(10)
            results.append(each.write(batch))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [0, 50_000]
    assert query(postgres, f'SELECT count(*), count(DISTINCT id) FROM "{schema}".race') == [(50_000, 50_000)]


def test_one_batch_loads_into_each_table_it_is_given_to(postgres, schema):  # noqa: F811
    batch = Batch(numbered(0, 10), id="shared", consumer="c")
    for table in ("first", "second"):
        with PostgresSink(postgres.connect_options(), schema=schema, table=table) as each:
            assert each.write(batch) == 10
    assert query(postgres, f'SELECT target, rows FROM "{schema}".{LEDGER} ORDER BY target') == [
        ("first", 10), ("second", 10)]


def test_each_consumer_gets_its_own_table(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(numbered(0, 2), id="a", consumer="left"))
    sink.write(Batch(numbered(0, 3), id="b", consumer="right"))
    assert query(postgres, f'SELECT (SELECT count(*) FROM "{schema}".left), (SELECT count(*) FROM "{schema}".right)'
                 ) == [(2, 3)]


# -- schema changes and errors -----------------------------------------------------------------
def test_a_later_batch_with_a_new_column_adds_it(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(numbered(0, 1), id="b1", consumer="grows"))
    sink.write(Batch(numbered(1, 1, extra=["new"]), id="b2", consumer="grows"))
    assert query(postgres, f'SELECT id, extra FROM "{schema}".grows ORDER BY id') == [(0, None), (1, "new")]


def test_a_value_the_column_refuses_is_one_line_naming_the_table_and_loads_nothing(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(numbered(0, 1, v=[1]), id="b1", consumer="strict"))
    with pytest.raises(PostgresSinkError, match=rf"^postgres sink: {schema}\.strict: .*invalid input syntax") as e:
        sink.write(Batch(numbered(1, 1, v=["not a number"]), id="b2", consumer="strict"))
    assert "\n" not in str(e.value) and isinstance(e.value, SinkError)
    assert query(postgres, f'SELECT batch_id FROM "{schema}".{LEDGER}') == [("b1",)]


def test_a_bad_password_is_one_line_without_the_password(postgres):  # noqa: F811
    from chronopipe.runs.profiles import Profile

    password = "Wr0ng-" + uuid.uuid4().hex
    profile = Profile(name="pg", fields={**postgres.profile_dict(), "password": password})
    with pytest.raises(PostgresSinkError, match="password authentication failed") as e:
        PostgresSink(profile).open()
    message = str(e.value)
    assert password not in message and "\n" not in message and "(profile pg)" in message
    assert password not in repr(PostgresSink(profile))


def test_a_profile_with_its_password_a_secret_loads(postgres, schema):  # noqa: F811
    from chronopipe.runs.profiles import Profile, Secret

    profile = Profile(name="pg", fields=postgres.profile_dict())
    assert isinstance(profile["password"], Secret)
    with PostgresSink(profile, schema=schema) as each:
        assert each.write(Batch(numbered(0, 3), id="b1", consumer="profiled")) == 3


def test_a_consumer_name_postgresql_would_truncate_is_refused(schema, sink):  # noqa: F811
    with pytest.raises(PostgresSinkError, match="must have 1 to 63 bytes"):
        sink.write(Batch(numbered(0, 1), id="b1", consumer="c" * 64))
    with pytest.raises(ValueError, match="must have 1 to 63 bytes"):
        PostgresSink({}, table="t" * 64)


def test_a_lost_connection_fails_that_batch_and_the_next_write_reconnects(postgres, schema, sink):  # noqa: F811
    sink.write(Batch(numbered(0, 1), id="b1", consumer="lost"))
    with postgres.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chronopipe' "
                      "AND usename = %s", [postgres.user])
    with pytest.raises(PostgresSinkError, match=rf"^postgres sink: {schema}\.lost: "):
        sink.write(Batch(numbered(1, 1), id="b2", consumer="lost"))
    assert sink.write(Batch(numbered(1, 1), id="b2", consumer="lost")) == 1
    assert query(postgres, f'SELECT id FROM "{schema}".lost ORDER BY id') == [(0,), (1,)]


def test_statistics_count_batches_rows_skipped_and_seconds(schema, sink):  # noqa: F811
    for batch_id in ("a", "b", "a"):
        sink.write(Batch(numbered(0, 5), id=batch_id, consumer="stats"))
    stats = sink.statistics()
    assert (stats["batches"], stats["rows"], stats["skipped"]) == (2, 10, 1) and stats["seconds"] > 0


# -- the profile: its schema, a dsn, secrets typed into other fields -----------------------------
def test_a_profiles_schema_is_the_sinks_schema_and_is_created_when_missing(postgres, schema):  # noqa: F811
    profile = Profile(name="pg", fields={**postgres.profile_dict(), "schema": schema})  # as the seed's: schema: test
    with PostgresSink(profile) as each:
        assert each.write(Batch(numbered(0, 2), id="b1", consumer="seeded")) == 2
    assert query(postgres, f'SELECT id FROM "{schema}".seeded ORDER BY id') == [(0,), (1,)]


def test_a_dict_profiles_schema_is_the_sinks_schema_not_a_connect_keyword(postgres, schema):  # noqa: F811
    with PostgresSink({**postgres.connect_options(), "schema": schema}) as each:
        assert each.write(Batch(numbered(0, 1), id="b1", consumer="dicted")) == 1
    assert query(postgres, f'SELECT id FROM "{schema}".dicted') == [(0,)]


def test_the_producers_schema_wins_over_the_profiles(postgres, schema):  # noqa: F811
    profile = Profile(name="pg", fields={**postgres.profile_dict(), "schema": "not_this_one"})
    assert PostgresSink(profile, schema=schema).schema == schema


def test_a_profiles_dsn_connects_with_its_password_inside(postgres, schema):  # noqa: F811
    dsn = f"postgresql://{postgres.user}:{postgres.password}@{postgres.host}:{postgres.port}/{postgres.dbname}"
    profile = Profile(name="pg", fields={"dsn": dsn})
    assert isinstance(profile["dsn"], Secret)
    with PostgresSink(profile, schema=schema) as each:
        assert each.write(Batch(numbered(0, 1), id="b1", consumer="by_dsn")) == 1


def test_a_dsn_that_cannot_connect_shows_as_stars_and_its_parts_without_the_password(postgres):  # noqa: F811
    password = "Wr0ng-" + uuid.uuid4().hex
    dsn = f"postgresql://{postgres.user}:{password}@{postgres.host}:{postgres.port}/{postgres.dbname}"
    with pytest.raises(PostgresSinkError, match="password authentication failed") as e:
        PostgresSink(Profile(name="pg", fields={"conninfo": dsn})).open()
    message = str(e.value)
    assert message.startswith(f"postgres sink: cannot connect to {postgres.user}@{postgres.host}:{postgres.port}/")
    assert "(profile pg, dsn ***)" in message and password not in message and dsn not in message


def test_the_password_typed_into_another_field_too_is_scrubbed_from_the_whole_message(postgres):  # noqa: F811
    password = "Wr0ng-" + uuid.uuid4().hex
    profile = Profile(name="pg", fields={**postgres.profile_dict(), "user": password, "password": password})
    with pytest.raises(PostgresSinkError, match="password authentication failed") as e:
        PostgresSink(profile).open()
    assert password not in str(e.value) and str(e.value).startswith("postgres sink: cannot connect to ***@")


def test_the_password_typed_into_the_port_is_not_printed_by_the_port_check():
    from chronopipe.runs.profiles import ProfileError

    profile = Profile(name="pg", fields={"host": "127.0.0.1", "port": "hunter2", "password": "hunter2"})
    with pytest.raises(ProfileError, match=r"port must be a whole number, not '\*\*\*'$") as e:
        PostgresSink(profile).open()
    assert "hunter2" not in str(e.value)


# -- a dead or stalled server ----------------------------------------------------------------------
def test_a_connection_has_keepalives_and_a_tcp_user_timeout_by_default(sink):
    sink.write(Batch(numbered(0, 1), id="b1", consumer="alive"))
    parameters = sink._conn.info.get_parameters()
    assert {key: parameters.get(key) for key in KEEPALIVES} == {key: str(value) for key, value in KEEPALIVES.items()}


def test_a_profiles_fields_override_the_keepalive_defaults(postgres, schema):  # noqa: F811
    fields = {**postgres.profile_dict(), "keepalives_idle": 5, "tcp_user_timeout": 7000}
    with PostgresSink(Profile(name="pg", fields=fields), schema=schema) as each:
        each.open()
        parameters = each._conn.info.get_parameters()
    assert [parameters[key] for key in ("keepalives_idle", "tcp_user_timeout", "keepalives")] == ["5", "7000", "1"]


@pytest.mark.timeout(60)
def test_a_server_stopped_mid_copy_fails_the_batch_after_tcp_user_timeout(postgres, schema, monkeypatch):  # noqa: F811
    import chronopipe.runs.postgres as module

    fields = {**postgres.profile_dict(), "tcp_user_timeout": 2000}  # milliseconds
    backend: list[psutil.Process] = []
    encode, rescue = module.binary_chunks, threading.Timer(20, lambda: backend[0].resume())

    def stalling(*args):  # the server stops (SIGSTOP) once the COPY has begun, before its first row
        chunks = encode(*args)
        backend[0].suspend()
        rescue.start()  # resumed after 20 s whatever this thread is stuck in (else a hang fails the test late)
        yield from chunks

    monkeypatch.setattr(module, "binary_chunks", lambda *args: stalling(*args))
    with PostgresSink(Profile(name="pg", fields=fields), schema=schema) as each:
        each.open()
        backend.append(psutil.Process(each._conn.execute("SELECT pg_backend_pid()").fetchone()[0]))
        started = time.monotonic()
        try:  # 14 MB of COPY: more than the socket buffers hold, so the server's receive window closes
            with pytest.raises(PostgresSinkError, match=rf"^postgres sink: {schema}\.stalled: .*"):
                each.write(Batch(numbered(0, 1_000_000), id="b1", consumer="stalled"))
            assert time.monotonic() - started < 15
        finally:
            rescue.cancel()
            backend[0].resume()  # ALWAYS: the session's server is shared


# -- a process killed mid-load, then a rerun ------------------------------------------------------
CHILD = """
import json, os, sys
import pyarrow as pa
from chronopipe.runs.batch import Batch
from chronopipe.runs.postgres import PostgresSink
schema, batches, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with PostgresSink(json.loads(os.environ["PG_OPTIONS"]), schema=schema) as sink:
    for seq in range(batches):
        first = seq * rows
        table = pa.table({"id": pa.array(range(first, first + rows), pa.int64()),
                          "label": [f"row {i}" for i in range(first, first + rows)]})
        sink.write(Batch(table, id=f"b{seq}", consumer="crash", seq=seq))
"""


@pytest.mark.timeout(300)
def test_a_load_killed_midway_then_rerun_leaves_every_row_once(postgres, schema, tmp_path):  # noqa: F811
    batches, rows = 200, 5_000
    total = batches * rows
    argv = [sys.executable, "-c", CHILD, schema, str(batches), str(rows)]
    env = {**os.environ, "PG_OPTIONS": json.dumps(postgres.connect_options())}  # the password not in argv
    child = subprocess.Popen(argv, env=env, cwd=tmp_path)
    seen, deadline = 0, time.monotonic() + 120
    try:
        with postgres.connect() as conn:
            while seen <= total // 2 and child.poll() is None and time.monotonic() < deadline:
                if conn.execute("SELECT to_regclass(%s)", [f"{schema}.crash"]).fetchone()[0]:
                    seen = conn.execute(f'SELECT count(*) FROM "{schema}".crash').fetchone()[0]
                time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL and total // 2 < seen < total, (child.returncode, seen)
    subprocess.run(argv, env=env, cwd=tmp_path, check=True, timeout=240)
    assert query(postgres, f'SELECT count(*) FROM "{schema}".crash') == [(total,)]
    assert query(postgres, f'SELECT id, count(*) FROM "{schema}".crash GROUP BY id HAVING count(*) > 1') == []
    assert query(postgres, f'SELECT count(*) FROM "{schema}".{LEDGER}') == [(batches,)]

