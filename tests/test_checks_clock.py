"""ClockOffset: the clock offset between taps, from the packets both saw."""

import pickle

import dill
import pytest

from checks_helper import DATA, read_records, run_checks, run_records, tcp_record
from chronopipe.capture import CaptureWriter
from chronopipe.capture.checks.clock import ClockOffset, OffsetSamples, offset_stats

SSH = DATA / "taps" / "ssh.pcap"
HALVES = [DATA / "taps" / "ssh.client-side-half-duplex.pcap", DATA / "taps" / "ssh.server-side-half-duplex.pcap"]
MS = 1_000_000


def clock(*records, **options):
    return run_records(records, [ClockOffset(**options)])["clock"]


def shifted_copy(path, out, shift_ns):
    """``path`` rewritten with every timestamp ``shift_ns`` later (a tap whose clock is ahead)."""
    records, _ = read_records(path)
    with CaptureWriter(out) as writer:
        for r in records:
            writer.write((r["ts_ns"] + shift_ns, out.name, 0, r["index"], r["caplen"], r["wirelen"], r["linktype"],
                          r["data"]))
    return out


def test_half_duplex_taps_share_no_packet_so_the_offset_is_not_checkable():
    result = run_checks(HALVES, [ClockOffset()])["clock"]
    assert result.status == "not checkable"
    assert result.counts["pairs"] == {f"{HALVES[0].name}~{HALVES[1].name}": {"matched": 0}}


def test_a_tap_read_250_ms_late_is_measured_exactly():
    result = run_checks([SSH, SSH], [ClockOffset()], sources=["a", "b"], offsets=[0, "0.250"])["clock"]
    assert result.counts["pairs"]["a~b"] == {"matched": 1797, "median_ns": 250 * MS, "min_ns": 250 * MS,
                                             "max_ns": 250 * MS, "p50_abs_ns": 250 * MS}


def test_an_offset_beyond_the_tolerance_fails():
    result = run_checks([SSH, SSH], [ClockOffset()], sources=["a", "b"], offsets=[0, "0.250"])["clock"]
    assert result.status == "fail" and "+250.000 ms" in result.examples[0].what


def test_the_offset_is_signed_the_second_tap_minus_the_first():
    result = run_checks([SSH, SSH], [ClockOffset()], sources=["a", "b"], offsets=["0.250", 0])["clock"]
    assert result.counts["pairs"]["a~b"]["median_ns"] == -250 * MS


def test_a_tap_250_ms_ahead_corrected_by_its_reader_offset_measures_zero(tmp_path):
    ahead = shifted_copy(SSH, tmp_path / "ahead.pcapng", 250 * MS)
    uncorrected = run_checks([SSH, ahead], [ClockOffset()], sources=["a", "b"])["clock"]
    corrected = run_checks([SSH, ahead], [ClockOffset()], sources=["a", "b"], offsets=[0, "-0.250"])["clock"]
    assert uncorrected.counts["pairs"]["a~b"]["median_ns"] == 250 * MS
    assert corrected.counts["pairs"]["a~b"]["median_ns"] == 0 and corrected.status == "pass"


def test_every_pair_of_three_taps_is_estimated():
    result = run_checks([SSH, SSH, SSH], [ClockOffset()], sources=["a", "b", "c"], offsets=[0, "0.1", "-0.2"])["clock"]
    medians = {pair: stats["median_ns"] for pair, stats in result.counts["pairs"].items()}
    assert medians == {"a~b": 100 * MS, "a~c": -200 * MS, "b~c": -300 * MS}


def test_a_forwarded_copy_with_other_macs_and_ttl_still_matches():
    a = [tcp_record(i, ts_ms=i, source="a", ttl=64) for i in range(10)]
    b = [tcp_record(i, ts_ms=i + 0.5, source="b", ttl=63, mac=b"\x02\x00\x00\x00\x00\x99") for i in range(10)]
    result = clock(*sorted(a + b, key=lambda r: r["ts_ns"]))
    assert result.counts["pairs"]["a~b"]["median_ns"] == MS // 2 and result.status == "pass"


def test_fewer_matches_than_min_matches_is_not_checkable():
    records = [tcp_record(1, ts_ms=0, source="a"), tcp_record(1, ts_ms=3, source="b")]
    assert clock(*records).status == "not checkable"
    assert clock(*records, min_matches=1).status == "fail"


def test_the_tolerance_is_configurable():
    records = [tcp_record(1, ts_ms=0, source="a"), tcp_record(1, ts_ms=3, source="b")]
    assert clock(*records, min_matches=1, tolerance=0.005).status == "pass"


def test_sightings_further_apart_than_the_window_do_not_match():
    records = [tcp_record(1, ts_ms=0, source="a"), tcp_record(1, ts_ms=30, source="b")]
    assert clock(*records, window=0.01).counts["pairs"]["a~b"] == {"matched": 0}


def test_repeats_on_one_tap_match_nothing():
    records = [tcp_record(1, ts_ms=t, source="a") for t in (0, 1, 2)]
    assert clock(*records).counts["pairs"] == {}


def test_one_tap_is_not_checkable():
    assert run_checks([SSH], [ClockOffset()])["clock"].status == "not checkable"


def test_offset_stats_takes_the_lower_median_of_an_even_count():
    assert offset_stats([4, 1, 3, 2])["median_ns"] == 2


@pytest.mark.parametrize(("samples", "p50_abs"), [([-5, 1, 2], 2), ([-9, -8, 7], 8), ([0], 0)])
def test_offset_stats_p50_abs_is_the_median_of_magnitudes(samples, p50_abs):
    assert offset_stats(samples)["p50_abs_ns"] == p50_abs


# -- bounded memory per pair of taps -----------------------------------------------------------
def test_a_pair_keeps_at_most_kept_offsets_with_exact_count_min_and_max():
    samples = OffsetSamples(keep=1_000)
    for offset in range(-50_000, 150_000):
        samples.add(offset)
    stats = samples.stats()
    assert len(samples.kept) == 1_000
    assert (stats["matched"], stats["min_ns"], stats["max_ns"]) == (200_000, -50_000, 149_999)
    assert abs(stats["median_ns"] - 50_000) < 10_000  # a 1,000-sample median: within 5% of the range


def test_up_to_kept_offsets_the_figures_are_exact():
    samples = OffsetSamples(keep=1_000)
    values = [(i * 7919) % 1_000 - 300 for i in range(1_000)]
    for offset in values:
        samples.add(offset)
    assert samples.stats() == offset_stats(values)


def test_the_sample_is_the_same_every_run():
    def sampled():
        samples = OffsetSamples(keep=10)
        for offset in range(10_000):
            samples.add(offset)
        return list(samples.kept)

    assert sampled() == sampled()


def test_offsets_come_back_from_a_check_process_with_their_generator():
    samples = OffsetSamples(keep=10)
    for offset in range(100):
        samples.add(offset)
    copy = pickle.loads(dill.dumps(samples))
    for offset in range(100, 1_000):
        samples.add(offset)
        copy.add(offset)
    assert (copy.stats(), list(copy.kept)) == (samples.stats(), list(samples.kept))
