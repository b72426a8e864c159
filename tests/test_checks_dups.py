"""Duplicates: packets repeated within a window, on one tap or across taps, compared with editcap -w."""

import shutil
import subprocess

import pytest

from checks_helper import DATA, read_records, run_checks, run_records, tcp_record
from chronopipe.capture import decode
from chronopipe.capture.checks.dups import Duplicates, normalized, packet_key

# editcap 4.0.17: frames dropped by `editcap -w 0.001 FILE out.pcap` (its report "N packets skipped with
# duplicate time window", = `capinfos -c FILE` - `capinfos -c out.pcap`); editcap compares whole frames.
# test_editcap_still_drops_what_the_table_says re-derives them when editcap and capinfos are installed.
EDITCAP = {"dups/ssh-dups.pcap": 280, "dups/tcpreplay-test.pcap": 1, "taps/ssh.pcap": 0}
# Ours (compare="ip"): tcpreplay-test frames 14 and 15 (IGMP queries) differ only in the IPv4 header
# checksum (0x2fb4 / 0x2eb4), which the IP comparison ignores: frames 15 and 16 are both duplicates.
OURS = {**EDITCAP, "dups/tcpreplay-test.pcap": 2}
SSH = DATA / "taps" / "ssh.pcap"


def duplicates(*records, **options):
    return run_records(records, [Duplicates(**options)])["duplicates"]


def count_packets(path):
    out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return int(out.split("Number of packets:")[1].split()[0])


@pytest.mark.skipif(shutil.which("editcap") is None or shutil.which("capinfos") is None,
                    reason="editcap / capinfos are not installed")
@pytest.mark.parametrize("name", sorted(EDITCAP))
def test_editcap_still_drops_what_the_table_says(name, tmp_path):
    out = tmp_path / "dedup.pcap"
    subprocess.run(["editcap", "-w", "0.001", str(DATA / name), str(out)], capture_output=True, check=True,
                   timeout=60)
    assert count_packets(DATA / name) - count_packets(out) == EDITCAP[name]


@pytest.mark.parametrize("name", sorted(EDITCAP))
def test_comparing_whole_frames_finds_what_editcap_drops(name):
    counts = run_checks([DATA / name], [Duplicates(compare="frame")])["duplicates"].counts
    assert counts["duplicates"] == EDITCAP[name]


@pytest.mark.parametrize("name", sorted(OURS))
def test_comparing_ip_packets_finds_the_documented_duplicates(name):
    assert run_checks([DATA / name], [Duplicates()])["duplicates"].counts["duplicates"] == OURS[name]


def test_copies_differing_only_in_the_ip_checksum_are_duplicates():
    result = run_checks([DATA / "dups" / "tcpreplay-test.pcap"], [Duplicates()])["duplicates"]
    assert [e.frame for e in result.examples] == [15, 16]


def test_duplicates_on_one_tap_are_within_tap():
    counts = run_checks([DATA / "dups" / "ssh-dups.pcap"], [Duplicates()])["duplicates"].counts
    assert (counts["within_tap"], counts["across_taps"], counts["per_source"]) == (280, 0, {"ssh-dups.pcap": 280})


def test_duplicates_fail_the_check():
    assert run_checks([DATA / "dups" / "ssh-dups.pcap"], [Duplicates()])["duplicates"].status == "fail"


def test_max_within_tap_allows_that_many():
    result = run_checks([DATA / "dups" / "ssh-dups.pcap"], [Duplicates(max_within_tap=280)])["duplicates"]
    assert result.status == "pass"


def test_copies_across_taps_pass_by_default():
    assert run_checks([SSH, SSH], [Duplicates()], sources=["a", "b"])["duplicates"].status == "pass"


def test_max_across_taps_judges_copies_across_taps():
    result = run_checks([SSH, SSH], [Duplicates(max_across_taps=0)], sources=["a", "b"])["duplicates"]
    assert result.status == "fail"


def test_no_duplicate_passes():
    assert run_checks([SSH], [Duplicates()])["duplicates"].status == "pass"


def test_one_packet_on_two_taps_with_other_macs_and_ttl_is_an_across_taps_duplicate():
    a = tcp_record(100, 1, "PA", 10, ts_ms=0, source="a", ttl=64, mac=b"\x02\x00\x00\x00\x00\x01")
    b = tcp_record(100, 1, "PA", 10, ts_ms=0.2, source="b", ttl=63, mac=b"\x02\x00\x00\x00\x00\x99")
    assert a["data"] != b["data"]
    counts = duplicates(a, b).counts
    assert (counts["duplicates"], counts["across_taps"], counts["within_tap"]) == (1, 1, 0)


def test_whole_frame_comparison_does_not_match_a_forwarded_copy():
    a = tcp_record(100, 1, "PA", 10, ts_ms=0, source="a", ttl=64)
    b = tcp_record(100, 1, "PA", 10, ts_ms=0.2, source="b", ttl=63, mac=b"\x02\x00\x00\x00\x00\x99")
    assert duplicates(a, b, compare="frame").counts["duplicates"] == 0


def test_a_repeat_outside_the_window_is_not_a_duplicate():
    assert duplicates(tcp_record(100, ts_ms=0), tcp_record(100, ts_ms=1.001)).counts["duplicates"] == 0


def test_a_repeat_exactly_one_window_later_is_a_duplicate_as_in_editcap():
    assert duplicates(tcp_record(100, ts_ms=0), tcp_record(100, ts_ms=1)).counts["duplicates"] == 1


def test_the_window_is_configurable():
    assert duplicates(tcp_record(100, ts_ms=0), tcp_record(100, ts_ms=40), window=0.05).counts["duplicates"] == 1


def test_each_copy_is_compared_with_the_latest_one():
    records = [tcp_record(100, ts_ms=t) for t in (0, 0.9, 1.8, 2.7)]
    assert duplicates(*records).counts["duplicates"] == 3


def test_different_packets_are_not_duplicates():
    assert duplicates(tcp_record(100, ts_ms=0), tcp_record(101, ts_ms=0.1)).counts["duplicates"] == 0


def test_a_capture_read_on_two_taps_is_all_across_taps_duplicates():
    counts = run_checks([SSH, SSH], [Duplicates()], sources=["a", "b"])["duplicates"].counts
    assert (counts["across_taps"], counts["within_tap"]) == (1797, 0)


def test_taps_whose_clocks_differ_by_more_than_the_window_do_not_match():
    counts = run_checks([SSH, SSH], [Duplicates()], sources=["a", "b"], offsets=[0, "0.25"])["duplicates"].counts
    assert counts["duplicates"] == 0


def test_frames_without_ip_compare_whole():
    arp = bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(28)
    first, again = decode((0, "a", 0, 1, 42, 42, 1, arp)), decode((1000, "a", 0, 2, 42, 42, 1, arp))
    other = decode((2000, "a", 0, 3, 42, 42, 1, arp[:-1] + b"\x01"))
    assert normalized(first) == arp
    assert duplicates(first, again, other).counts["duplicates"] == 1


def test_ethernet_padding_is_not_compared():
    record = tcp_record(100, ts_ms=0)
    padded = decode((record["ts_ns"] + 1, "b", 0, 2, len(record["data"]) + 6, len(record["data"]) + 6, 1,
                     record["data"] + b"\xee" * 6))
    assert normalized(padded) == normalized(record)


def test_packet_key_is_equal_exactly_when_the_normalized_bytes_are():
    records, _ = read_records(DATA / "dups" / "ssh-dups.pcap")
    by_bytes, by_key = {}, {}
    for i, record in enumerate(records):
        by_bytes.setdefault(normalized(record), []).append(i)
        by_key.setdefault(packet_key(record), []).append(i)
    assert sorted(by_bytes.values()) == sorted(by_key.values())


def test_memory_holds_at_most_two_windows_of_packets():
    check = Duplicates(window=0.001)
    run_records([tcp_record(i, ts_ms=i * 0.1) for i in range(5000)], [check])
    assert len(check._current) + len(check._previous) <= 2 * 11


def test_nothing_seen_is_not_checkable():
    assert duplicates().status == "not checkable"


def test_a_window_below_zero_is_refused():
    with pytest.raises(ValueError, match="window"):
        Duplicates(window=-1)


def test_examples_show_copies_within_a_tap_not_the_expected_ones_across_taps():
    records = [tcp_record(1, ts_ms=0, source="a"), tcp_record(1, ts_ms=0.1, source="b"),
               tcp_record(2, ts_ms=5, source="a", index=7), tcp_record(2, ts_ms=5.1, source="a", index=8)]
    result = duplicates(*records)
    assert [(e.file, e.frame) for e in result.examples] == [("a", 8)]
    assert (result.counts["across_taps"], result.counts["within_tap"], result.status) == (1, 1, "fail")
