"""chronopipe merge CAPTURE... -w out: the merged capture in mergecap's order, the report, damage, outputs."""

import io
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from chronopipe.capture import read_frames
from chronopipe.cli.capmerge import parse_offsets, run_capture_merge
from chronopipe.cli.outputs import UsageError

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


# -- mergecap's order, damage, outputs ------------------------------------------------------

STEPS_BACK = DATA / "ooo" / "communityid-tcp.pcap"


def merge(*paths: Path, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_capture_merge(list(paths), out=out, err=err, **kwargs)
    return status, out.getvalue(), err.getvalue()


def test_one_capture_is_written_in_its_own_order_with_its_steps_back(tmp_path):
    out = tmp_path / "merged.pcapng"
    status, _, _ = merge(STEPS_BACK, write=out)
    assert status == 0
    assert [f[6] for f in read_frames(out)] == [f[6] for f in read_frames(STEPS_BACK)]


def test_a_step_back_comes_right_after_the_packet_before_it_in_its_file_as_in_mergecap(tmp_path):
    a = [(10, b"a1"), (30, b"a2"), (20, b"a3"), (40, b"a4")]  # a3 steps back
    b = [(25, b"b1"), (30, b"b2"), (35, b"b3")]
    paths = []
    for name, packets in (("a.pcap", a), ("b.pcap", b)):
        path = tmp_path / name
        path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(
            struct.pack("<IIII", 1_700_000_000, us, len(d), len(d)) + d for us, d in packets))
        paths.append(path)
    out = tmp_path / "merged.pcapng"
    merge(*paths, write=out)
    assert [f[6] for f in read_frames(out)] == [b"a1", b"b1", b"a2", b"a3", b"b2", b"b3", b"a4"]


def test_reorder_puts_steps_back_within_the_window_in_time_order(tmp_path):
    out = tmp_path / "merged.pcapng"
    status, _, _ = merge(STEPS_BACK, write=out, reorder="0.01")
    ts = [f[0] for f in read_frames(out)]
    assert status == 0 and ts == sorted(ts) and len(ts) == 12


def test_reorder_zero_reports_steps_back_as_late_and_writes_them_after(tmp_path):
    out = tmp_path / "merged.pcapng"
    status, report, _ = merge(STEPS_BACK, write=out, reorder=0)
    assert status == 1 and "beyond the reorder window: 2 packets, written after the merged packets" in report


@pytest.mark.parametrize("reorder", ["-1", "soon"])
def test_a_reorder_window_that_is_not_seconds_is_a_usage_error(reorder):
    with pytest.raises(UsageError, match="--reorder"):
        merge(STEPS_BACK, reorder=reorder)


@pytest.mark.parametrize("name", ["pcapng/ntar/test007.ntar", "pcapng/ntar/test010.ntar", "pcapng/test901-le.pcapng"])
def test_a_damaged_block_is_reported_and_nothing_of_it_is_written(tmp_path, name):
    out = tmp_path / "merged.pcapng"
    if name.endswith(".ntar"):  # no packet before the damage: nothing to merge, a usage error as in validate
        with pytest.raises(UsageError, match=r"no packet could be read: test0\d\d\.ntar: "):
            merge(DATA / name, write=out)
        assert not out.exists()
        return
    status, report, _ = merge(DATA / name, write=out)
    assert status == 1 and "damage " in report and len(list(read_frames(out))) == 1


def test_a_timestamp_past_2554_is_written_at_its_interfaces_resolution_as_mergecap_does(tmp_path):
    out = tmp_path / "merged.pcapng"
    status, _, _ = merge(DATA / "pcapng" / "pcapng-example.pcapng", write=out)
    frames = list(read_frames(out))
    assert status == 0 and len(frames) == 159 and frames[59][0] == 18446744073204126329000


def test_a_timestamp_its_interface_cannot_hold_is_damage_of_that_packet_and_the_rest_is_written(tmp_path):
    path = tmp_path / "late.pcapng"
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHII", 1, 20, 1, 0, 0, 20)  # microseconds
    epbs = b"".join(struct.pack("<IIIIIII", 6, 36, 0, us >> 32, us & 0xFFFFFFFF, 4, 4) + data + struct.pack("<I", 36)
                    for us, data in ((1_700_000_000_000_000, b"good"), (2**64 - 1, b"late"), (1_700_000_001_000_000,
                                                                                               b"next")))
    path.write_bytes(shb + idb + epbs)
    out = tmp_path / "merged.pcapng"
    status, report, _ = merge(path, write=out)
    assert status == 1 and [f[6] for f in read_frames(out)] == [b"good", b"next"]
    assert "damage late.pcapng (frame 2): timestamp 18446744073709551615000 ns" in report


def test_a_copyable_custom_block_is_copied_and_a_do_not_copy_one_is_not(tmp_path):
    out = tmp_path / "merged.pcapng"
    merge(DATA / "pcapng" / "test202-be.pcapng", write=out)
    data, pos, customs = out.read_bytes(), 0, []
    while pos < len(data):
        btype, length = struct.unpack_from("<II", data, pos)
        if btype in (0x00000BAD, 0x40000BAD):
            customs.append((btype, data[pos + 8:pos + 12]))
        pos += length
    assert customs == [(0x00000BAD, struct.pack("<I", 32473))]  # its enterprise number, in the output's order


def test_an_output_that_is_also_an_input_is_refused_and_the_input_kept(tmp_path):
    path = tmp_path / "x.pcap"
    path.write_bytes(HALVES[0].read_bytes())
    with pytest.raises(UsageError, match="is also an input"):
        merge(path, write=path)
    assert path.read_bytes() == HALVES[0].read_bytes()


def test_a_merge_that_fails_leaves_no_output_and_says_so(tmp_path):
    out = tmp_path / "merged.pcap"  # pcap holds one link type: Ethernet and Linux SLL cannot share it
    with pytest.raises(UsageError, match="one link type per file"):
        merge(DATA / "pcapng" / "pcapng-example.pcapng", write=out)
    assert list(tmp_path.iterdir()) == []


def test_an_offset_that_is_not_a_number_is_an_error_naming_the_option():
    with pytest.raises(ValueError, match=r"^--offset 'ssh.client-side-half-duplex.pcap=abc': SECONDS is a number"):
        parse_offsets([f"{HALVES[0].name}=abc"], HALVES)



@pytest.mark.parametrize(("seconds", "says"), [("inf", "is a finite"), ("-inf", "is a finite"), ("nan", "is a finite"),
                                              ("1e30", "does not fit"), ("-1e999999999", "does not fit")])
def test_an_offset_that_is_not_a_finite_number_that_fits_is_an_error_naming_the_option(seconds, says):
    with pytest.raises(ValueError, match=rf"^--offset 'ssh.client-side-half-duplex.pcap={seconds}': SECONDS {says}"):
        parse_offsets([f"{HALVES[0].name}={seconds}"], HALVES)


@pytest.mark.parametrize("command", ["merge", "validate"])
def test_an_infinite_offset_is_one_line_and_exit_status_2(command):
    result = chronopipe(command, HALVES[0], "--offset", f"{HALVES[0].name}=inf")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"chronopipe {command}: --offset '{HALVES[0].name}=inf': SECONDS is a finite number of seconds, like -0.250"]


def test_a_timestamp_past_what_pcapng_holds_is_said_not_to_fit_not_to_be_before_1970(tmp_path):
    from chronopipe.capture import CaptureWriter, UnwritableError

    with CaptureWriter(tmp_path / "out.pcapng") as out:
        with pytest.raises(UnwritableError, match=r"^timestamp 10{39} ns does not fit: it is after 2554"):
            out.write((10**39, "far", 0, 1, 1, 1, 1, b"x"))
        with pytest.raises(UnwritableError, match=r"^timestamp -1 ns is before 1970"):
            out.write((-1, "early", 0, 1, 1, 1, 1, b"x"))
        out.write(((2**64 - 1) * 1000, "us", 0, 1, 1, 1, 1, b"x"))  # its interface: microseconds
        with pytest.raises(UnwritableError, match=r"^timestamp -1000 ns is before 1970"):
            out.write((-1000, "us", 0, 2, 1, 1, 1, b"x"))
        with pytest.raises(UnwritableError, match=r"does not fit: .* of 1000 ns units holds \(1970 to about 586,500\)"):
            out.write((2**64 * 1000 * 1000, "us", 0, 3, 1, 1, 1, b"x"))


def test_a_capture_cut_short_gives_its_whole_packets_and_their_span_only(tmp_path):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(struct.pack("<IIII", 1000 + i, 0, 60, 60) + bytes(60) for i in range(10))
    path, out = tmp_path / "trunc.pcap", tmp_path / "t.pcapng"
    path.write_bytes((header + records)[:-30])
    status, report, _ = merge(path, write=out)
    assert status == 1 and report.splitlines()[1].split() == ["trunc.pcap", "9", "8.000000", "0", "1"]
    assert "damage trunc.pcap@708 (frame 10): cut short in a record: 46 of 76 bytes" in report
    assert [ts // 1_000_000_000 for ts, _ in packets(out)] == list(range(1000, 1009))


@pytest.mark.parametrize("contents", [[b""], [b"hello, this is not a capture\n" * 3], [b"", b"text\n" * 20]],
                         ids=["empty", "text", "both"])
def test_inputs_that_give_no_packet_are_a_usage_error_and_nothing_is_written(tmp_path, contents):
    paths = []
    for i, data in enumerate(contents):
        paths.append(tmp_path / f"in{i}.pcap")
        paths[-1].write_bytes(data)
    out = tmp_path / "merged.pcapng"
    with pytest.raises(UsageError, match=r"^no packet could be read: in0.pcap: "):
        merge(*paths, write=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    result = chronopipe("merge", *paths, "-w", out)
    assert result.returncode == 2 and result.stderr.startswith("chronopipe merge: no packet could be read")
    assert not out.exists()


def test_an_empty_input_beside_a_capture_is_damage_and_the_capture_is_written(tmp_path):
    empty, out = tmp_path / "empty.pcap", tmp_path / "merged.pcapng"
    empty.write_bytes(b"")
    status, report, _ = merge(empty, HALVES[0], write=out)
    assert status == 1 and "damage empty.pcap@0: an empty file" in report and len(packets(out)) == 838
