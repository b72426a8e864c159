"""CaptureReader: packets and per-file facts, in a loop, on a thread, in a process, and merged."""

import itertools
from pathlib import Path

import pytest

import chronopipe as cp
from chronopipe.capture import PACKET_KEY, CaptureReader
from chronopipe.capture.checks.basic import Malformed, OutOfOrder
from chronopipe.capture.stream import Stepped

DATA = Path(__file__).parent / "data" / "captures"
TAPS = DATA / "taps"


@pytest.mark.parametrize(("name", "steps_back"), [  # the "back" column of tests/data/captures/SOURCES.md
    ("ooo/mptcp-v0.pcap", 1),
    ("ooo/bgp-bgpsec.pcap", 1),
    ("ooo/communityid-tcp.pcap", 2),
    ("pcapng/many_interfaces-1.pcapng", 1),
    ("ooo/handshake-reorder.pcap", 0),
])
def test_the_summary_counts_timestamps_that_step_back(name, steps_back):
    reader = CaptureReader(DATA / name, reorder=0)  # the file's own order
    packets = list(reader)
    assert reader.summary.steps_back == steps_back
    assert reader.summary.packets == len(packets) and reader.summary.complete
    if steps_back:
        ts = [p[0] for p in packets]
        worst = max(a - b for a, b in itertools.pairwise(ts))
        assert reader.summary.worst_step_ns == worst > 0


@pytest.mark.parametrize("name", ["ooo/mptcp-v0.pcap", "ooo/bgp-bgpsec.pcap", "ooo/communityid-tcp.pcap",
                                  "pcapng/many_interfaces-1.pcapng"])
def test_small_steps_back_are_put_in_order_and_nothing_is_lost(name):
    reordered = list(CaptureReader(DATA / name))
    assert [p[0] for p in reordered] == sorted(p[0] for p in reordered)
    assert sorted(reordered) == sorted(CaptureReader(DATA / name, reorder=0))


def test_reorder_zero_keeps_the_file_order():
    packets = list(CaptureReader(DATA / "ooo" / "mptcp-v0.pcap", reorder=0))
    assert [p[3] for p in packets] == list(range(1, len(packets) + 1))


def test_the_summary_has_span_bytes_and_first_and_last_timestamps():
    reader = CaptureReader(TAPS / "ssh.pcap")
    packets = list(reader)
    summary = reader.summary
    assert (summary.first_ns, summary.last_ns) == (packets[0][0], packets[-1][0])
    assert summary.bytes == sum(p[4] for p in packets) and summary.span_ns == packets[-1][0] - packets[0][0]


def test_a_clock_offset_moves_every_timestamp_exactly():
    plain = list(CaptureReader(TAPS / "ssh.client-side-half-duplex.pcap"))
    moved = list(CaptureReader(TAPS / "ssh.client-side-half-duplex.pcap", offset="-0.250000001"))
    assert [m[0] for m in moved] == [p[0] - 250_000_001 for p in plain]


def test_every_packet_names_its_source():
    packets = list(CaptureReader(TAPS / "ssh.pcap", source="tap-A"))
    assert {p[1] for p in packets} == {"tap-A"}


def test_decode_sends_dicts_with_the_frame_fields_and_headers():
    record = next(iter(CaptureReader(TAPS / "ssh.pcap", decode=True)))
    assert record["source"] == "ssh.pcap" and record["index"] == 1 and record["tcp"]["dport"] == 22


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_hosted_reader_streams_every_packet_and_returns_its_summary_with_damage(mode):
    reader = CaptureReader(DATA / "truncated" / "truncated_dns_2.pcap", mode=mode, start=True)
    packets = list(reader.queue)
    summary = reader.join(30)
    assert len(packets) == summary.packets == 1
    assert [d.offset for d in summary.damage] == [240] and reader.summary == summary
    assert reader.statistics().damage == 1


def test_a_missing_file_is_refused_before_any_actor_starts():
    with pytest.raises(FileNotFoundError, match="no such file"):
        CaptureReader(DATA / "nope.pcap", start=True)


def test_an_offset_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError, match="like -0.250"):
        CaptureReader(TAPS / "ssh.pcap", offset="soon")


def test_merging_the_two_half_duplex_taps_gives_the_full_capture_in_its_order():
    """taps/SOURCES.md: mergecap of the two halves gives 1,670 packets, every one of them in ssh.pcap."""
    mux = cp.SortedQueueMultiplexer(sort_key=PACKET_KEY, channel_mode="process")
    readers = [CaptureReader(TAPS / f"ssh.{side}-side-half-duplex.pcap", queue=mux.input_queue(), source=side,
                             start=True) for side in ("client", "server")]
    out = mux.output_queue(cp.Channel(mode="thread"))
    mux.run()
    merged = [(p[0], p[7]) for p in out]
    for reader in readers:
        reader.join(30)
    assert len(merged) == 1670 and mux.join(30).late == 0
    full = [(p[0], p[7]) for p in CaptureReader(TAPS / "ssh.pcap")]
    position = {packet: i for i, packet in enumerate(full)}
    assert all(packet in position for packet in merged)
    assert [position[p] for p in merged] == sorted(position[p] for p in merged)


# -- keyed for mergecap's order; times in the reports ---------------------------------------
def test_keyed_packets_that_step_back_carry_the_latest_timestamp_of_their_file_so_far():
    keyed = list(CaptureReader(DATA / "ooo" / "communityid-tcp.pcap", reorder=0, keyed=True))
    packets = list(CaptureReader(DATA / "ooo" / "communityid-tcp.pcap", reorder=0))
    assert [p if p.__class__ is tuple else p[1] for p in keyed] == packets
    assert [p[0] for p in keyed] == list(itertools.accumulate((p[0] for p in packets), max))
    assert sum(p.__class__ is Stepped for p in keyed) == 2  # the file's two steps back


def test_keyed_readers_keep_the_files_order():
    with pytest.raises(ValueError, match="reorder=0"):
        CaptureReader(TAPS / "ssh.pcap", keyed=True)


def test_the_out_of_order_example_names_the_first_step_back_by_its_time():
    reader = CaptureReader(DATA / "bulk" / "echo-connections.pcap.gz", reorder=0)
    for _ in reader:
        pass
    assert (reader.summary.first_step_back, reader.summary.first_step_back_ns) == (5525, 1627225020925773000)
    example = OutOfOrder().result([reader.summary]).examples[0]
    assert str(example).startswith("echo-connections.pcap.gz:5525 @1627225020.925773000: ")


def test_a_damage_example_names_its_packet_by_its_time():
    reader = CaptureReader(DATA / "timestamps" / "timestamp_invalid_micro.pcap", reorder=0)
    packets = list(reader)
    examples = Malformed().result([reader.summary]).examples
    assert [e.ts_ns for e in examples] == [packets[1][0], packets[2][0]] and all(e.ts_ns for e in examples)
