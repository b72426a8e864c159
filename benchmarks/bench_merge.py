"""Hand-run benchmark of chronopipe's sorted merge: SortedQueueMultiplexer against heapq.merge.

Run it (about 2 minutes on 2 cores, most of it the CSV part; it is not a pytest test)::

    venv/bin/python benchmarks/bench_merge.py [--streams N] [--per-stream N] [--repeat N] [--csv-files N]
                                              [--csv-rows N] [--csv-repeat N] [--no-csv] [--profile] [--check]

What is measured
----------------
The records are ``{"timestamp": t, "value": t * 0.5}``. Stream ``s`` of ``S`` (default 8 streams
of 125,000 records) holds ``t = s, s + S, s + 2S, ...``, so each stream is sorted and the merge
interleaves all of them: the merged output is exactly ``t = 0, 1, 2, ...``. Every consumer does
the same work per record (it checks that ``t`` is the next expected value and counts it), so a
wrong merge fails the run instead of looking fast.

Merge contenders (each run ``--repeat`` times, default 5, round robin within its group, each
round running a ratio's two contenders back to back: (a) with output channel, (a), (b), then
the threaded multiplexer, heapq.merge over lists, merge_sorted; (a) and (b) run before the lists
of (c) exist, so the garbage collector never scans a million live records during them). A shared
2-core machine is noisy, so no figure is a best run: a ratio is the median over rounds of the
two contenders' same-round rate ratio, a rate the median of a contender's runs:

* **(a) chronopipe, S producer processes**: ``SortedQueueMultiplexer(channel_mode="process")``; each
  input channel is fed by its own source ``Actor(mode="process")`` that generates its stream
  lazily; the merge runs on a thread of this process and writes to a ``Channel(mode="thread")``
  that this process drains with ``get_batch()``. The wall time includes starting and joining
  the producer processes.
* **(b) heapq.merge, generators, 1 process**: the same S lazy generators merged by
  ``heapq.merge(*streams, key=operator.itemgetter("timestamp"))`` in this process.
  Target: (a) >= 1.0x (b), i.e. parallel producers pay for their own IPC (``vs_single_process``).
* **(c) heapq.merge, in-memory lists**: the S streams built as lists beforehand (not timed),
  merged by ``heapq.merge`` as in (b).
* **(c) chronopipe merge core, in-memory lists**: ``chronopipe.merge_sorted(*lists,
  key="timestamp")``, the in-process face of the window that SortedQueueMultiplexer merges with
  (``order/window.py``), consumed exactly like heapq.merge. Target: >= 0.9x the
  heapq.merge-over-lists rate (``core_vs_heapq_merge``).
* **(c) SortedQueueMultiplexer on threads** (information): the multiplexer itself on a thread of
  this process, its S thread input channels (``maxsize`` = records per stream) filled with the
  same lists and closed before ``run()``; timed from ``run()`` until this process has drained
  the output thread channel (``maxsize`` 10,000, read with ``get_batch()``).

CSV merge (information, no target): ``--csv-files`` files (default 3) of ``--csv-rows`` rows each
(default 1,000,000; header ``date,Temperature,Humidity,Light,CO2,HumidityRatio,Occupancy``, sorted
``date`` values like ``2015-02-04 17:51:00`` interleaved between the files) are generated under a
temporary directory (deleted at the end; ``--tmpdir`` picks its parent), then timed
``--csv-repeat`` times each (default 2, round robin, the baseline then main.py in each round;
medians reported):

* **main.py --files**: ``<this python> main.py --files '<tmpdir>/*.csv' --output /dev/null`` as a
  subprocess (interpreter start-up included). A preflight on 3 small files first checks that
  main.py accepts these options and writes every row in ``date`` order; if not, that row is
  skipped with the reason and ``csv_rows_per_s`` is null. When main.py prints its report
  (``merged N``), N must be the number of rows written.
* **csv.DictReader + heapq.merge**: the same files read by ``csv.DictReader``, merged by
  ``heapq.merge(key=lambda r: r["date"])`` and written by ``csv.DictWriter`` to /dev/null, in
  this process.

``--profile`` also runs the threaded multiplexer once more under cProfile (the merge thread
only) and prints where its time goes, above the verdict.

Output (progress goes to stderr): a table headed by the load average, since other work on the
machine moves the rates a lot: each row's median rate, every run's rate under it, and under each
ratio the ratio of each round's pair of runs (neighbours in time see about the same machine; on
a noisy VM their median is steadier than best / best, and it is the ratio shown), then, as the
very last line, one JSON object with the keys ``records_per_s`` ((a)'s median rate),
``vs_single_process`` ((a) / (b)), ``core_vs_heapq_merge`` (chronopipe core / heapq.merge over
lists), both medians of same-round ratios, ``csv_rows_per_s`` (main.py's median rate, or null)
and ``csv_baseline_rows_per_s`` (its median rate, or null with ``--no-csv``). ``--check`` exits with status 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import functools
import heapq
import io
import operator
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import chronopipe as cp
from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
CHANNEL_MAXSIZE = 10_000  # input channels of (a), output channels of (a) and of the threaded multiplexer
TIMEOUT = 300.0  # a run that takes longer than this is a hang: fail loudly instead of waiting forever
KEY = operator.itemgetter("timestamp")

CSV_HEADER = ["date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio", "Occupancy"]
CSV_START = datetime(2015, 2, 4, 17, 51)
PREFLIGHT_FILES = 3
PREFLIGHT_ROWS = 200

TARGETS = {  # name: (bound, "min" or "max")
    "vs_single_process": (1.0, "min"),
    "core_vs_heapq_merge": (0.9, "min"),
}
verdict = functools.partial(target_verdict, TARGETS)


# rows with a ratio (the median of same-round ratios, each round's printed under it):
# row -> (numerator row, denominator row, label, target key or None)
PAIRED = {
    "generators": ("processes", "generators", "(a)/(b)", "vs_single_process"),
    "processes_out": ("processes_out", "generators", "vs (b)", None),
    "core": ("core", "heapq_lists", "core/heapq", "core_vs_heapq_merge"),
    "mux_threads": ("mux_threads", "heapq_lists", "mux/heapq", None),
    "main_py": ("main_py", "csv_baseline", "main.py/stdlib", None),
}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the data ------------------------------------------------------------------------------
def make_stream(s: int, streams: int, per_stream: int) -> Iterator[dict[str, Any]]:
    """Stream ``s``: timestamps s, s + streams, s + 2 * streams, ... (sorted), lazily."""
    return ({"timestamp": t, "value": t * 0.5} for t in range(s, s + streams * per_stream, streams))


def consume(records: Iterable[dict[str, Any]], name: str, start: int = 0) -> int:
    """The consumers' work: check that the merge gives t = start, start + 1, ... and count."""
    i = start
    for r in records:
        if r["timestamp"] != i:
            raise RuntimeError(f"{name}: record {i} of the merge has timestamp {r['timestamp']!r}, expected {i}")
        i += 1
    return i


def consume_channel(out: cp.Channel, name: str) -> int:
    """Drain a chronopipe output channel batch by batch, doing the same work as ``consume``."""
    n = 0
    while True:
        batch = out.get_batch(TIMEOUT)
        end = batch[-1] is cp.END
        if end:
            batch.pop()
        n = consume(batch, name, n)
        if end:
            return n




def check_report(name: str, report: cp.MergeReport, expected: int) -> None:
    if report.emitted != expected or report.late:
        raise RuntimeError(f"{name}: merge report says {report.emitted} emitted, {report.late} late; "
                           f"expected {expected} emitted, 0 late")


# -- (a) chronopipe, one producer process per stream ----------------------------------------
def run_chronopipe_processes(streams: int, per_stream: int, *, output_thread: bool = False) -> Run:
    """(a): the merge iterated in this thread, or with ``output_thread`` run() on its own thread
    writing to an output channel that this thread drains (the extra hand-over costs a GIL switch)."""
    n = streams * per_stream
    name = "chronopipe, producer processes" + (", output channel" if output_thread else "")
    try:
        t0 = time.perf_counter()
        mux = cp.SortedQueueMultiplexer(sort_key="timestamp", sort_direction="min", max_size=CHANNEL_MAXSIZE,
                                        channel_mode="process", name="bench-merge")
        inputs = [mux.input_queue() for _ in range(streams)]
        if output_thread:
            out = mux.output_queue(cp.Channel(mode="thread", maxsize=CHANNEL_MAXSIZE, name="bench-merge-out"))
        producers = [
            cp.Actor(f"producer-{s}", source=lambda s=s: make_stream(s, streams, per_stream), outputs=ch,
                     mode="process").start()
            for s, ch in enumerate(inputs)
        ]
        count = consume_channel(out, name) if output_thread and mux.run() else consume(mux, name)
        elapsed = time.perf_counter() - t0
        for producer in producers:
            producer.join(TIMEOUT)
        report = mux.join(TIMEOUT)
    finally:
        cp.Runtime().shutdown()
    check_count(name, count, n)
    check_report(name, report, n)
    return Run(n, elapsed)


# -- (b) heapq.merge over generators, one process ------------------------------------------
def run_heapq_generators(streams: int, per_stream: int) -> Run:
    n = streams * per_stream
    t0 = time.perf_counter()
    merged = heapq.merge(*(make_stream(s, streams, per_stream) for s in range(streams)), key=KEY)
    count = consume(merged, "heapq.merge, generators")
    elapsed = time.perf_counter() - t0
    check_count("heapq.merge, generators", count, n)
    return Run(n, elapsed)


# -- (c) merging in-memory lists ------------------------------------------------------------
def run_heapq_lists(lists: list[list[dict[str, Any]]]) -> Run:
    n = sum(map(len, lists))
    t0 = time.perf_counter()
    count = consume(heapq.merge(*lists, key=KEY), "heapq.merge, lists")
    elapsed = time.perf_counter() - t0
    check_count("heapq.merge, lists", count, n)
    return Run(n, elapsed)


class _ProfiledMerge(cp.SortedQueueMultiplexer):
    """The same multiplexer, with its merge loop (on its own thread) run under cProfile."""

    profile: cProfile.Profile | None = None

    def _merge(self) -> None:
        profile = self.profile = cProfile.Profile()
        profile.enable()
        try:
            super()._merge()
        finally:
            profile.disable()


def run_chronopipe_core(lists: list[list[dict[str, Any]]]) -> Run:
    n = sum(map(len, lists))
    t0 = time.perf_counter()
    count = consume(cp.merge_sorted(*lists, key="timestamp"), "chronopipe.merge_sorted, lists")
    elapsed = time.perf_counter() - t0
    check_count("chronopipe.merge_sorted, lists", count, n)
    return Run(n, elapsed)


def run_chronopipe_mux_threads(lists: list[list[dict[str, Any]]], *, profiled: bool = False) -> tuple[Run, Any]:
    """The multiplexer on pre-filled, closed thread channels: timed from run() to the drained output."""
    n = sum(map(len, lists))
    cls = _ProfiledMerge if profiled else cp.SortedQueueMultiplexer
    mux = cls(sort_key="timestamp", sort_direction="min", max_size=max(map(len, lists)), channel_mode="thread",
              name="bench-mux")
    try:
        for records in lists:
            ch = mux.input_queue()
            ch.put_many(records, timeout=10)
            ch.close()
        out = mux.output_queue(cp.Channel(mode="thread", maxsize=CHANNEL_MAXSIZE, name="bench-mux-out"))
        t0 = time.perf_counter()
        mux.run()
        count = consume_channel(out, "chronopipe mux, threads")
        elapsed = time.perf_counter() - t0
        report = mux.join(TIMEOUT)
    finally:
        cp.Runtime().shutdown()
    check_count("chronopipe mux, threads", count, n)
    check_report("chronopipe mux, threads", report, n)
    return Run(n, elapsed), getattr(mux, "profile", None)


# -- CSV files ------------------------------------------------------------------------------
def write_csv_files(directory: Path, files: int, rows: int) -> list[Path]:
    """``files`` sorted CSV files; file f holds the minutes f, f + files, ... after CSV_START.

    Written line by line from precomputed pieces (no quoting is needed), so that 3 x 1M rows
    take seconds, not half a minute; the values repeat every 600 minutes.
    """
    first = CSV_START.hour * 60 + CSV_START.minute  # minutes into the first day
    days = [(CSV_START.date() + timedelta(days=d)).isoformat() for d in range((first + files * rows) // 1440 + 1)]
    clock = [f"{h:02d}:{m:02d}:00" for h in range(24) for m in range(60)]
    values = [
        f"{20 + i % 70 * 0.05:.3f},{25 + i % 113 * 0.1:.3f},{i:.1f},{400 + i % 300 * 1.5:.1f},"
        f"{0.004 + i % 97 * 1e-5:.8f},{i // 60 % 2}"
        for i in range(600)
    ]
    paths = []
    for f in range(files):
        path = directory / f"sensor{f}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            handle.write(",".join(CSV_HEADER) + "\n")
            handle.writelines(
                f"{days[(first + m) // 1440]} {clock[(first + m) % 1440]},{values[m % 600]}\n"
                for m in range(f, files * rows, files)
            )
        paths.append(path)
    return paths


def run_csv_baseline(paths: list[Path], expected: int) -> Run:
    t0 = time.perf_counter()
    handles = [path.open(newline="", encoding="utf-8") for path in paths]
    try:
        readers = [csv.DictReader(handle) for handle in handles]
        with open(os.devnull, "w", newline="", encoding="utf-8") as sink:
            writer = csv.DictWriter(sink, fieldnames=CSV_HEADER)
            writer.writeheader()
            count = 0
            for row in heapq.merge(*readers, key=lambda r: r["date"]):
                writer.writerow(row)
                count += 1
    finally:
        for handle in handles:
            handle.close()
    elapsed = time.perf_counter() - t0
    check_count("csv.DictReader + heapq.merge", count, expected)
    return Run(expected, elapsed)


def main_py_command(directory: Path, output: str) -> list[str]:
    return [sys.executable, str(MAIN), "--files", str(directory / "*.csv"), "--output", output]


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no output)"


def preflight_main_py(directory: Path) -> str | None:
    """None if main.py merges small files correctly with --files/--output, else why not."""
    if not MAIN.is_file():
        return f"{MAIN} does not exist"
    small = directory / "preflight"
    small.mkdir()
    paths = write_csv_files(small, PREFLIGHT_FILES, PREFLIGHT_ROWS)
    expected = []
    for path in paths:
        with path.open(newline="", encoding="utf-8") as handle:
            expected += [row["date"] for row in csv.DictReader(handle)]
    expected.sort()
    merged = directory / "preflight-merged.csv"
    command = main_py_command(small, str(merged))
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "main.py took over 60 s on the 600-row preflight"
    if done.returncode != 0:
        return f"main.py --files/--output not supported or failing (exit {done.returncode}): {_tail(done.stderr)}"
    if not merged.is_file():
        return f"main.py exited 0 but wrote no {merged.name} (does it honour --output?)"
    with merged.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if rows and "date" in rows[0]:  # a header: read the date column
        col = rows[0].index("date")
        dates = [row[col] for row in rows[1:] if row]
    else:
        dates = [row[0] for row in rows if row]
    if len(dates) != len(expected):
        return f"main.py wrote {len(dates)} rows for {len(expected)} input rows in the preflight"
    if dates != expected:
        bad = next(i for i, (got, want) in enumerate(zip(dates, expected, strict=True)) if got != want)
        return f"main.py's output is not in date order: row {bad} is {dates[bad]!r}, expected {expected[bad]!r}"
    return None


def run_main_py(directory: Path, expected: int) -> Run:
    t0 = time.perf_counter()
    done = subprocess.run(main_py_command(directory, os.devnull), cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"main.py --files failed (exit {done.returncode}): {_tail(done.stderr)}")
    merged = re.search(r"^merged\s+([\d,]+)\s*$", done.stdout, re.MULTILINE)  # its report, when it prints one
    if merged and int(merged.group(1).replace(",", "")) != expected:
        raise RuntimeError(f"main.py --files merged {merged.group(1)} rows, expected {expected:,}")
    return Run(expected, elapsed)


# -- report ---------------------------------------------------------------------------------


def round_robin(contenders: dict[str, tuple[str, Callable[[], Run]]], repeat: int) -> dict[str, list[Run]]:
    """Every contender ``repeat`` times, in turns (in the dict's order), so a noisy moment does not
    hit one only; run i of every contender comes from round i, for ``paired_ratio``."""
    runs: dict[str, list[Run]] = {key: [] for key in contenders}
    for rep in range(repeat):
        for key, (label, run) in contenders.items():
            progress(f"round {rep + 1}/{repeat}: {label}...")
            runs[key].append(run())
    return runs


def print_profile(profile: cProfile.Profile, records: int) -> None:
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    total = stats.total_tt  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(12)
    print(f"cProfile of the merge thread (one extra threaded multiplexer run, {records:,} records; "
          f"{total:.3f} s profiled = "
          f"{total / records * 1e9:,.0f} ns/record under the profiler, which inflates cheap calls):")
    print("\n".join(line for line in text.getvalue().splitlines()[3:] if line.strip()))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=8, help="sorted input streams (default 8)")
    parser.add_argument("--per-stream", type=int, default=125_000, help="records per stream (default 125,000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of merge contenders, medians kept (default 5)")
    parser.add_argument("--csv-files", type=int, default=3, help="CSV files to merge (default 3)")
    parser.add_argument("--csv-rows", type=int, default=1_000_000, help="rows per CSV file (default 1,000,000)")
    parser.add_argument("--csv-repeat", type=int, default=2, help="rounds of CSV contenders (default 2)")
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV part (csv_* are null)")
    parser.add_argument("--tmpdir", type=Path, default=None, help="parent of the temporary CSV directory")
    parser.add_argument("--profile", action="store_true", help="also profile one threaded multiplexer run (stderr)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    csv_repeat = args.csv_repeat
    if min(args.streams, args.per_stream, args.repeat, args.csv_files, args.csv_rows, csv_repeat) < 1:
        parser.error("--streams, --per-stream, --repeat, --csv-files, --csv-rows and --csv-repeat must be >= 1")
    streams, per_stream = args.streams, args.per_stream
    n = streams * per_stream

    load_before = os.getloadavg()[0]
    labels = {
        "processes": f"(a) chronopipe, {streams} producer procs",
        "processes_out": "(a) same, run() + output channel",
        "generators": "(b) heapq.merge, generators, 1 proc",
        "heapq_lists": "(c) heapq.merge, in-memory lists",
        "core": "(c) chronopipe.merge_sorted, lists",
        "mux_threads": "(c) SortedQueueMultiplexer, threads",
        "main_py": f"main.py --files, {args.csv_files} CSV files",
        "csv_baseline": "DictReader+heapq.merge+DictWriter",
    }

    runs = round_robin(  # in each round (a) and (b) back to back, as core and heapq.merge below
        {
            "processes_out": (labels["processes_out"],
                              lambda: run_chronopipe_processes(streams, per_stream, output_thread=True)),
            "processes": (labels["processes"], lambda: run_chronopipe_processes(streams, per_stream)),
            "generators": (labels["generators"], lambda: run_heapq_generators(streams, per_stream)),
        },
        args.repeat,
    )
    progress(f"building {streams} lists of {per_stream:,} records (not timed)...")
    lists = [list(make_stream(s, streams, per_stream)) for s in range(streams)]
    runs |= round_robin(
        {
            "mux_threads": (labels["mux_threads"], lambda: run_chronopipe_mux_threads(lists)[0]),
            "heapq_lists": (labels["heapq_lists"], lambda: run_heapq_lists(lists)),
            "core": (labels["core"], lambda: run_chronopipe_core(lists)),
        },
        args.repeat,
    )
    profile = None
    if args.profile:
        progress("threaded multiplexer under cProfile...")
        profile = run_chronopipe_mux_threads(lists, profiled=True)[1]
    lists.clear()  # free the records before the CSV part

    csv_note = "skipped (--no-csv)"
    csv_total = args.csv_files * args.csv_rows
    if not args.no_csv:
        with tempfile.TemporaryDirectory(prefix="bench_merge_", dir=args.tmpdir) as tmp:
            directory = Path(tmp)
            progress("main.py preflight on small CSV files...")
            skip = preflight_main_py(directory)
            data = directory / "data"
            data.mkdir()
            progress(f"writing {args.csv_files} CSV files of {args.csv_rows:,} rows under {data} (not timed)...")
            t0 = time.perf_counter()
            paths = write_csv_files(data, args.csv_files, args.csv_rows)
            size_mb = sum(p.stat().st_size for p in paths) / 1e6
            csv_note = f"{size_mb:,.1f} MB of CSV written in {time.perf_counter() - t0:.1f} s (not timed)"
            csv_contenders = {"csv_baseline": (labels["csv_baseline"], lambda: run_csv_baseline(paths, csv_total))}
            if skip is None:
                csv_contenders["main_py"] = (labels["main_py"], lambda: run_main_py(data, csv_total))
            else:
                progress(f"skipping main.py --files: {skip}")
                csv_note += f"; main.py SKIPPED: {skip}"
            try:
                runs |= round_robin(csv_contenders, csv_repeat)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # keep the merge results
                progress(f"CSV part failed: {exc}")
                csv_note += f"; FAILED: {exc}"

    rate = {key: median_rate(r) for key, r in runs.items() if r}
    paired = {row: paired_ratio(runs[num], runs[den]) for row, (num, den, _, _) in PAIRED.items()
              if runs.get(num) and runs.get(den)}
    summary = {
        "records_per_s": round(rate["processes"]),
        "vs_single_process": round(paired["generators"][0], 2),
        "core_vs_heapq_merge": round(paired["core"][0], 2),
        "csv_rows_per_s": round(rate["main_py"]) if "main_py" in rate else None,
        "csv_baseline_rows_per_s": round(rate["csv_baseline"]) if "csv_baseline" in rate else None,
    }

    print(
        f"chronopipe {cp.__version__} merge benchmark: {streams} sorted streams x {per_stream:,} records "
        f"= {n:,}, {args.repeat} rounds ({csv_repeat} for CSV); rates are medians of the runs, ratios medians "
        f"of same-round ratios; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
        "(other work on the machine makes the rates noisy)"
    )
    print()
    print(f"{'contender':<38} {'records':>10} {'median s':>8} {'records/s':>11} {'ratio (median)':>26}  target")
    print("-" * 110)
    keys = ["processes", "generators", "processes_out", "heapq_lists", "core", "mux_threads"]
    if not args.no_csv:
        keys += ["csv_baseline", "main_py"]
    for key in keys:
        if key not in rate:
            print(f"{labels[key]:<38} {'-':>10} {'-':>8} {'-':>11} {'':>26}  skipped")
            continue
        records = runs[key][0].records
        ratio = target = ""
        if key in paired:  # same-round ratios: both runs saw about the same machine
            label, target_key = PAIRED[key][2:]
            ratio = f"{label} = {paired[key][0]:.2f}x"
            target = verdict(target_key, summary[target_key]) if target_key else "(info)"
        print(f"{labels[key]:<38} {records:>10,} {records / rate[key]:>8.3f} {rate[key]:>11,.0f} {ratio:>26}  "
              f"{target}".rstrip())
        print(f"{'':<38} runs: {', '.join(f'{r.rate:,.0f}' for r in runs[key])} /s")
        if key in paired:
            print(f"{'':<38} {label} per round: {rounds_text(paired[key][1])} (median {paired[key][0]:.2f})")
    print("-" * 110)
    print(f"CSV: {csv_note}")
    print()
    if profile is not None:
        print_profile(profile, n)
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
