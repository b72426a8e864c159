"""The ``push`` consumer variety of runs (runs/push.py), end to end.

Each live test starts the real command line (``venv/bin/chronopipe run x.yml --control
127.0.0.1:0``) as a subprocess, reads the control API's URL and token file from its stderr line,
and pushes records over HTTP on 127.0.0.1: they are staged in batches and loaded by the sink
exactly once; ``POST /stop`` closes the input and the run drains and exits 0. The refusals: an
input that is no push consumer (404), a push that does not fit (429), a push after the stop (409),
``mode: process`` (exit 2, one line at its place), no ``--control`` (exit 2). No process is left
behind (psutil).
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from chronopipe.runs.config import ConfigError, RunConfig, parse_config
from chronopipe.runs.varieties import accepted_options
from control_helper import call
from processes_helper import no_children_left

ROOT = Path(__file__).resolve().parents[1]
CHRONOPIPE = str(ROOT / "venv" / "bin" / "chronopipe")
SERVING = re.compile(r"^chronopipe: control API on (http://\S+) \(token in (\S+)\)$")

PUSH_RUN = """\
runners:
  - name: orders
    variety: push
    type: consumer
{consumer}    stage: {{type: local, path: stage}}
    batch_configuration: {{size: 4, seconds: 0.2}}
  - name: out
    variety: {sink}
    type: producer
    depends_on: [orders]
{producer}"""

#: a callable sink that takes its time: the run lives on after a stop while it loads
SLOW_SINK = """\
import json, pathlib, time

def write(batch):
    pathlib.Path("loading").touch()
    time.sleep(1.5)
    with open("loaded.jsonl", "a") as f:
        for row in batch.rows:
            f.write(json.dumps(row) + "\\n")
"""


# -- helpers -----------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CHRONOPIPE_TOKEN" and not k.startswith("CHRONOPIPE_PROFILE_")}
    return {**env, **extra}


def project(tmp_path: Path, *, consumer: str = "", sink: str = "csv", producer: str = "    path: out\n") -> Path:
    (tmp_path / "pipeline.yml").write_text(PUSH_RUN.format(consumer=consumer, sink=sink, producer=producer))
    return tmp_path / "pipeline.yml"


class Live:
    """``chronopipe run pipeline.yml --control 127.0.0.1:0`` in ``cwd``; ``url`` and ``token`` from
    its control API line on stderr (read on a thread)."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([CHRONOPIPE, "run", "pipeline.yml", "--control", "127.0.0.1:0"], cwd=cwd,
                                     env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.children = psutil.Process(self.proc.pid)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.out_reader = threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()),  # type: ignore[union-attr]
                                           daemon=True)
        self.out_reader.start()
        self.url, token_file = self._serving()
        self.token = token_file.read_text().strip()

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _serving(self, timeout: float = 30.0) -> tuple[str, Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.err.append(line)
            if found := SERVING.match(line):
                return found[1], Path(found[2])
        self.kill()
        raise AssertionError(f"no control API line on stderr: {self.err}")

    def push(self, input: str, records: list) -> tuple[int, dict]:
        code, _, answer = call(self.url, "POST", "/push", token=self.token, body={"input": input, "records": records})
        return code, answer

    def stop(self, timeout: float = 30.0) -> tuple[int, dict]:
        code, _, answer = call(self.url, "POST", "/stop", token=self.token, body={"timeout": timeout}, timeout=60)
        return code, answer

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the command to end: (exit status, stdout, stderr)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.out_reader.join(5)
        while (line := self.lines.get(timeout=5)) is not None:
            self.err.append(line)
        return self.proc.returncode, "".join(self.out), "\n".join(self.err)

    def kill(self) -> None:
        try:
            for child in self.children.children(recursive=True):
                child.kill()
        except psutil.Error:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def live():
    """Start Live runs; each one is killed at the end if still going, and none leaves a process."""
    started: list[Live] = []

    def start(cwd: Path) -> Live:
        started.append(Live(cwd))
        return started[-1]

    yield start
    for run in started:
        run.kill()
    no_children_left()


def csv_records(folder: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for file in sorted(folder.glob("*.csv")):
        with file.open(newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


# -- a live run fed through the control API -----------------------------------------------------
@pytest.mark.timeout(90)
def test_pushed_records_are_staged_and_loaded_once_and_stop_drains_then_exits_0(tmp_path, live):
    project(tmp_path)
    run = live(tmp_path)
    code, _, info = call(run.url, "GET", "/info")
    assert code == 200 and info["inputs"] == ["orders"]
    pushed = []
    for n in range(3):  # 3 batches: 5 records each (a batch of 4, then 1 cut after 0.2 s, or more pushed)
        records = [{"id": n * 100 + i, "name": f"order {n}.{i}"} for i in range(5)]
        assert run.push("orders", records) == (200, {"input": "orders", "accepted": 5})
        pushed += records
    code, answer = run.stop()
    assert code == 200 and answer["state"] == "finished" and answer["run_state"] == "finished", answer
    assert answer["totals"]["staged"] == 15 and answer["totals"]["emitted"] == 15
    status, out, err = run.finish()
    assert status == 0, (out, err)
    assert "Traceback" not in err
    loaded = csv_records(tmp_path / "out")
    assert sorted((int(r["id"]), r["name"]) for r in loaded) == [(r["id"], r["name"]) for r in pushed]
    assert "orders: rows in 15 = staged 15 + rejected 0 + late 0" in out


@pytest.mark.timeout(90)
def test_records_of_other_keys_and_other_values_are_rows_as_every_consumer_makes_them(tmp_path, live):
    """A record that is no JSON object is ``{"value": record}`` (runners.as_row), neither a reject
    nor a 400; a key the batch's first row lacks is a column all the same (Parquet sink)."""
    project(tmp_path, sink="parquet")
    run = live(tmp_path)
    records = [{"id": 1}, {"id": 2, "note": "a key the first record lacks"}, 3, 4]
    assert run.push("orders", records) == (200, {"input": "orders", "accepted": 4})
    assert run.stop()[0] == 200
    status, out, err = run.finish()
    assert status == 0, (out, err)
    import pyarrow.parquet as pq

    rows = [row for file in sorted((tmp_path / "out").glob("*.parquet")) for row in pq.read_table(file).to_pylist()]
    assert rows == [{"id": 1, "note": None, "value": None},
                    {"id": 2, "note": "a key the first record lacks", "value": None},
                    {"id": None, "note": None, "value": 3}, {"id": None, "note": None, "value": 4}]


@pytest.mark.timeout(90)
def test_refusals_unknown_input_404_full_429_and_after_stop_409(tmp_path, live):
    (tmp_path / "slowsink.py").write_text(SLOW_SINK)
    project(tmp_path, consumer="    maxsize: 3\n", sink="callable", producer="    target: slowsink:write\n")
    run = Live(tmp_path, env=_env(PYTHONPATH=str(tmp_path)))  # the sink's module importable
    try:
        code, answer = run.push("nosuch", [{"id": 1}])
        assert code == 404 and "inputs: orders" in answer["error"]
        code, answer = run.push("orders", [{"id": i} for i in range(4)])  # more than maxsize at once
        assert code == 429 and "none taken" in answer["error"]
        assert run.push("orders", [{"id": i} for i in range(3)]) == (200, {"input": "orders", "accepted": 3})
        deadline = time.monotonic() + 30
        while not (tmp_path / "loading").exists():  # the producer is loading its first batch (1.5 s)
            assert time.monotonic() < deadline
            time.sleep(0.02)
        code, answer = run.stop(timeout=0)
        assert code == 200 and answer["state"] == "stopping", answer
        code, answer = run.push("orders", [{"id": 9}])
        assert code == 409 and "closed" in answer["error"], answer
        status, out, err = run.finish()
        assert status == 0, (out, err)
        loaded = [json.loads(line) for line in (tmp_path / "loaded.jsonl").read_text().splitlines()]
        assert sorted(r["id"] for r in loaded) == [0, 1, 2]
    finally:
        run.kill()
    no_children_left()


# -- refused before anything runs ---------------------------------------------------------------
def _command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHRONOPIPE, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=_env())


def test_mode_process_is_a_config_error_at_its_line(tmp_path):
    project(tmp_path, consumer="    mode: process\n")
    for args in (["lint", "pipeline.yml"], ["run", "pipeline.yml", "--control", "127.0.0.1:0"]):
        done = _command(*args, cwd=tmp_path)
        assert done.returncode == 2, done
        assert done.stderr.splitlines() == [
            f"chronopipe {args[0]}: pipeline.yml:5:11: runners[0].mode: a push consumer runs as a thread: its "
            "records arrive through the control API, in this process"], done.stderr
    assert not (tmp_path / "stage").exists()


def test_a_push_run_without_control_is_refused_and_lint_accepts_it(tmp_path):
    project(tmp_path, consumer="    maxsize: 50\n")
    done = _command("lint", "pipeline.yml", cwd=tmp_path)
    assert done.returncode == 0, done
    assert "consumer orders: push -> local stage stage" in done.stdout
    done = _command("run", "pipeline.yml", cwd=tmp_path)
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        "chronopipe run: pipeline.yml:3:14: runners[0].variety: a push consumer takes its records from the control "
        "API alone: run with --control HOST:PORT"], done.stderr
    assert not (tmp_path / "stage").exists()


@pytest.mark.parametrize(("option", "message"), [
    ("maxsize: 0", "5:14: runners[0].maxsize: maxsize must be a whole number >= 1 (records), not 0"),
    ("limit: 3", "5:5: runners[0].limit: unknown option for variety 'push' (accepted: maxsize)"),
])
def test_push_options_are_checked_at_their_line(tmp_path, option, message):
    project(tmp_path, consumer=f"    {option}\n")
    done = _command("lint", "pipeline.yml", cwd=tmp_path)
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [f"chronopipe lint: pipeline.yml:{message}"], done.stderr


def test_the_thread_rule_holds_for_yaml_text_and_for_data_alike():
    assert accepted_options("consumer", "push") == {"maxsize"}
    runner = {"name": "a", "type": "consumer", "variety": "push", "mode": "process",
              "stage": {"type": "local", "path": "s"}}
    with pytest.raises(ConfigError, match=r"^<config>:1:72: runners\[0\]\.mode: a push consumer runs as a thread"):
        parse_config(f"runners: [{json.dumps(runner)}]")
    with pytest.raises(ValueError, match=r"runners\[0\]\.mode: a push consumer runs as a thread"):
        RunConfig.model_validate({"runners": [runner]})
    assert RunConfig.model_validate({"runners": [{**runner, "mode": "thread"}]}).runners[0].variety == "push"


def test_a_stop_answers_failed_when_the_run_failed(tmp_path, live):
    (tmp_path / "downsink.py").write_text("def write(batch):\n    raise RuntimeError('the store is down')\n")
    project(tmp_path, sink="callable", producer="    target: downsink:write\n")
    run = Live(tmp_path, env=_env(PYTHONPATH=str(tmp_path)))
    try:
        assert run.push("orders", [{"id": i} for i in range(4)])[0] == 200  # a whole batch: the sink gets it
        code, answer = run.stop(timeout=30)
        assert code == 200 and answer["state"] == "failed" and answer["run_state"] == "failed", answer
        status, out, err = run.finish()
        assert status == 3, (out, err)
    finally:
        run.kill()
    no_children_left()
