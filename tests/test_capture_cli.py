"""chronopipe merge CAPTURE... -w out: the merged capture, next to mergecap's, and the report."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chronopipe.capture import read_frames

DATA = Path(__file__).parent / "data" / "captures"
HALVES = [DATA / "taps" / "ssh.client-side-half-duplex.pcap", DATA / "taps" / "ssh.server-side-half-duplex.pcap"]


def chronopipe(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronopipe.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def packets(path: Path) -> list[tuple[int, bytes]]:
    return [(f[0], f[6]) for f in read_frames(path)]


@pytest.mark.skipif(shutil.which("mergecap") is None, reason="mergecap is not installed (comes with tshark)")
def test_merging_two_taps_writes_what_mergecap_writes(tmp_path):
    ours, theirs = tmp_path / "ours.pcapng", tmp_path / "mergecap.pcapng"
    subprocess.run(["mergecap", "-w", theirs, *HALVES], check=True, timeout=60)
    result = chronopipe("merge", *HALVES, "-w", ours)
    assert result.returncode == 0, result.stderr
    assert packets(ours) == packets(theirs) and len(packets(ours)) == 1670


def test_each_tap_is_its_own_interface_in_the_pcapng_written(tmp_path):
    out = tmp_path / "merged.pcapng"
    chronopipe("merge", *HALVES, "-w", out)
    by_interface = {}
    for frame in read_frames(out):
        by_interface[frame[1]] = by_interface.get(frame[1], 0) + 1
    assert by_interface == {0: 838, 1: 832} or by_interface == {0: 832, 1: 838}


def test_the_report_lists_each_file_and_the_merged_count(tmp_path):
    result = chronopipe("merge", *HALVES)
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["ssh.client-side-half-duplex.pcap", "838"]
    assert lines[2].split()[:2] == ["ssh.server-side-half-duplex.pcap", "832"]
    assert lines[3].split()[:2] == ["merged", "1,670"]


def test_an_offset_moves_one_tap(tmp_path):
    out = tmp_path / "merged.pcap"
    chronopipe("merge", HALVES[0], "--offset", f"{HALVES[0].name}=-1.5", "-w", out)
    assert [ts for ts, _ in packets(out)] == [ts - 1_500_000_000 for ts, _ in packets(HALVES[0])]


def test_a_damaged_capture_is_reported_and_the_exit_status_says_so():
    result = chronopipe("merge", DATA / "truncated" / "truncated_dns_2.pcap", HALVES[0])
    assert result.returncode == 1
    assert "damage truncated_dns_2.pcap@240 (frame 2): cut short" in result.stdout


def test_an_offset_for_a_file_not_given_is_a_usage_error():
    result = chronopipe("merge", HALVES[0], "--offset", "other.pcap=1")
    assert result.returncode == 2 and "FILE=SECONDS" in result.stderr


def test_a_missing_capture_is_a_usage_error():
    result = chronopipe("merge", DATA / "nope.pcap")
    assert result.returncode == 2 and "no such file" in result.stderr
