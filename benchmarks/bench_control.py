"""Hand-run benchmark of the control plane: GET /stats latency, and what serving it costs a pipeline.

Run it (about a minute on 2 cores; it is not a pytest test)::

    venv/bin/python benchmarks/bench_control.py [--records N] [--repeat N] [--hz HZ] [--check]

What is measured
----------------
The pipeline is bench_pipeline.py's: a source -> map -> sink chain of small dict records, one
process per stage, through chronopipe process channels, at full speed (it keeps both cores busy).
Each round runs it four times, back to back, each contender first in one round of four (the
first run after a pause was often the fastest):

* **off**: no control plane.
* **chronopipe control**: ``Pipeline(..., control="127.0.0.1:0")`` (aiohttp, on its own thread of
  the feeding process), while a poller process GETs ``/stats`` ``--hz`` times a second, a new
  connection each time (as ``curl`` or ``chronopipe status`` does; ``--keep-alive`` reuses one, as
  a dashboard does), and times each answer.
* **stdlib http.server**: the plain-Python baseline: ``http.server.ThreadingHTTPServer`` on a
  thread of the feeding process, answering the same actor rows and pipeline counts, polled the
  same way, with none of the control plane's checks (Host, Origin, token, scrubbing).
* **floor**: the pipeline without a control plane while the poller GETs a static JSON document
  from a stdlib server in a process of its own (no GIL shared with the feed, nothing computed):
  the best answer time this machine gives while the pipeline keeps both cores busy.

Figures: ``stats_p99_ms``, the 99th percentile of every ``/stats`` answer time the poller saw
during the chronopipe control runs (all rounds pooled); ``throughput_cost``, 1 - the median over
rounds of (records/s with the control plane) / (records/s without it) in the same round: 0.004
means the pipeline ran 0.4% slower while served and polled. The baseline's and the floor's
figures are printed beside them. Targets (issue 20): ``stats_p99_ms`` < 5, ``throughput_cost`` < 0.01.

The last line printed is one JSON object: ``{"stats_p99_ms", "throughput_cost", "records_per_s",
"stats_p50_ms", "stats_samples", "baseline_p99_ms", "baseline_cost", "floor_p99_ms", "hz", "keep_alive"}``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

import chronopipe as cp
from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict
from bench_pipeline import add_field, make_records
from chronopipe.control import ActorsTarget
from chronopipe.graph.control import counts_of

TARGETS = {"stats_p99_ms": (5.0, "max"), "throughput_cost": (0.01, "max")}
verdict = functools.partial(target_verdict, TARGETS)
ROUND_ORDER = ("off", "control", "baseline", "floor")

# The poller: its own interpreter, so its CPU is not this process's GIL. It GETs URL every 1/HZ s
# (a new connection each time), until its stdin closes; then prints the answer times (ms) as JSON.
POLLER = r"""
import http.client, json, select, sys, time
host, port, hz, keep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "keep"
times, errors, period = [], 0, 1.0 / hz
conn = http.client.HTTPConnection(host, port, timeout=5)
next_at = time.monotonic()
while True:
    ready, _, _ = select.select([sys.stdin], [], [], max(0.0, next_at - time.monotonic()))
    if ready:
        break
    next_at += period
    t0 = time.perf_counter()
    try:
        if not keep:
            conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/stats")
        response = conn.getresponse()
        body = response.read()
        if not keep:
            conn.close()
        if response.status != 200 or not body.startswith(b"{"):
            errors += 1
            continue
    except OSError:
        errors += 1
        continue
    times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"times": times, "errors": errors, "cpu": time.process_time()}), flush=True)
"""


class Poller:
    """A poller process GETting /stats from ``host:port`` ``hz`` times a second."""

    def __init__(self, host: str, port: int, hz: float, keep_alive: bool) -> None:
        how = "keep" if keep_alive else "new"
        self.proc = subprocess.Popen([sys.executable, "-c", POLLER, host, str(port), str(hz), how],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    cpu = 0.0  # CPU seconds the poller used, once finished

    def finish(self) -> list[float]:
        out, _ = self.proc.communicate(input=b"", timeout=30)
        result = json.loads(out)
        if result["errors"]:
            raise RuntimeError(f"the poller got {result['errors']} failed /stats answers")
        self.cpu = result["cpu"]
        return result["times"]


# The floor: a stdlib server in a process of its own, answering a static document of about the size
# of a /stats answer; it prints its port, then serves until killed.
FLOOR = r"""
import http.server, json
body = json.dumps({"actors": [{"name": f"n{i}", "received": i, "emitted": i, "rss": 10 ** 7} for i in range(4)],
                   "padding": "x" * 1500}).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class FloorServer:
    """The floor's static server, in its own process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FLOOR], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    cpu = 0.0  # CPU seconds it used, once closed

    def close(self) -> None:
        times = psutil.Process(self.proc.pid).cpu_times()
        self.cpu = times.user + times.system
        self.proc.kill()
        self.proc.wait()


class StdlibServer:
    """The baseline: http.server answering GET /stats with the target's stats, on a thread."""

    def __init__(self, pipeline: cp.Pipeline) -> None:
        target = ActorsTarget(pipeline.name, lambda: getattr(pipeline._run, "actors", ()), kind="pipeline")

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps a connection open when asked to, as aiohttp does

            def do_GET(self) -> None:
                body = json.dumps({**target.stats(), **counts_of(pipeline.statistics())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class AddField(cp.Node):
    def process(self, item: dict[str, Any]) -> None:
        self.push(add_field(item))


class Check(cp.Node):
    def process(self, item: dict[str, Any]) -> None:
        if item["extra"] == 1:
            self.push(item)


class Tally(cp.Node):
    def begin(self) -> None:
        self.n = 0

    def process(self, item: Any) -> None:
        self.n += 1


def tree_cpu() -> float:
    """CPU seconds of this process and of its children that ended (and were waited for)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def run_pipeline(n: int, served: str, hz: float, keep_alive: bool, times: list[float], cpu: list[float],
                 served_cpu: list[float] | None = None) -> Run:
    """The 3-process pipeline on ``n`` records; ``served``: "off", "control", "baseline" or "floor".
    Appends the answer times of the poller to ``times`` and to ``cpu`` the CPU seconds of the run
    (this process and the pipeline's, the poller's own left out: it stands for a client elsewhere);
    under control, to ``served_cpu`` the CPU seconds of the control server's thread."""
    served_cpu = [] if served_cpu is None else served_cpu
    pollers: list[Poller] = []
    address = "127.0.0.1:0" if served == "control" else None
    pipeline = cp.Pipeline(AddField("add") | Check("check") | Tally("tally"), mode="processes", control=address)
    server: Any = None
    poller = None
    try:
        if served == "control":
            original_begin = pipeline._control.begin

            def begin(run: Any) -> None:  # the poller starts once the server listens
                nonlocal poller
                original_begin(run)
                poller = Poller(*pipeline.control.address, hz, keep_alive)
                pollers.append(poller)

            original_ended = pipeline._control.ended

            def ended(stats: Any) -> None:  # the poller stops before the server closes
                nonlocal poller
                if poller is not None:
                    times.extend(poller.finish())
                    poller = None
                thread = pipeline.control._thread  # the server's thread: its own CPU clock
                served_cpu.append(time.clock_gettime(time.pthread_getcpuclockid(thread.ident)))
                original_ended(stats)

            pipeline._control.begin = begin
            pipeline._control.ended = ended
        elif served in ("baseline", "floor"):
            server = StdlibServer(pipeline) if served == "baseline" else FloorServer()
            poller = Poller("127.0.0.1", server.port, hz, keep_alive)
            pollers.append(poller)
        cpu0 = tree_cpu()
        t0 = time.perf_counter()
        pipeline.consume(make_records(n))
        elapsed = time.perf_counter() - t0
        if poller is not None:
            times.extend(poller.finish())
            poller = None
    finally:
        if poller is not None:
            poller.proc.kill()
        if server is not None:
            server.close()
        cp.Runtime().shutdown()
    spent = tree_cpu() - cpu0 - sum(p.cpu for p in pollers)
    cpu.append(spent - (server.cpu if served == "floor" else 0.0))  # the floor's server is not the pipeline's
    check_count(f"pipeline ({served})", pipeline["tally"].n, n)
    return Run(n, elapsed)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000, help="records per run (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=8, help="rounds (default 8)")
    parser.add_argument("--hz", type=float, default=10.0, help="/stats requests a second while served (default 10)")
    parser.add_argument("--keep-alive", action="store_true", help="the poller reuses one connection")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.records < 1 or args.repeat < 1 or not 0 < args.hz <= 1000:
        parser.error("--records and --repeat must be >= 1, --hz in (0, 1000]")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    progress("warm-up (imports aiohttp once, as any first start does)...")
    run_pipeline(min(args.records, 100_000), "control", args.hz, args.keep_alive, [], [])
    labels = {"off": "pipeline, no control plane", "control": "pipeline + chronopipe control",
              "baseline": "pipeline + stdlib http.server", "floor": "floor: static server, own process"}
    contenders: dict[str, tuple[str, Callable[[list[float], list[float], list[float] | None], Run]]] = {
        key: (label, functools.partial(run_pipeline, args.records, key, args.hz, args.keep_alive))
        for key, label in labels.items()}
    runs: dict[str, list[Run]] = {key: [] for key in contenders}
    times: dict[str, list[float]] = {key: [] for key in contenders}
    cpus: dict[str, list[float]] = {key: [] for key in contenders}
    server_cpus: list[float] = []
    for rep in range(args.repeat):
        for key in ROUND_ORDER[rep % 4:] + ROUND_ORDER[:rep % 4]:  # each contender first in turn
            label, run = contenders[key]
            progress(f"round {rep + 1}/{args.repeat}: {label}...")
            runs[key].append(run(times[key], cpus[key], server_cpus if key == "control" else None))

    served = {key: paired_ratio(runs[key], runs["off"]) for key in ("control", "baseline")}
    # the server thread's CPU seconds / the whole run's (this process and the pipeline's), per round
    shares = [c / total for c, total in zip(server_cpus, cpus["control"], strict=True)]
    summary = {
        "stats_p99_ms": round(percentile(times["control"], 0.99), 3),
        "throughput_cost": round(1 - served["control"][0], 4),
        "records_per_s": round(median_rate(runs["off"])),
        "stats_p50_ms": round(statistics.median(times["control"]), 3),
        "stats_samples": len(times["control"]),
        "baseline_p99_ms": round(percentile(times["baseline"], 0.99), 3),
        "baseline_cost": round(1 - served["baseline"][0], 4),
        "floor_p99_ms": round(percentile(times["floor"], 0.99), 3),
        "server_cpu_share": round(statistics.median(shares), 5),
        "hz": args.hz,
        "keep_alive": args.keep_alive,
    }
    connection = "one kept-alive connection" if args.keep_alive else "a new connection each time"
    print(f"chronopipe {cp.__version__} control-plane benchmark: {args.records:,} records a run, {args.repeat} "
          f"rounds, /stats polled {args.hz:g} times a second ({connection}); {psutil.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print(f"{'contender':<32} {'records/s':>11} {'vs off':>8} {'/stats p50':>11} {'p99 ms':>8} {'answers':>8}")
    print("-" * 84)
    for key, (label, _) in contenders.items():
        rate = median_rate(runs[key])
        ratio = f"{served[key][0]:>8.3f}" if key in served else f"{'':>8}"
        lat = (f"{statistics.median(times[key]):>11.2f} {percentile(times[key], 0.99):>8.2f} {len(times[key]):>8}"
               if times[key] else "")
        print(f"{label:<32} {rate:>11,.0f} {ratio} {lat}".rstrip())
        print(f"{'':<32} runs: {', '.join(f'{r.rate:,.0f}' for r in runs[key])} records/s")
        if key in served:
            print(f"{'':<32} this/off per round: {rounds_text(served[key][1], 3)}")
    print("-" * 84)
    print(f"stats_p99_ms     {summary['stats_p99_ms']:>8.3f}  {verdict('stats_p99_ms', summary['stats_p99_ms'])}")
    print(f"throughput_cost  {summary['throughput_cost']:>8.4f}  "
          f"{verdict('throughput_cost', summary['throughput_cost'])}")
    print(f"server_cpu_share {summary['server_cpu_share']:>8.5f}  (the control server thread's CPU seconds / the "
          f"run's; per round: {rounds_text(shares, 5)})")
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
