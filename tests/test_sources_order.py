"""Records of live sources in event-time order: reorder within a bounded lateness, arrival
stamps, and mixed sources merged by merge_sorted and the SortedQueueMultiplexer."""

from __future__ import annotations

import random
import re
import socket
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronopipe import SortedQueueMultiplexer, merge_sorted
from chronopipe.channels import END
from chronopipe.order import Reorder, reorder
from chronopipe.sources import Arrival, Marker, Source, TCPServerSource, UDPSource


@given(st.lists(st.integers(0, 1000), max_size=300), st.integers(0, 20), st.randoms(use_true_random=False))
def test_a_stream_late_by_at_most_the_lateness_comes_out_sorted_and_whole(keys, lateness, rng):
    # each record arrives within ``lateness`` of its place: shuffle by a jitter of at most lateness
    events = sorted(keys)
    arrivals = sorted(range(len(events)), key=lambda i: events[i] + rng.uniform(0, lateness))
    stream = [{"t": events[i], "i": i} for i in arrivals]
    late: list = []
    out = list(reorder(stream, key="t", lateness=lateness, late=late.append))
    assert late == []
    assert [r["t"] for r in out] == events


def test_a_record_later_than_the_lateness_is_set_aside_never_emitted_out_of_order():
    late: list = []
    out = list(reorder([10, 20, 31, 15, 40, 29], key=lambda x: x, lateness=5, late=late.append))
    assert out == [10, 20, 31, 40] and late == [15, 29]


def test_a_late_record_without_a_late_handler_is_an_error():
    with pytest.raises(ValueError, match="later than the lateness of 5 allows"):
        list(reorder([10, 20, 4], key=lambda x: x, lateness=5))


def test_ties_keep_their_arrival_order():
    stream = [{"t": 1, "n": n} for n in range(5)] + [{"t": 0, "n": 9}]
    assert [r["n"] for r in reorder(stream, key="t", lateness=1)] == [9, 0, 1, 2, 3, 4]


def test_the_result_does_not_depend_on_how_the_stream_is_cut():
    stream = [random.Random(3).randrange(100) + i for i in range(500)]
    whole, cut = Reorder(lambda x: x, 50, late=lambda r: None), Reorder(lambda x: x, 50, late=lambda r: None)
    one = whole.push(stream) + whole.flush()
    many = [r for i in range(0, 500, 7) for r in cut.push(stream[i:i + 7])] + cut.flush()
    assert one == many and whole.late_count == cut.late_count


def test_a_negative_lateness_is_refused():
    with pytest.raises(ValueError, match="lateness must be >= 0"):
        Reorder("t", -1)


# -- sources --------------------------------------------------------------------------------
class Script(Source):
    """A source of scripted reads (lists), with quiet spells (None) between them."""

    def __init__(self, reads, **options):
        super().__init__("script", **options)
        self.reads = reads

    def _batches(self):
        for read in self.reads:
            if read is None:
                time.sleep(0.05)
                yield []
            else:
                yield read


def test_a_source_with_event_time_emits_in_order_and_counts_the_late():
    source = Script([[{"ts": 5}, {"ts": 3}], [{"ts": 9}, {"ts": 1}], [{"ts": 8}]], event_time="ts", lateness=4)
    assert [r["ts"] for r in source] == [3, 5, 8, 9]
    assert (source.records, source.late, source.late_records) == (4, 1, [{"ts": 1}])


def test_a_quiet_source_lets_go_of_what_it_holds_after_lateness_seconds():
    source = Script([[{"ts": 100.0}], *([None] * 30), [{"ts": 50.0}]], event_time="ts", lateness=0.5).start()
    first = source.queue.get(5)
    source.join(5)
    assert first == {"ts": 100.0} and source.late == 1  # released while quiet: the old record that follows is late


def test_markers_pass_at_once_after_what_was_held():
    gap = Marker("gap_start", "script", 0.0)
    source = Script([[{"ts": 5}, {"ts": 4}], [gap], [{"ts": 6}]], event_time="ts", lateness=10)
    assert list(source) == [{"ts": 4}, {"ts": 5}, gap, {"ts": 6}]


def test_stamped_records_carry_arrival_time_and_sequence():
    source = Script([["a", "b"], ["c"]], stamp=True)
    records = list(source)
    assert [(r.record, r.seq, r.source) for r in records] == [("a", 0, "script"), ("b", 1, "script"),
                                                              ("c", 2, "script")]
    assert all(isinstance(r, Arrival) for r in records) and records[0].at <= records[2].at <= time.time()


def test_stamped_records_order_by_event_time_inside_the_record():
    source = Script([[{"ts": 2}, {"ts": 1}]], stamp=True, event_time="ts", lateness=5)
    assert [(a.record["ts"], a.seq) for a in source] == [(1, 1), (2, 0)]


def _send_lines(port: int, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as peer:
        for i in range(0, len(lines), 50):
            peer.sendall(b"".join(lines[i:i + 50]))
            time.sleep(0.001)


def _jittered(name: str, n: int, lateness: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    events = sorted(rng.randrange(0, 100_000) for _ in range(n))
    order = sorted(range(n), key=lambda i: events[i] + rng.uniform(0, lateness))
    return [b"%d %s %d\n" % (events[i], name.encode(), i) for i in order]


def _ts(line: str) -> int:
    return int(line.split()[0])


def test_mixed_sources_merge_by_event_time_in_a_sorted_multiplexer():
    # a TCP source and a UDP source, each almost in order: reordered within 50, merged exactly
    mux = SortedQueueMultiplexer(sort_key=_ts, channel_mode="thread")
    tcp = TCPServerSource(connections=1, queue=mux.input_queue(), event_time=_ts, lateness=50)
    udp = UDPSource(queue=mux.input_queue(), event_time=_ts, lateness=50)
    out = mux.output_queue()
    mux.run()
    tcp.start()
    udp.start()
    tcp_lines, udp_lines = _jittered("tcp", 2000, 50, 1), _jittered("udp", 500, 50, 2)
    sender = threading.Thread(target=_send_lines, args=(tcp.port, tcp_lines))
    sender.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        for line in udp_lines:
            peer.sendto(line.rstrip(), ("127.0.0.1", udp.port))
            time.sleep(0.0002)
    sender.join()
    tcp.join(10)
    deadline = time.monotonic() + 10
    while udp.statistics().detail["datagrams"] < 500 and time.monotonic() < deadline:  # (the last are held)
        time.sleep(0.02)
    udp.stop()
    udp.join(10)
    merged = []
    while (record := out.get(10)) is not END:
        merged.append(record)
    assert len(merged) == 2500 and tcp.late == udp.late == 0
    assert [_ts(r) for r in merged] == sorted(_ts(r) for r in merged)
    assert sorted(merged) == sorted(line.decode().rstrip() for line in tcp_lines + udp_lines)


def test_merge_sorted_orders_two_iterated_sources_by_event_time():
    a, b = (TCPServerSource(connections=1, event_time=_ts, lateness=50) for _ in range(2))
    lines_a, lines_b = _jittered("a", 3000, 50, 3), _jittered("b", 3000, 50, 4)
    senders = [threading.Thread(target=_send_lines, args=(s.port, lines)) for s, lines in ((a, lines_a), (b, lines_b))]
    for t in senders:
        t.start()
    merged = list(merge_sorted(a, b, key=_ts))
    for t in senders:
        t.join()
    assert [_ts(r) for r in merged] == sorted(_ts(r.decode()) for r in lines_a + lines_b)
    assert len(merged) == 6000


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_a_quiet_socket_lets_go_of_its_last_records(kind):
    source = (TCPServerSource if kind == "tcp" else UDPSource)(event_time=_ts, lateness=0.3).start()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM) as peer:
        peer.connect(("127.0.0.1", source.port))
        peer.send(b"100 only\n" if kind == "tcp" else b"100 only")  # and nothing more, the peer stays
        sent = time.monotonic()
        assert source.queue.get(5) == "100 only"
        assert 0.25 < time.monotonic() - sent < 2.0
    source.stop()
    source.join(5)


def test_records_held_for_order_go_out_when_the_source_is_stopped():
    source = TCPServerSource(event_time=_ts, lateness=1000).start()  # holds everything: nothing is 1000 past
    with socket.create_connection(("127.0.0.1", source.port)) as peer:
        peer.sendall(b"".join(b"%d x\n" % i for i in range(500)))
        deadline = time.monotonic() + 5
        while source._reorder.held < 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        source.stop()
        got = []
        while (record := source.queue.get(5)) is not END:
            got.append(record)
    source.join(5)
    assert got == [f"{i} x" for i in range(500)]


def test_a_record_without_an_event_time_is_rejected_and_the_source_goes_on():
    source = Script([[{"ts": 2}, {"no ts": 1}, {"ts": 1}]], event_time="ts", lateness=5)
    assert list(source) == [{"ts": 1}, {"ts": 2}]
    [reject] = source.rejects
    assert source.rejected == 1 and reject.file == "script" and "no event time: KeyError" in reject.reason
    assert "{'no ts': 1}" in reject.text


def test_a_thread_channel_says_how_many_it_took_before_a_timeout():
    from chronopipe.channels import Channel

    channel = Channel(5, mode="thread")
    with pytest.raises(TimeoutError) as caught:
        channel.put_many(list(range(8)), timeout=0.1)
    assert caught.value.taken == 5 and channel.statistics().items_put == 5


@pytest.mark.parametrize(("options", "says"), [
    ({"lateness": 5}, "lateness=5 needs event_time="),
    ({"event_time": "ts", "lateness": -1}, "lateness must be >= 0"),
])
def test_a_bad_lateness_is_one_line_naming_the_source(options, says):
    with pytest.raises(ValueError, match=f"source 'script': {re.escape(says)}"):
        Script([], **options)


def test_a_key_that_cannot_be_compared_is_rejected_with_its_record_number():
    stream = [{"ts": 1}, {"ts": 5}, {"ts": None}, {"ts": 6}, {"ts": "7"}, {"ts": 9}]
    source = Script([stream[:3], stream[3:]], event_time="ts", lateness=2)
    assert [r["ts"] for r in source] == [1, 5, 6, 9]
    assert [(r.line, r.text) for r in source.rejects] == [(3, "{'ts': None}"), (5, "{'ts': '7'}")]


def test_datetime_event_times_take_a_lateness_in_seconds_or_as_a_timedelta():
    from datetime import datetime, timedelta

    at = [datetime(2024, 1, 1, 0, 0, s) for s in (0, 3, 1, 9, 8)]
    for lateness in (5, timedelta(seconds=5)):
        source = Script([[{"ts": t} for t in at]], event_time="ts", lateness=lateness)
        assert [r["ts"].second for r in source] == [0, 1, 3, 8, 9] and source.late == 0
