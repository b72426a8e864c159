"""Hostile captures: a record or block whose length lies costs one report and the bytes skipped,
never the packets after it, and reading stays linear in the file and bounded in memory."""

import gzip
import struct
import tracemalloc
from pathlib import Path

import pytest

from chronopipe.capture import Damage, read_frames
from chronopipe.capture.stream import Stream

DATA = Path(__file__).parent / "data" / "captures"
RECORD = 1000  # bytes of each good packet
LIE = 0xFFFFFFF0


def pcap(records: list[tuple[int, int, bytes]], snaplen: int = LIE, linktype: int = 1) -> bytes:
    """A pcap file (microseconds) of (seconds, microseconds or lying field, data) records; a record
    whose data is an int instead of bytes claims that length and holds nothing."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for sec, usec, data in records:
        if isinstance(data, int):
            out.append(struct.pack("<IIII", sec, usec, data, RECORD))
        else:
            out.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
    return b"".join(out)


def lying_pcap(packets: int, lie_at: int) -> bytes:
    """Snaplen and one record's caplen both 0xFFFFFFF0, the record holding a normal packet's bytes."""
    records = [(1_700_000_000 + i // 1000, i % 1000 * 1000, bytes([i % 256]) * RECORD) for i in range(packets)]
    data = pcap(records)
    at = 24 + lie_at * (16 + RECORD)
    return data[:at + 8] + struct.pack("<I", LIE) + data[at + 12:]


def option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def block(btype: int, body: bytes, claimed: int | None = None) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, claimed or length) + body + struct.pack("<I", length)


def lying_pcapng(packets: int, lie_at: int, claimed: int) -> bytes:
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 0) + option(0, b""))
    epbs = []
    for i in range(packets):
        ts = (1_700_000_000 + i) * 1_000_000
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, RECORD, RECORD) + bytes([i % 256]) * RECORD
        epbs.append(block(6, body, claimed if i == lie_at else None))
    return shb + idb + b"".join(epbs)


def read(path: Path) -> tuple[list[tuple], list[Damage]]:
    damage: list[Damage] = []
    return list(read_frames(path, on_damage=damage.append)), damage


PACKETS = 5000  # 5 MB: the lying record at the 1001st, 4 MB before the end
CASES = {
    "pcap": (lying_pcap(PACKETS, 1000), ".pcap", 16 + RECORD),
    "pcapng": (lying_pcapng(PACKETS, 1000, 64_000_000), ".pcapng", 32 + RECORD),
}


@pytest.fixture(params=[(kind, packed) for kind in CASES for packed in (False, True)],
                ids=lambda p: p[0] + (".gz" if p[1] else ""))
def hostile(request, tmp_path) -> tuple[Path, int, int]:
    """(path, bytes of the lying record) of a 5 MB file with one length that lies."""
    kind, packed = request.param
    data, suffix, size = CASES[kind]
    path = tmp_path / f"hostile{suffix}{'.gz' if packed else ''}"
    path.write_bytes(gzip.compress(data, 1) if packed else data)
    return path, size


def test_a_length_that_lies_costs_one_report_and_the_packets_after_it_are_read(hostile):
    path, size = hostile
    frames, damage = read(path)
    assert [f[6][0] for f in frames] == [i % 256 for i in range(PACKETS) if i != 1000]
    assert len(damage) == 1 and f"skipped {size:,} bytes to the next plausible" in damage[0].reason
    assert damage[0].frame == 1001 and damage[0].ts_ns == frames[999][0]  # where, by the packet before it


def test_a_length_that_lies_is_not_read_into_memory(hostile):
    path, _size = hostile
    tracemalloc.start()
    try:
        for _ in read_frames(path, on_damage=lambda d: None):
            pass
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_500_000  # a buffer or two, not the 4 MB after the lie


def test_reading_copies_each_byte_about_once_whatever_the_records_claim(tmp_path, monkeypatch):
    """Linear by structure: what is moved between buffers stays under the file's size (a buffer
    re-joined at each chunk of a long record moved its size squared over the chunk)."""
    copied: list[int] = []
    fill = Stream.fill

    def counting(self, n):
        before = self.copied
        try:
            return fill(self, n)
        finally:
            copied.append(self.copied - before)

    monkeypatch.setattr(Stream, "fill", counting)
    big = [(1_700_000_000, i, bytes(3_000_000)) for i in range(3)]  # D-Bus allows 128 MiB records
    path = tmp_path / "dbus.pcap"
    path.write_bytes(pcap(big, snaplen=0, linktype=231) + lying_pcap(2000, 1000)[24:])
    frames, damage = read(path)
    assert len(frames) == 3 + 1999 and len(damage) == 1
    assert sum(copied) < path.stat().st_size


def test_a_bad_sub_second_field_in_a_record_longer_than_the_buffer_is_reported_once(tmp_path):
    path = tmp_path / "dbus.pcap"
    path.write_bytes(pcap([(1_700_000_000, 0, b"a" * 60), (1_700_000_000, 2_000_000, bytes(3_000_000)),
                           (1_700_000_001, 0, b"b" * 60)], snaplen=0, linktype=231))
    frames, damage = read(path)
    assert [f[3] for f in frames] == [60, 3_000_000, 60]
    assert [(d.frame, d.ts_ns) for d in damage] == [(2, 1_700_000_002_000_000_000)]
    assert "sub-second field 2000000" in damage[0].reason


def test_a_record_claiming_more_than_its_link_type_holds_with_nothing_plausible_after_it_ends_the_read(tmp_path):
    path = tmp_path / "garbage.pcap"
    good = [(1_700_000_000, i, b"x" * 60) for i in range(3)]
    path.write_bytes(pcap(good) + struct.pack("<IIII", 0, 0, 1 << 20, 60) + bytes(5000))
    frames, damage = read(path)
    assert len(frames) == 3 and len(damage) == 1
    assert "cannot be right" in damage[0].reason and "the last 5,016 bytes are not read" in damage[0].reason


def test_a_pcapng_block_claiming_more_than_is_left_in_the_file_is_skipped(tmp_path):
    path = tmp_path / "short.pcapng"
    path.write_bytes(lying_pcapng(20, 10, 30_000))  # under the link type's limit, past the end of the file
    frames, damage = read(path)
    assert len(frames) == 19 and len(damage) == 1
    assert "runs past the end of the file; skipped 1,032 bytes" in damage[0].reason


def test_a_cut_short_pcapng_still_says_cut_short(tmp_path):
    path = tmp_path / "cut.pcapng"
    path.write_bytes(lying_pcapng(5, 99, 0)[:-500])
    frames, damage = read(path)
    assert len(frames) == 4 and len(damage) == 1 and "cut short in a block: 532 of 1032 bytes" in damage[0].reason


def test_a_long_block_whose_end_does_not_match_is_found_out_without_reading_it(tmp_path):
    """A name resolution block claiming 3 MB (no link type limits it) inside a 5 MB file: its
    trailing length is checked by a seek, and the read resumes at the next block."""
    data = lying_pcapng(PACKETS, 1000, 0)
    nrb = block(4, bytes(12), claimed=3_000_000)
    at = data.index(struct.pack("<II", 6, 32 + RECORD), 200 + 1000 * (44 + RECORD) - 100)
    path = tmp_path / "nrb.pcapng"
    path.write_bytes(data[:at] + nrb + data[at:])
    damage: list[Damage] = []
    tracemalloc.start()
    try:
        frames = sum(1 for _ in read_frames(path, on_damage=damage.append))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == PACKETS and len(damage) == 1 and "total lengths differ (3000000 and" in damage[0].reason
    assert f"skipped {len(nrb):,} bytes" in damage[0].reason and peak < 2_500_000


# -- a file cut short is not a length that lies; resynchronising believes only a believable record ----

def records_1970(count: int, rng, usec: bool = True) -> tuple[bytes, list[int]]:
    """A pcap of ``count`` records stamped near 1970 (a device with no clock), half of them zeros;
    and where each record ends."""
    out, ends = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)], []
    pos = 24
    for i in range(count):
        n = rng.choice([60, 64, 100, 1514, rng.randint(40, 1500)])
        data = rng.randbytes(n) if rng.random() < 0.5 else bytes(n)
        out.append(struct.pack("<IIII", 1000 + i, rng.randint(0, 999_999) if usec else 0, n, n) + data)
        pos += 16 + n
        ends.append(pos)
    return b"".join(out), ends


def test_a_pcap_cut_short_in_its_last_record_gives_its_whole_records_and_one_report(tmp_path):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(struct.pack("<IIII", 1000 + i, 0, 60, 60) + bytes(60) for i in range(10))
    path = tmp_path / "trunc.pcap"
    path.write_bytes((header + records)[:-30])
    frames, damage = read(path)
    assert [f[0] // 1_000_000_000 for f in frames] == list(range(1000, 1009))
    assert [str(d) for d in damage] == ["trunc.pcap@708 (frame 10): cut short in a record: 46 of 76 bytes"]


@pytest.mark.parametrize("usec", [True, False], ids=["random-usec", "zero-usec"])
def test_a_pcap_cut_anywhere_never_gives_a_packet_it_does_not_hold(tmp_path, usec):
    import random

    rng = random.Random(7)
    path = tmp_path / "cut.pcap"
    for _ in range(150):
        data, ends = records_1970(20, rng, usec)
        cut = rng.randint(24, len(data) - 1)
        path.write_bytes(data[:cut])
        frames, damage = read(path)
        assert len(frames) == sum(end <= cut for end in ends), cut
        assert len(damage) == (cut not in ends)


@pytest.mark.parametrize("every", [2, 3])
def test_every_whole_record_is_read_when_every_other_record_lies(tmp_path, every):
    import random

    rng = random.Random(5)
    out, good = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)], []
    for i in range(2000):
        data = rng.randbytes(rng.randint(60, 600))
        lie = i % every == 0 and i > 0
        out.append(struct.pack("<IIII", 1_600_000_000 + i, rng.randint(0, 999_999), 0x7FFFFFFF if lie else len(data),
                               len(data)) + data)
        if not lie:
            good.append(data)
    path = tmp_path / "lies.pcap"
    path.write_bytes(b"".join(out))
    frames, damage = read(path)
    assert [f[6] for f in frames] == good
    assert len(damage) == 2000 - len(good) and all("skipped" in d.reason for d in damage)
    assert max(int(d.reason.split("skipped ")[1].split(" ")[0].replace(",", "")) for d in damage) <= 16 + 600


def test_a_lie_within_the_link_types_limit_past_the_end_of_the_file_is_skipped(tmp_path):
    """A header that cannot be believed (caplen over the original length) claiming more than is
    left: a length that lies, not a file cut short, and the records after it are read."""
    records = [(1_700_000_000 + i, 0, bytes([i]) * 100) for i in range(20)]
    data = bytearray(pcap(records, snaplen=65535))
    struct.pack_into("<I", data, 24 + 10 * 116 + 8, 60_000)
    path = tmp_path / "lie.pcap"
    path.write_bytes(bytes(data))
    frames, damage = read(path)
    assert [f[6][0] for f in frames] == [i for i in range(20) if i != 10]
    assert len(damage) == 1 and "runs past the end of the file; skipped 116 bytes" in damage[0].reason


def test_a_garbage_header_before_the_first_packet_still_finds_the_records_after_it(tmp_path):
    records = [(1_700_000_000 + i, 0, bytes([i]) * 100) for i in range(10)]
    path = tmp_path / "garbage-first.pcap"
    data = pcap(records, snaplen=65535)
    path.write_bytes(data[:24] + struct.pack("<IIII", 0xDEADBEEF, 0xFFFFFFFF, 0x7FFFFFFF, 3) + bytes(7) + data[24:])
    frames, damage = read(path)
    assert [f[6][0] for f in frames] == list(range(10)) and len(damage) == 1


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_a_run_of_fake_headers_is_skipped_in_c_not_looked_at_one_by_one(tmp_path, monkeypatch, kind):
    """1 MB of headers with the right type or time but a length no block or record may have: the
    search's regular expression passes over them (a Python look at each took 6 s for 40 MB)."""
    calls: list[int] = []
    fill = Stream.fill

    def counting(self, n):
        calls.append(n)
        return fill(self, n)

    if kind == "pcap":
        good = pcap([(1_700_000_000 + i, 0, bytes([i]) * 100) for i in range(4)], snaplen=65535)
        fake = struct.pack("<IIII", 1_700_000_002, 0, 0x7FFFFFFF, 100) * 65_536
        data = good[:24 + 2 * 116] + fake + good[24 + 2 * 116:]
    else:
        good = lying_pcapng(4, 99, 0)
        at = len(good) - 2 * (32 + RECORD)
        data = good[:at] + struct.pack("<II", 6, 0x7FFFFFF0) * 131_072 + good[at:]
    path = tmp_path / f"fakes.{kind}"
    path.write_bytes(data)
    monkeypatch.setattr(Stream, "fill", counting)
    frames, damage = read(path)
    assert len(frames) == 4 and len(damage) == 1 and "skipped 1,048,5" in damage[0].reason
    assert len(calls) < 50
