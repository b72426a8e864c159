"""chronopipe merge FILE -w OUT writes what mergecap -w writes: the same frames in the same order.

Compared as tshark shows both outputs (``frame.time_epoch``, ``frame.len``), on every capture of
the project's copy of the shared captures (tests/data/captures). One case per file, so they run
in parallel.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "captures"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix != ".md")

# Where we knowingly differ, and why.
NOT_READ = {"linktypes/solaris.snoop": "Sun snoop is neither pcap nor pcapng: chronopipe reports it as damage"}
TSHARK_OVERFLOWS = {  # a sub-second field of 2**31 us or ns: wiretap's arithmetic overflows; we report it
    "timestamps/timestamp_invalid_micro.pcap": {3},
    "timestamps/timestamp_invalid_nano.pcap": {3},
}

needs_tools = pytest.mark.skipif(shutil.which("tshark") is None or shutil.which("mergecap") is None,
                                 reason="tshark and mergecap are not installed (.ci/run installs them via "
                                        "requirements.sh: apt-get install tshark)")


def rel(path: Path) -> str:
    return path.relative_to(DATA).as_posix()


def shown(path: Path) -> list[tuple[str, str]]:
    """(frame.time_epoch, frame.len) of every frame tshark shows, in order."""
    result = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len"],
                            capture_output=True, text=True, timeout=120)
    return [tuple(line.split("\t")) for line in result.stdout.splitlines()]


def merged_by_mergecap(path: Path, out: Path) -> list[tuple[str, str]]:
    subprocess.run(["mergecap", "-w", str(out), str(path)], capture_output=True, timeout=120)
    # mergecap writes nothing for a file with no record it can write: tshark shows nothing there either
    return shown(out) if out.exists() else shown(path)


@needs_tools
@pytest.mark.parametrize("path", [p for p in CAPTURES if rel(p) not in NOT_READ], ids=rel)
def test_merging_one_capture_writes_the_frames_mergecap_writes_in_its_order(path, tmp_path):
    ours = tmp_path / "ours.pcapng"
    result = subprocess.run([sys.executable, "-m", "chronopipe.cli", "merge", str(path), "-w", str(ours)],
                            capture_output=True, text=True, timeout=120)
    expected = merged_by_mergecap(path, tmp_path / "mergecap.pcapng")
    if result.returncode == 2:  # no packet in a damaged file: nothing written (mergecap exits 2 and writes none)
        assert "no packet could be read" in result.stderr and not ours.exists() and expected == []
        return
    assert result.returncode in (0, 1), result.stderr
    got = shown(ours)
    overflows = TSHARK_OVERFLOWS.get(rel(path), set())
    assert [length for _, length in got] == [length for _, length in expected]
    assert [t for n, (t, _) in enumerate(got, 1) if n not in overflows] == \
        [t for n, (t, _) in enumerate(expected, 1) if n not in overflows]


def test_every_shared_capture_is_in_the_projects_copy():
    """The comparison covers the shared captures: tests/data/captures holds each of them (bulk/ too)."""
    names = {rel(p) for p in CAPTURES}
    assert {"bulk/echo-connections.pcap.gz", "bulk/tls2.pcap", "ooo/communityid-tcp.pcap", "ooo/mptcp-v0.pcap",
            "pcapng/many_interfaces-1.pcapng", "pcapng/pcapng-example.pcapng", "pcapng/test202-le.pcapng",
            "pcapng/ntar/test007.ntar", "pcapng/test901-le.pcapng"} <= names
