"""Hand-run benchmark of ``chronopipe run`` (issue 19): CSV -> Parquet stage -> PostgreSQL.

Run it (about a minute on 2 cores; it is not a pytest test)::

    venv/bin/python benchmarks/bench_runs.py [--rows N] [--rounds N] [--batch-size N]
                                            [--pandas-rows N] [--warmup N] [--quick] [--check]

What is measured
----------------
A CSV file of ``--rows`` (default 1,000,000) rows of the UCI occupancy shape, made in a temporary
folder from the rows of ``examples/data/datatraining.txt`` with fresh unique ids: the header
``"date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"`` and 8-field rows
whose first field is a quoted unique index (``"17",...``), like the bundled file. One throwaway
PostgreSQL (``chronopipe.runs.tempdb.start_server()``), stopped at the end whatever happens.
Contenders, back to back in every round (in turns, so none always goes first), each into an
empty table (the tables, the ledger and the stage folder are dropped between them, then a
``CHECKPOINT``):

* **chronopipe run**: the real command in a subprocess, ``python -m chronopipe run pipeline.yml
  --profiles profiles.yml`` (the profiles file ``chmod 600``): a ``csv`` consumer into a
  ``parquet`` stage in batches of ``--batch-size`` (default 50,000) rows, a ``postgres``
  producer depending on it (binary ``COPY``, a ledger row per batch in the same transaction).
  Timed as the wall time of the command, its interpreter start-up and imports included;
* **psql \\copy** (the floor): ``psql -c "\\copy t FROM 'file' (FORMAT csv, HEADER)"`` (Debian's
  postgresql-client, ``PGPASSWORD`` in its environment) into a table created beforehand with
  the types chronopipe gives the columns (``bigint``, ``timestamp``, ``double precision``);
* **pandas.to_sql** (what many users write by hand): ``pandas.read_csv(parse_dates=["date"])``
  then ``DataFrame.to_sql(chunksize=10_000)`` (``method=None``, the default: executemany) through a
  SQLAlchemy ``postgresql+psycopg://`` engine. It is slow, so it runs on the first
  ``--pandas-rows`` (default 100,000) rows only, a file of their own; the rates are compared.

Before the rounds, ``--warmup`` (default 1) untimed run of each contender: the first run on a
fresh server and a cold page cache is slower for everyone (chronopipe's by about 0.7 s here), and
the files just written are synced to disk first. Every load is checked (exit status 0 for the
command, ``count(*)`` of the table = the rows). ``rows_per_s`` is chronopipe's median rate;
``vs_psql_copy`` and ``vs_pandas_to_sql`` are the median over rounds of chronopipe's rate / that
contender's rate in the same round (``_common.paired_ratio``), never best over best. Targets:
>= 0.5 and >= 10.

Then the **crash check**, once: the command is started in its own process group, the table's
``count(*)`` polled, the group SIGKILLed when the count first passes half the rows; then the
command runs again to completion. ``crash_rerun_exact`` is true when the kill landed mid-load,
the rerun exited 0, the table holds exactly ``--rows`` rows and no id twice.

Output (progress goes to stderr): the load average, a table of rates with the per-round ratios,
where chronopipe's time goes (start-up, the consumer, the producer, from the command's summary),
then, as the very last line, one JSON object: ``{"rows_per_s", "vs_psql_copy",
"vs_pandas_to_sql", "crash_rerun_exact", ...}``. ``--check`` exits with status 1 when a target is
missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd  # imported here, so that pandas' own run does not pay for importing itself
import sqlalchemy
import yaml

from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict
from chronopipe.runs.tempdb import PostgresServer, start_server

TARGETS = {"vs_psql_copy": (0.5, "min"), "vs_pandas_to_sql": (10.0, "min")}
UCI = Path(__file__).resolve().parent.parent / "examples" / "data" / "datatraining.txt"
SCHEMA = "bench"  # chronopipe's target schema (its ledger lives there too): dropped between contenders
TABLE = "uci"
PSQL_TABLE = "psql_copy"
PANDAS_TABLE = "pandas_to_sql"
COLUMNS = ('"row" bigint, "date" timestamp, "Temperature" double precision, "Humidity" double precision, '
           '"Light" double precision, "CO2" double precision, "HumidityRatio" double precision, '
           '"Occupancy" bigint')


def uci_csv(path: Path, rows: int) -> Path:
    """``rows`` rows of the UCI shape into ``path``: the bundled header, the bundled rows over and
    over, each with a fresh quoted unique index ``"1"``, ``"2"``, ... as its first field."""
    lines = UCI.read_text().splitlines()
    header, body = lines[0], [line.split(",", 1)[1] for line in lines[1:] if line.strip()]
    with open(path, "w", newline="") as f:
        f.write(header + "\n")
        for start in range(0, rows, 100_000):
            f.write("".join(f'"{i + 1}",{body[i % len(body)]}\n' for i in range(start, min(rows, start + 100_000))))
    return path


@dataclass
class Bench:
    """What every contender needs: the server, the scratch folder and its files."""

    server: PostgresServer
    folder: Path
    csv: Path
    pandas_csv: Path
    rows: int
    pandas_rows: int
    batch_size: int
    pipeline: Path = field(init=False)
    profiles: Path = field(init=False)

    def __post_init__(self) -> None:
        self.profiles = self.folder / "profiles.yml"
        self.profiles.write_text(yaml.safe_dump({"bench": self.server.profile_dict()}))
        self.profiles.chmod(0o600)
        self.pipeline = self.folder / "pipeline.yml"
        self.pipeline.write_text(yaml.safe_dump({"runners": [
            {"name": "uci", "type": "consumer", "variety": "csv", "path": self.csv.name,
             "stage": {"type": "parquet", "path": "stage"}, "batch_configuration": {"size": self.batch_size}},
            {"name": "load", "type": "producer", "variety": "postgres", "depends_on": ["uci"],
             "profile": "bench", "table": TABLE, "schema": SCHEMA},
        ]}, sort_keys=False))

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "chronopipe", "run", str(self.pipeline), "--profiles", str(self.profiles)]

    def reset(self) -> None:
        """Every contender's table, chronopipe's ledger and stage dropped; a checkpoint, so no
        contender pays for the previous one's dirty pages."""
        shutil.rmtree(self.folder / "stage", ignore_errors=True)
        with self.server.connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            conn.execute(f"DROP TABLE IF EXISTS {PSQL_TABLE}, {PANDAS_TABLE}")
        with self.server.admin() as conn:
            conn.execute("CHECKPOINT")

    def count(self, table: str) -> int | None:
        """``count(*)`` of ``table`` (schema-qualified or not); None while it does not exist."""
        with self.server.connect() as conn:
            if conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
                return None
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@dataclass
class CommandRun(Run):
    """A ``chronopipe run``: its rate, and where its time went (from the command's summary)."""

    consumer_s: float = 0.0
    producer_s: float = 0.0
    run_s: float = 0.0  # the command's own "N runners, X s": from the start of the runners to their end


def parse_summary(text: str) -> dict[str, float]:
    """The consumer's, the producer's and the whole run's seconds from the command's summary table."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[1] in ("consumer", "producer"):
            out[f"{parts[1]}_s"] = float(parts[6])
        if match := re.match(r"\d+ runners, ([\d.]+) s", line):
            out["run_s"] = float(match.group(1))
    return out


def run_chronopipe(bench: Bench) -> CommandRun:
    started = time.perf_counter()
    done = subprocess.run(bench.command, cwd=bench.folder, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"chronopipe run exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    check_count("chronopipe run", bench.count(f"{SCHEMA}.{TABLE}"), bench.rows)
    return CommandRun(bench.rows, seconds, **parse_summary(done.stdout))


def run_psql(bench: Bench) -> Run:
    server = bench.server
    with server.connect() as conn:
        conn.execute(f"CREATE TABLE {PSQL_TABLE} ({COLUMNS})")
    env = {**os.environ, "PGPASSWORD": server.password}
    copy = f"\\copy {PSQL_TABLE} FROM '{bench.csv}' (FORMAT csv, HEADER)"
    started = time.perf_counter()
    done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.host, "-p", str(server.port),
                           "-U", server.user, "-d", server.dbname, "-c", copy],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"psql \\copy exited {done.returncode}: {done.stderr.strip()}")
    check_count("psql \\copy", bench.count(PSQL_TABLE), bench.rows)
    return Run(bench.rows, seconds)


def run_pandas(bench: Bench) -> Run:
    server = bench.server
    url = sqlalchemy.URL.create("postgresql+psycopg", username=server.user, password=server.password,
                                host=server.host, port=server.port, database=server.dbname)
    engine = sqlalchemy.create_engine(url)
    try:
        started = time.perf_counter()
        frame = pd.read_csv(bench.pandas_csv, parse_dates=["date"])  # the unnamed leading column: the index
        frame.to_sql(PANDAS_TABLE, engine, index_label="row", chunksize=10_000)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    check_count("pandas to_sql", bench.count(PANDAS_TABLE), bench.pandas_rows)
    return Run(bench.pandas_rows, seconds)


def crash_check(bench: Bench, fraction: float = 0.5) -> dict[str, Any]:
    """SIGKILL a run's process group when the table first holds ``fraction`` of the rows, run
    again to completion; whether every row is there once (see the module docstring)."""
    bench.reset()
    target = f"{SCHEMA}.{TABLE}"
    with open(bench.folder / "killed.log", "wb") as log:
        process = subprocess.Popen(bench.command, cwd=bench.folder, stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    at = None
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            count = bench.count(target) or 0
            if count >= fraction * bench.rows:
                os.killpg(process.pid, signal.SIGKILL)
                at = count
                break
            time.sleep(0.005)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    rerun = subprocess.run(bench.command, cwd=bench.folder, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=600)
    with bench.server.connect() as conn:
        count = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
        twice = conn.execute(f'SELECT count(*) FROM (SELECT "row" FROM {target} GROUP BY "row" '
                             "HAVING count(*) > 1) d").fetchone()[0]
    mid_run = at is not None and at < bench.rows
    return {"killed_at": at, "rerun_status": rerun.returncode, "count": count, "duplicate_ids": twice,
            "exact": mid_run and rerun.returncode == 0 and count == bench.rows and twice == 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the CSV (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (default 3)")
    parser.add_argument("--batch-size", type=int, default=50_000, help="chronopipe's batch size (default 50,000)")
    parser.add_argument("--pandas-rows", type=int, default=100_000,
                        help="rows pandas.to_sql loads (default 100,000; its rate is compared)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs of each contender before the rounds (default 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100,000 rows, 1 round")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds, args.pandas_rows, args.batch_size, args.warmup = 100_000, 1, 20_000, 5_000, 0
    if args.rows < 1000 or args.rounds < 1 or args.batch_size < 1 or args.pandas_rows < 1 or args.warmup < 0:
        parser.error("--rows must be >= 1,000; --rounds, --batch-size and --pandas-rows >= 1, --warmup >= 0")
    pandas_rows = min(args.pandas_rows, args.rows)

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load = os.getloadavg()
    server = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-runs-") as scratch:
            folder = Path(scratch)
            progress(f"writing {args.rows:,} CSV rows...")
            bench = Bench(server, folder, uci_csv(folder / "uci.csv", args.rows),
                          uci_csv(folder / "uci-pandas.csv", pandas_rows), args.rows, pandas_rows, args.batch_size)
            os.sync()  # the files' dirty pages written out now, not during a timed run
            contenders = {"chronopipe": run_chronopipe, "psql": run_psql, "pandas": run_pandas}
            runs: dict[str, list[Any]] = {key: [] for key in contenders}
            order = list(contenders)
            for _ in range(args.warmup):
                for key in order:
                    progress(f"warm-up (not timed): {key}...")
                    bench.reset()
                    contenders[key](bench)
            for rnd in range(args.rounds):
                for key in order if rnd % 2 == 0 else order[::-1]:
                    progress(f"round {rnd + 1}/{args.rounds}: {key}...")
                    bench.reset()
                    runs[key].append(contenders[key](bench))
            progress("crash check: SIGKILL at 50%, rerun...")
            crash = crash_check(bench)
            size = bench.csv.stat().st_size
    finally:
        server.stop()

    psql_ratio, psql_rounds = paired_ratio(runs["chronopipe"], runs["psql"])
    pandas_ratio, pandas_rounds = paired_ratio(runs["chronopipe"], runs["pandas"])
    rate = median_rate(runs["chronopipe"])
    print(f"\nCSV -> PostgreSQL, {args.rows:,} UCI rows ({size / 1e6:.0f} MB), {args.rounds} paired rounds, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores")
    print(f"  {'contender':<66} {'rows/s':>12}  {'ratio (chronopipe / it)':<24} runs (s)")
    labels = {"chronopipe": f"chronopipe run (CSV -> Parquet stage -> COPY, batches of {args.batch_size:,})",
              "psql": "psql \\copy (FORMAT csv, HEADER)",
              "pandas": f"pandas read_csv + to_sql(chunksize=10_000), {pandas_rows:,} rows"}
    ratios = {"chronopipe": "", "psql": f"{psql_ratio:.2f} ({rounds_text(psql_rounds)})",
              "pandas": f"{pandas_ratio:.1f} ({rounds_text(pandas_rounds, 1)})"}
    for key in contenders:
        times = ", ".join(f"{r.seconds:.2f}" for r in runs[key])
        print(f"  {labels[key]:<66} {median_rate(runs[key]):>12,.0f}  {ratios[key]:<24} {times}")
    mine: list[CommandRun] = runs["chronopipe"]
    print("\nWhere chronopipe run's wall time goes (per round, seconds): start-up and exit = wall - the run's own time")
    for i, r in enumerate(mine, 1):
        print(f"  round {i}: wall {r.seconds:.2f} = start-up/exit {r.seconds - r.run_s:.2f} + run {r.run_s:.2f} "
              f"(consumer CSV -> stage {r.consumer_s:.2f}, producer stage -> COPY {r.producer_s:.2f}, concurrent)")
    print(f"\nCrash check: SIGKILL at {crash['killed_at'] if crash['killed_at'] is not None else 'never'} rows, "
          f"rerun exit {crash['rerun_status']}, {crash['count']:,} rows, {crash['duplicate_ids']} ids twice: "
          f"{'exact' if crash['exact'] else 'NOT EXACT'}")
    summary = {
        "rows_per_s": round(rate),
        "vs_psql_copy": round(psql_ratio, 3),
        "vs_pandas_to_sql": round(pandas_ratio, 2),
        "crash_rerun_exact": crash["exact"],
        "rows": args.rows,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "pandas_rows": pandas_rows,
        "psql_copy_rows_per_s": round(median_rate(runs["psql"])),
        "pandas_to_sql_rows_per_s": round(median_rate(runs["pandas"])),
        "startup_s": round(sorted(r.seconds - r.run_s for r in mine)[len(mine) // 2], 3),
    }
    print()
    for key in TARGETS:
        print(f"{key}: {summary[key]:,} {target_verdict(TARGETS, key, summary[key])}")
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
