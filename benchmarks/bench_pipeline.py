"""Hand-run benchmark of chronopipe's runtime: a 3-process pipeline against what a user could write instead.

Run it (under a minute on 2 cores; it is not a pytest test)::

    venv/bin/python benchmarks/bench_pipeline.py [--records N] [--repeat N] [--queue-records N] [--check]

What is measured
----------------
The work is the same everywhere: generate ``{"timestamp": i, "value": i * 0.5, "name": "s1"}``
for ``i < N``, add a field (``{**r, "extra": 1}``), count the records at the end.

Throughput contenders (each run ``--repeat`` times, round robin: every round runs the single
loop, chronopipe, the hand-batched queue and the per-record queue back to back, so chronopipe
sits next to its two closest rivals; every run's wall time includes starting and joining its
processes). A shared 2-core machine is noisy, so no figure is a best run: each ratio is the
median over rounds of chronopipe's rate / that contender's rate in the same round, and each
absolute rate the median of its runs:

* **chronopipe**: source actor -> map actor -> sink actor (counts in ``on_receive``), each in its
  own process, connected by two ``Channel(mode="process")`` (batches of 1,000, linger 5 ms).
* **single loop**: the same work in one plain loop in this process.
* **mp.Queue, 1 put/record**: stdlib ``multiprocessing`` (fork), the same 3 processes, one
  ``Queue.put`` per record. It is very slow (well under 150k records/s), so it runs on
  ``--queue-records`` records (default N / 10); its ratio pairs the two runs' rates (records/s)
  per round, the records counts being different.
* **mp.Queue, hand-batched**: the same 3 processes, lists of 1,000 records per ``put``: the best
  a user can do by hand. Its sink still looks at every record, as the other sinks do.

The stdlib queues are unbounded (their fastest setting); chronopipe's channels are bounded.

Other numbers:

* **peak RSS**: during every chronopipe run a background thread samples, every 10 ms, the
  RSS of this process plus all of its children (psutil) and keeps the largest sum. Pages that
  forked children share with their parent are counted once per process, as RSS does.
* **latency**: a fresh chain, parent -> process channel -> identity actor -> map actor ->
  identity actor -> process channel -> parent. The parent puts ONE record and times until it
  reads it back; after one warm-up record this is repeated ``--latency-samples`` times (each
  record alone in the chain) and the median is reported. A plain ``put`` from the parent waits
  for the channel's linger (5 ms) before the batch leaves; ``put`` + ``flush`` is shown too.
* **start-up**: the first chronopipe use in this process (cold): from constructing a source
  actor and calling ``start()`` until the parent reads the actor's first record. Warm repeats
  are shown for information.

Output (progress goes to stderr): a table headed by the load average, since other work on
the machine moves the rates a lot, with every run's rate and every round's ratio under each row,
then, as the very last line, one JSON object with the keys ``records_per_s`` (chronopipe's median
rate), ``vs_mp_queue``, ``vs_hand_batched``, ``vs_single_loop`` (the median over rounds of
chronopipe's rate / that contender's rate in the same round), ``peak_rss_mb`` (the largest peak
of all chronopipe runs), ``latency_ms`` and ``startup_s``. ``--check`` exits with status 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import multiprocessing
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

import chronopipe as cp
from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict

BATCH = 1000  # records per channel batch and per hand-batched put
CHANNEL_MAXSIZE = 10_000
LINGER = 0.005
TIMEOUT = 300.0  # a run that takes longer than this is a hang: fail loudly instead of waiting forever
RSS_INTERVAL = 0.01
MB = 1024 * 1024
WARM_STARTS = 5  # start-up measurements after the cold one, for information
# The order of each round: chronopipe back to back with both the loop and the hand-batched queue.
ROUND_ORDER = ("single_loop", "chronopipe", "hand_batched", "mp_queue")

TARGETS = {  # name: (bound, "min" or "max")
    "vs_mp_queue": (15.0, "min"),
    "vs_hand_batched": (1.0, "min"),
    "vs_single_loop": (0.3, "min"),
    "peak_rss_mb": (150.0, "max"),
    "latency_ms": (10.0, "max"),
    "startup_s": (0.1, "max"),
}
verdict = functools.partial(target_verdict, TARGETS)

_MP = multiprocessing.get_context("fork")


# -- the work ------------------------------------------------------------------------------
def make_records(n: int) -> Iterator[dict[str, Any]]:
    return ({"timestamp": i, "value": i * 0.5, "name": "s1"} for i in range(n))


def add_field(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "extra": 1}


def identity(record: Any) -> Any:
    return record


class Count(cp.Actor):
    """Sink actor: counts what it receives; the count is what join() returns."""

    def on_start(self) -> None:
        self.n = 0

    def on_receive(self, item: Any) -> None:
        self.n += 1

    def on_stop(self) -> int:
        return self.n


# -- measuring helpers ---------------------------------------------------------------------
class TreeRss:
    """Background sampler of the summed RSS of this process and all its descendants."""

    def __init__(self, interval: float = RSS_INTERVAL) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._root = psutil.Process()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss-sampler", daemon=True)

    def sample(self) -> None:
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:  # ended between listing and reading
                pass
        self.peak = max(self.peak, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()




# -- contender: chronopipe ---------------------------------------------------------------
def process_channel(name: str) -> cp.Channel:
    return cp.Channel(maxsize=CHANNEL_MAXSIZE, mode="process", name=name, batch_size=BATCH, linger=LINGER)


def run_chronopipe(n: int) -> Run:
    try:
        t0 = time.perf_counter()
        a, b = process_channel("a"), process_channel("b")
        source = cp.Actor("source", source=lambda: make_records(n), outputs=a, mode="process").start()
        mapper = cp.Actor("map", add_field, inbox=a, outputs=b, mode="process").start()
        sink = Count("sink", inbox=b, mode="process").start()
        with TreeRss() as rss:
            count = sink.join(TIMEOUT)
            elapsed = time.perf_counter() - t0
            source.join(TIMEOUT)
            mapper.join(TIMEOUT)
    finally:
        cp.Runtime().shutdown()
    check_count("chronopipe", count, n)
    return Run(n, elapsed, rss.peak, rss.samples)


# -- contender: one plain loop -------------------------------------------------------------
def run_single_loop(n: int) -> Run:
    t0 = time.perf_counter()
    count = 0
    for record in make_records(n):
        add_field(record)
        count += 1
    elapsed = time.perf_counter() - t0
    check_count("single loop", count, n)
    return Run(n, elapsed)


# -- contenders: stdlib multiprocessing.Queue ------------------------------------------------
def _q_source(out: Any, n: int) -> None:
    for record in make_records(n):
        out.put(record)
    out.put(None)


def _q_map(inbox: Any, out: Any) -> None:
    for record in iter(inbox.get, None):
        out.put(add_field(record))
    out.put(None)


def _q_sink(inbox: Any, result: Any) -> None:
    count = 0
    for _record in iter(inbox.get, None):
        count += 1
    result.put(count)


def _qb_source(out: Any, n: int) -> None:
    records = make_records(n)
    while chunk := list(itertools.islice(records, BATCH)):
        out.put(chunk)
    out.put(None)


def _qb_map(inbox: Any, out: Any) -> None:
    for batch in iter(inbox.get, None):
        out.put([add_field(record) for record in batch])
    out.put(None)


def _qb_sink(inbox: Any, result: Any) -> None:
    count = 0
    for batch in iter(inbox.get, None):
        for _record in batch:
            count += 1
    result.put(count)


def _wait_result(result: Any, procs: list[Any]) -> Any:
    """The sink's count; fails fast if a process died instead of waiting for TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return result.get(timeout=0.2)
        except queue.Empty:
            dead = [f"{p.name} (exit code {p.exitcode})" for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"mp.Queue contender: {', '.join(dead)} failed") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"mp.Queue contender: no result within {TIMEOUT} s") from None


def run_mp_queue(n: int, *, batched: bool) -> Run:
    source, mapper, sink = (_qb_source, _qb_map, _qb_sink) if batched else (_q_source, _q_map, _q_sink)
    q1, q2, result = _MP.Queue(), _MP.Queue(), _MP.Queue()
    procs = [
        _MP.Process(target=source, args=(q1, n), name="mpq-source"),
        _MP.Process(target=mapper, args=(q1, q2), name="mpq-map"),
        _MP.Process(target=sink, args=(q2, result), name="mpq-sink"),
    ]
    try:
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        count = _wait_result(result, procs)
        for proc in procs:
            proc.join(TIMEOUT)
        elapsed = time.perf_counter() - t0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    check_count("mp.Queue", count, n)
    return Run(n, elapsed)


# -- latency and start-up ------------------------------------------------------------------
def measure_latency(samples: int) -> tuple[list[float], list[float]]:
    """Seconds for one lone record through a 3-actor chain: (plain put, put + flush)."""
    feed, c1, c2, out = (process_channel(name) for name in ("lat-feed", "lat-1", "lat-2", "lat-out"))
    try:
        stages = [
            cp.Actor("lat-source", identity, inbox=feed, outputs=c1, mode="process").start(),
            cp.Actor("lat-map", add_field, inbox=c1, outputs=c2, mode="process").start(),
            cp.Actor("lat-sink", identity, inbox=c2, outputs=out, mode="process").start(),
        ]
        timings: dict[bool, list[float]] = {False: [], True: []}
        i = 0
        for flush in (False, True):
            for k in range(samples + 1):  # the first record of each series is a warm-up
                record = {"timestamp": i, "value": i * 0.5, "name": "s1"}
                t0 = time.perf_counter()
                feed.put(record)
                if flush:
                    feed.flush()
                got = out.get(timeout=10)
                dt = time.perf_counter() - t0
                if got != add_field(record):
                    raise RuntimeError(f"latency chain: sent {record!r}, got back {got!r}")
                if k:
                    timings[flush].append(dt)
                i += 1
        feed.close()
        if out.get(timeout=10) is not cp.END:
            raise RuntimeError("latency chain: expected END after closing the feed")
        for stage in stages:
            stage.join(TIMEOUT)
    finally:
        cp.Runtime().shutdown()
    return timings[False], timings[True]


def measure_startup() -> tuple[float, float]:
    """(seconds until start() returned, seconds until the parent read the actor's first record)."""
    record = {"timestamp": 0, "value": 0.0, "name": "s1"}
    out = process_channel("startup-out")
    try:
        t0 = time.perf_counter()
        actor = cp.Actor("startup", source=lambda: [record], outputs=out, mode="process")
        actor.start()
        started = time.perf_counter() - t0
        first = out.get(timeout=10)
        first_record = time.perf_counter() - t0
        if first != record or out.get(timeout=10) is not cp.END:
            raise RuntimeError(f"start-up actor: expected {record!r} then END, got {first!r}")
        actor.join(TIMEOUT)
    finally:
        cp.Runtime().shutdown()
    return started, first_record


# -- report --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records per run (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the throughput contenders, medians kept (default 3)")
    parser.add_argument(
        "--queue-records",
        type=int,
        default=None,
        help="records for the per-record mp.Queue contender (default: --records / 10)",
    )
    parser.add_argument("--latency-samples", type=int, default=20, help="lone records timed (default 20)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.records < 1 or args.repeat < 1 or args.latency_samples < 1:
        parser.error("--records, --repeat and --latency-samples must be >= 1")
    n = args.records
    n_queue = args.queue_records if args.queue_records is not None else max(1, n // 10)
    if n_queue < 1:
        parser.error("--queue-records must be >= 1")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    progress(f"start-up (cold, then {WARM_STARTS} warm)...")
    startups = [measure_startup() for _ in range(1 + WARM_STARTS)]
    cold_startup = startups[0][1]

    contenders: dict[str, tuple[str, Callable[[], Run]]] = {
        "chronopipe": ("chronopipe, 3 processes", lambda: run_chronopipe(n)),
        "single_loop": ("single-process loop", lambda: run_single_loop(n)),
        "mp_queue": ("mp.Queue, 1 put/record, 3 procs", lambda: run_mp_queue(n_queue, batched=False)),
        "hand_batched": (f"mp.Queue, {BATCH:,}/put, 3 procs", lambda: run_mp_queue(n, batched=True)),
    }
    runs: dict[str, list[Run]] = {key: [] for key in contenders}
    for rep in range(args.repeat):  # round robin, so a noisy moment does not hit one contender only
        for key in ROUND_ORDER:  # chronopipe between its two closest rivals: each pair back to back
            label, run = contenders[key]
            progress(f"round {rep + 1}/{args.repeat}: {label}...")
            runs[key].append(run())

    progress(f"latency ({args.latency_samples} lone records, twice)...")
    lat_put, lat_flush = measure_latency(args.latency_samples)

    # chronopipe's rate / each contender's, per round (run i of both came from round i), and their median
    paired = {key: paired_ratio(runs["chronopipe"], runs[key]) for key in contenders if key != "chronopipe"}
    peak_rss_mb = max(r.peak_rss for r in runs["chronopipe"]) / MB
    summary = {
        "records_per_s": round(median_rate(runs["chronopipe"])),
        "vs_mp_queue": round(paired["mp_queue"][0], 2),
        "vs_hand_batched": round(paired["hand_batched"][0], 2),
        "vs_single_loop": round(paired["single_loop"][0], 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "latency_ms": round(statistics.median(lat_put) * 1000, 2),
        "startup_s": round(cold_startup, 4),
    }
    ratio_key = {"mp_queue": "vs_mp_queue", "hand_batched": "vs_hand_batched", "single_loop": "vs_single_loop"}

    print(
        f"chronopipe {cp.__version__} pipeline benchmark: {n:,} records, {args.repeat} rounds; rates are medians "
        f"of the runs, ratios medians of same-round ratios; {psutil.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
        "(other work on the machine makes the rates noisy)"
    )
    print()
    print(f"{'contender':<34} {'records':>10} {'median s':>8} {'records/s':>11} {'chronopipe/this':>16}  target")
    print("-" * 100)
    for key, (label, _) in contenders.items():
        records = runs[key][0].records
        rate = median_rate(runs[key])
        all_rates = ", ".join(f"{r.rate:,.0f}" for r in runs[key])
        ratio = f"{paired[key][0]:>15.2f}x" if key in paired else f"{'':>16}"
        target = verdict(ratio_key[key], summary[ratio_key[key]]) if key in ratio_key else ""
        print(f"{label:<34} {records:>10,} {records / rate:>8.3f} {rate:>11,.0f} {ratio}  {target}".rstrip())
        print(f"{'':<34} runs: {all_rates} records/s")
        if key in paired:
            print(f"{'':<34} chronopipe/this per round: {rounds_text(paired[key][1])} "
                  f"(median {paired[key][0]:.2f})")
    print("-" * 100)
    rows = [
        ("peak RSS, whole process tree", f"{peak_rss_mb:.1f} MB", verdict("peak_rss_mb", summary["peak_rss_mb"])),
        ("", f"{sum(r.rss_samples for r in runs['chronopipe']):,} samples over {args.repeat} runs", ""),
        ("latency, lone record (put)", f"{summary['latency_ms']:.2f} ms", verdict("latency_ms", summary["latency_ms"])),
        ("", f"min {min(lat_put) * 1000:.2f} / max {max(lat_put) * 1000:.2f} ms", ""),
        (
            "latency, lone record (put+flush)",
            f"{statistics.median(lat_flush) * 1000:.2f} ms",
            f"min {min(lat_flush) * 1000:.2f} / max {max(lat_flush) * 1000:.2f} ms (info)",
        ),
        ("start-up, cold (first record)", f"{cold_startup * 1000:.2f} ms", verdict("startup_s", summary["startup_s"])),
        ("", f"start() returned {startups[0][0] * 1000:.2f} ms", ""),
        (
            f"start-up, warm (median of {WARM_STARTS})",
            f"{statistics.median(s[1] for s in startups[1:]) * 1000:.2f} ms",
            "(info)",
        ),
    ]
    for label, value, note in rows:
        print(f"{label:<34} {value:>46}  {note}".rstrip())
    print()
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
