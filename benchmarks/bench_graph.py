"""Hand-run benchmark of chronopipe pipelines (chronopipe.graph) against consecution and pypeln.

Run it (about 3 minutes on 2 cores; it is not a pytest test; needs ``pip install consecution pypeln``)::

    venv/bin/python benchmarks/bench_graph.py [--items N] [--heavy-items N] [--pypeln-items N]
                                              [--heavy-us US] [--repeat N] [--check]

What is measured
----------------
One 5-node pipeline, written once as node classes over either library's ``Node``:

    parse -> filter -> enrich -> [low, high, route] -> count

``parse`` turns ``i`` into ``{"id": i, "value": i % 97}``, ``filter`` drops ``value == 13``,
``enrich`` adds ``score``, a router sends ``value < 50`` to ``low`` and the rest to ``high``
(both tag the record), and ``count`` counts what the two branches merge into it and leaves the
count in ``global_state.count``, which every run checks (a contender that lost or invented
records fails instead of looking fast). Each run's time includes starting and ending the run
(for the actor modes: starting the actors and processes and joining them).

Light pipeline, ``--items`` (default 1,000,000) items:

* **consecution 0.2.0** (single-threaded, the design chronopipe's sync mode follows);
* **chronopipe sync**: the same classes on ``chronopipe.graph.Node``, ``mode="sync"``.
  Target: >= 1.0x consecution's items/s (``sync_vs_consecution``);
* **chronopipe threads**, **chronopipe processes** (information): ``mode="threads"`` and
  ``mode="processes"`` (every node an actor: 6 processes plus this one);
* **pypeln processes**: ``pl.process.map/filter`` stages, one worker each (parse, filter,
  enrich, route-and-branch in one stage since pypeln has no router), counted here. pypeln 0.4.9
  reads a multiprocessing Manager namespace on every ``get()``, which caps it near 1-2 thousand
  items/s, so it runs on ``--pypeln-items`` (default 20,000) and rates are compared, paired per
  round (pypeln runs right after chronopipe processes): ``vs_pypeln`` = chronopipe processes /
  pypeln processes (process pipelines on both sides).

Heavy pipeline, ``--heavy-items`` (default 200,000) items: ``enrich`` also runs a pure-Python
loop calibrated at start-up to take ``--heavy-us`` (default 20) microseconds per item:

* **chronopipe sync, heavy**: as above, on one core;
* **chronopipe processes, heavy x2**: ``mode="processes"`` with ``enrich`` given ``workers=2``.
  Target: >= 1.6x the sync rate on 2 cores (``processes_vs_sync_heavy``);
* **chronopipe threads + heavy on processes x2** (information): ``mode="threads"`` with only
  ``enrich`` on processes (``mode="processes", workers=2``): the light nodes stay on threads of
  this process, so only enrich's items cross processes.

Every contender runs ``--repeat`` times (default 3), round robin (a noisy moment then hits every
contender rather than one), in the order listed above, so the two sides of each ratio in the JSON
run back to back in every round. No figure is a best run: a rate is the median of a contender's
runs, and a ratio the median over rounds of the ratio of that round's two runs (neighbours in
time see about the same machine), each round's ratio printed under it.

Output (progress goes to stderr): a table headed by the load average and by how many cores the
machine gave right then (two processes spinning in parallel against one: 2.0x on 2 free cores,
near 1.0x when other work holds a core, and then no parallel speed-up can show), then, as the very last
line, one JSON object: ``{"sync_vs_consecution", "processes_vs_sync_heavy", "vs_pypeln"}``
(each the median of same-round ratios).
``--check`` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import psutil

import chronopipe as cp
import chronopipe.graph as cg
from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict

TARGETS = {"sync_vs_consecution": (1.0, "min"), "processes_vs_sync_heavy": (1.6, "min")}
verdict = functools.partial(target_verdict, TARGETS)


# -- the work ------------------------------------------------------------------------------
def spin(n: int) -> int:
    """Pure-Python CPU work: ``n`` loop turns."""
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def calibrate(us: float, calls: int = 2000) -> int:
    """Loop turns that make spin() take about ``us`` microseconds here: the median of a few
    timings of ``calls`` calls (the heavy runs make as many calls, in a row, as this does)."""
    turns = 250
    for _ in range(2):  # a first guess, then a correction at about the right size
        per_call = statistics.median(_timed(turns, calls) for _ in range(5)) / calls
        turns = max(1, round(turns * us * 1e-6 / per_call))
    return turns


def _timed(turns: int, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        spin(turns)
    return time.perf_counter() - started


def parallel_capacity(seconds: float = 0.3) -> float:
    """How many cores this machine gives right now: the speed-up of two processes spinning in
    parallel over one (2.0 on 2 free cores; near 1.0 when other work holds a core)."""
    import multiprocessing

    turns = calibrate(seconds * 1e6, calls=1)
    started = time.perf_counter()
    spin(turns)
    one = time.perf_counter() - started
    procs = [multiprocessing.get_context("fork").Process(target=spin, args=(turns,)) for _ in range(2)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return 2 * one / (time.perf_counter() - started)


def expected_count(n: int) -> int:
    return n - sum(1 for i in range(13, n, 97))


def build(lib: Any, heavy_turns: int, enrich_settings: dict[str, Any], **pipeline_kwargs: Any) -> Any:
    """The pipeline on ``lib`` (consecution or chronopipe.graph): the same code for both."""

    class Parse(lib.Node):
        def process(self, item):
            self.push({"id": item, "value": item % 97})

    class Filter(lib.Node):
        def process(self, record):
            if record["value"] != 13:
                self.push(record)

    class Enrich(lib.Node):
        def process(self, record):
            record["score"] = record["value"] * 3 + (spin(heavy_turns) if heavy_turns else 0)
            self.push(record)

    class Branch(lib.Node):
        def process(self, record):
            record["branch"] = self.name
            self.push(record)

    class Count(lib.Node):
        def begin(self):
            self.n = 0

        def process(self, record):
            self.n += 1

        def end(self):
            self.global_state.count = self.n

    def route(record):
        return "low" if record["value"] < 50 else "high"

    top = Parse("parse") | Filter("filter") | Enrich("enrich", **enrich_settings) | [
        Branch("low"), Branch("high"), route] | Count("count")
    return lib.Pipeline(top, global_state=lib.GlobalState(), **pipeline_kwargs)


def run_pipeline(name: str, lib: Any, n: int, heavy_turns: int = 0, enrich: dict[str, Any] | None = None,
                 **pipeline_kwargs: Any) -> Run:
    pipeline = build(lib, heavy_turns, enrich or {}, **pipeline_kwargs)
    started = time.perf_counter()
    pipeline.consume(range(n))
    seconds = time.perf_counter() - started
    check_count(name, pipeline.global_state.count, expected_count(n))
    return Run(n, seconds)


def run_pypeln(n: int) -> Run:
    import pypeln as pl

    def parse(item):
        return {"id": item, "value": item % 97}

    def keep(record):
        return record["value"] != 13

    def enrich(record):
        record["score"] = record["value"] * 3
        return record

    def route_and_branch(record):
        record["branch"] = "low" if record["value"] < 50 else "high"
        return record

    started = time.perf_counter()
    stage = pl.process.map(parse, range(n), workers=1)
    stage = pl.process.filter(keep, stage, workers=1)
    stage = pl.process.map(enrich, stage, workers=1)
    stage = pl.process.map(route_and_branch, stage, workers=1)
    count = sum(1 for _ in stage)
    seconds = time.perf_counter() - started
    check_count("pypeln", count, expected_count(n))
    return Run(n, seconds)


# -- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="items of the light runs (default 1,000,000)")
    parser.add_argument("--heavy-items", type=int, default=200_000, help="items of the heavy runs (default 200,000)")
    parser.add_argument("--pypeln-items", type=int, default=20_000, help="items of the pypeln runs (default 20,000)")
    parser.add_argument("--heavy-us", type=float, default=20.0, help="heavy work per item, microseconds (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the contenders, medians kept (default 3)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if min(args.items, args.heavy_items, args.pypeln_items, args.repeat) < 1 or args.heavy_us <= 0:
        parser.error("item counts, --repeat and --heavy-us must be positive")
    try:
        import consecution
        import pypeln
    except ImportError as exc:
        parser.error(f"this benchmark needs consecution and pypeln: venv/bin/pip install consecution pypeln ({exc})")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    capacity_before = parallel_capacity()
    turns = calibrate(args.heavy_us)
    n, nh = args.items, args.heavy_items
    lib_consecution = SimpleNamespace(Node=consecution.Node, Pipeline=consecution.Pipeline,
                                      GlobalState=consecution.GlobalState)
    heavy_x2 = {"workers": 2}
    contenders: dict[str, tuple[str, Callable[[], Run]]] = {
        "consecution": ("consecution 0.2.0", lambda: run_pipeline("consecution", lib_consecution, n)),
        "sync": ("chronopipe sync", lambda: run_pipeline("sync", cg, n, mode="sync")),
        "threads": ("chronopipe threads (info)", lambda: run_pipeline("threads", cg, n, mode="threads")),
        "processes": ("chronopipe processes", lambda: run_pipeline("processes", cg, n, mode="processes")),
        "pypeln": ("pypeln processes", lambda: run_pypeln(args.pypeln_items)),
        "sync_heavy": ("chronopipe sync, heavy", lambda: run_pipeline("sync heavy", cg, nh, turns, mode="sync")),
        "processes_heavy": ("chronopipe processes, heavy x2", lambda: run_pipeline(
            "processes heavy", cg, nh, turns, heavy_x2, mode="processes")),
        "mixed_heavy": ("chronopipe threads, heavy on procs x2", lambda: run_pipeline(
            "mixed heavy", cg, nh, turns, {"workers": 2, "mode": "processes"}, mode="threads")),
    }
    runs: dict[str, list[Run]] = {key: [] for key in contenders}
    for rep in range(args.repeat):
        for key, (label, run) in contenders.items():
            progress(f"round {rep + 1}/{args.repeat}: {label}...")
            runs[key].append(run())
            cp.Runtime().shutdown()

    baseline = {"consecution": "sync", "sync": "consecution", "threads": "consecution", "processes": "pypeln",
                "pypeln": "pypeln", "sync_heavy": "sync_heavy", "processes_heavy": "sync_heavy",
                "mixed_heavy": "sync_heavy"}
    rate = {key: median_rate(r) for key, r in runs.items()}
    # each row's rate / its baseline's, per round (run i of both came from round i), and their median
    ratios = {key: paired_ratio(runs[key], runs[base]) for key, base in baseline.items()}
    summary = {
        "sync_vs_consecution": round(ratios["sync"][0], 2),
        "processes_vs_sync_heavy": round(ratios["processes_heavy"][0], 2),
        "vs_pypeln": round(ratios["processes"][0], 2),
    }
    targets = {"sync": "sync_vs_consecution", "processes_heavy": "processes_vs_sync_heavy"}  # row -> target

    print(f"chronopipe {cp.__version__} graph benchmark: {n:,} items light, {nh:,} heavy "
          f"({args.heavy_us:g} us of pure-Python work per item in enrich: {turns} loop turns), "
          f"{args.pypeln_items:,} for pypeln; {args.repeat} rounds, rates are medians of the runs, ratios "
          f"medians of same-round ratios; {psutil.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, consecution {consecution.__version__}, "
          f"pypeln {getattr(pypeln, '__version__', '?')}")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; two spinning processes ran "
          f"{capacity_before:.2f}x / {parallel_capacity():.2f}x as fast as one, before / after "
          "(other work on the machine makes the rates noisy)")
    print()
    print(f"{'contender':<40} {'items':>9} {'median s':>8} {'items/s':>10} {'ratio':>7}  {'vs':<18} target")
    print("-" * 110)
    for key, (label, _) in contenders.items():
        records, base = runs[key][0].records, baseline[key]
        ratio, per_round = ratios[key]
        target = verdict(targets[key], summary[targets[key]]) if key in targets else ""
        print(f"{label:<40} {records:>9,} {records / rate[key]:>8.3f} {rate[key]:>10,.0f} {ratio:>6.2f}x  "
              f"{contenders[base][0]:<18} {target}".rstrip())
        print(f"{'':<40} runs: {', '.join(f'{r.rate:,.0f}' for r in runs[key])} items/s")
        if base != key:
            print(f"{'':<40} same-round ratios: {rounds_text(per_round)} (median {ratio:.2f})")
    print("-" * 110)
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
