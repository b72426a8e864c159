"""Hand-run benchmark of chronopipe.distribute: the overhead of handing 10 ms tasks to 2 worker
processes (and to 2 Ray actors), exactly-once acknowledgement while worker processes are
SIGKILLed, and Ray mode against processes mode on the same chronopipe Pipeline.

Run it (about two and a half minutes on 2 cores; it is not a pytest test)::

    venv/bin/python benchmarks/bench_distribute.py [--tasks N] [--repeat N] [--chaos-tasks N] [--records N]
                                                   [--no-ray] [--check]

What is measured (issue 21, "Benchmarks")
-----------------------------------------
* **overhead**: ``--tasks`` (1,000) tasks whose worker sleeps 10 ms in ``handle_execution``, on
  2 worker processes (``Distributor.run(workers={Worker: 2}, mode="processes")``, a collector
  that counts ids, no ledger). The ideal wall time is tasks x 10 ms / 2; the overhead is
  wall / ideal - 1, start-up and shut-down of the actors included. Beside it, in the same
  rounds (each contender first in turn), what a user would write in plain Python:
  ``multiprocessing.Pool(2).map(f, range(N))`` (default chunksize: N / 8 items per message) and
  ``concurrent.futures.ProcessPoolExecutor(2).map(f, range(N))`` (one item per message), the
  pool's start-up included, same formula. ``overhead_processes`` is the median over rounds;
  the baselines' medians and the per-round differences are printed beside it. Target: <= 0.05.
* **chaos**: ``--chaos-tasks`` (20,000) tasks of ``--chaos-ms`` (0.1 ms) on 2 worker processes,
  with a JSON-lines ledger and ``max_restarts=1000``, while a thread SIGKILLs one of the run's
  worker processes (a random one of ``dist.actors``' workers, by its current pid, only while it
  is a live child of this process) every ``--kill-every`` (2) seconds. Afterwards the collector
  (its state is copied back from its process) must have counted every task id exactly once,
  the ledger must hold every id exactly once, and the report must say every task was
  acknowledged: ``chaos_exactly_once``. A run that fails (an ActorError, a timeout) is
  ``false`` with its reason printed.

The Ray figures come after all of the above, which run before Ray is started (an idle Ray
takes some CPU): with ``--no-ray``, or without Ray installed, they are null.

* **ray_startup_s**: seconds from nothing (no Ray in this process) to the first task
  acknowledged (its line in the ledger, watched every 5 ms) of a ``mode="ray"`` run of
  ``--tasks`` 10 ms tasks on 2 workers: ``ray.init()`` (a local Ray of this machine's CPUs,
  started by this process; or the cluster ``RAY_ADDRESS`` names, then said so), then the Ray
  actors of the workers and collector and the channels' hub. ``ray_init_s`` is its first part;
  ``processes_startup_s`` the same figure for ``mode="processes"`` (measured before Ray starts).
* **overhead_ray**: the overhead rows' run with ``mode="ray"`` (workers and collector in Ray
  actors, channels through Ray), ``--repeat`` rounds, median; start-up included as for processes.
  No target (the 5% target is for processes).
* **ray_vs_processes**: one chronopipe Pipeline, ``ListSource`` of ``--records`` (200,000)
  ints -> 3 MapNodes (make a tuple, scale it, key it) -> a node counting them, run with
  ``mode="processes"`` and ``mode="ray"``, both in each of ``--repeat`` rounds (each first in
  turn). Per contender: ``startup_s``, the median wall time of the same pipeline on 1 record
  (start, one record through, end); ``records_per_s``, the median of records / wall time of the
  full run (start-up included); ``records_per_s_running``, the same less that round's start-up;
  ``peak_rss_mb``, the largest over its runs of the summed RSS of this process and every process
  of the run, sampled at 20 Hz with psutil (processes mode: this
  process and the pipeline's children, Ray's processes left out; ray mode: this process and
  every process of the local Ray, which descends from it: its daemons, the hub and the nodes'
  actors; shared pages count once per process). ``records_per_s_ratio`` is the median of the
  per-round ratios ray / processes.

The last line printed is one JSON object: ``{"overhead_processes", "overhead_ray",
"chaos_exactly_once", "ray_startup_s", "ray_vs_processes", "overhead_pool", "overhead_executor",
"tasks", "chaos_tasks", "kills", "restarts", "chaos_s", "ray_init_s", "processes_startup_s",
"records"}``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import gc
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

import chronopipe as cp
import chronopipe.distribute as zp
from _common import Run, check_count, finish, paired_ratio, rounds_text, target_verdict
from chronopipe.distribute.actors import WorkerActor
from chronopipe.graph import Node, Pipeline
from chronopipe.testing import ListSource, MapNode

TARGETS = {"overhead_processes": (0.05, "max")}
verdict = functools.partial(target_verdict, TARGETS)
TASK_S = 0.010  # the overhead rows' task
WORKERS = 2

zp.TaskType.register_type("BENCH")
BENCH = zp.TaskType("BENCH")


class BenchTask(zp.Task):
    """``n`` tasks, each ``{"i": i, "sleep": sleep}``; set ``n`` and ``sleep`` on the class before a run."""

    task_type = BENCH
    endpoint = zp.EndpointAddress("ipc://bench-worker.ipc")
    dependencies: list[zp.TaskType] = []
    n = 0
    sleep = TASK_S

    def initialize(self, metadata: dict[str, Any] | None = None) -> None:
        super().initialize(metadata)
        self.made = 0

    def handle(self, data: dict[str, Any], address: str, msgtype: str) -> dict[str, Any]:
        i = self.made
        self.made += 1
        if self.made >= self.n:
            self.is_complete = True
        return {"i": i, "sleep": self.sleep}


class BenchWorker(zp.SingleThreadedWorker):
    task_type = BENCH
    endpoint = zp.EndpointAddress("ipc://bench-worker.ipc")
    collector_endpoint = zp.EndpointAddress("ipc://bench-collector.ipc")

    def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        if data["sleep"]:
            time.sleep(data["sleep"])
        return {"i": data["i"]}


class CountingCollector(zp.Collector):
    """Counts the ids it is handed (each should come once)."""

    endpoint = zp.EndpointAddress("ipc://bench-collector.ipc")
    ack_endpoint = zp.EndpointAddress("ipc://bench-ack.ipc")

    def __init__(self) -> None:
        self.seen: Counter[int] = Counter()

    def handle_collection(self, data: dict[str, Any], task_type: zp.TaskType, msgtype: str) -> None:
        self.seen[data["i"]] += 1


def distributor() -> zp.Distributor:
    dist = zp.Distributor(zp.EndpointAddress("ipc://bench-collector.ipc"), zp.EndpointAddress("ipc://bench-ack.ipc"))
    dist.register_task(BenchTask)
    return dist


def sleep_task(i: int) -> int:
    time.sleep(TASK_S)
    return i


def overhead(wall: float, n: int) -> float:
    return wall / (n * TASK_S / WORKERS) - 1


def run_chronopipe(n: int, mode: str = "processes") -> float:
    BenchTask.n, BenchTask.sleep = n, TASK_S
    collector = CountingCollector()
    t0 = time.perf_counter()
    report = distributor().run(workers={BenchWorker: WORKERS}, collector=collector, mode=mode)
    wall = time.perf_counter() - t0
    if report.acknowledged != n or len(collector.seen) != n or set(collector.seen.values()) != {1}:
        raise RuntimeError(f"chronopipe: {report.acknowledged} acknowledged, {len(collector.seen)} ids collected, "
                           f"expected {n} once each")
    return overhead(wall, n)


def run_pool(n: int) -> float:
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        out = pool.map(sleep_task, range(n))
    wall = time.perf_counter() - t0
    if out != list(range(n)):
        raise RuntimeError("multiprocessing.Pool: wrong results")
    return overhead(wall, n)


def run_executor(n: int) -> float:
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
        out = list(pool.map(sleep_task, range(n)))
    wall = time.perf_counter() - t0
    if out != list(range(n)):
        raise RuntimeError("ProcessPoolExecutor: wrong results")
    return overhead(wall, n)


class Killer(threading.Thread):
    """SIGKILLs a random live worker process of ``dist``'s run every ``every`` seconds."""

    def __init__(self, dist: zp.Distributor, every: float) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.dist, self.every = dist, every
        self.stopped = threading.Event()
        self.kills: list[tuple[float, str, int]] = []  # (seconds since start, actor, pid)
        self.t0 = time.monotonic()

    def run(self) -> None:
        me = psutil.Process()
        while not self.stopped.wait(self.every):
            workers = [a for a in list(self.dist.actors) if isinstance(a, WorkerActor) and a.pid]
            if not workers:
                continue
            victim = random.choice(workers)
            pid = victim.pid
            try:
                proc = psutil.Process(pid)
                # only a live child of this process: never a reused pid, never a zombie already dead
                if proc.ppid() != me.pid or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                proc.kill()
            except psutil.Error:
                continue
            self.kills.append((time.monotonic() - self.t0, victim.name, pid))

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def run_chaos(n: int, task_s: float, every: float, timeout: float) -> dict[str, Any]:
    BenchTask.n, BenchTask.sleep = n, task_s
    collector = CountingCollector()
    dist = distributor()
    with tempfile.TemporaryDirectory(prefix="bench-distribute-") as tmp:
        ledger = Path(tmp) / "acks.jsonl"
        killer = Killer(dist, every)
        killer.start()
        t0 = time.perf_counter()
        error, report = None, None
        try:
            report = dist.run(workers={BenchWorker: WORKERS}, collector=collector, mode="processes",
                              ledger=ledger, max_restarts=1000, timeout=timeout)
        except Exception as exc:  # reported, not hidden: chaos_exactly_once is then false
            error = f"{type(exc).__name__}: {exc}"
        finally:
            killer.stop()
        wall = time.perf_counter() - t0
        lines = ledger.read_text().splitlines() if ledger.exists() else []
    ledger_ids = Counter(json.loads(line)["id"] for line in lines if line.strip())
    expected = {f"{BENCH}:{i}" for i in range(n)}
    problems = []
    if error is not None:
        problems.append(f"the run failed: {error}")
    missing = [i for i in range(n) if collector.seen[i] == 0]
    twice = sorted(i for i, c in collector.seen.items() if c > 1)
    if missing:
        problems.append(f"collector: {len(missing)} ids missing (first {missing[:5]})")
    if twice:
        problems.append(f"collector: {len(twice)} ids counted more than once (first {twice[:5]})")
    if set(ledger_ids) != expected:
        problems.append(f"ledger: {len(expected - set(ledger_ids))} ids missing, "
                        f"{len(set(ledger_ids) - expected)} unexpected")
    doubled = sorted(i for i, c in ledger_ids.items() if c > 1)
    if doubled:
        problems.append(f"ledger: {len(doubled)} ids written more than once (first {doubled[:5]})")
    if report is not None and report.acknowledged != n:
        problems.append(f"report: {report.acknowledged} acknowledged, expected {n}")
    if not killer.kills:
        problems.append("no kill landed during the run (it ended before the first one): nothing was tested")
    return {"exactly_once": not problems, "problems": problems, "kills": killer.kills,
            "restarts": report.restarts if report is not None else None, "wall": wall,
            "collected": sum(collector.seen.values()), "ledger_lines": len(lines)}


# -- Ray ----------------------------------------------------------------------------------
def first_ack_s(mode: str, n: int, t0: float) -> float:
    """Seconds from ``t0`` to the first task acknowledged (its ledger line) of a run of ``n`` 10 ms tasks."""
    BenchTask.n, BenchTask.sleep = n, TASK_S
    with tempfile.TemporaryDirectory(prefix="bench-distribute-") as tmp:
        ledger = Path(tmp) / "acks.jsonl"
        first: list[float] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.005):
                if ledger.exists() and ledger.stat().st_size:
                    first.append(time.perf_counter())
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            distributor().run(workers={BenchWorker: WORKERS}, collector=CountingCollector(), mode=mode, ledger=ledger)
        finally:
            done.set()
            watcher.join()
    if not first:
        raise RuntimeError(f"{mode}: no acknowledgement was seen in the ledger")
    return first[0] - t0


class PeakRss(threading.Thread):
    """The peak of the summed RSS (bytes) of this process and its descendants, at 20 Hz; the
    subtrees of ``skip`` (Ray's processes, for a processes-mode run) left out."""

    def __init__(self, skip: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(name="peak-rss", daemon=True)
        self.skip, self.peak, self.samples = skip, 0, 0
        self.stopped = threading.Event()
        self.me = psutil.Process()

    def sample(self) -> None:
        left_out: set[int] = set()
        for pid in self.skip:
            try:
                left_out.update([pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))])
            except psutil.Error:
                continue
        total = 0
        for proc in [self.me, *self.me.children(recursive=True)]:
            if proc.pid in left_out:
                continue
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        self.peak, self.samples = max(self.peak, total), self.samples + 1

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            self.sample()

    def __enter__(self) -> PeakRss:
        self.sample()
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.join()
        self.sample()


class CountSink(Node):
    """Counts what reaches it (the count comes home from its process or Ray actor)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.count = 0

    def process(self, item: Any) -> None:
        self.count += 1


def as_pair(x: int) -> tuple[int, int]:
    return x, x * 3


def scaled(t: tuple[int, int]) -> tuple[int, float]:
    return t[0], t[1] * 0.5


def keyed(t: tuple[int, float]) -> tuple[int, float]:
    return t[0] % 7, t[1]


def run_pipeline(mode: str, n: int, skip: set[int]) -> Run:
    """The 3-map pipeline on ``n`` records in ``mode``: a Run with its wall time and peak RSS."""
    sink = CountSink("count")
    pipeline = Pipeline(MapNode("pair", as_pair) | MapNode("scale", scaled) | MapNode("key", keyed) | sink, mode=mode)
    with PeakRss(skip) as rss:
        t0 = time.perf_counter()
        pipeline.consume(ListSource(range(n)))
        wall = time.perf_counter() - t0
    check_count(f"pipeline {mode}", pipeline["count"].count, n)
    return Run(n, wall, rss.peak, rss.samples)


def ray_figures(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    """Start Ray, then ray_startup_s, overhead_ray and ray_vs_processes (see the module)."""
    import ray

    before = {p.pid for p in psutil.Process().children()}
    existing = bool(os.environ.get("RAY_ADDRESS"))
    progress("ray: ray.init() and the first task acknowledged...")
    t0 = time.perf_counter()
    ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0
    roots = {p.pid for p in psutil.Process().children()} - before  # Ray's daemons (a local Ray)
    try:
        startup = first_ack_s("ray", args.tasks // 10 or 1, t0)
        overheads = []
        for rep in range(args.repeat):
            progress(f"ray round {rep + 1}/{args.repeat}: chronopipe Distributor, ray...")
            overheads.append(run_chronopipe(args.tasks, "ray"))
        pipe: dict[str, dict[str, list[Any]]] = {m: {"startup": [], "runs": []} for m in ("processes", "ray")}
        order = ["processes", "ray"]
        for rep in range(args.repeat):
            for mode in order[rep % 2:] + order[:rep % 2]:
                progress(f"pipeline round {rep + 1}/{args.repeat}: {mode}, 1 record then {args.records:,}...")
                skip = roots if mode == "processes" else set()
                pipe[mode]["startup"].append(run_pipeline(mode, 1, skip).seconds)
                pipe[mode]["runs"].append(run_pipeline(mode, args.records, skip))
    finally:
        gc.collect()  # the runs' ray channels are dropped from their hub while Ray is still up
        ray.shutdown()
    side = {mode: {"startup_s": round(statistics.median(pipe[mode]["startup"]), 3),
                   "records_per_s": round(statistics.median(r.rate for r in pipe[mode]["runs"])),
                   # the same runs less the start-up of their round: what the records cost once it runs
                   "records_per_s_running": round(statistics.median(
                       r.records / max(r.seconds - up, 1e-3) for r, up in zip(pipe[mode]["runs"], pipe[mode]["startup"],
                                                                              strict=True))),
                   "peak_rss_mb": round(max(r.peak_rss for r in pipe[mode]["runs"]) / 2**20, 1)}
            for mode in pipe}
    ratio, per_round = paired_ratio(pipe["ray"]["runs"], pipe["processes"]["runs"])
    return {"ray_startup_s": round(startup, 2), "ray_init_s": round(init_s, 2), "existing_cluster": existing,
            "overhead_ray": round(statistics.median(overheads), 4), "overhead_ray_runs": overheads,
            "ray_vs_processes": {**side, "records_per_s_ratio": round(ratio, 4)}, "ratio_rounds": per_round,
            "pipe": pipe}


def print_ray(rayf: dict[str, Any], args: argparse.Namespace) -> None:
    where = "the cluster RAY_ADDRESS names" if rayf["existing_cluster"] else "a local Ray started here"
    print(f"ray ({where}): first task acknowledged {rayf['ray_startup_s']:.2f} s after ray.init() began "
          f"(ray.init {rayf['ray_init_s']:.2f} s)")
    print(f"chronopipe Distributor, ray: overhead {rayf['overhead_ray']:.4f} "
          f"(runs: {rounds_text(rayf['overhead_ray_runs'], 4)})")
    print(f"pipeline, {args.records:,} records through 3 MapNodes and a counter, {args.repeat} paired rounds:")
    print(f"  {'mode':<10} {'start-up s':>11} {'records/s':>11} {'peak RSS MB':>12}   runs (records/s)")
    for mode in ("processes", "ray"):
        side, runs = rayf["ray_vs_processes"][mode], rayf["pipe"][mode]["runs"]
        print(f"  {mode:<10} {side['startup_s']:>11.3f} {side['records_per_s']:>11,} {side['peak_rss_mb']:>12.1f}   "
              f"{', '.join(f'{r.rate:,.0f}' for r in runs)}")
    print(f"  records/s ray / processes: {rayf['ray_vs_processes']['records_per_s_ratio']:.4f} "
          f"(per round: {rounds_text(rayf['ratio_rounds'], 4)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="10 ms tasks per overhead run (default 1,000)")
    parser.add_argument("--repeat", type=int, default=3, help="overhead rounds (default 3)")
    parser.add_argument("--chaos-tasks", type=int, default=20_000, help="tasks in the chaos run (default 20,000)")
    parser.add_argument("--chaos-ms", type=float, default=0.1, help="each chaos task's sleep, ms (default 0.1)")
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between kills (default 2)")
    parser.add_argument("--chaos-timeout", type=float, default=600.0, help="the chaos run's timeout, s (default 600)")
    parser.add_argument("--records", type=int, default=200_000,
                        help="records of the Ray-vs-processes pipeline (default 200,000)")
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray figures out (null)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.repeat < 1 or args.chaos_tasks < 1 or args.kill_every <= 0 or args.records < 1:
        parser.error("--tasks, --repeat, --chaos-tasks and --records must be >= 1, --kill-every > 0")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    contenders = {"chronopipe": ("chronopipe Distributor, processes", run_chronopipe),
                  "pool": ("multiprocessing.Pool(2).map", run_pool),
                  "executor": ("ProcessPoolExecutor(2).map", run_executor)}
    order = list(contenders)
    runs: dict[str, list[float]] = {key: [] for key in contenders}
    progress("warm-up (one short run of each)...")
    for _, run in contenders.values():
        run(50)
    for rep in range(args.repeat):
        for key in order[rep % len(order):] + order[:rep % len(order)]:  # each contender first in turn
            progress(f"round {rep + 1}/{args.repeat}: {contenders[key][0]}...")
            runs[key].append(contenders[key][1](args.tasks))
    progress(f"chaos: {args.chaos_tasks:,} tasks, a worker SIGKILLed every {args.kill_every:g} s...")
    chaos = run_chaos(args.chaos_tasks, args.chaos_ms / 1000, args.kill_every, args.chaos_timeout)
    processes_startup = first_ack_s("processes", args.tasks // 10 or 1, time.perf_counter())
    ray_why = "--no-ray" if args.no_ray else None
    if ray_why is None:
        try:
            import ray  # noqa: F401
        except ImportError:
            ray_why = "Ray is not installed (pip install 'chronopipe[ray]')"
    rayf = ray_figures(args, progress) if ray_why is None else {}

    # overheads are costs: pair them per round as (1 + overhead) ratios, i.e. wall-time ratios
    walls = {key: [1 + o for o in runs[key]] for key in runs}
    vs = {key: paired_ratio(walls["chronopipe"], walls[key]) for key in ("pool", "executor")}
    summary = {
        "overhead_processes": round(statistics.median(runs["chronopipe"]), 4),
        "overhead_ray": rayf.get("overhead_ray"),
        "chaos_exactly_once": chaos["exactly_once"],
        "ray_startup_s": rayf.get("ray_startup_s"),
        "ray_vs_processes": rayf.get("ray_vs_processes"),
        "overhead_pool": round(statistics.median(runs["pool"]), 4),
        "overhead_executor": round(statistics.median(runs["executor"]), 4),
        "tasks": args.tasks,
        "chaos_tasks": args.chaos_tasks,
        "kills": len(chaos["kills"]),
        "restarts": chaos["restarts"],
        "chaos_s": round(chaos["wall"], 2),
        "ray_init_s": rayf.get("ray_init_s"),
        "processes_startup_s": round(processes_startup, 3),
        "records": args.records,
    }
    ideal = args.tasks * TASK_S / WORKERS
    print(f"chronopipe {cp.__version__} distribute benchmark: {args.tasks:,} tasks of 10 ms on {WORKERS} worker "
          f"processes (ideal {ideal:.2f} s), {args.repeat} rounds; {psutil.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print(f"{'contender':<36} {'overhead':>9} {'wall s':>8} {'chronopipe / this':>18}")
    print("-" * 75)
    for key, (label, _) in contenders.items():
        med = statistics.median(runs[key])
        rel = f"{vs[key][0]:>18.3f}" if key in vs else f"{'':>18}"
        print(f"{label:<36} {med:>9.4f} {(1 + med) * ideal:>8.2f} {rel}")
        print(f"{'':<36} runs: {rounds_text(runs[key], 4)}")
        if key in vs:
            print(f"{'':<36} chronopipe wall / this wall per round: {rounds_text(vs[key][1], 3)}")
    print("-" * 75)
    print(f"chaos: {args.chaos_tasks:,} tasks of {args.chaos_ms:g} ms on {WORKERS} worker processes, ledger, "
          f"max_restarts=1000, a worker SIGKILLed every {args.kill_every:g} s: {chaos['wall']:.2f} s, "
          f"{len(chaos['kills'])} kills, {chaos['restarts']} restarts, {chaos['collected']:,} collected, "
          f"{chaos['ledger_lines']:,} ledger lines")
    for at, name, pid in chaos["kills"]:
        print(f"  kill at {at:6.2f} s: {name} (pid {pid})")
    for problem in chaos["problems"]:
        print(f"  PROBLEM: {problem}")
    print(f"start-up to the first task acknowledged: processes {processes_startup:.3f} s")
    if rayf:
        print_ray(rayf, args)
    else:
        print(f"ray: not measured ({ray_why}): overhead_ray, ray_startup_s, ray_vs_processes are null")
    print("-" * 75)
    print(f"overhead_processes {summary['overhead_processes']:>8.4f}  "
          f"{verdict('overhead_processes', summary['overhead_processes'])}")
    print(f"chaos_exactly_once {str(summary['chaos_exactly_once']).lower():>8}")
    if rayf:
        print(f"overhead_ray       {summary['overhead_ray']:>8.4f}  (no target)")
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
