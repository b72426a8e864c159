"""TcpAnalysis: sequence gaps, retransmissions and ACKs of unseen data, compared with tshark's TCP analysis."""

import shutil
import subprocess

import pytest

from checks_helper import DATA, run_checks, run_records, tcp_record
from chronopipe.capture.checks.tcp import TcpAnalysis, seq_after

# tshark 4.0.17 per file: frames flagged (lost_segment, retransmission, ack_lost_segment), each from
#   tshark -r FILE -Y tcp.analysis.lost_segment | wc -l      (and the same with tcp.analysis.retransmission,
#   tshark -r FILE -Y tcp.analysis.ack_lost_segment | wc -l   which includes fast_ and spurious_retransmission)
# test_tshark_still_counts_what_the_table_says re-derives them when tshark is installed.
TSHARK = {
    "gaps/missing-syn.pcap": (0, 0, 0),
    "gaps/unidirectional_tcp_stream_with_missing_packet.pcap": (1, 0, 0),
    "gaps/1000-requests-one-dropped-response.pcap.gz": (1, 0, 2),
    "dups/ssh-dups.pcap": (0, 166, 0),
    "dups/tcpreplay-test.pcap": (0, 2, 0),
    "taps/ssh.pcap": (0, 13, 0),
    "taps/ssh.client-side-half-duplex.pcap": (0, 9, 0),
    "taps/ssh.server-side-half-duplex.pcap": (0, 2, 0),
    "snaplen/tcp-timestamp.pcap": (0, 0, 0),
    "ooo/mptcp-v0.pcap": (0, 0, 0),
    "reqresp/http.pcap": (0, 1, 0),
}
# Ours where we differ on purpose: one ACK of unseen data per loss, where tshark flags two ACKs in
# 1000-requests-one-dropped-response (frames 6 and 8: see test_an_ack_counts_once_per_unseen_data).
ACKED_UNSEEN = {**{f: ack for f, (_, _, ack) in TSHARK.items()}, "gaps/1000-requests-one-dropped-response.pcap.gz": 1}
# `mergecap -w m.pcap taps/ssh.client-side-half-duplex.pcap taps/ssh.server-side-half-duplex.pcap`, then the
# three tshark commands above on m.pcap: (lost_segment, retransmission, ack_lost_segment)
TSHARK_MERGED_HALVES = (0, 11, 0)
HALVES = [DATA / "taps" / "ssh.client-side-half-duplex.pcap", DATA / "taps" / "ssh.server-side-half-duplex.pcap"]

CLIENT = {"src": "10.0.0.1", "sport": 40000, "dst": "10.0.0.2", "dport": 80}
SERVER = {"src": "10.0.0.2", "sport": 80, "dst": "10.0.0.1", "dport": 40000}


def analyse(*records, **options):
    return run_records(records, [TcpAnalysis(**options)])["tcp"]


def c(seq, ack=0, flags="A", length=0, ts_ms=0.0, **kw):
    """A client -> server segment."""
    return tcp_record(seq, ack, flags, length, ts_ms=ts_ms, **CLIENT, **kw)


def s(seq, ack=0, flags="A", length=0, ts_ms=0.0, **kw):
    """A server -> client segment."""
    return tcp_record(seq, ack, flags, length, ts_ms=ts_ms, **SERVER, **kw)


def handshake(isn=1000, server_isn=5000):
    return [c(isn, 0, "S"), s(server_isn, isn + 1, "SA", ts_ms=1), c(isn + 1, server_isn + 1, "A", ts_ms=2)]


def tshark_counts(path):
    fields = ["tcp.analysis.lost_segment", "tcp.analysis.retransmission", "tcp.analysis.ack_lost_segment"]
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=f",
                          *[arg for f in fields for arg in ("-e", f)]], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return tuple(sum(1 for row in rows if row[i]) for i in range(len(fields)))


# -- real captures against tshark ---------------------------------------------------------
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", sorted(TSHARK))
def test_tshark_still_counts_what_the_table_says(name):
    assert tshark_counts(DATA / name) == TSHARK[name]


@pytest.mark.parametrize("name", sorted(TSHARK))
def test_gaps_match_tsharks_lost_segments(name):
    assert run_checks([DATA / name], [TcpAnalysis()])["tcp"].counts["gaps"] == TSHARK[name][0]


@pytest.mark.parametrize("name", sorted(TSHARK))
def test_retransmissions_match_tsharks(name):
    assert run_checks([DATA / name], [TcpAnalysis()])["tcp"].counts["retransmissions"] == TSHARK[name][1]


@pytest.mark.parametrize("name", sorted(TSHARK))
def test_acked_unseen_matches_tshark_but_counts_each_unseen_range_once(name):
    assert run_checks([DATA / name], [TcpAnalysis()])["tcp"].counts["acked_unseen"] == ACKED_UNSEEN[name]


@pytest.mark.parametrize("name", sorted(TSHARK))
def test_every_gap_is_classified_once(name):
    counts = run_checks([DATA / name], [TcpAnalysis()])["tcp"].counts
    assert counts["gaps"] == counts["capture_loss"] + counts["network_loss"] + counts["out_of_order"]


def test_the_dropped_response_is_a_capture_loss_and_fails():
    result = run_checks([DATA / "gaps" / "1000-requests-one-dropped-response.pcap.gz"], [TcpAnalysis()])["tcp"]
    assert result.status == "fail"
    assert (result.counts["capture_loss"], result.counts["missing_bytes"], result.counts["flows"]) == (1, 238, 1)
    assert [e.frame for e in result.examples] == [6, 7]  # the ACK of unseen data, then the segment after the hole


def test_a_gap_never_retransmitted_in_a_one_way_capture_is_capture_loss():
    result = run_checks([DATA / "gaps" / "unidirectional_tcp_stream_with_missing_packet.pcap"], [TcpAnalysis()])["tcp"]
    assert (result.counts["capture_loss"], result.counts["missing_bytes"]) == (1, 1420)
    assert result.examples[0].frame == 4


def test_a_connection_whose_syn_was_not_captured_passes():
    result = run_checks([DATA / "gaps" / "missing-syn.pcap"], [TcpAnalysis()])["tcp"]
    assert result.status == "pass" and result.counts["flows"] == 1


def test_retransmissions_alone_pass_by_default():
    assert run_checks([DATA / "dups" / "ssh-dups.pcap"], [TcpAnalysis()])["tcp"].status == "pass"


def test_spurious_retransmissions_match_tshark():
    # tshark -r reqresp/http.pcap -Y tcp.analysis.spurious_retransmission | wc -l  -> 1
    assert run_checks([DATA / "reqresp" / "http.pcap"], [TcpAnalysis()])["tcp"].counts["spurious"] == 1


def test_merged_half_duplex_taps_analysed_as_one_capture_match_tshark_on_their_mergecap():
    counts = run_checks(HALVES, [TcpAnalysis(per_tap=False)])["tcp"].counts
    assert (counts["gaps"], counts["retransmissions"], counts["acked_unseen"]) == TSHARK_MERGED_HALVES


def test_a_full_capture_read_on_two_taps_is_not_retransmitted_per_tap():
    path = DATA / "taps" / "ssh.pcap"
    counts = run_checks([path, path], [TcpAnalysis()], sources=["a", "b"])["tcp"].counts
    assert (counts["flows"], counts["retransmissions"]) == (2 * 23, 2 * TSHARK["taps/ssh.pcap"][1])


def test_the_same_capture_on_two_taps_without_per_tap_looks_all_retransmitted():
    path = DATA / "taps" / "ssh.pcap"
    counts = run_checks([path, path], [TcpAnalysis(per_tap=False)], sources=["a", "b"])["tcp"].counts
    assert counts["retransmissions"] > 1000


# -- synthetic flows: one behaviour each --------------------------------------------------
def test_a_clean_connection_passes_with_no_findings():
    result = analyse(*handshake(), c(1001, 5001, "PA", 100, 3), s(5001, 1101, "A", 0, 4),
                     c(1101, 5001, "FA", 0, 5), s(5001, 1102, "FA", 0, 6), c(1102, 5002, "A", 0, 7))
    assert result.status == "pass" and not result.examples
    assert (result.counts["flows"], result.counts["segments"], result.counts["gaps"]) == (1, 8, 0)


def test_syn_and_fin_each_take_one_sequence_number():
    result = analyse(*handshake(), c(1001, 5001, "FA", 0, 3), s(5001, 1002, "A", 0, 4), c(1002, 5001, "A", 0, 5))
    assert result.counts["gaps"] == result.counts["acked_unseen"] == result.counts["retransmissions"] == 0


def test_data_beyond_the_next_sequence_number_is_a_gap():
    result = analyse(c(100, 1, "A", 10), c(120, 1, "A", 10, 1))
    assert (result.counts["gaps"], result.counts["missing_bytes"], result.status) == (1, 10, "fail")


def test_a_gap_never_filled_nor_acked_is_capture_loss():
    assert analyse(c(100, 1, "A", 10), c(120, 1, "A", 10, 1)).counts["capture_loss"] == 1


def test_a_gap_filled_by_a_retransmission_is_network_loss():
    result = analyse(c(100, 1, "A", 10), c(120, 1, "A", 10, 1), c(110, 1, "A", 10, 200))
    assert (result.counts["network_loss"], result.counts["retransmissions"], result.counts["capture_loss"]) == (1, 1, 0)


def test_a_gap_filled_within_the_reorder_window_is_out_of_order_not_loss():
    result = analyse(c(100, 1, "A", 10), c(120, 1, "A", 10, 1), c(110, 1, "A", 10, 2))
    assert (result.counts["out_of_order"], result.counts["retransmissions"], result.status) == (1, 0, "pass")


def test_a_gap_the_peer_acknowledges_is_capture_loss_and_an_unseen_ack():
    result = analyse(c(100, 1, "A", 10), s(1, 110, "A"), c(120, 1, "A", 10, 1), s(1, 130, "A", 0, 2))
    assert (result.counts["capture_loss"], result.counts["acked_unseen"], result.counts["network_loss"]) == (1, 1, 0)


def test_an_ack_counts_once_per_unseen_data():
    # The 1000-requests pattern: the peer ACKs the missing response before the next one is captured,
    # then ACKs that one too. tshark flags both ACKs (ack_lost_segment = 2: its frontier only moves on
    # when a segment starts exactly there); the second ACK acknowledges nothing unseen, so we count one.
    result = analyse(s(5001, 1001, "A"), c(1001, 5001, "A", 0, 1), s(5011, 1001, "PA", 20, 2),
                     c(1001, 5031, "A", 0, 3))
    assert (result.counts["acked_unseen"], result.counts["gaps"], result.counts["capture_loss"]) == (1, 1, 1)


def test_a_tail_acknowledged_but_never_captured_is_a_gap_at_the_end():
    result = analyse(c(100, 1, "A", 10), s(1, 110, "A"), s(1, 150, "A", 0, 1))
    assert (result.counts["gaps"], result.counts["capture_loss"], result.counts["acked_unseen"]) == (1, 1, 1)


def test_data_at_or_before_what_was_seen_is_a_retransmission():
    result = analyse(c(100, 1, "A", 10), c(110, 1, "A", 10, 1), c(100, 1, "A", 10, 500))
    assert (result.counts["retransmissions"], result.counts["gaps"], result.status) == (1, 0, "pass")


def test_a_retransmission_of_acknowledged_data_is_spurious():
    result = analyse(c(100, 1, "A", 10), s(1, 110, "A", 0, 1), c(100, 1, "A", 10, 500))
    assert (result.counts["retransmissions"], result.counts["spurious"]) == (1, 1)


def test_a_keep_alive_is_not_a_retransmission():
    result = analyse(c(100, 1, "A", 10), c(109, 1, "A", 1, 1000), c(109, 1, "A", 0, 2000))
    assert (result.counts["keep_alives"], result.counts["retransmissions"]) == (2, 0)


def test_a_zero_length_segment_behind_is_nothing():
    result = analyse(c(100, 1, "A", 10), c(105, 1, "A", 0, 1))
    assert result.counts["retransmissions"] == result.counts["gaps"] == 0


def test_a_zero_length_segment_beyond_is_a_gap():
    assert analyse(c(100, 1, "A", 10), c(130, 1, "A", 0, 1)).counts["gaps"] == 1


def test_a_flow_first_seen_mid_stream_has_no_gap():
    result = analyse(c(987_654_321, 42, "PA", 100), s(42, 987_654_421, "A", 0, 1))
    assert (result.counts["gaps"], result.counts["acked_unseen"], result.status) == (0, 0, "pass")


def test_sequence_numbers_wrap_around_without_a_gap():
    result = analyse(c(0xFFFFFFF0, 1, "A", 16), c(0, 1, "A", 16, 1), s(1, 16, "A", 0, 2))
    assert result.counts["gaps"] == result.counts["retransmissions"] == result.counts["acked_unseen"] == 0


def test_a_gap_across_the_wraparound_counts_the_missing_bytes():
    result = analyse(c(0xFFFFFFF0, 1, "A", 16), c(10, 1, "A", 16, 1))
    assert (result.counts["gaps"], result.counts["missing_bytes"]) == (1, 10)


def test_a_retransmission_across_the_wraparound_is_recognised():
    assert analyse(c(0xFFFFFFF0, 1, "A", 32), c(0xFFFFFFF0, 1, "A", 32, 300)).counts["retransmissions"] == 1


def test_a_retransmitted_syn_is_a_retransmission():
    assert analyse(c(1000, 0, "S"), c(1000, 0, "S", 0, 1000)).counts["retransmissions"] == 1


def test_a_new_syn_on_the_same_ports_starts_a_new_connection():
    old = [*handshake(1000, 5000), c(1001, 5001, "FA", 0, 3), s(5001, 1002, "FA", 0, 4)]
    new = [c(900_000, 0, "S", 0, 10), s(77_000, 900_001, "SA", 0, 11), c(900_001, 77_001, "PA", 5, 12)]
    result = analyse(*old, *new)
    assert (result.counts["flows"], result.counts["gaps"], result.counts["retransmissions"]) == (2, 0, 0)


def test_a_reset_moves_nothing_on():
    result = analyse(c(100, 1, "A", 10), c(5_000_000, 0, "R", 0, 1), c(110, 1, "A", 10, 2))
    assert result.counts["gaps"] == result.counts["retransmissions"] == 0


def test_the_same_flow_on_two_taps_is_two_flows():
    records = [c(100, 1, "A", 10, 0, source="a"), c(100, 1, "A", 10, 0.1, source="b")]
    result = analyse(*records)
    assert (result.counts["flows"], result.counts["retransmissions"]) == (2, 0)


def test_without_per_tap_a_copy_on_another_tap_is_a_retransmission():
    records = [c(100, 1, "A", 10, 0, source="a"), c(100, 1, "A", 10, 0.1, source="b")]
    assert analyse(*records, per_tap=False).counts["retransmissions"] == 1


def test_without_per_tap_one_taps_ack_checks_the_other_taps_data():
    records = [c(100, 1, "A", 10, 0, source="a"), s(1, 130, "A", 0, 1, source="b")]
    assert analyse(*records, per_tap=False).counts["acked_unseen"] == 1
    assert analyse(*records).counts["acked_unseen"] == 0


def test_max_gaps_allows_that_many_losses():
    assert analyse(c(100, 1, "A", 10), c(120, 1, "A", 10, 1), max_gaps=1).status == "pass"


def test_max_acked_unseen_allows_that_many_unseen_acks():
    records = [c(100, 1, "A", 10), s(1, 150, "A", 0, 1)]
    assert analyse(*records, max_gaps=1, max_acked_unseen=1).status == "pass"
    assert analyse(*records, max_gaps=1).status == "fail"


def test_max_retransmissions_fails_on_more():
    records = [c(100, 1, "A", 10), c(100, 1, "A", 10, 500)]
    assert analyse(*records, max_retransmissions=0).status == "fail"


def test_no_tcp_is_not_checkable():
    assert run_checks([DATA / "reqresp" / "dns_icmp.pcap"], [TcpAnalysis()])["tcp"].status == "not checkable"


def test_findings_name_the_flow_file_and_frame():
    result = analyse(c(100, 1, "A", 10, index=1), c(120, 1, "A", 10, 1, index=2))
    assert result.examples[0].frame == 2 and "10.0.0.1:40000 -> 10.0.0.2:80" in result.examples[0].what


@pytest.mark.parametrize(("a", "b", "after"), [(1, 0, True), (0, 1, False), (7, 7, False), (5, 0xFFFFFFFE, True),
                                               (0xFFFFFFFE, 5, False), (0x7FFFFFFF, 0, True), (0x80000000, 0, False)])
def test_seq_after_compares_modulo_two_to_the_32(a, b, after):
    assert seq_after(a, b) is after


def test_a_syn_ack_for_a_new_connection_whose_syn_was_missed_forgets_the_old_one():
    old = [*handshake(1000, 5000), c(1001, 5001, "FA", 0, 3), s(5001, 1002, "FA", 0, 4), c(1002, 5002, "A", 0, 5)]
    new = [s(77_000, 900_001, "SA", 0, 11), c(900_001, 77_001, "PA", 5, 12), s(77_001, 900_006, "A", 0, 13)]
    result = analyse(*old, *new)
    assert (result.counts["flows"], result.counts["acked_unseen"], result.counts["gaps"]) == (2, 0, 0)


def test_examples_show_losses_not_unjudged_retransmissions():
    records = [c(100, 1, "A", 10, index=1), c(100, 1, "A", 10, 500, index=2), c(120, 1, "A", 10, 501, index=3)]
    assert [e.frame for e in analyse(*records).examples] == [3]
    assert [e.frame for e in analyse(*records, max_retransmissions=5).examples] == [2, 3]


# -- memory: ended connections are forgotten ---------------------------------------------------
def closed_connection(t_ms=0.0, port=40000, isn=1000, server_isn=5000):
    """Handshake, 100 bytes each way, a FIN each way and the last ACK, over 8 ms from t_ms."""
    client, server = {**CLIENT, "sport": port}, {**SERVER, "dport": port}

    def seg(way, seq, ack, flags, length=0, at=0):
        return tcp_record(seq, ack, flags, length, ts_ms=t_ms + at, **way)

    return [seg(client, isn, 0, "S"), seg(server, server_isn, isn + 1, "SA", at=1),
            seg(client, isn + 1, server_isn + 1, "A", at=2), seg(client, isn + 1, server_isn + 1, "PA", 100, at=3),
            seg(server, server_isn + 1, isn + 101, "PA", 100, at=4),
            seg(client, isn + 101, server_isn + 101, "FA", at=5), seg(server, server_isn + 101, isn + 102, "FA", at=6),
            seg(client, isn + 102, server_isn + 102, "A", at=7)]


def another_syn(ts_ms):
    """A SYN of another connection (client port 40001), at ts_ms: it moves the clock on."""
    return tcp_record(9000, 0, "S", 0, ts_ms=ts_ms, **{**CLIENT, "sport": 40001})


def run_segments(records, **options):
    check = TcpAnalysis(**options)
    result = run_records(records, [check])["tcp"]
    return check, result


def test_a_connection_ended_both_ways_is_forgotten_linger_seconds_later():
    check, _ = run_segments([*closed_connection(), another_syn(2_000)], linger=1.0)
    assert check.forgotten == 1 and len(check._dirs) == 1


def test_a_connection_is_kept_until_linger_has_passed():
    check, _ = run_segments([*closed_connection(), another_syn(500)], linger=1.0)
    assert check.forgotten == 0 and len(check._dirs) == 3


def test_a_half_closed_connection_is_kept():
    records = closed_connection()[:6]  # the client's FIN only: the server may still send
    check, _ = run_segments([*records, another_syn(5_000)], linger=1.0)
    assert check.forgotten == 0


def test_an_rst_ends_both_directions():
    records = [*handshake(), s(5001, 1001, "RA", ts_ms=3), another_syn(5_000)]
    check, _ = run_segments(records, linger=1.0)
    assert check.forgotten == 1 and len(check._dirs) == 1


def test_a_retransmission_within_linger_after_the_fins_is_still_one():
    records = [*closed_connection(), s(5001, 1101, "PA", 100, ts_ms=500)]  # the server's data again
    _, result = run_segments(records, linger=1.0)
    assert result.counts["retransmissions"] == 1 and result.counts["flows"] == 1


def test_holes_of_a_forgotten_connection_still_count_as_capture_loss():
    # one direction captured, its second 100 bytes missing: a hole nothing resolves before the FIN
    records = [c(1000, 0, "S"), c(1001, 0, "PA", 100, ts_ms=1), c(1201, 0, "PA", 100, ts_ms=3),
               c(1301, 0, "FA", ts_ms=4), another_syn(2_000)]
    forgetting = run_segments(records, linger=1.0)
    keeping = run_segments(records, linger=None)
    assert forgetting[0].forgotten == 1 and keeping[0].forgotten == 0
    assert forgetting[1].counts == keeping[1].counts and forgetting[1].counts["capture_loss"] == 1


def test_memory_follows_the_open_connections_not_all_ever_seen():
    check, sizes = TcpAnalysis(linger=1.0), []
    for i in range(2_000):  # one short connection every 100 ms, each on its own port: 200 s in all
        for record in closed_connection(t_ms=i * 100, port=10_000 + i):
            check._segment(record)
        sizes.append(len(check._dirs))
    assert max(sizes) <= 2 * 12  # the connections of the last second or so (10 to 11), two directions each
    assert check.forgotten >= 1_980 and check.flows == 2_000


def test_linger_must_not_be_negative():
    with pytest.raises(ValueError, match="linger is in seconds >= 0"):
        TcpAnalysis(linger=-1)
