"""chronopipe.distribute: the seed's distributor / worker / collector on threads and processes
(Ray, and deaths of the collector and the distributor: test_distribute_ray.py)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter

import psutil
import pytest

import chronopipe.distribute as zp
from chronopipe import ActorError

pytestmark = pytest.mark.timeout(60)

zp.TaskType.register_type("TSTA")
zp.TaskType.register_type("TSTB")
zp.TaskType.register_type("TSTM")

N = 40


class ATask(zp.Task):
    task_type = zp.TaskType("TSTA")
    endpoint = zp.EndpointAddress("ipc://worker_a.ipc")
    dependencies = []
    n = N

    def __init__(self):
        self.count = 0
        self.initialized_with = None

    def initialize(self, metadata=None):
        super().initialize(metadata)
        self.initialized_with = metadata

    def handle(self, data, address, msgtype):
        assert msgtype == zp.MESSAGE_TYPE_READY
        self.count += 1
        if self.count >= self.n:
            self.is_complete = True
        return {"type": "TSTA", "n": self.count, "meta": self.metadata.get("key"), "sleep": 0.002}


class BTask(ATask):
    task_type = zp.TaskType("TSTB")
    endpoint = zp.EndpointAddress("tpc://127.0.0.1:5555")
    dependencies = [zp.TaskType("TSTA")]

    def handle(self, data, address, msgtype):
        out = super().handle(data, address, msgtype)
        out["type"] = "TSTB"
        return out


class AWorker(zp.SingleThreadedWorker):
    task_type = zp.TaskType("TSTA")
    endpoint = zp.EndpointAddress("ipc://worker_a.ipc")
    collector_endpoint = zp.EndpointAddress("ipc://collector.ipc")

    def init_worker(self):
        self.seen_meta = self.metadata.get("key")

    def handle_execution(self, data, *args, **kwargs):
        time.sleep(data["sleep"])
        return {"type": data["type"], "n": data["n"], "meta": data["meta"], "worker_meta": self.seen_meta,
                "pid": os.getpid(), "t": time.monotonic()}


class BWorker(AWorker):
    task_type = zp.TaskType("TSTB")


class MTask(ATask):
    task_type = zp.TaskType("TSTM")
    dependencies = []

    def handle(self, data, address, msgtype):
        out = super().handle(data, address, msgtype)
        out["type"], out["sleep"] = "TSTM", 0.02
        return out


BUSY = threading.Lock()


class MWorker(zp.MultiThreadedWorker):
    task_type = zp.TaskType("TSTM")
    endpoint = zp.EndpointAddress("inproc://m")
    collector_endpoint = zp.EndpointAddress("ipc://collector.ipc")
    n_threads = 4

    def handle_execution(self, data, *args, **kwargs):
        return data

    def handle_thread_execution(self, data, index):
        with BUSY:
            self.busy = getattr(self, "busy", 0) + 1
            together = self.busy  # threads at work at once, this one included
        time.sleep(data["sleep"])
        with BUSY:
            self.busy -= 1
        return {"type": data["type"], "n": data["n"], "index": index, "worker_meta": self.metadata.get("key"),
                "together": together}


class Meta(zp.MetaDataWorker):
    endpoint = zp.EndpointAddress("ipc://metaworker.ipc")
    calls = 0

    def get_metadata(self):
        Meta.calls += 1
        return {"key": "value"}


class Counting(zp.Collector):
    endpoint = zp.EndpointAddress("ipc://collector.ipc")
    ack_endpoint = zp.EndpointAddress("ipc://collector_ack.ipc")

    def __init__(self):
        self.seen = Counter()
        self.rows = []
        self.finished = []

    def handle_collection(self, data, task_type, msgtype):
        assert msgtype == zp.MESSAGE_TYPE_DATA and data["type"] == task_type
        self.seen[(str(task_type), data["n"])] += 1
        self.rows.append(data)

    def handle_finished(self, data, task_type):
        self.finished.append(str(task_type))


def distributor(*tasks, metadata=False):
    dist = zp.Distributor(zp.EndpointAddress("ipc://collector.ipc"), zp.EndpointAddress("ipc://collector_ack.ipc"),
                          receive_metadata=metadata, metadata_endpoint="ipc://metaworker.ipc" if metadata else None)
    for t in tasks:
        dist.register_task(t)
    return dist


def test_the_seeds_declarations():
    with pytest.raises(ValueError, match="not registered"):
        zp.TaskType("NEVER_REGISTERED")
    for good in ("ipc://worker.ipc", "tcp://127.0.0.1:5000", "tpc://host:1", "inproc://x"):
        assert zp.EndpointAddress(good) == good
    with pytest.raises(TypeError):
        zp.EndpointAddress("http://nope")
    assert zp.TaskType("TSTA") == "TSTA" and zp.MESSAGE_TYPE_DATA != zp.MESSAGE_TYPE_ACK


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_every_task_is_acknowledged_once_after_its_dependencies(mode):
    Meta.calls = 0
    collector = Counting()
    report = distributor(ATask, BTask, metadata=True).run(
        workers={AWorker: 2, BWorker: 2}, collector=collector, metadata=Meta(), mode=mode)
    expected = {(t, n) for t in ("TSTA", "TSTB") for n in range(1, N + 1)}
    assert set(collector.seen) == expected and set(collector.seen.values()) == {1}
    assert report.acknowledged == 2 * N and report.per_type == {"TSTA": N, "TSTB": N}
    assert sorted(report.acknowledged_ids) == sorted(f"{t}:{i}" for t in ("TSTA", "TSTB") for i in range(N))
    last_a = max(r["t"] for r in collector.rows if r["type"] == "TSTA")
    first_b = min(r["t"] - 0.002 for r in collector.rows if r["type"] == "TSTB")
    assert first_b > last_a
    assert collector.finished == ["TSTA", "TSTB"]
    assert Meta.calls == 1  # fetched once per run
    assert {r["meta"] for r in collector.rows} == {"value"} == {r["worker_meta"] for r in collector.rows}
    if mode == "processes":
        assert len({r["pid"] for r in collector.rows}) == 4  # two workers per type, each its own process


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_multithreaded_worker_uses_its_threads(mode):
    collector = Counting()
    distributor(MTask).run(workers={MWorker: 1}, collector=collector, metadata=Meta(), mode=mode)  # holds 2 x threads
    assert set(collector.seen.values()) == {1} and len(collector.seen) == N
    assert {r["index"] for r in collector.rows} == {0, 1, 2, 3}
    assert max(r["together"] for r in collector.rows) >= 3  # it is given work for its threads at once
    assert {r["worker_meta"] for r in collector.rows} == {"value"}


def test_a_killed_worker_is_restarted_and_nothing_is_lost_or_acknowledged_twice(tmp_path):
    class Many(ATask):
        n = 300

    collector, dist = Counting(), distributor(Many)
    result = {}
    run = threading.Thread(target=lambda: result.update(report=dist.run(
        workers={AWorker: 2}, collector=collector, metadata=Meta(), mode="processes",
        ledger=tmp_path / "acks.jsonl")))
    run.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (dist.actors and dist.actors[0].pid):
        time.sleep(0.01)
    time.sleep(0.2)  # some tasks acknowledged, others in flight
    victim = dist.actors[0].pid
    pids = {a.pid for a in dist.actors}
    os.kill(victim, signal.SIGKILL)
    run.join(30)
    assert not run.is_alive()
    report = result["report"]
    assert report.restarts == 1 and report.acknowledged == 300
    assert len(collector.seen) == 300 and set(collector.seen.values()) == {1}
    assert {r["worker_meta"] for r in collector.rows} == {"value"}  # the restarted process has the metadata too
    assert len({r["pid"] for r in collector.rows}) in (2, 3)  # two workers, and the victim's successor if it got work
    lines = [json.loads(line)["id"] for line in (tmp_path / "acks.jsonl").read_text().splitlines()]
    assert sorted(lines) == sorted(f"TSTA:{i}" for i in range(300))
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    assert not children & (pids - {None}), "a worker or collector process outlived the run"


def test_a_rerun_with_the_ledger_runs_only_what_was_not_acknowledged(tmp_path):
    ledger = tmp_path / "acks.jsonl"
    ledger.write_text("".join(json.dumps({"id": f"TSTA:{i}"}) + "\n" for i in range(0, N, 2)) + '{"id": "TS')
    collector = Counting()
    report = distributor(ATask).run(workers={AWorker: 1}, collector=collector, mode="threads", ledger=ledger)
    assert report.skipped == N // 2 and report.acknowledged == N // 2
    assert sorted(n for _, n in collector.seen) == list(range(2, N + 1, 2))  # ids 1, 3, ... are n 2, 4, ...
    again = distributor(ATask).run(workers={AWorker: 1}, collector=Counting(), mode="threads", ledger=ledger)
    assert again.acknowledged == 0 and again.skipped == N


def test_a_mode_that_does_not_exist_is_a_one_line_error_naming_the_modes():
    with pytest.raises(ValueError, match="^mode must be 'processes', 'ray' or 'threads', not 'rays'$"):
        distributor(ATask).run(workers={AWorker: 1}, collector=Counting(), mode="rays")


def test_errors():
    dist = distributor(ATask)
    with pytest.raises(ValueError, match="no registered task"):
        dist.run(workers={AWorker: 1, BWorker: 1}, collector=Counting(), mode="threads")
    with pytest.raises(ValueError, match="has no worker"):
        distributor(ATask, BTask).run(workers={AWorker: 1}, collector=Counting(), mode="threads")
    with pytest.raises(ValueError, match="receive_metadata"):
        distributor(ATask, metadata=True).run(workers={AWorker: 1}, collector=Counting(), mode="threads")

    class Listy(ATask):
        def handle(self, data, address, msgtype):
            return [1, 2]

    for mode in ("threads", "processes"):
        with pytest.raises(TypeError, match="must return a dict or None, not list"):
            distributor(Listy).run(workers={AWorker: 1}, collector=Counting(), mode=mode)
    with pytest.raises(TypeError):
        dist.register_task(AWorker)
    with pytest.raises(ValueError, match="registered already"):
        dist.register_task(ATask)


@pytest.mark.parametrize("mode", ["threads", "processes"])
@pytest.mark.parametrize("worker_base", [AWorker, MWorker])
def test_a_worker_that_raises_ends_the_run_with_its_error(mode, worker_base):
    class Failing(worker_base):
        def handle_execution(self, data, *args, **kwargs):
            if data["n"] == 5:
                raise KeyError("boom")
            return super().handle_execution(data)

        def handle_thread_execution(self, data, index):
            if data["n"] == 7:
                raise KeyError("thread boom")
            return super().handle_thread_execution(data, index)

    task = ATask if worker_base is AWorker else MTask
    with pytest.raises(ActorError, match="boom"):
        distributor(task).run(workers={Failing: 1}, collector=Counting(), mode=mode, timeout=20)
