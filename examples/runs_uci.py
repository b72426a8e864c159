"""The bundled UCI occupancy files, CSV -> Parquet stage -> PostgreSQL, with ``chronopipe run``.

The run is examples/runs/uci_to_postgres.yml: three ``csv`` consumers, one per file, into one
Parquet stage, and one ``postgres`` producer depending on the three, loading them into one
table. The example starts a throwaway PostgreSQL (``chronopipe.runs.tempdb``: Debian's
``postgresql`` package), writes a profiles file for it (mode 600), runs the file in a
temporary folder, counts the table, then runs it again: the second run loads nothing, since
every batch is already there (exactly once).
"""

import tempfile
from pathlib import Path

import yaml

from chronopipe.cli import main
from chronopipe.runs.tempdb import PostgresUnavailable, start_server

HERE = Path(__file__).parent


def write_run(folder: Path) -> Path:
    """The example's YAML in ``folder`` (its stage goes there too), reading the bundled files."""
    text = (HERE / "runs" / "uci_to_postgres.yml").read_text()
    pipeline = folder / "pipeline.yml"
    pipeline.write_text(text.replace("../data/", f"{HERE / 'data'}/"))
    return pipeline


def write_profiles(folder: Path, server) -> Path:
    profiles = folder / "profiles.yml"
    profiles.touch(mode=0o600)
    profiles.write_text(yaml.safe_dump({"postgres": server.profile_dict()}))
    return profiles


def main_example() -> int:
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        print(f"skipped: {exc}")
        return 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            pipeline, profiles = write_run(folder), write_profiles(folder, server)
            for attempt in ("first run", "second run"):
                print(f"--- {attempt}")
                status = main(["run", str(pipeline), "--profiles", str(profiles)])
                with server.connect() as conn:
                    rows = conn.execute("SELECT count(*), min(date), max(date) FROM occupancy").fetchone()
                print(f"exit status {status}; table occupancy: {rows[0]:,} rows, {rows[1]} .. {rows[2]}")
                if status != 0:
                    return status
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main_example())
