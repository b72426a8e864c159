"""Crash tests of ``chronopipe run`` against a real PostgreSQL (tests/postgres_helper.py; skipped,
saying why, where there is none): a 1M-row CSV -> Parquet stage -> PostgreSQL run, SIGKILLed (its
whole process group) when the target table first holds 10%, 50% or 90% of the rows, then run again
to completion, holds every row of the input exactly once, and one ledger row per batch.

The table's ``count(*)`` grows a committed batch at a time (the rows and their ledger row commit
in one transaction), so the batches are small enough (40 of 25,000 rows) that each fraction is
reached mid-run and the kill lands while batches are still being staged and loaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from chronopipe.runs.postgres import LEDGER
from postgres_helper import postgres, schema  # noqa: F401

ROWS = 1_000_000
BATCH = 25_000
BATCHES = ROWS // BATCH
TABLE = "uci"
UCI = Path(__file__).resolve().parent.parent / "examples" / "data" / "datatraining.txt"
RUN_SECONDS = 50  # a bound for one run: about 2 s alone on 2 cores, 5 s beside the other tests
# Each test: 3.4 to 5.6 s alone (-n 0), 11 to 12.5 s on 2 busy cores (-n auto beside a benchmark), plus
# the first one's CSV (1.5 s) and server start: the timeout is about 3x the busy figure.
TIMEOUT = 60


@pytest.fixture(scope="module")
def uci_csv(tmp_path_factory) -> Path:
    """ROWS rows of the UCI occupancy shape: the bundled header (7 names), 8-field rows whose first
    field is a quoted unique index ``"1"`` .. ``"1000000"``, the bundled values over and over."""
    lines = UCI.read_text().splitlines()
    header, body = lines[0], [line.split(",", 1)[1] for line in lines[1:] if line.strip()]
    path = tmp_path_factory.mktemp("uci") / "uci.csv"
    with open(path, "w", newline="") as f:
        f.write(header + "\n")
        for start in range(0, ROWS, 100_000):
            f.write("".join(f'"{i + 1}",{body[i % len(body)]}\n' for i in range(start, min(ROWS, start + 100_000))))
    return path


@pytest.fixture
def command(tmp_path, uci_csv, postgres, schema) -> list[str]:  # noqa: F811
    """``python -m chronopipe run pipeline.yml --profiles profiles.yml``: the CSV into a Parquet
    stage in batches of BATCH rows, a postgres producer into ``{schema}.uci``."""
    profiles = tmp_path / "profiles.yml"
    profiles.write_text(yaml.safe_dump({"db": postgres.profile_dict()}))
    profiles.chmod(0o600)
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(yaml.safe_dump({"runners": [
        {"name": "uci", "type": "consumer", "variety": "csv", "path": str(uci_csv),
         "stage": {"type": "parquet", "path": "stage"}, "batch_configuration": {"size": BATCH}},
        {"name": "load", "type": "producer", "variety": "postgres", "depends_on": ["uci"], "profile": "db",
         "table": TABLE, "schema": schema},
    ]}, sort_keys=False))
    return [sys.executable, "-m", "chronopipe", "run", str(pipeline), "--profiles", str(profiles)]


def count_rows(postgres, schema: str) -> int:  # noqa: F811
    """``count(*)`` of the target table; 0 before the run has created it."""
    with postgres.connect() as conn:
        if conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", [schema, TABLE]).fetchone()[0]:
            return conn.execute(f'SELECT count(*) FROM "{schema}"."{TABLE}"').fetchone()[0]
    return 0


def kill_at(command: list[str], cwd: Path, postgres, schema: str, fraction: float) -> int:  # noqa: F811
    """Start the run in its own process group, SIGKILL the group when the table first holds
    ``fraction`` of ROWS, wait for it; the count seen then. Fails if the run ended by itself
    first, or if a process of the killed run is left."""
    log = cwd / "killed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    group, seen = process.pid, 0
    try:
        deadline = time.monotonic() + RUN_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            seen = count_rows(postgres, schema)
            if seen >= fraction * ROWS:
                os.killpg(group, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            os.killpg(group, signal.SIGKILL)
        process.wait(30)
    assert process.returncode == -signal.SIGKILL, (
        f"the run ended by itself (status {process.returncode}) before the table held {fraction:.0%} "
        f"of the rows ({seen:,} seen): {log.read_text(errors='replace')[-2000:]}")
    assert seen < ROWS, f"the kill came after the last batch was loaded ({seen:,} rows): not a crash mid-run"
    left = [p for p in psutil.process_iter(["status"]) if p.info["status"] != psutil.STATUS_ZOMBIE
            and _group_of(p) == group]
    assert not left, f"processes of the killed run left: {[p.pid for p in left]}"
    return seen


def _group_of(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9], ids=["10%", "50%", "90%"])
def test_a_run_killed_mid_load_and_run_again_holds_every_row_exactly_once(
        fraction, command, tmp_path, postgres, schema):  # noqa: F811
    """SIGKILL at ``fraction`` of the load, rerun to exit 0: count == ROWS, no id twice, and the
    ledger holds one row per batch (BATCHES), none loaded twice nor missing."""
    kill_at(command, tmp_path, postgres, schema, fraction)

    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=RUN_SECONDS)

    assert rerun.returncode == 0, f"the rerun exited {rerun.returncode}: {rerun.stdout}\n{rerun.stderr[-2000:]}"
    with postgres.connect() as conn:
        rows = conn.execute(f'SELECT count(*) FROM "{schema}"."{TABLE}"').fetchone()[0]
        twice = conn.execute(f'SELECT "row", count(*) FROM "{schema}"."{TABLE}" GROUP BY "row" '
                             "HAVING count(*) > 1 LIMIT 5").fetchall()
        ledger = conn.execute(f'SELECT count(*) FROM "{schema}"."{LEDGER}" WHERE target = %s', [TABLE]).fetchone()[0]
    assert (rows, twice, ledger) == (ROWS, [], BATCHES), (
        f"after the rerun: {rows:,} rows (expected {ROWS:,}), ids loaded twice (id, times): {twice}, "
        f"{ledger} ledger rows (expected {BATCHES})")
