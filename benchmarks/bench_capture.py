"""Hand-run benchmark of packet-capture merging and validation against mergecap, tshark and dpkt.

Run it (it is not a pytest test)::

    venv/bin/python benchmarks/bench_capture.py [--packets N] [--taps N] [--repeat N] [--keep DIR]

It first builds ``--taps`` (default 4) taps of ``--packets`` (default 1,000,000) packets each
with Recipe A of the shared captures' RECIPES.md (tcprewrite, editcap and mergecap amplify a
real capture; about 10 s), in a temporary directory that is deleted at the end (never
committed). Needs Debian's ``tshark tcpreplay`` and, for the dpkt row, ``pip install dpkt``.

Contenders, in the same run, ``--repeat`` rounds (default 2), round robin in the order below, so
the two sides of each ratio run back to back in every round (peak RSS of the whole process tree
sampled every 20 ms). No figure is a best run: each ratio (packets/s or peak RSS) is the median
over rounds of that round's ratio, each round's printed too; the seconds and packets/s shown are
medians of the runs; a row's peak RSS is the largest of its runs:

* read + merge: ``chronopipe merge TAPS`` (no output file) vs ``mergecap -w /dev/null TAPS``
  (target: chronopipe >= 0.35x mergecap's packets/s);
* validate: ``chronopipe validate TAPS`` with the default checks vs ``tshark -q -Y
  tcp.analysis.flags`` on the mergecap output (the same packets) vs a single-process dpkt loop
  decoding Ethernet/IP/TCP fields, run last in each round (targets: >= 1.5x tshark's packets/s,
  peak RSS <= 0.25x tshark's);
* memory as input grows: chronopipe validate's peak RSS on the taps vs on the same taps cut to a
  quarter of their packets (1M vs 4M packets by default; target: flat), run right after it;
* a hostile file: reading a 40 MB pcap whose snaplen and one record's caplen are both 0xFFFFFFF0
  (a length that lies, halfway through), in one process (targets: well under a second, peak RSS
  under 60 MB; reading was quadratic in such a file and its memory followed the file).

The last line printed is one JSON object:
``{"merge_vs_mergecap", "validate_vs_tshark", "rss_vs_tshark", "rss_4m_vs_1m", "hostile_40mb_s",
"hostile_40mb_rss_mb"}`` (the four ratios medians of same-round ratios, ``hostile_40mb_s`` the
median of its runs, ``hostile_40mb_rss_mb`` the largest peak of its runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from _common import paired_ratio, rounds_text

HOSTILE_MB = 40

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "benchmarks" / "data" / "echo-connections.pcap.gz"  # 82,582 real packets (zeek; see its README)
OFFSETS = {"A": (0, 0), "B": (0.0007, 0.000150), "C": (0.0013, 0.0023), "D": (0.0029, -0.250)}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"bench_capture: missing {', '.join(missing)}: apt-get install tshark tcpreplay")


def build_taps(directory: Path, taps: int, packets: int) -> list[Path]:
    """Recipe A: time-shifted, address-rewritten copies of a real capture, cut to ``packets``."""
    seed = directory / "seed.pcap"
    seed.write_bytes(subprocess.run(["zcat", str(SEED)], capture_output=True, check=True).stdout)
    copies = packets // 82_582 + 1
    out = []
    for t in range(taps):
        tap = "ABCDEFGH"[t]
        off, lat = OFFSETS.get(tap, (0.0005 * t, 0.0))
        parts = []
        for i in range(copies):
            rewritten, part = directory / f"tmp_{tap}{i}.pcap", directory / f"part_{tap}{i}.pcap"
            subprocess.run(["tcprewrite", f"--seed={ord(tap) * 100 + i}", "--fixcsum", "-i", seed, "-o", rewritten],
                           check=True, capture_output=True)
            subprocess.run(["editcap", "-F", "pcap", "-t", f"{i * 7 + off + lat:.6f}", rewritten, part], check=True,
                           capture_output=True)
            rewritten.unlink()
            parts.append(part)
        whole = directory / f"all_{tap}.pcap"
        subprocess.run(["mergecap", "-F", "pcap", "-a", "-w", whole, *parts], check=True)
        final = directory / f"tap{tap}.pcap"
        subprocess.run(["editcap", "-F", "pcap", "-r", whole, final, f"1-{packets}"], check=True)
        for p in [*parts, whole]:
            p.unlink()
        out.append(final)
    seed.unlink()
    return out


def measure(cmd: list[str | Path]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the process tree, stdout) of ``cmd``."""
    peak = 0
    t0 = time.perf_counter()
    proc = psutil.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_chunks: list[str] = []
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    out_chunks.append(proc.stdout.read() if proc.stdout else "")
    if proc.returncode not in (0, 1):  # validate exits 1 when a check fails; anything else is an error
        error = proc.stderr.read() if proc.stderr else ""
        sys.exit(f"bench_capture: {' '.join(map(str, cmd))} failed with status {proc.returncode}:\n{error[-2000:]}")
    return time.perf_counter() - t0, peak / 1e6, "".join(out_chunks)


def build_hostile(path: Path, megabytes: int = HOSTILE_MB) -> Path:
    """A pcap of 1,000-byte packets whose snaplen and middle record's caplen are 0xFFFFFFF0."""
    import struct

    packets = megabytes * 1_000_000 // 1016
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFFFFF0, 1))
        payload = bytes(range(256)) * 3 + bytes(232)
        for i in range(packets):
            incl = 0xFFFFFFF0 if i == packets // 2 else 1000
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000 * 1000, incl, 1000) + payload)
    return path


def read_loop(paths: list[Path]) -> None:
    """Read each capture as chronopipe's readers do, counting packets and damage reports."""
    from chronopipe.capture import read_batches

    damage: list[object] = []
    print(sum(len(batch) for path in paths for batch in read_batches(path, on_damage=damage.append)), len(damage))


def dpkt_loop(paths: list[Path]) -> None:
    import dpkt

    n = 0
    for path in paths:
        with open(path, "rb") as f:
            for _ts, buf in dpkt.pcap.Reader(f):
                eth = dpkt.ethernet.Ethernet(buf)
                ip = eth.data
                if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                    _ = (ip.src, ip.dst, ip.data.sport, ip.data.dport, ip.data.seq, ip.data.flags)
                n += 1
    print(n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000, help="packets per tap (default 1,000,000)")
    parser.add_argument("--taps", type=int, default=4, help="taps (default 4)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the contenders, medians kept (default 2)")
    parser.add_argument("--keep", type=Path, help="build the taps in this directory and keep them")
    args = parser.parse_args(argv)
    need("tshark", "mergecap", "editcap", "tcprewrite", "zcat")
    py = sys.executable
    cli = [py, "-m", "chronopipe.cli"]
    with tempfile.TemporaryDirectory(prefix="bench_capture_") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        taps = sorted(directory.glob("tap?.pcap"))[:args.taps]
        if len(taps) < args.taps:
            progress(f"building {args.taps} taps of {args.packets:,} packets (Recipe A)...")
            t0 = time.perf_counter()
            taps = build_taps(directory, args.taps, args.packets)
            progress(f"built in {time.perf_counter() - t0:.1f} s")
        n = args.packets * len(taps)
        merged = directory / "merged.pcap"
        subprocess.run(["mergecap", "-F", "pcap", "-w", merged, *taps], check=True)
        quarter = []  # the same taps cut to a quarter: the same processes on a quarter of the packets
        for tap in taps:
            cut = directory / f"quarter_{tap.name}"
            subprocess.run(["editcap", "-F", "pcap", "-r", tap, cut, f"1-{max(1, args.packets // 4)}"], check=True)
            quarter.append(cut)
        contenders = {
            "mergecap": ["mergecap", "-F", "pcap", "-w", "/dev/null", *taps],
            "chronopipe merge": [*cli, "merge", *taps],
            "tshark tcp.analysis": ["tshark", "-n", "-q", "-r", merged, "-Y", "tcp.analysis.flags"],
            "chronopipe validate": [*cli, "validate", *taps],
            "chronopipe validate, 1/4 of it": [*cli, "validate", *quarter],
            f"chronopipe read, hostile {HOSTILE_MB} MB": [py, __file__, "--read",
                                                          build_hostile(directory / "hostile.pcap")],
        }
        try:
            import dpkt  # noqa: F401

            contenders["dpkt decode loop, 1 proc"] = [py, __file__, "--dpkt", *taps]
        except ImportError:
            progress("dpkt not installed (pip install dpkt): its row is skipped")
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
        for r in range(args.repeat):
            for name, cmd in contenders.items():
                progress(f"round {r + 1}/{args.repeat}: {name}...")
                seconds, rss, _ = measure(cmd)
                runs[name].append((seconds, rss))
    hostile = f"chronopipe read, hostile {HOSTILE_MB} MB"
    packets = {k: (n // 4 if k.endswith("1/4 of it") else HOSTILE_MB * 1_000_000 // 1016 if k == hostile else n)
               for k in runs}
    seconds = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
    peak = {k: max(rss for _, rss in v) for k, v in runs.items()}
    print(f"chronopipe capture benchmark: {len(taps)} taps x {args.packets:,} packets, {args.repeat} rounds; "
          f"seconds and rates are medians of the runs, peak RSS the largest, ratios medians of same-round ratios; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'contender':<30} {'packets':>10} {'median s':>8} {'packets/s':>11} {'peak RSS MB':>12}")
    for k in runs:
        print(f"{k:<30} {packets[k]:>10,} {seconds[k]:>8.2f} {packets[k] / seconds[k]:>11,.0f} {peak[k]:>12.0f}")
        print(f"{'':<30} runs: {', '.join(f'{s:.2f} s' for s, _ in runs[k])}")

    def rates(k: str) -> list[float]:  # packets/s of each round's run
        return [packets[k] / s for s, _ in runs[k]]

    def peaks(k: str) -> list[float]:  # peak RSS of each round's run
        return [rss for _, rss in runs[k]]

    ratios = {  # figure -> (median, per round): run i of both sides came from round i
        "merge_vs_mergecap": paired_ratio(rates("chronopipe merge"), rates("mergecap")),
        "validate_vs_tshark": paired_ratio(rates("chronopipe validate"), rates("tshark tcp.analysis")),
        "rss_vs_tshark": paired_ratio(peaks("chronopipe validate"), peaks("tshark tcp.analysis")),
        "rss_4m_vs_1m": paired_ratio(peaks("chronopipe validate"), peaks("chronopipe validate, 1/4 of it")),
    }
    if "dpkt decode loop, 1 proc" in runs:
        ratios["validate / dpkt decode loop"] = paired_ratio(rates("chronopipe validate"),
                                                             rates("dpkt decode loop, 1 proc"))
    summary = {
        **{key: round(ratios[key][0], 3) for key in ("merge_vs_mergecap", "validate_vs_tshark", "rss_vs_tshark",
                                                     "rss_4m_vs_1m")},
        "hostile_40mb_s": round(seconds[hostile], 3),
        "hostile_40mb_rss_mb": round(peak[hostile], 1),
    }
    for key, (median, per_round) in ratios.items():
        print(f"{key:<30} per round: {rounds_text(per_round, 3)} (median {median:.3f})")
    targets = {"merge_vs_mergecap": ">= 0.35", "validate_vs_tshark": ">= 1.5", "rss_vs_tshark": "<= 0.25",
               "rss_4m_vs_1m": "flat (about 1)", "hostile_40mb_s": "< 1", "hostile_40mb_rss_mb": "< 60"}
    for key, target in targets.items():
        print(f"{key:<22} {summary[key]:>8}   target {target}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--dpkt":
        dpkt_loop([Path(p) for p in sys.argv[2:]])
    elif len(sys.argv) > 1 and sys.argv[1] == "--read":
        read_loop([Path(p) for p in sys.argv[2:]])
    else:
        sys.exit(main())
