"""Hand-run benchmark of the delivery guarantees (issue 17): what ``guarantee="replay"`` costs.

Run it (a few minutes on 2 cores; it is not a pytest test)::

    venv/bin/python benchmarks/bench_delivery.py [--records N] [--repeat N] [--chaos-runs N]
                                                [--chaos-records N] [--check]

What is measured
----------------
The 3-process pipeline of ``bench_pipeline.py`` as a Pipeline in ``mode="processes"``: this
process generates ``{"timestamp": i, "value": i * 0.5, "name": "s1"}`` for ``i < N`` (the
source), a ``map`` node process adds a field, a ``sink`` node process counts the records (the
count comes home in its attribute and is checked: a run that lost or invented records fails).
The work, the records and the helpers are bench_pipeline's. Each run's time includes starting
the node processes and joining them.

Contenders, every round running each of them back to back (in turns, so neither always goes
first):

* **none**: ``guarantee="none"`` (the default): a failing record fails the run;
* **replay**: ``guarantee="replay"``, ``max_retries=3``, a dead-letter file: both nodes' input
  goes through the retry wrapper, which holds back what an attempt pushes until it returns;
* **track**: ``guarantee="track"``: a mark after every 999 records of the source, passed on
  by ``map`` and confirmed by ``sink`` in the ledger; the caller polls it after every mark
  (and would wait at the window: 100,000 records ahead of what is confirmed); both nodes' input
  goes through the wrapper that keeps failures;
* **replay, 0.1% flaky** (information): the same as replay, with one record in 1,000 failing
  its first attempt in ``map`` (a retry each; nothing is dead-lettered).

``replay_vs_none`` is the median over rounds of replay's rate / none's rate in the same round
(``_common.paired_ratio``). Target: >= 0.8. ``track_vs_none`` the same for track: target >= 0.85.
Beside them, for information and steadier on a busy machine, ``replay_cpu_vs_none``: the same
paired median of the CPU seconds the run cost (this process and its node processes, from
``getrusage``); above 1 is more CPU than ``none``.

Then **restart_ms**, once per round: a 200,000-record run under ``replay`` whose ``map`` process
SIGKILLs itself at the middle record (the first time): the milliseconds from that kill to the
replacement process handling that record again (replayed from the dead worker's journal:
noticing the death, forking the new worker, its ``begin()``, the replay), median over rounds.
Target: < 250 ms. The run must still count every record at the sink.

Then **chaos**: ``--chaos-runs`` (default 3) runs of ``--chaos-records`` (default 2,000,000)
records of tests/scripts/chaos_run.py: ``parse -> map (workers=2) -> sink`` under ``replay``,
a random live worker of ``parse`` or ``map`` SIGKILLed every 0.5 to 2 s, the sink counting each
id. ``chaos_lost`` is the ids never seen (target: 0), ``chaos_duplicates`` the sightings beyond
the first (at most one batch, 1,000, per kill: ``chaos_kills``), ``chaos_runs`` the runs made,
``chaos_hangs`` those that did not end within their deadline and ``chaos_failures`` those that
failed any of it (a hang, an error, a loss, too many duplicates). The issue's own figure, 20
runs of 10,000,000, is ``venv/bin/python tests/scripts/chaos_run.py --records 10000000 --runs
20`` (about 3 minutes). ``--chaos-runs 0`` skips it (the chaos keys are then null).

Output (progress goes to stderr): a table headed by the load average, then, as the very last
line, one JSON object with ``track_vs_none``, ``replay_vs_none``, ``restart_ms`` and the chaos keys.
``--check`` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

import chronopipe as cp
from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict
from bench_pipeline import add_field, make_records
from chronopipe.graph import Node, Pipeline

TARGETS = {"track_vs_none": (0.85, "min"), "replay_vs_none": (0.8, "min"), "restart_ms": (250.0, "max"),
           "chaos_lost": (0, "max"), "chaos_failures": (0, "max")}
CHAOS_KEYS = ("chaos_lost", "chaos_duplicates", "chaos_kills", "chaos_runs", "chaos_hangs", "chaos_failures")
RESTART_RECORDS = 200_000  # per restart run; the map process SIGKILLs itself at the middle one
FLAKY_EVERY = 1000
verdict = functools.partial(target_verdict, TARGETS)


class Map(Node):
    """bench_pipeline's map stage: push the record with one more field. With ``flaky``, every
    FLAKY_EVERY-th record fails its first attempt (a retry under replay)."""

    flaky = False

    def begin(self) -> None:
        self.failed: set[int] = set()

    def process(self, record: dict[str, Any]) -> None:
        if self.flaky and record["timestamp"] % FLAKY_EVERY == 0 and record["timestamp"] not in self.failed:
            self.failed.add(record["timestamp"])
            raise ConnectionError("flaky")
        self.push(add_field(record))


class Sink(Node):
    """Counts the records; the count comes home from its process in ``n``."""

    def begin(self) -> None:
        self.n = 0

    def process(self, record: dict[str, Any]) -> None:
        self.n += 1


class KillOnce(Map):
    """Map, whose process SIGKILLs itself at record ``at`` the first time (writing the time into
    ``folder/killed``), and writes the time it gets that record again (replayed, in the new
    process) into ``folder/replayed``."""

    at = 0
    folder = ""

    def process(self, record: dict[str, Any]) -> None:
        if record["timestamp"] == self.at:
            killed, replayed = os.path.join(self.folder, "killed"), os.path.join(self.folder, "replayed")
            if not os.path.exists(killed):
                with open(killed, "w") as f:
                    f.write(repr(time.time()))
                os.kill(os.getpid(), signal.SIGKILL)
            elif not os.path.exists(replayed):
                with open(replayed, "w") as f:
                    f.write(repr(time.time()))
        super().process(record)


def restart_ms(folder: Path, n: int = RESTART_RECORDS) -> float:
    """Milliseconds from the map process's SIGKILL to its replacement handling the replayed record."""
    run = folder / f"restart-{time.monotonic_ns()}"
    run.mkdir()
    sink = Sink("sink")
    pipeline = Pipeline(KillOnce("map", at=n // 2, folder=str(run)) | sink, mode="processes", guarantee="replay",
                        dead_letter=run / "dl.jsonl")
    try:
        pipeline.consume(make_records(n))
    finally:
        cp.Runtime().shutdown()
    if sink.n < n or pipeline.statistics().restarts != 1:
        raise RuntimeError(f"restart run: {sink.n} of {n} records, {pipeline.statistics().restarts} restarts")
    return (float((run / "replayed").read_text()) - float((run / "killed").read_text())) * 1000


def load_chaos_run() -> Any:
    """tests/scripts/chaos_run.py as a module (it is a script, not part of the package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "tests" / "scripts" / "chaos_run.py"
    spec = importlib.util.spec_from_file_location("chaos_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos_run"] = module
    spec.loader.exec_module(module)
    return module


def chaos(runs: int, records: int, progress: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``runs`` watched chaos runs (chaos_run.run_watched, kills every 0.5 to 2 s): the totals."""
    chaos_run = load_chaos_run()
    deadline = max(120.0, records / 25_000)
    results = []
    for k in range(runs):
        progress(f"chaos {k + 1}/{runs}: {records:,} records, a worker SIGKILLed every 0.5-2 s...")
        results.append(chaos_run.run_watched(records, 17 + k, chaos_run.EVERY, deadline))
    total = {
        "chaos_lost": sum(r.get("lost") or 0 for r in results),
        "chaos_duplicates": sum(r.get("duplicates") or 0 for r in results),
        "chaos_kills": sum(r.get("kills") or 0 for r in results),
        "chaos_runs": runs,
        "chaos_hangs": sum(bool(r.get("hang")) for r in results),
        "chaos_failures": sum(not r.get("ok") for r in results),
    }
    return total, results


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that ended (node processes are reaped)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


CPU: dict[int, float] = {}  # id(Run) -> CPU seconds of that run


def run_pipeline(n: int, guarantee: str, folder: Path, flaky: bool = False) -> Run:
    dead_letters = folder / f"{guarantee}.dead-letters.jsonl"
    sink = Sink("sink")
    pipeline = Pipeline(Map("map", flaky=flaky) | sink, mode="processes", guarantee=guarantee, max_retries=3,
                        dead_letter=dead_letters)
    try:
        c0, t0 = cpu_seconds(), time.perf_counter()
        pipeline.consume(make_records(n))
        elapsed = time.perf_counter() - t0
    finally:
        cp.Runtime().shutdown()
    cpu = cpu_seconds() - c0
    check_count(f"pipeline ({guarantee})", sink.n, n)
    stats = {s.name: s for s in pipeline.statistics().nodes}
    if stats["map"].dead_lettered or dead_letters.exists():
        raise RuntimeError(f"pipeline ({guarantee}): dead-lettered {stats['map'].dead_lettered} records")
    expected_retries = (n + FLAKY_EVERY - 1) // FLAKY_EVERY if flaky else 0
    if stats["map"].retried != expected_retries:
        raise RuntimeError(f"pipeline ({guarantee}): {stats['map'].retried} retries, expected {expected_retries}")
    run = Run(n, elapsed)
    CPU[id(run)] = cpu
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records per run (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--chaos-runs", type=int, default=3, help="chaos runs (default 3; 0: none)")
    parser.add_argument("--chaos-records", type=int, default=2_000_000,
                        help="records per chaos run (default 2,000,000)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.records < 1 or args.repeat < 1 or args.chaos_runs < 0 or args.chaos_records < 1:
        parser.error("--records, --repeat and --chaos-records must be >= 1, --chaos-runs >= 0")
    n = args.records

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as scratch:
        folder = Path(scratch)
        contenders: dict[str, tuple[str, Callable[[], Run]]] = {
            "none": ('guarantee="none"', lambda: run_pipeline(n, "none", folder)),
            "replay": ('guarantee="replay"', lambda: run_pipeline(n, "replay", folder)),
            "track": ('guarantee="track"', lambda: run_pipeline(n, "track", folder)),
            "flaky": ('"replay", 0.1% retried once (info)', lambda: run_pipeline(n, "replay", folder, flaky=True)),
        }
        runs: dict[str, list[Run]] = {key: [] for key in contenders}
        order = list(contenders)
        for rep in range(args.repeat):
            for key in order if rep % 2 == 0 else order[::-1]:  # in turns: nobody always goes first
                label, run = contenders[key]
                progress(f"round {rep + 1}/{args.repeat}: {label}...")
                runs[key].append(run())
        restarts = []
        for rep in range(args.repeat):
            progress(f"restart {rep + 1}/{args.repeat}: SIGKILL the map process at {RESTART_RECORDS // 2:,}...")
            restarts.append(restart_ms(folder))
    chaos_total, chaos_results = chaos(args.chaos_runs, args.chaos_records, progress) if args.chaos_runs else ({}, [])

    replay_ratio, replay_rounds = paired_ratio(runs["replay"], runs["none"])
    track_ratio, track_rounds = paired_ratio(runs["track"], runs["none"])
    flaky_ratio, flaky_rounds = paired_ratio(runs["flaky"], runs["none"])
    cpu_ratio, cpu_rounds = paired_ratio([CPU[id(r)] for r in runs["replay"]], [CPU[id(r)] for r in runs["none"]])
    summary: dict[str, Any] = {"track_vs_none": round(track_ratio, 3), "replay_vs_none": round(replay_ratio, 3),
                               "replay_cpu_vs_none": round(cpu_ratio, 3),
                               "restart_ms": round(statistics.median(restarts), 1),
                               **dict.fromkeys(CHAOS_KEYS), **chaos_total}

    print(f"chronopipe {cp.__version__} delivery benchmark: {n:,} records, 3 processes (this one, map, sink), "
          f"{args.repeat} paired rounds, {psutil.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          "(other work on the machine makes the rates noisy)")
    print()
    print(f"{'contender':<38} {'median records/s':>17} {'vs none':>8}  target")
    print("-" * 90)
    print(f"{contenders['none'][0]:<38} {median_rate(runs['none']):>17,.0f}")
    print(f"{contenders['replay'][0]:<38} {median_rate(runs['replay']):>17,.0f} {replay_ratio:>7.2f}x  "
          f"{verdict('replay_vs_none', summary['replay_vs_none'])}")
    print(f"{'':<38} per round: {rounds_text(replay_rounds)}")
    print(f"{contenders['track'][0]:<38} {median_rate(runs['track']):>17,.0f} {track_ratio:>7.2f}x  "
          f"{verdict('track_vs_none', summary['track_vs_none'])}")
    print(f"{'':<38} per round: {rounds_text(track_rounds)}")
    print(f"{'  replay: its CPU seconds / none (info)':<38} {'':>17} {cpu_ratio:>7.2f}x  "
          f"per round: {rounds_text(cpu_rounds)}")
    print(f"{contenders['flaky'][0]:<38} {median_rate(runs['flaky']):>17,.0f} {flaky_ratio:>7.2f}x")
    print(f"{'':<38} per round: {rounds_text(flaky_rounds)}")
    print(f"{'SIGKILL to replayed record, median ms':<38} {summary['restart_ms']:>17,.1f} {'':>8}  "
          f"{verdict('restart_ms', summary['restart_ms'])}")
    print(f"{'':<38} per run: {', '.join(f'{r:.1f}' for r in restarts)}")
    if chaos_results:
        print(f"{'chaos: runs / kills / hangs / failed':<38} {summary['chaos_runs']:>5} / {summary['chaos_kills']} / "
              f"{summary['chaos_hangs']} / {summary['chaos_failures']}  {args.chaos_records:,} records a run, "
              f"{sum(r.get('seconds') or 0 for r in chaos_results):.1f} s in all")
        lost_ok = "ok  " if not summary["chaos_lost"] else "MISS"
        print(f"{'  lost':<38} {summary['chaos_lost']:>17,} {'':>8}  {lost_ok} (target 0)")
        print(f"{'  duplicates (bound: 1,000 a kill)':<38} {summary['chaos_duplicates']:>17,} {'':>8}  "
              f"{'ok  ' if not summary['chaos_failures'] else 'MISS'} (target: no failed run)")
        for r in chaos_results:
            if not r.get("ok"):
                print(f"{'':<38} seed {r['seed']}: " + ("hang" if r.get("hang") else
                      f"lost {r.get('lost')}, duplicates {r.get('duplicates')}, error {r.get('error')}")[:200])
    print("-" * 90)
    print()
    return finish({k: v for k, v in TARGETS.items() if summary[k] is not None}, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
