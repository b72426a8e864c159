"""``chronopipe run`` / ``chronopipe lint`` end to end (issue 19): real files, real processes, real signals.

Each test writes a pipeline.yml (and, where it needs one, a module of its own: consumers, recording
sinks, failing generators) into its tmp_path and runs the command line on it: in a subprocess where
what is tested is the process itself (signals, exit status, every byte of output, processes left
behind), through ``chronopipe.cli.main`` in-process where that is cheaper. What must hold: nothing
lost (rows in = staged + rejected + late, read back), nothing loaded twice (reruns), ``depends_on``
obeyed, one-line errors with the documented exit status, no traceback, no secret, nothing hung.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from chronopipe.cli import main
from postgres_helper import postgres  # noqa: F401
from processes_helper import no_children_left
from sources_helper import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
BALANCE = re.compile(r"^(\S+): rows in ([\d,]+) = staged ([\d,]+) \+ rejected ([\d,]+) \+ late ([\d,]+)", re.M)
ERROR_LINE = re.compile(r"pipeline\.yml:\d+:\d+: runners\[\d+\]\S*: \S")

#: The module each test imports its consumers and sinks from (written under tmp_path, imported by name).
MODULE = '''
import dataclasses, json, os, time
from pathlib import Path

LOG = Path({log!r})

def _log(event, **fields):
    with LOG.open("a") as f:
        f.write(json.dumps({{"event": event, "t": time.time(), "pid": os.getpid(), **fields}}) + "\\n")

def _complete(stage, batch_id):
    manifest = Path(stage) / "manifest.jsonl"
    return any(json.loads(line)["batch"] == batch_id for line in manifest.read_text().splitlines() if line)

@dataclasses.dataclass
class Marker:
    """A record class of yours that happens to share its name with the sources' gap markers."""
    consumer: str
    i: int

def markers(n):
    return [Marker("markers", i) for i in range(n)]

def tick():
    _log("tick")

def trickle(n, pause, forever=False):
    """A live source of yours: a record every ``pause`` seconds, then (``forever``) waits for good."""
    for i in range(n):
        yield {{"consumer": "trickle", "i": i}}
        _log("read", i=i)
        time.sleep(pause)
    while forever:
        time.sleep(1)

def record(batch):
    _log("batch", id=batch.id, consumer=batch.consumer, rows=[row for row in batch.rows])

def slow(batch):
    record(batch)
    time.sleep(0.3)

def stuck(batch):
    record(batch)
    time.sleep(600)

def numbers(n, fail_at=None, consumer="numbers"):
    for i in range(n):
        if fail_at is not None and i == fail_at:
            raise RuntimeError(f"the source broke at record {{i}}")
        yield {{"consumer": consumer, "i": i}}
    _log("consumer_end", consumer=consumer)

class Counter:
    """A consumer of yours: constructed with its options, iterated for dict rows."""
    def __init__(self, count, start=0, label="counter"):
        self.count, self.start, self.label = count, start, label
    def __iter__(self):
        for i in range(self.start, self.start + self.count):
            yield {{"consumer": self.label, "i": i}}
        _log("consumer_end", consumer=self.label)

class Recorder:
    """A sink of yours: logs each batch it gets, whether it was complete in its stage then, and its close."""
    def __init__(self, watch, who="recorder"):
        self.stage, self.who = watch, who
    def open(self):
        _log("open", who=self.who)
    def write(self, batch):
        _log("batch", who=self.who, id=batch.id, consumer=batch.consumer, rows=batch.rows,
             complete=_complete(self.stage, batch.id), files=sorted(os.listdir(self.stage)))
        return batch.num_rows
    def close(self):
        _log("close", who=self.who)
'''


# -- helpers -----------------------------------------------------------------------------------
class Project:
    """A tmp_path with a pipeline.yml and a module of consumers and sinks (``self.module``)."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path, self.log = path, path / "log.jsonl"
        self.module = f"runs_cli_{uuid.uuid4().hex[:10]}"  # a name of its own: no module cached across tests
        (path / f"{self.module}.py").write_text(MODULE.format(log=str(self.log)))
        monkeypatch.syspath_prepend(str(path))
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}

    def pipeline(self, text: str, name: str = "pipeline.yml") -> Path:
        file = self.path / name
        file.write_text(textwrap.dedent(text).replace("MOD", self.module))
        return file

    def events(self, event: str | None = None) -> list[dict]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [e for e in map(json.loads, lines) if event is None or e["event"] == event]

    def loaded(self) -> list:
        return [(row.get("consumer"), row.get("i")) for e in self.events("batch") for row in e["rows"]]

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """``chronopipe ARGS`` in a subprocess in this folder; every byte of its output."""
        done = subprocess.run([sys.executable, "-m", "chronopipe", *args], cwd=self.path, env=self.env,
                              capture_output=True, timeout=timeout)
        assert b"Traceback" not in done.stderr, done.stderr.decode()
        return done

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "chronopipe", *args], cwd=self.path, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path, monkeypatch)


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``chronopipe ARGS`` in this process: (status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return status, out, err


def balances(out: str) -> dict[str, tuple[int, ...]]:
    """consumer -> (rows in, staged, rejected, late) from a run's summary."""
    return {m[1]: tuple(int(x.replace(",", "")) for x in m.groups()[1:]) for m in BALANCE.finditer(out)}


def table_rows(out: str, runner: str) -> tuple[int, int, int]:
    """(rows, batches, skipped) of one runner in the summary table."""
    line = next(line for line in out.splitlines() if line.split()[:1] == [runner] and "rows in" not in line)
    rows, batches, skipped = line.split()[3:6]
    return int(rows.replace(",", "")), int(batches.replace(",", "")), int(skipped.replace(",", ""))


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def same(a: str, b: str) -> bool:
    """Two CSV cells hold the same value (``426`` and ``426.0``; a date with or without microseconds)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except ValueError:
        return False


# -- lint ------------------------------------------------------------------------------------------
SEED = """\
runners:
  - name: websocket_1
    variety: socket
    type: consumer
    uri: ws://127.0.0.1:8765/trades
    stage: {type: local, path: tmp}
    batch_configuration: {size: 100}
  - name: websocket_2
    variety: socket
    type: consumer
    uri: ws://127.0.0.1:8765/quotes
    stage: {type: local, path: tmp}
    batch_configuration: {size: 100}
  - name: postgres
    variety: postgres
    type: producer
    depends_on: [websocket_1, websocket_2]
    profile: postgres
"""


def write_profiles(path: Path, fields: dict, mode: int = 0o600, name: str = "postgres") -> Path:
    path.write_text(f"{name}:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fields.items()))
    path.chmod(mode)
    return path


@pytest.mark.timeout(30)
def test_lint_passes_the_seed_config_and_lists_its_runners(project):
    project.pipeline(SEED)
    write_profiles(project.path / "profiles.yml", {"host": "127.0.0.1", "user": "u", "password": "pw"})
    done = project.run("lint", "pipeline.yml", "--profiles", "profiles.yml")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "consumer websocket_1: socket -> local stage tmp" in out
    assert "producer postgres: postgres after websocket_1, websocket_2" in out
    assert "ok (3 runners)" in out
    assert not (project.path / "tmp").exists(), "lint ran nothing, made nothing"


BROKEN = {
    "unknown variety": ("variety: socket", "variety: nosuch", "runners[0].variety: unknown consumer variety 'nosuch'"),
    "unknown option": ("uri: ws://127.0.0.1:8765/trades", "colour: red",
                       "runners[0].colour: unknown option for variety 'socket'"),
    "unknown stage type": ("{type: local, path: tmp}\n    batch_configuration: {size: 100}\n  - name: websocket_2",
                           "{type: csv, path: tmp}\n    batch_configuration: {size: 100}\n  - name: websocket_2",
                           "runners[0].stage.type"),
    "depends on no consumer": ("[websocket_1, websocket_2]", "[websocket_1, websocket_9]", "runners[2].depends_on"),
    "batch size zero": ("{size: 100}\n  - name: websocket_2", "{size: 0}\n  - name: websocket_2",
                        "runners[0].batch_configuration.size"),
    "a key given twice": ("type: producer", "type: producer\n    type: producer", "duplicate key 'type'"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mistake", BROKEN)
def test_lint_refuses_a_config_error_in_one_line_naming_file_line_column_and_path(project, capsys, mistake):
    old, new, expected = BROKEN[mistake]
    assert old in SEED
    project.pipeline(SEED.replace(old, new, 1))
    status, out, err = cli(capsys, "lint", "pipeline.yml")
    assert status == 2
    assert expected in err
    first = err.splitlines()[0].removeprefix("chronopipe lint: ")
    assert re.match(r"pipeline\.yml:\d+:\d+: ", first), err
    assert out == ""


@pytest.mark.timeout(30)
def test_lint_reports_every_error_of_the_file_at_once(project, capsys):
    project.pipeline(SEED.replace("variety: socket", "variety: nosuch", 1).replace("uri: ws://127.0.0.1:8765/quotes",
                                                                                  "colour: red"))
    status, _, err = cli(capsys, "lint", "pipeline.yml")
    assert status == 2
    assert len(ERROR_LINE.findall(err)) == 2, err


@pytest.mark.timeout(30)
def test_lint_refuses_a_profile_the_profiles_file_lacks(project, capsys):
    project.pipeline(SEED)
    write_profiles(project.path / "profiles.yml", {"host": "h"}, name="other")
    status, _, err = cli(capsys, "lint", "pipeline.yml", "--profiles", "profiles.yml")
    assert status == 2
    assert re.search(r"pipeline\.yml:18:\d+: runners\[2\]\.profile: no profile 'postgres'", err), err


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_lint_refuses_a_profiles_file_others_may_read(project, capsys, mode):
    project.pipeline(SEED)
    write_profiles(project.path / "profiles.yml", {"host": "h", "password": "Zq-9-never-shown"}, mode=mode)
    status, _, err = cli(capsys, "lint", "pipeline.yml", "--profiles", "profiles.yml")
    assert status == 2
    assert "chmod 600" in err and len(err.strip().splitlines()) == 1
    assert "Zq-9-never-shown" not in err


# -- CSV -> Parquet stage -> CSV and Parquet sinks ---------------------------------------------------
CSV_RUN = """\
runners:
  - name: training
    variety: csv
    type: consumer
    path: {data}
    stage: {{type: parquet, path: stage}}
    batch_configuration: {{size: 1000}}
  - name: to_csv
    variety: csv
    type: producer
    depends_on: [training]
    path: out_csv
  - name: to_parquet
    variety: parquet
    type: producer
    depends_on: [training]
    path: out_parquet
"""


def input_rows(path: Path) -> list[list[str]]:
    header, *rows = csv_rows(path)
    return [["row", *header], *rows]  # the UCI files' unnamed first column is named "row"


def output_rows(folder: Path) -> list[list[str]]:
    files = sorted(folder.glob("*.csv"))
    header = csv_rows(files[0])[0]
    return [header] + [row for file in files for row in csv_rows(file)[1:]]


def parquet_rows(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for file in sorted(folder.glob("*.parquet")) for row in pq.read_table(file).to_pylist()]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["datatraining.txt", "datatest.txt"])
def test_a_csv_run_loads_every_input_row_into_both_sinks(project, name):
    data = project.path / name
    data.write_bytes((DATA / name).read_bytes())
    project.pipeline(CSV_RUN.format(data=name))
    done = project.run("run", "pipeline.yml")
    assert done.returncode == 0, done.stderr
    expected = input_rows(data)
    assert balances(done.stdout.decode()) == {"training": (len(expected) - 1, len(expected) - 1, 0, 0)}
    got = output_rows(project.path / "out_csv")
    assert got[0] == expected[0] and len(got) == len(expected)
    assert all(same(a, b) for want, have in zip(expected, got, strict=True) for a, b in zip(want, have, strict=True))
    pq_rows = parquet_rows(project.path / "out_parquet")
    assert [r["row"] for r in pq_rows] == [int(r[0]) for r in expected[1:]]
    assert [r["CO2"] for r in pq_rows] == [float(r[5]) for r in expected[1:]]
    assert not list((project.path / "stage").glob("*.parquet")), "loaded by both producers: released"


@pytest.mark.timeout(60)
def test_a_second_csv_run_changes_nothing(project, capsys):
    (project.path / "in.csv").write_bytes((DATA / "datatest.txt").read_bytes())
    project.pipeline(CSV_RUN.format(data="in.csv"))
    assert cli(capsys, "run", "pipeline.yml")[0] == 0
    before = {p.relative_to(project.path): p.read_bytes() for p in project.path.glob("out_*/*")}
    status, out, _ = cli(capsys, "run", "pipeline.yml")
    assert status == 0
    after = {p.relative_to(project.path): p.read_bytes() for p in project.path.glob("out_*/*")}
    assert after == before
    assert table_rows(out, "training") == (2665, 0, 3)
    assert table_rows(out, "to_csv") == (0, 0, 3) and table_rows(out, "to_parquet") == (0, 0, 3)


@pytest.mark.timeout(60)
def test_a_csv_with_a_bad_row_exits_1_naming_the_reject(project):
    lines = (DATA / "datatraining.txt").read_text().splitlines(keepends=True)[:300]
    lines[120] = '"120","2015-02-04 19:50:59",21.2,25.5\n'  # four fields of eight: line 121 of the file
    (project.path / "bad.csv").write_text("".join(lines))
    project.pipeline(CSV_RUN.format(data="bad.csv"))
    done = project.run("run", "pipeline.yml")
    assert done.returncode == 1
    assert re.search(r"bad\.csv:121: expected 8 fields, got 4", done.stderr.decode()), done.stderr
    assert balances(done.stdout.decode())["training"] == (299, 298, 1, 0)
    assert len(output_rows(project.path / "out_csv")) == 1 + 298


# -- depends_on ----------------------------------------------------------------------------------
def consumer(name: str, count: int, *, stage: str = "stage", size: int = 7, mode: str = "thread",
             start: int = 0) -> str:
    return f"""
  - name: {name}
    variety: MOD:Counter
    type: consumer
    mode: {mode}
    count: {count}
    start: {start}
    label: {name}
    stage: {{type: local, path: {stage}}}
    batch_configuration: {{size: {size}}}"""


def recorder(name: str, depends_on: list[str], *, stage: str = "stage", mode: str = "thread") -> str:
    return f"""
  - name: {name}
    variety: MOD:Recorder
    type: producer
    mode: {mode}
    depends_on: [{', '.join(depends_on)}]
    watch: {stage}
    who: {name}"""


def pipeline(*runners: str) -> str:
    return "runners:" + "".join(runners) + "\n"


@pytest.mark.timeout(60)
def test_a_producer_gets_only_complete_batches_and_ends_after_its_consumer(project, capsys):
    project.pipeline(pipeline(consumer("numbers", 100), recorder("loader", ["numbers"])))
    status, out, err = cli(capsys, "run", "pipeline.yml")
    assert status == 0, err
    batches = project.events("batch")
    assert len(batches) == 15 and all(b["complete"] for b in batches)
    assert sorted(project.loaded()) == [("numbers", i) for i in range(100)]
    (end,), (close,) = project.events("consumer_end"), project.events("close")
    assert close["t"] >= end["t"] and close["t"] >= max(b["t"] for b in batches)
    assert table_rows(out, "loader") == (100, 15, 0)


@pytest.mark.timeout(60)
def test_two_consumers_into_one_stage_reach_their_producer_exactly_once(project, capsys):
    project.pipeline(pipeline(consumer("left", 120, size=10), consumer("right", 95, size=9, start=1000),
                              recorder("loader", ["left", "right"])))
    status, out, _ = cli(capsys, "run", "pipeline.yml")
    assert status == 0
    loaded = project.loaded()
    assert sorted(loaded) == sorted([("left", i) for i in range(120)] + [("right", i) for i in range(1000, 1095)])
    assert all(b["complete"] for b in project.events("batch"))
    close = project.events("close")[0]["t"]
    assert all(close >= end["t"] for end in project.events("consumer_end"))
    assert balances(out) == {"left": (120, 120, 0, 0), "right": (95, 95, 0, 0)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("keep", [False, True])
def test_two_producers_of_one_consumer_both_get_everything_and_files_go_only_after_both(project, capsys, keep):
    text = pipeline(consumer("numbers", 50, size=10), recorder("first", ["numbers"]), recorder("second", ["numbers"]))
    project.pipeline(text.replace("path: stage}", f"path: stage, keep: {str(keep).lower()}}}"))
    assert cli(capsys, "run", "pipeline.yml")[0] == 0
    for who in ("first", "second"):
        rows = [(r["consumer"], r["i"]) for e in project.events("batch") if e["who"] == who for r in e["rows"]]
        assert sorted(rows) == [("numbers", i) for i in range(50)]
    for event in project.events("batch"):  # what a producer gets is still on disk when it gets it
        assert any(event["id"] in f for f in event["files"])
    left = sorted(f.name for f in (project.path / "stage").glob("numbers-*.jsonl"))
    assert len(left) == (5 if keep else 0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("consumer_mode", "producer_mode"), [("process", "process"), ("process", "thread"),
                                                              ("thread", "process")])
def test_process_runners_load_everything_and_leave_no_process(project, consumer_mode, producer_mode):
    project.pipeline(pipeline(consumer("left", 60, mode=consumer_mode), consumer("right", 40, start=500),
                              recorder("loader", ["left", "right"], mode=producer_mode)))
    done = project.run("run", "pipeline.yml")
    assert done.returncode == 0, done.stderr
    expected = [("left", i) for i in range(60)] + [("right", i) for i in range(500, 540)]
    assert sorted(project.loaded()) == sorted(expected)
    assert len({e["pid"] for e in project.events("batch")}) == 1, "one producer, one process"
    assert balances(done.stdout.decode()) == {"left": (60, 60, 0, 0), "right": (40, 40, 0, 0)}
    no_children_left(3.0)


# -- live sources ----------------------------------------------------------------------------------
def live_run(variety: str, options: str, *, size: int, seconds: float | None = None, mode: str = "thread",
             sink: str = "record") -> str:
    cut = f", seconds: {seconds}" if seconds else ""
    return f"""\
runners:
  - name: live
    variety: {variety}
    type: consumer
    mode: {mode}
    {options}
    stage: {{type: local, path: stage}}
    batch_configuration: {{size: {size}{cut}}}
  - name: loader
    variety: callable
    type: producer
    mode: {mode}
    depends_on: [live]
    target: MOD:{sink}
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_an_interval_consumer_stages_and_loads_its_limit_of_ticks(project, mode):
    project.pipeline(live_run("interval", "every: 0.01\n    limit: 50", size=7, mode=mode))
    done = project.run("run", "pipeline.yml")
    assert done.returncode == 0, done.stderr
    rows = [row for e in project.events("batch") for row in e["rows"]]
    assert [row["n"] for row in rows] == list(range(1, 51))
    assert [len(e["rows"]) for e in project.events("batch")] == [7] * 7 + [1]
    assert balances(done.stdout.decode()) == {"live": (50, 50, 0, 0)}
    no_children_left(3.0)


@pytest.mark.timeout(60)
def test_a_tcp_server_consumer_cuts_a_partial_batch_after_its_seconds(project):
    port = free_port()
    project.pipeline(live_run("tcp-server", f"port: {port}\n    limit: 10", size=1000, seconds=0.2))
    run = project.start("run", "pipeline.yml")
    try:
        wait_until(lambda: run.poll() is None and _listening(port), 20)
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"".join(b"line %d\n" % i for i in range(4)))
            wait_until(lambda: len(project.events("batch")) == 1, 10)  # loaded long before 1000 lines came
            client.sendall(b"".join(b"line %d\n" % i for i in range(4, 10)))
            out, err = run.communicate(timeout=20)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == 0, err
    assert [[row["value"] for row in e["rows"]] for e in project.events("batch")] == [
        [f"line {i}" for i in range(4)], [f"line {i}" for i in range(4, 10)]]
    assert balances(out.decode()) == {"live": (10, 10, 0, 0)}


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


# -- signals ---------------------------------------------------------------------------------------
def staged_rows(stage: Path) -> int:
    manifest = stage / "manifest.jsonl"
    return sum(json.loads(line)["rows"] for line in manifest.read_text().splitlines()) if manifest.exists() else 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_first_signal_drains_what_was_read_into_the_sink(project, signum, status, mode):
    project.pipeline(live_run("interval", "every: 0.01\n    action: MOD:tick", size=1000, seconds=30.0, mode=mode))
    run = project.start("run", "pipeline.yml")
    try:
        wait_until(lambda: len(project.events("tick")) >= 30, 20)  # read, not staged: the batch is not full nor old
        assert run.poll() is None and not project.events("batch")
        children = psutil.Process(run.pid).children(recursive=True)
        sent = time.monotonic()
        run.send_signal(signum)
        out, err = run.communicate(timeout=15)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == status, err
    assert time.monotonic() - sent < 5
    assert b"Traceback" not in err
    (read, staged, _, _), = balances(out.decode()).values()
    assert read == staged == staged_rows(project.path / "stage") == len(project.loaded()) >= 30
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_second_sigint_stops_at_once_and_a_rerun_loads_what_was_left(project, mode):
    project.pipeline(live_run("interval", "every: 0.002", size=5, mode=mode, sink="slow"))
    run = project.start("run", "pipeline.yml")
    try:
        wait_until(lambda: len(project.events("batch")) >= 2, 20)  # a backlog: 0.3 s a batch to load
        run.send_signal(signal.SIGINT)
        time.sleep(0.3)
        sent = time.monotonic()
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=15)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == 130 and time.monotonic() - sent < 3, err
    assert b"stopping at once" in err and b"Traceback" not in err
    first = project.events("batch")
    assert sum(len(e["rows"]) for e in first) < staged_rows(project.path / "stage")
    said = balances(out.decode()).get("live")  # figures a cancelled process runner never sent back: not made up
    assert said is None or said[1] == staged_rows(project.path / "stage"), out
    # the same consumer, now reading nothing: its producer loads what the first run left staged
    project.pipeline(live_run("generator", "target: builtins:range\n    args: [0]", size=5, sink="record"))
    assert project.run("run", "pipeline.yml").returncode == 0
    ids = [e["id"] for e in project.events("batch")]
    assert len(ids) == len(set(ids))
    assert sum(len(e["rows"]) for e in project.events("batch")) == staged_rows(project.path / "stage")
    no_children_left(3.0)


# -- consumers of yours, failures ------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_consumer_class_of_yours_takes_its_options_even_named_like_the_runtimes(project, capsys):
    project.pipeline(pipeline(consumer("mine", 25, start=7, size=10), recorder("loader", ["mine"])))
    assert cli(capsys, "run", "pipeline.yml")[0] == 0
    assert sorted(project.loaded()) == [("mine", i) for i in range(7, 32)]


@pytest.mark.timeout(30)
def test_an_option_your_consumer_class_does_not_take_is_refused(project, capsys):
    project.pipeline(pipeline(consumer("mine", 25), recorder("loader", ["mine"])).replace("    label: mine",
                                                                                        "    colour: red"))
    status, _, err = cli(capsys, "lint", "pipeline.yml")
    assert status == 2
    assert re.search(r"pipeline\.yml:8:5: runners\[0\]\.colour: unknown option .*\(accepted: count, label, limit, "
                     r"start\)", err), err


@pytest.mark.timeout(30)
def test_a_record_class_of_yours_named_marker_is_staged_not_dropped(project, capsys):
    project.pipeline(live_run("generator", "target: MOD:markers\n    args: [30]", size=8))
    status, out, _ = cli(capsys, "run", "pipeline.yml")
    assert status == 0
    assert sorted(project.loaded()) == [("markers", i) for i in range(30)]
    assert balances(out) == {"live": (30, 30, 0, 0)}


@pytest.mark.timeout(30)
def test_a_live_iterable_of_yours_gets_partial_batches_cut_after_seconds(project, capsys):
    project.pipeline(live_run("generator", "target: MOD:trickle\n    args: [12, 0.05]", size=1000, seconds=0.15))
    assert cli(capsys, "run", "pipeline.yml")[0] == 0
    sizes = [len(e["rows"]) for e in project.events("batch")]
    assert len(sizes) >= 3 and max(sizes) <= 5, sizes
    assert project.loaded() == [("trickle", i) for i in range(12)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_ctrl_c_drains_a_live_iterable_of_yours_waiting_for_its_next_record(project, mode):
    project.pipeline(live_run("generator", "target: MOD:trickle\n    args: [5, 0.01, true]", size=1000,
                              seconds=30.0, mode=mode))
    run = project.start("run", "pipeline.yml")
    try:
        wait_until(lambda: len(project.events("read")) == 5, 20)
        time.sleep(0.2)  # the iterable asleep inside itself
        sent = time.monotonic()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=15)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == 130 and time.monotonic() - sent < 3, err
    assert project.loaded() == [("trickle", i) for i in range(5)]


FAILING = """\
runners:
  - name: numbers
    variety: generator
    type: consumer
    target: MOD:numbers
    args: [100]
    kwargs: {{fail_at: {fail_at}}}
    stage: {{type: local, path: stage}}
    batch_configuration: {{size: 10}}
  - name: loader
    variety: callable
    type: producer
    depends_on: [numbers]
    target: MOD:record
"""


@pytest.mark.timeout(60)
def test_a_failing_consumer_exits_3_naming_it_and_a_fixed_rerun_loads_every_row_once(project):
    project.pipeline(FAILING.format(fail_at=45))
    done = project.run("run", "pipeline.yml")
    assert done.returncode == 3
    err = done.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "'numbers'" in err[0] and "the source broke at record 45" in err[0]
    assert staged_rows(project.path / "stage") == 45  # every row it gave before it broke is staged
    project.pipeline(FAILING.format(fail_at="null"))
    done = project.run("run", "pipeline.yml")
    assert done.returncode == 0, done.stderr
    assert sorted(project.loaded()) == [("numbers", i) for i in range(100)]


# -- PostgreSQL ------------------------------------------------------------------------------------
PG_RUN = """\
runners:
  - name: training
    variety: csv
    type: consumer
    path: in.csv
    stage: {{type: parquet, path: stage}}
    batch_configuration: {{size: 2000}}
  - name: load
    variety: postgres
    type: producer
    depends_on: [training]
    profile: warehouse
    table: {table}
"""


def pg_project(project: Project, server, **changes) -> tuple[str, bytes]:
    """CSV -> Parquet stage -> the fixture's server (profile chmod 600); (table, password bytes)."""
    (project.path / "in.csv").write_bytes((DATA / "datatraining.txt").read_bytes())
    table = f"t_{uuid.uuid4().hex[:12]}"
    project.pipeline(PG_RUN.format(table=table))
    fields = {**server.profile_dict(), **changes}
    write_profiles(project.path / "profiles.yml", fields, name="warehouse")
    return table, str(fields["password"]).encode()


def table_count(server, table: str) -> tuple[int, int]:
    with server.connect() as conn:
        return conn.execute(f'SELECT count(*), count(DISTINCT "row") FROM "{table}"').fetchone()


@pytest.mark.timeout(90)
def test_csv_to_postgres_loads_each_row_once_and_never_shows_the_password(project, postgres):  # noqa: F811
    table, password = pg_project(project, postgres)
    outputs = [project.run("lint", "pipeline.yml", "--profiles", "profiles.yml")]
    outputs.append(project.run("run", "pipeline.yml", "--profiles", "profiles.yml"))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    assert table_count(postgres, table) == (8143, 8143)
    outputs.append(project.run("run", "pipeline.yml", "--profiles", "profiles.yml"))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    assert table_count(postgres, table) == (8143, 8143), "a rerun adds nothing"
    assert table_rows(outputs[-1].stdout.decode(), "load") == (0, 0, 5)
    for done in outputs:
        assert password not in done.stdout + done.stderr




@pytest.mark.timeout(90)
@pytest.mark.parametrize("failure", ["no server on the port", "wrong password"])
def test_a_postgres_producer_that_cannot_connect_exits_3_in_one_line_without_the_password(project, postgres,  # noqa: F811
                                                                                          failure):
    changes = {"no server on the port": {"port": free_port()},
               "wrong password": {"password": postgres.password + "-Wrong"}}[failure]
    _, password = pg_project(project, postgres, **changes)
    done = project.run("run", "pipeline.yml", "--profiles", "profiles.yml")
    assert done.returncode == 3, done.stderr
    err = done.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "'load'" in err[0], err
    assert password not in done.stdout + done.stderr
    assert postgres.password.encode() not in done.stdout + done.stderr
    no_children_left(3.0)


@pytest.mark.timeout(90)
def test_a_load_into_a_table_of_the_wrong_schema_exits_3_and_once_fixed_loads_each_row_once(project,
                                                                                           postgres):  # noqa: F811
    table, password = pg_project(project, postgres)
    with postgres.connect() as conn:
        conn.execute(f'CREATE TABLE "{table}" ("row" bigint, "date" integer, "CO2" date)')
    done = project.run("run", "pipeline.yml", "--profiles", "profiles.yml")
    assert done.returncode == 3, done.stderr
    err = done.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "'load'" in err[0], err
    assert password not in done.stdout + done.stderr
    with postgres.connect() as conn:
        conn.execute(f'DROP TABLE "{table}"')
    again = project.run("run", "pipeline.yml", "--profiles", "profiles.yml")
    assert again.returncode == 0, again.stderr
    assert table_count(postgres, table) == (8143, 8143)
    assert password not in again.stdout + again.stderr


# -- what is checked before anything runs ----------------------------------------------------
MISTAKES = {
    "missing input": ("    variety: csv\n    path: nothere.csv\n", "runners[0].path: nothere.csv: does not exist"),
    "folder input": ("    variety: file\n    filename: .\n", "runners[0].filename: .: is a folder"),
    "unresolvable function": ("    variety: generator\n    target: 'builtins:nope'\n",
                              "runners[0].target: option target 'builtins:nope': 'builtins' has no 'nope'"),
}


@pytest.mark.parametrize("command", ["lint", "run"])
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_in_an_option_is_one_line_before_anything_runs(tmp_path, capsys, command, mistake):
    lines, message = MISTAKES[mistake]
    config = tmp_path / "p.yml"
    config.write_text("runners:\n  - name: a\n    type: consumer\n" + lines + "    stage: {type: local, path: stage}\n")
    assert main([command, str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith(message), err
    assert not (tmp_path / "stage").exists()  # nothing ran


def test_a_failed_run_prints_its_summary_and_says_its_batches_stay_staged(tmp_path, capsys):
    module = tmp_path / "failing_rows.py"
    module.write_text("def rows():\n    yield from ({'n': n} for n in range(30))\n"
                      "    raise ValueError('row 31 is bad')\n")
    config = tmp_path / "p.yml"
    config.write_text("runners:\n  - name: a\n    type: consumer\n    variety: generator\n"
                      "    target: 'failing_rows:rows'\n    stage: {type: local, path: stage}\n"
                      "    batch_configuration: {size: 10}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["run", str(config)]) == 3
    finally:
        sys.path.remove(str(tmp_path))
    printed = capsys.readouterr()
    assert printed.out.startswith("runner  type")
    assert printed.err.strip().splitlines()[-1] == (
        "chronopipe run: actor 'a' failed: ValueError: row 31 is bad; progress: a emitted 3; "
        "complete batches stay staged for the next run")
    assert len((tmp_path / "stage" / "manifest.jsonl").read_text().splitlines()) == 3


# -- preflight: what a variety's constructor refuses is a mistake in the file, found before anything runs --
def _consumer_csv(extra: str = "", stage: str = "stage") -> str:
    return f"  - name: a\n    type: consumer\n    variety: csv\n    path: in.csv\n{extra}" \
           f"    stage: {{type: local, path: {stage}}}\n"


def _producer(variety: str, extra: str) -> str:
    return f"  - name: p\n    type: producer\n    variety: {variety}\n    depends_on: [a]\n{extra}"


OPTION_MISTAKES = {
    "limit not a number": (_consumer_csv("    limit: abc\n"), "runners[0].limit: limit must be a whole number"),
    "negative limit": (_consumer_csv("    limit: -3\n"), "runners[0].limit: limit must be a whole number"),
    "unknown column type": (_consumer_csv("    column_types: {Temperature: bogus}\n"),
                            "runners[0].column_types: unknown column type 'bogus'"),
    "negative interval": ("  - name: a\n    type: consumer\n    variety: interval\n    every: -1\n"
                          "    stage: {type: local, path: stage}\n", "runners[0].every: source 'a': every must be"),
    "unknown compression": (_consumer_csv() + _producer("parquet", "    path: out\n    compression: nosuch\n"),
                            "runners[1].compression: parquet sink compression 'nosuch'"),
    "sink path is the input file": (_consumer_csv() + _producer("csv", "    path: in.csv\n"),
                                    "runners[1].path: in.csv is a file, not a folder"),
    "stage folder cannot be made": (_consumer_csv(stage="/proc/nope/st"),
                                    "runners[0].stage.path: /proc/nope/st: cannot "),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", ["lint", "run"])
@pytest.mark.parametrize("mistake", sorted(OPTION_MISTAKES))
def test_an_option_value_the_variety_refuses_is_one_line_exit_2_before_anything_runs(tmp_path, command, mistake):
    text, message = OPTION_MISTAKES[mistake]
    (tmp_path / "in.csv").write_bytes((DATA / "datatest.txt").read_bytes())
    before = (tmp_path / "in.csv").read_bytes()
    (tmp_path / "p.yml").write_text("runners:\n" + text)
    done = subprocess.run([sys.executable, "-m", "chronopipe", command, "p.yml"], cwd=tmp_path,
                          capture_output=True, timeout=30)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and re.match(rf"chronopipe {command}: p\.yml:\d+:\d+: ", err), err
    assert message in err, err
    assert done.stdout == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "p.yml"], "nothing ran, nothing was made"
    assert (tmp_path / "in.csv").read_bytes() == before


@pytest.mark.timeout(30)
def test_lint_and_run_leave_the_port_of_a_tcp_server_consumer_alone(project, capsys):
    with socket.socket() as held:  # taken: a source that bound it while checking would fail here
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        project.pipeline(live_run("tcp-server", f"port: {port}", size=10))
        status, out, err = cli(capsys, "lint", "pipeline.yml")
    assert status == 0, err
    assert "ok (2 runners)" in out


@pytest.mark.timeout(30)
def test_run_makes_a_missing_stage_folder_and_lint_does_not(project, capsys):
    project.pipeline(live_run("generator", "target: builtins:range\n    args: [3]", size=10)
                     .replace("path: stage", "path: deep/er/stage"))
    assert cli(capsys, "lint", "pipeline.yml")[0] == 0
    assert not (project.path / "deep").exists()
    assert cli(capsys, "run", "pipeline.yml")[0] == 0
    assert (project.path / "deep" / "er" / "stage").is_dir()


# -- a stage folder belongs to one run at a time ------------------------------------------------
SLOW_TICKS = """\
runners:
  - name: ticks
    variety: interval
    type: consumer
    every: {every}
    limit: {limit}
    stage: {{type: local, path: stage}}
    batch_configuration: {{size: 5}}
  - name: loader
    variety: callable
    type: producer
    depends_on: [ticks]
    target: MOD:record
"""


@pytest.mark.timeout(60)
def test_a_second_run_of_the_same_file_is_refused_while_the_first_loads_every_row_once(project):
    project.pipeline(SLOW_TICKS.format(every=0.1, limit=40))  # 4 s of ticks
    first = project.start("run", "pipeline.yml")
    others = []
    try:
        wait_until(lambda: len(project.events("batch")) >= 1, 20)
        others = [project.start("run", "pipeline.yml") for _ in range(2)]
        refused = [p.communicate(timeout=30) for p in others]
        assert first.poll() is None, "the first run was still going while the others tried"
        out, err = first.communicate(timeout=30)
    finally:
        for p in [first, *others]:
            p.kill() if p.poll() is None else None
    assert first.returncode == 0, err
    assert [p.returncode for p in others] == [2, 2], refused
    for stdout, stderr in refused:
        assert stderr.decode() == (f"chronopipe run: stage folder {project.path / 'stage'} is in use by "
                                   f"another run (pid {first.pid})\n")
        assert stdout == b""
    assert [row["n"] for row in (r for e in project.events("batch") for r in e["rows"])] == list(range(1, 41))
    assert balances(out.decode()) == {"ticks": (40, 40, 0, 0)}
    assert project.run("run", "pipeline.yml").returncode == 0, "the folder is free once the run ended"
    no_children_left(3.0)


@pytest.mark.timeout(60)
def test_a_sigkilled_run_does_not_block_the_next(project):
    project.pipeline(SLOW_TICKS.format(every=0.05, limit=10_000).replace("    every:", "    mode: process\n    every:"))
    first = project.start("run", "pipeline.yml")
    try:
        wait_until(lambda: len(project.events("batch")) >= 1, 20)
        children = psutil.Process(first.pid).children(recursive=True)
        assert children, "a process runner"
        first.kill()
        first.wait(10)
    finally:
        first.kill() if first.poll() is None else None
    project.pipeline(SLOW_TICKS.format(every=0.01, limit=12))
    done = project.run("run", "pipeline.yml")  # at once: the killed run's process runner may be ending still
    assert done.returncode == 0, done.stderr
    assert balances(done.stdout.decode()) == {"ticks": (12, 12, 0, 0)}
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "the killed run's process runner ended"
    no_children_left(3.0)


# -- what the failure line and --help say ---------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_failure_line_names_the_exception_class_without_its_module(project):
    (project.path / "broken_sink.py").write_text(
        "class LoadError(Exception):\n    pass\n\n"
        "class Broken:\n    def open(self):\n        pass\n"
        "    def write(self, batch):\n        raise LoadError('the table is read-only')\n"
        "    def close(self):\n        pass\n")
    project.pipeline(live_run("generator", "target: builtins:range\n    args: [5]", size=10)
                     .replace("variety: callable", "variety: broken_sink:Broken").replace("target: MOD:record\n", ""))
    done = project.run("run", "pipeline.yml")
    assert done.returncode == 3, done.stderr
    line = done.stderr.decode().strip().splitlines()[-1]
    assert "actor 'loader' failed: LoadError: the table is read-only" in line, line
    assert "broken_sink." not in line


@pytest.mark.timeout(30)
def test_lint_help_lists_only_the_exit_statuses_lint_returns(capsys):
    with pytest.raises(SystemExit):
        main(["lint", "--help"])
    lint_help = capsys.readouterr().out.split("exit status:")[1]
    statuses = re.findall(r"^\s+(\d+)\s", lint_help, re.M)
    assert statuses == ["0", "2"], lint_help
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    run_help = capsys.readouterr().out.split("exit status:")[1]
    assert re.findall(r"^\s+(\d+)\s", run_help, re.M) == ["0", "1", "2", "3", "130", "143"]


# -- the summary table ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_cancelled_runner_shows_the_seconds_it_ran(project):
    project.pipeline(live_run("interval", "every: 0.002", size=5, mode="process", sink="slow"))
    began = time.monotonic()
    run = project.start("run", "pipeline.yml")
    try:
        wait_until(lambda: len(project.events("batch")) >= 3, 20)  # 0.3 s a batch: it ran over 0.6 s
        ran = time.monotonic() - began
        run.send_signal(signal.SIGINT)
        time.sleep(0.3)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=15)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == 130, err
    table = {line.split()[0]: line.split() for line in out.decode().splitlines()[1:3]}
    assert set(table) == {"live", "loader"}, out
    for name, cells in table.items():
        assert 0.6 <= float(cells[-1]) <= ran + 5, (name, out)
    no_children_left(3.0)


@pytest.mark.timeout(60)
def test_a_run_waits_for_the_lock_the_ending_runners_of_a_dead_run_still_hold(project):
    project.pipeline(SLOW_TICKS.format(every=0.01, limit=12))
    lock = project.path / "stage" / ".run.lock"
    lock.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    lock.write_bytes(dead.stdout)  # the run that took it is gone; an orphaned process runner of it holds it still
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(2)", str(lock)],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        done = project.run("run", "pipeline.yml")
    finally:
        holder.kill()
        holder.communicate()
    assert done.returncode == 0, done.stderr
    assert balances(done.stdout.decode()) == {"ticks": (12, 12, 0, 0)}


@pytest.mark.timeout(30)
def test_consumers_sharing_a_stage_folder_spelled_two_ways_lock_it_once(project, capsys):
    text = pipeline(consumer("left", 20), consumer("right", 9, start=100, stage="./other/../stage"),
                    recorder("loader", ["left", "right"]))
    project.pipeline(text)
    status, _, err = cli(capsys, "run", "pipeline.yml")
    assert status == 0, err
    expected = [("left", i) for i in range(20)] + [("right", i) for i in range(100, 109)]
    assert sorted(project.loaded()) == sorted(expected)


def test_a_csv_that_cannot_be_read_is_exit_2_in_one_line_naming_the_file_and_line(tmp_path, capsys):
    (tmp_path / "blank.csv").write_text('\n"a","b"\n1,2\n')
    config = tmp_path / "p.yml"
    config.write_text("runners:\n  - name: c\n    variety: csv\n    type: consumer\n    path: blank.csv\n"
                      "    stage: {type: parquet, path: stage}\n")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == (f"chronopipe run: actor 'c' failed: ReaderError: {tmp_path}/blank.csv:1: the first line is "
                   "blank: expected the header\n")


def test_an_unknown_profile_names_the_files_looked_in(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "p.yml"
    config.write_text("runners:\n  - name: c\n    variety: interval\n    type: consumer\n    every: 1\n"
                      "    stage: {type: local, path: stage}\n  - name: p\n    variety: postgres\n"
                      "    type: producer\n    depends_on: [c]\n    profile: warehouse\n")
    assert main(["lint", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chronopipe lint: ") and "p.yml:11:14: runners[1].profile: no profile 'warehouse'" in err
    assert ".chronopipe/profiles.yml" in err and ".socket_el/profile.yml" in err and err.count("\n") == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_third_signal_while_stopping_at_once_changes_nothing_and_prints_no_traceback(project, mode):
    project.pipeline(live_run("interval", "every: 0.002", size=5, mode=mode, sink="stuck"))
    run = project.start("run", "pipeline.yml")
    try:
        wait_until(lambda: len(project.events("batch")) >= 1, 20)  # the sink is stuck in its first batch
        for _ in range(3):
            run.send_signal(signal.SIGINT)
            time.sleep(0.3)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == 130, err
    assert b"Traceback" not in err and b"_Interrupted" not in err, err


@pytest.mark.parametrize("command", ["lint", "run"])
def test_a_profile_value_it_cannot_take_is_one_line_exit_2_before_anything_runs(tmp_path, capsys, command):
    profiles = tmp_path / "profiles.yml"
    profiles.touch(mode=0o600)
    profiles.write_text("warehouse:\n  host: 127.0.0.1\n  port: abc\n  user: u\n  password: s3cr3t-PW\n")
    config = tmp_path / "p.yml"
    config.write_text("runners:\n  - name: c\n    variety: interval\n    type: consumer\n    every: 1\n"
                      "    stage: {type: local, path: stage}\n  - name: p\n    variety: postgres\n"
                      "    type: producer\n    depends_on: [c]\n    profile: warehouse\n")
    assert main([command, str(config), "--profiles", str(profiles)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runners[1].profile:" in err and "port must be a whole number" in err
    assert "s3cr3t-PW" not in err and not (tmp_path / "stage").exists()
