"""Hand-run benchmark of the sources (issue 18): TCP lines in, followed-file lines in, and the
memory of a source flooded faster than its consumer reads.

Run it (about a minute on 2 cores; it is not a pytest test)::

    venv/bin/python benchmarks/bench_sources.py [--lines N] [--repeat N] [--flood-mb N] [--check]

What is measured
----------------
**TCP**: ``--lines`` (default 2,000,000) lines of 100 bytes (99 and a newline), sent over one
connection on 127.0.0.1 by a separate sender process (``socket.sendfile`` of a file holding
them: the sender is never the bottleneck). Contenders, back to back in each round, in turns:

* **chronopipe**: ``TCPServerSource(connections=1)`` hosted on a thread, into its channel;
  this thread counts the records of each batch (``get_batch``): the lines decoded to str,
  as a pipeline would get them;
* **nc | wc -l** (the floor a shell user has): ``nc -l`` into ``wc -l`` (``socat`` if there
  is no ``nc``); it counts newlines in C and makes no record at all;
* **plain Python**: ``accept()``, then ``recv_into`` a buffer and ``bytes.count(b"\\n")``:
  also no records.

Each count is checked (a contender that lost lines fails the run). ``tcp_lines_per_s`` is
chronopipe's median rate; ``tcp_vs_nc`` is the median over rounds of chronopipe's rate / nc's
in the same round (``_common.paired_ratio``). Target: ``tcp_lines_per_s`` >= 900,000. For
scale, the MB/s are printed next to Vector's published TCP-to-blackhole figure, 86 MiB/s
(its own machine, not this one: an anchor, not a contender).

**Followed file**: a file of ``--lines`` such lines, read by ``FollowSource`` hosted on a thread,
counted as above until the last line has come. Beside it, **plain Python**: ``for line in
open(path)``, counted (reads to the end and stops: it follows nothing). ``follow_lines_per_s``
is FollowSource's median rate.

**Flood**: a child process hosts ``TCPServerSource`` (a thread) and reads its channel slowly
(a pause of 1.5 µs per line: at most 67 MB/s, a tenth of what
the plain receiver takes) while a sender process pushes ``--flood-mb`` (default 1,024) MB into
it as fast as the source lets it. ``rss_mb_under_flood`` is the peak resident memory of the
child (psutil, sampled every 20 ms), in MB. Target: < 100. Every line must arrive.

The last line printed is one JSON object:
``{"tcp_lines_per_s", "tcp_vs_nc", "follow_lines_per_s", "rss_mb_under_flood", ...}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict
from chronopipe.channels import END
from chronopipe.sources import FollowSource, TCPServerSource

TARGETS = {"tcp_lines_per_s": (900_000.0, "min"), "rss_mb_under_flood": (100.0, "max")}
LINE = b"x" * 99 + b"\n"
VECTOR_MIB_S = 86.0

SENDER = (
    "import socket, sys, time\n"
    "path, port = sys.argv[1], int(sys.argv[2])\n"
    "deadline = time.monotonic() + 10\n"
    "while True:\n"
    "    try:\n"
    "        s = socket.create_connection(('127.0.0.1', port)); break\n"
    "    except ConnectionRefusedError:\n"
    "        if time.monotonic() > deadline: raise\n"
    "        time.sleep(0.005)\n"
    "with s, open(path, 'rb') as f:\n"
    "    for _ in range(int(sys.argv[3])):\n"
    "        f.seek(0); s.sendfile(f)\n"
)


def lines_file(folder: Path, lines: int) -> Path:
    path = folder / "lines.txt"
    with open(path, "wb") as f:
        block = LINE * 10_000
        for _ in range(lines // 10_000):
            f.write(block)
        f.write(LINE * (lines % 10_000))
    return path


def send(path: Path, port: int, times: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SENDER, str(path), str(port), str(times)])


def count_channel(queue) -> int:
    n = 0
    while True:
        batch = queue.get_batch(30)
        if batch[-1] is END:
            return n + len(batch) - 1
        n += len(batch)


def run_chronopipe(path: Path, lines: int) -> Run:
    started = time.perf_counter()
    source = TCPServerSource(connections=1).start()
    sender = send(path, source.port)
    n = count_channel(source.queue)
    seconds = time.perf_counter() - started
    source.join(10)
    sender.wait(10)
    check_count("chronopipe", n, lines)
    return Run(n, seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_nc(path: Path, lines: int) -> Run:
    port = free_port()
    if shutil.which("nc"):
        listen = f"nc -l 127.0.0.1 {port}"
    else:
        listen = f"socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDOUT"
    started = time.perf_counter()
    shell = subprocess.Popen(f"{listen} | wc -l", shell=True, stdout=subprocess.PIPE)
    sender = send(path, port)
    out, _ = shell.communicate(timeout=120)
    seconds = time.perf_counter() - started
    sender.wait(10)
    check_count("nc | wc -l", int(out), lines)
    return Run(lines, seconds)


def run_plain(path: Path, lines: int) -> Run:
    started = time.perf_counter()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        sender = send(path, listener.getsockname()[1])
        conn, _ = listener.accept()
        buf, n = bytearray(256 * 1024), 0
        view = memoryview(buf)
        with conn:
            while got := conn.recv_into(buf):
                n += view[:got].tobytes().count(b"\n")
    seconds = time.perf_counter() - started
    sender.wait(10)
    check_count("plain Python", n, lines)
    return Run(n, seconds)


def run_follow(path: Path, lines: int) -> Run:
    started = time.perf_counter()
    source = FollowSource(path).start()
    n = 0
    while n < lines:
        batch = source.queue.get_batch(30)
        n += len(batch)
    seconds = time.perf_counter() - started
    source.stop()
    source.join(10)
    check_count("FollowSource", n, lines)
    return Run(n, seconds)


def run_readlines(path: Path, lines: int) -> Run:
    started = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        n = sum(1 for _ in f)
    check_count("for line in open()", n, lines)
    return Run(n, time.perf_counter() - started)


FLOODED = (
    "import sys, time\n"
    "from chronopipe.channels import END\n"
    "from chronopipe.sources import TCPServerSource\n"
    "source = TCPServerSource(connections=1).start()\n"
    "print(source.port, flush=True)\n"
    "n = 0\n"
    "while True:\n"
    "    batch = source.queue.get_batch(30)\n"
    "    time.sleep(len(batch) * 1.5e-6)\n"  # a consumer of 0.67M lines/s, 67 MB/s
    "    if batch[-1] is END:\n"
    "        n += len(batch) - 1; break\n"
    "    n += len(batch)\n"
    "source.join(10)\n"
    "print(n, flush=True)\n"
)


def flood(path: Path, lines: int, times: int) -> tuple[float, float]:
    """(peak RSS in MB of the flooded process, seconds): ``times`` sends of the file."""
    child = subprocess.Popen([sys.executable, "-c", FLOODED], stdout=subprocess.PIPE)
    port = int(child.stdout.readline())
    started = time.perf_counter()
    sender = send(path, port, times)
    peak, watched = 0, psutil.Process(child.pid)
    while child.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children()))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    got = int(child.stdout.read())
    sender.wait(10)
    check_count("flooded TCPServerSource", got, lines * times)
    return peak / 1e6, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000, help="lines per run (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--flood-mb", type=int, default=1024, help="MB pushed in the flood (default 1,024)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.lines < 10_000 or args.repeat < 1 or args.flood_mb < 1:
        parser.error("--lines must be >= 10,000, --repeat and --flood-mb >= 1")
    lines = args.lines

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-sources-") as scratch:
        path = lines_file(Path(scratch), lines)
        contenders = {"chronopipe": run_chronopipe, "nc": run_nc, "plain": run_plain,
                      "follow": run_follow, "readlines": run_readlines}
        runs: dict[str, list[Run]] = {key: [] for key in contenders}
        order = list(contenders)
        for rep in range(args.repeat):
            for key in order if rep % 2 == 0 else order[::-1]:
                progress(f"round {rep + 1}/{args.repeat}: {key}...")
                runs[key].append(contenders[key](path, lines))
        times = max(1, args.flood_mb * 1_000_000 // (lines * len(LINE)))
        progress(f"flood: {times * lines * len(LINE) / 1e6:,.0f} MB into a slow consumer...")
        rss_mb, flood_seconds = flood(path, lines, times)

    nc_ratio, nc_rounds = paired_ratio(runs["chronopipe"], runs["nc"])
    plain_ratio, plain_rounds = paired_ratio(runs["chronopipe"], runs["plain"])
    follow_ratio, follow_rounds = paired_ratio(runs["follow"], runs["readlines"])
    tcp_rate, follow_rate = median_rate(runs["chronopipe"]), median_rate(runs["follow"])
    mib_s = tcp_rate * len(LINE) / 2**20
    print(f"\nTCP, {lines:,} lines of {len(LINE)} bytes, {args.repeat} rounds (median rates)")
    for key, label in (("chronopipe", "TCPServerSource -> channel"), ("nc", "nc -l | wc -l"),
                       ("plain", "plain Python recv + count")):
        rate = median_rate(runs[key])
        print(f"  {label:<28} {rate:>12,.0f} lines/s {rate * len(LINE) / 2**20:>8.1f} MiB/s")
    print(f"  chronopipe / nc:           {nc_ratio:.2f}  (rounds: {rounds_text(nc_rounds)})")
    print(f"  chronopipe / plain Python: {plain_ratio:.2f}  (rounds: {rounds_text(plain_rounds)})")
    print(f"  Vector's published TCP -> blackhole: {VECTOR_MIB_S:.0f} MiB/s (its machine); "
          f"chronopipe here: {mib_s:.1f} MiB/s")
    print(f"\nFollowed file: FollowSource {follow_rate:,.0f} lines/s, for line in open(): "
          f"{median_rate(runs['readlines']):,.0f} lines/s, ratio {follow_ratio:.2f} "
          f"(rounds: {rounds_text(follow_rounds)})")
    print(f"\nFlood: {times * lines * len(LINE) / 1e6:,.0f} MB in {flood_seconds:.1f} s into a slow consumer, "
          f"peak RSS {rss_mb:.1f} MB")
    summary = {
        "tcp_lines_per_s": round(tcp_rate),
        "tcp_vs_nc": round(nc_ratio, 3),
        "follow_lines_per_s": round(follow_rate),
        "rss_mb_under_flood": round(rss_mb, 1),
        "tcp_mib_per_s": round(mib_s, 1),
        "tcp_vs_plain_python": round(plain_ratio, 3),
        "follow_vs_readlines": round(follow_ratio, 3),
        "lines": lines,
        "rounds": args.repeat,
    }
    print()
    for key in TARGETS:
        print(f"{key}: {summary[key]:,} {target_verdict(TARGETS, key, summary[key])}")
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
