"""Chaos run of issue 17's delivery guarantees: random worker processes SIGKILLed during a run.

Usage::

    venv/bin/python tests/scripts/chaos_run.py [--records N] [--runs R] [--seed S]
                                               [--every LO HI] [--deadline SECONDS]

The issue's figure is ``--records 10000000 --runs 20`` (kills every 0.5 to 2 s, the default).

Each run is a ``Pipeline(mode="processes", guarantee="replay")``::

    caller: range(N) -> parse (1 process) -> map (workers=2) -> sink (1 process, guarantee="none")

``parse`` turns an id into ``(id, value)``, ``map`` adds to the value, ``sink`` counts each id in
a ``bytearray`` of N counters (its attribute, which comes home from its process at the end, as
benchmarks/bench_delivery.py counts). The worker processes of ``parse`` and ``map`` write their
pid into the run's folder in ``begin()``; a killer thread of the run's process, every
``uniform(LO, HI)`` seconds, SIGKILLs one of them at random that is still alive (one of the run
process's children, never the run process itself, never the sink). The sink is not killed: its
counters are the measurement (and it runs under ``"none"``, so a damaged message from a killed
writer fails the run instead of going unnoticed).

After the run: ``lost`` = ids the sink never saw, ``duplicates`` = sightings beyond the first,
``kills`` = SIGKILLs that landed on a live worker, ``left_behind`` = processes of the run still
alive once ``consume()`` returned; ``duplicates`` is compared with
``statistics().duplicates_possible`` and with ``kills * LIMIT`` (the journal's batch: what a
worker takes from its inbox at once, graph/wiring.py's ``LIMIT``), and ``statistics().restarts``
with ``kills``.

Each run goes in a forked process of this script, watched: a run still going after
``--deadline`` seconds (default ``max(120, N / 25,000)``) is a hang. Its processes' Python stacks
(faulthandler on SIGUSR1, registered before the pipeline forks its workers) and what /proc says
of each (state, wchan, threads) go to stderr, then the run's processes are SIGKILLed by pid.

Output: one JSON line per run on stdout, then a final JSON line ``{"lost", "duplicates",
"kills", "runs", "hangs", "failures", ...}``. Exit status 0 when every run lost nothing, stayed
within the duplicates bound, did not hang and did not fail; 1 otherwise.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from chronopipe.graph import Node, Pipeline
from chronopipe.graph.wiring import LIMIT

__all__ = ["Map", "Parse", "Sink", "chaos_once", "run_watched", "stack_dump"]

#: Seconds between kills: uniform(*EVERY).
EVERY = (0.5, 2.0)


class Registered(Node):
    """A node whose every worker process writes its pid into ``folder`` in begin() (the killer's
    list of targets; a restarted worker registers its new pid)."""

    folder = ""

    def begin(self) -> None:
        Path(self.folder, f"{self.name}.{os.getpid()}").touch()


class Parse(Registered):
    def process(self, item: int) -> None:
        self.push((item, item * 0.5))


class Map(Registered):
    def process(self, record: tuple[int, float]) -> None:
        self.push((record[0], record[1] + 1.0))


class Sink(Node):
    """Counts each id's sightings (saturating at 255); the counters come home in ``seen``."""

    guarantee = "none"
    size = 0

    def begin(self) -> None:
        self.seen = bytearray(self.size)

    def process(self, record: tuple[int, float]) -> None:
        i = record[0]
        if self.seen[i] < 255:
            self.seen[i] += 1


class Killer(threading.Thread):
    """SIGKILLs a random live registered worker every uniform(lo, hi) seconds until stopped."""

    def __init__(self, folder: Path, rng: random.Random, every: tuple[float, float],
                 until: float | None = None, spare: Any = None) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.folder, self.rng, self.every, self.until, self.spare = folder, rng, every, until, spare
        self.stopped = threading.Event()
        self.kills: list[tuple[float, str, int]] = []  # (seconds since start, node, pid)
        self.killed: set[int] = set()  # never again: a process still exiting would count twice
        self.started_at = time.monotonic()

    def targets(self) -> list[tuple[str, int]]:
        live = {}
        for child in psutil.Process().children(recursive=False):
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    live[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        out = []
        for entry in os.listdir(self.folder):
            name, _, pid = entry.rpartition(".")
            if int(pid) in live and int(pid) != os.getpid() and int(pid) not in self.killed:
                out.append((name, int(pid)))
        return sorted(out)

    def run(self) -> None:
        while not self.stopped.wait(self.rng.uniform(*self.every)):
            if self.until is not None and time.monotonic() - self.started_at > self.until:
                return  # a run that stalls is then a plain hang, not a storm of restarts
            if self.spare is not None and self.spare():
                return
            targets = self.targets()
            if not targets:
                continue
            name, pid = self.rng.choice(targets)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.add(pid)
            self.kills.append((round(time.monotonic() - self.started_at, 3), name, pid))

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def chaos_once(records: int, seed: int, every: tuple[float, float] = EVERY, folder: str | None = None,
               kill_for: float | None = None, spare_end: bool = False) -> dict[str, Any]:
    """One run in this process: the pipeline over ``records`` ids with the killer on (for the first
    ``kill_for`` seconds of the run, None: all of it; with ``spare_end``, only until ``parse`` has
    received every record: a worker killed once its input ended is not restarted, by design so
    far); the figures."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="chaos-", dir=folder) as scratch:
        pids = Path(scratch, "pids")
        pids.mkdir()
        sink = Sink("sink", size=records)
        pipeline = Pipeline(Parse("parse", folder=str(pids)) | Map("map", workers=2, folder=str(pids)) | sink,
                            mode="processes", guarantee="replay", dead_letter=str(Path(scratch, "dl.jsonl")))
        # (a margin of 50 batches before the end: the killer's check and its kill are not atomic,
        # and parse may reach its end between them)
        near_end = max(0, records - 50 * LIMIT)
        spare = (lambda: (pipeline.statistics().nodes[0].received or 0) >= near_end) if spare_end else None
        killer = Killer(pids, rng, every, kill_for, spare)
        error = None
        started = time.perf_counter()
        killer.start()
        try:
            pipeline.consume(range(records))
        except Exception as exc:  # a failed run is a finding: reported, not raised
            error = f"{type(exc).__name__}: {exc}"
        finally:
            killer.stop()
        seconds = time.perf_counter() - started
        left_behind = [c.pid for c in psutil.Process().children(recursive=True) if _alive(c)]
        letters = Path(scratch, "dl.jsonl").read_text().count("\n") if Path(scratch, "dl.jsonl").exists() else 0
    seen = getattr(sink, "seen", None)
    stats = pipeline.statistics()
    out: dict[str, Any] = {"records": records, "seed": seed, "seconds": round(seconds, 2), "kills": len(killer.kills)}
    if seen is None or len(seen) != records:
        out.update(lost=None, duplicates=None)
    else:
        lost = seen.count(0)
        out.update(lost=lost, duplicates=sum(seen) - (records - lost))
        if lost:  # where: the first lost id of each run of lost ids, up to 10
            out["lost_from"] = [i for i in range(records) if not seen[i] and (i == 0 or seen[i - 1])][:10]
    out.update(restarts=stats.restarts, duplicates_possible=stats.duplicates_possible, bound=len(killer.kills) * LIMIT,
               dead_letters=letters, error=error, left_behind=left_behind, kills_at=killer.kills,
               restarts_by_node={n.name: n.restarts for n in stats.nodes if n.restarts})
    out["ok"] = (error is None and out["lost"] == 0 and letters == 0 and not left_behind
                 and out["duplicates"] <= out["bound"] and out["duplicates"] <= stats.duplicates_possible
                 and stats.restarts == len(killer.kills))
    return out


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- the watchdog --------------------------------------------------------------------------
def stack_dump(root: int, out: Any = None) -> None:
    """Python stacks (SIGUSR1 to faulthandler) and /proc's view of ``root`` and its descendants."""
    out = out or sys.stderr
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            state = next((line for line in status.splitlines() if line.startswith("State:")), "")
            threads = []
            for task in sorted(os.listdir(f"/proc/{proc.pid}/task"), key=int):
                base = f"/proc/{proc.pid}/task/{task}"
                comm = Path(base, "comm").read_text().strip()
                wchan = Path(base, "wchan").read_text().strip() if os.path.exists(f"{base}/wchan") else "?"
                syscall = Path(base, "syscall").read_text().split()[0] if os.access(f"{base}/syscall", os.R_OK) else "?"
                threads.append(f"{task}:{comm}:wchan={wchan}:syscall={syscall}")
            print(f"--- pid {proc.pid} ppid {proc.ppid()} {state} threads {', '.join(threads)}", file=out, flush=True)
            if proc.status() != psutil.STATUS_ZOMBIE:
                os.kill(proc.pid, signal.SIGUSR1)  # faulthandler prints its Python stacks
                time.sleep(0.2)
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError, StopIteration):
            continue


def run_watched(records: int, seed: int, every: tuple[float, float], deadline: float,
                kill_for: float | None = None, spare_end: bool = False) -> dict[str, Any]:
    """``chaos_once`` in a forked process watched for ``deadline`` seconds (then: a hang)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the run's process
        code = 1
        try:
            os.close(read)
            faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True, chain=False)
            result = chaos_once(records, seed, every, kill_for=kill_for, spare_end=spare_end)
            os.write(write, json.dumps(result).encode())
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write)
    started = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - started > deadline:
            print(f"chaos_run: run seed={seed} still going after {deadline:.0f} s: a hang; stacks follow",
                  file=sys.stderr, flush=True)
            stack_dump(pid)
            doomed = [pid]
            try:
                doomed += [p.pid for p in psutil.Process(pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
            for victim in doomed:  # this run's processes only, by pid
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.waitpid(pid, 0)
            os.close(read)
            return {"records": records, "seed": seed, "seconds": round(time.monotonic() - started, 2), "hang": True,
                    "ok": False, "lost": None, "duplicates": None, "kills": None}
        time.sleep(0.1)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    if not data:
        return {"records": records, "seed": seed, "hang": False, "ok": False, "lost": None, "duplicates": None,
                "kills": None, "error": f"the run's process ended with status {status} and no result"}
    result = json.loads(data)
    result["hang"] = False
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records per run (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs in a row (default 3)")
    parser.add_argument("--seed", type=int, default=17, help="the first run's seed; run k uses seed + k")
    parser.add_argument("--every", type=float, nargs=2, default=EVERY, metavar=("LO", "HI"),
                        help="seconds between kills: uniform(LO, HI) (default 0.5 2.0)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds before a run is a hang")
    parser.add_argument("--kill-for", type=float, default=None,
                        help="kill only during the first SECONDS of each run (default: all of it)")
    parser.add_argument("--spare-the-end", action="store_true",
                        help="stop killing once parse has received every record (a worker killed after its "
                             "input ended is not restarted: the run fails)")
    args = parser.parse_args(argv)
    if args.records < 1 or args.runs < 1 or not 0 < args.every[0] <= args.every[1]:
        parser.error("--records and --runs must be >= 1, and 0 < LO <= HI")
    deadline = args.deadline or max(120.0, args.records / 25_000)
    totals = {"lost": 0, "duplicates": 0, "kills": 0, "restarts": 0, "runs": 0, "hangs": 0, "failures": 0,
              "records": args.records, "seconds": 0.0}
    for k in range(args.runs):
        result = run_watched(args.records, args.seed + k, tuple(args.every), deadline, args.kill_for,
                             args.spare_the_end)
        result["run"] = k + 1
        print(json.dumps(result), flush=True)
        totals["runs"] += 1
        totals["hangs"] += bool(result.get("hang"))
        totals["failures"] += not result["ok"]
        totals["seconds"] = round(totals["seconds"] + (result.get("seconds") or 0), 2)
        for key in ("lost", "duplicates", "kills", "restarts"):
            totals[key] += result.get(key) or 0
    print(json.dumps(totals), flush=True)
    return 0 if totals["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
