"""chronopipe.distribute on Ray (mode="ray", the same code as on processes), and what holds in
every mode a worker or the collector can die in: restarts, the ledger, a killed distributor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import chronopipe.distribute as zp
from test_distribute import ATask, AWorker, BTask, BWorker, Counting, Meta, N, distributor

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
zp.TaskType.register_type("TSTK")


def ray_or(mode, request):
    """``mode``, with the session's local Ray started first when it is "ray"."""
    if mode == "ray":
        request.getfixturevalue("ray_cluster")
    return mode


# -- metadata: fetched once per run, sent once per worker ---------------------------------------
UNPICKLED = Counter()  # per process: how many times a Marker arrived here


class Marker:
    """A metadata value that counts its arrivals in the process that unpickles it."""

    def __init__(self):
        self.made_in = os.getpid()

    def __setstate__(self, state):
        self.__dict__.update(state)
        UNPICKLED[os.getpid()] += 1


class MarkedMeta(zp.MetaDataWorker):
    endpoint = zp.EndpointAddress("ipc://metaworker.ipc")

    def get_metadata(self):
        return {"key": "value", "marker": Marker()}


class MarkerWorker(AWorker):
    def handle_execution(self, data, *args, **kwargs):
        out = super().handle_execution(data)
        out["arrivals"] = UNPICKLED[os.getpid()]
        return out


class KTask(ATask):
    task_type = zp.TaskType("TSTK")
    n = 300

    def handle(self, data, address, msgtype):
        out = super().handle(data, address, msgtype)
        out["type"], out["sleep"] = "TSTK", 0.005
        return out


class KWorker(AWorker):
    task_type = zp.TaskType("TSTK")


class Durable(Counting):
    """Counts in memory, and appends every id it handles to a file (what survives its death)."""

    def __init__(self, path):
        super().__init__()
        self.path = str(path)

    def handle_collection(self, data, task_type, msgtype):
        super().handle_collection(data, task_type, msgtype)
        with open(self.path, "a") as f:
            f.write(f"{data['n']}\n")


def run_in_thread(dist, **kwargs):
    """Start ``dist.run(**kwargs)`` in a thread; returns (thread, result dict) once its actors have pids."""
    result = {}

    def go():
        try:
            result["report"] = dist.run(**kwargs)
        except BaseException as exc:
            result["error"] = exc

    run = threading.Thread(target=go)
    run.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (dist.actors and all(a.pid for a in dist.actors)):
        time.sleep(0.01)
    return run, result


def ledger_ids(path):
    """The ids in a ledger file, in order (a line torn by a kill is no id)."""
    ids = []
    for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
        try:
            ids.append(json.loads(line)["id"])
        except ValueError:
            continue
    return ids


def test_the_tutorial_runs_on_ray(ray_cluster):
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "distribute_tutorial.py"), "--mode", "ray"],
                          capture_output=True, text=True, timeout=50, env=env)
    assert done.returncode == 0, done.stderr
    assert "acknowledged 200 tasks" in done.stdout
    assert "MYTSK: 100 collected\nMY_TASK_TYPE: 100 collected\nfinished in order: MYTSK, MY_TASK_TYPE" in done.stdout


def test_on_ray_a_type_runs_after_its_dependencies_and_each_task_is_acknowledged_once(ray_cluster):
    Meta.calls = 0
    collector = Counting()
    report = distributor(ATask, BTask, metadata=True).run(
        workers={AWorker: 1, BWorker: 1}, collector=collector, metadata=Meta(), mode="ray", timeout=40)
    assert set(collector.seen) == {(t, n) for t in ("TSTA", "TSTB") for n in range(1, N + 1)}
    assert set(collector.seen.values()) == {1} and report.acknowledged == 2 * N
    last_a = max(r["t"] for r in collector.rows if r["type"] == "TSTA")
    first_b = min(r["t"] - 0.002 for r in collector.rows if r["type"] == "TSTB")
    assert first_b > last_a
    assert collector.finished == ["TSTA", "TSTB"]
    assert Meta.calls == 1
    assert {r["worker_meta"] for r in collector.rows} == {"value"}
    assert os.getpid() not in {r["pid"] for r in collector.rows}  # the workers ran in Ray's processes


@pytest.mark.parametrize("mode", ["processes", "ray"])
def test_the_metadata_is_fetched_once_per_run_and_reaches_each_worker_once(mode, request):
    collector = Counting()
    distributor(ATask).run(workers={MarkerWorker: 2}, collector=collector, metadata=MarkedMeta(),
                           mode=ray_or(mode, request), timeout=40)
    assert len(collector.rows) == N and len({r["pid"] for r in collector.rows}) == 2
    assert {r["arrivals"] for r in collector.rows} == {1}  # once per worker process, not once per task


def test_a_killed_ray_worker_is_restarted_and_its_tasks_run_again(ray_cluster, tmp_path):
    collector, dist = Counting(), distributor(KTask)
    run, result = run_in_thread(dist, workers={KWorker: 2}, collector=collector, metadata=Meta(), mode="ray",
                                ledger=tmp_path / "acks.jsonl", timeout=40)
    time.sleep(0.2)  # some tasks acknowledged, others in flight
    os.kill(dist.actors[0].pid, signal.SIGKILL)
    run.join(45)
    assert "error" not in result, result.get("error")
    report = result["report"]
    assert report.restarts == 1 and report.acknowledged == KTask.n
    assert len(collector.seen) == KTask.n and set(collector.seen.values()) == {1}
    assert {r["worker_meta"] for r in collector.rows} == {"value"}  # the new Ray actor has the metadata too
    assert sorted(ledger_ids(tmp_path / "acks.jsonl")) == sorted(f"TSTK:{i}" for i in range(KTask.n))


def test_a_rerun_on_ray_with_the_ledger_runs_only_what_was_not_acknowledged(ray_cluster, tmp_path):
    ledger = tmp_path / "acks.jsonl"
    ledger.write_text("".join(json.dumps({"id": f"TSTA:{i}"}) + "\n" for i in range(0, N, 2)))
    collector = Counting()
    report = distributor(ATask).run(workers={AWorker: 1}, collector=collector, mode="ray", ledger=ledger, timeout=40)
    assert report.skipped == N // 2 and report.acknowledged == N // 2
    assert sorted(n for _, n in collector.seen) == list(range(2, N + 1, 2))
    assert sorted(ledger_ids(ledger)) == sorted(f"TSTA:{i}" for i in range(N))


@pytest.mark.parametrize("mode", ["processes", "ray"])
def test_a_killed_collector_is_restarted_and_every_task_is_still_acknowledged_once(mode, request, tmp_path):
    handled = tmp_path / "handled.txt"
    collector, dist = Durable(handled), distributor(KTask)
    run, result = run_in_thread(dist, workers={KWorker: 2}, collector=collector, metadata=Meta(),
                                mode=ray_or(mode, request), ledger=tmp_path / "acks.jsonl", timeout=40)
    time.sleep(0.2)
    os.kill(dist.actors[-1].pid, signal.SIGKILL)
    run.join(45)
    assert "error" not in result, result.get("error")
    report = result["report"]
    assert report.restarts == 1 and report.acknowledged == KTask.n
    assert sorted(ledger_ids(tmp_path / "acks.jsonl")) == sorted(f"TSTK:{i}" for i in range(KTask.n))
    assert {int(n) for n in handled.read_text().split()} == set(range(1, KTask.n + 1))  # each handled
    assert set(collector.seen.values()) == {1}  # the new collector handled none twice ...
    assert 0 < len(collector.seen) < KTask.n  # ... and only what the dead one had not acknowledged
    assert collector.finished == ["TSTK"]


# -- a killed distributor: the ledger carries the run over ---------------------------------------
CRASHING_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
import test_distribute_ray as t

class Slow(t.KTask):
    n = 200

    def handle(self, data, address, msgtype):
        return {{**super().handle(data, address, msgtype), "sleep": 0.01}}

done = t.distributor(Slow).run(workers={{t.KWorker: 2}}, collector=t.Durable({handled!r}), mode={mode!r},
                               ledger={ledger!r}, timeout=40)
print("acknowledged", done.acknowledged, "skipped", done.skipped)
"""


@pytest.mark.parametrize("mode", ["processes", "ray"])
def test_a_killed_distributor_then_a_rerun_acknowledge_every_task_exactly_once(mode, request, tmp_path):
    env = dict(os.environ)
    if ray_or(mode, request) == "ray":  # the session's Ray (Ray ends a dead driver's actors)
        env["RAY_ADDRESS"] = request.getfixturevalue("ray_cluster").get_runtime_context().gcs_address
    ledger, handled = tmp_path / "acks.jsonl", tmp_path / "handled.txt"
    script = tmp_path / "run.py"
    script.write_text(CRASHING_RUN.format(tests=str(Path(__file__).parent), handled=str(handled), mode=mode,
                                          ledger=str(ledger)))
    first = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(ledger_ids(ledger)) < 40:
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGKILL)  # the distributor and its workers, mid-run
    first.wait(10)
    before = ledger_ids(ledger)
    assert 40 <= len(before) < 200
    rerun = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=40, env=env)
    assert rerun.returncode == 0, rerun.stderr
    ids = ledger_ids(ledger)
    assert sorted(ids) == sorted(f"TSTK:{i}" for i in range(200))  # each once, across the two runs
    assert f"acknowledged {200 - len(before)} skipped {len(before)}" in rerun.stdout
    counts = Counter(int(n) for n in handled.read_text().split())
    assert set(counts) == set(range(1, 201))
    # handled twice: only tasks the first run's collector acknowledged after the last ledger write
    assert all(f"TSTK:{n - 1}" not in before for n, c in counts.items() if c > 1)
