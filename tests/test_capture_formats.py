"""read_frames against tshark on real captures, and what it does with damaged files."""

import gzip
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from chronopipe.capture import CaptureError, Damage, read_frames

DATA = Path(__file__).parent / "data" / "captures"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix != ".md")
NS = 1_000_000_000

# Where we knowingly differ from tshark 4.0, and why.
NOT_PACKETS = {  # frames tshark shows for pcapng custom blocks: numbered, not yielded
    "pcapng/test202-le.pcapng": {1, 7, 10},
    "pcapng/test202-be.pcapng": {1, 7, 10},
}
UNSUPPORTED = {"linktypes/solaris.snoop"}  # Sun snoop is neither pcap nor pcapng: reported as damage
TSHARK_OVERFLOWS = {  # a sub-second field of 2**31: tshark's own arithmetic overflows; we report it
    "timestamps/timestamp_invalid_micro.pcap": {3},
    "timestamps/timestamp_invalid_nano.pcap": {3},
}


def rel(path: Path) -> str:
    return path.relative_to(DATA).as_posix()


def tshark_frames(path: Path) -> dict[int, tuple]:
    """frame number -> (ts_ns or None, caplen, wirelen, interface), from tshark -T fields."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch",
         "-e", "frame.cap_len", "-e", "frame.len", "-e", "frame.interface_id"],
        capture_output=True, text=True, timeout=60,
    ).stdout
    frames = {}
    for line in out.splitlines():
        number, epoch, caplen, wirelen, iface = line.split("\t")
        frames[int(number)] = (epoch_ns(epoch), int(caplen), int(wirelen), int(iface or 0))
    return frames


def epoch_ns(text: str) -> int | None:
    """tshark prints seconds '.' nanoseconds, not normalised (1.1000000000 is 2 s)."""
    if not text:
        return None  # a simple packet block: no timestamp
    seconds, _, fraction = text.partition(".")
    return int(seconds) * NS + int(fraction.ljust(9, "0"))


def frames_of(path: Path) -> tuple[list[tuple], list[Damage]]:
    damage: list[Damage] = []
    return list(read_frames(path, on_damage=damage.append)), damage


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (./requirements.sh"
                                  " installs it where apt-get can)")


@needs_tshark
@pytest.mark.parametrize("path", [p for p in CAPTURES if rel(p) not in UNSUPPORTED], ids=rel)
def test_every_frame_agrees_with_tshark_on_number_timestamp_and_lengths(path):
    ours, _ = frames_of(path)
    reference = tshark_frames(path)
    name = rel(path)
    got = {index: (ts, caplen, wirelen, iface) for ts, iface, index, caplen, wirelen, _lt, _data in ours}
    assert set(reference) - set(got) == NOT_PACKETS.get(name, set())
    assert set(got) <= set(reference)
    for index, (ts, caplen, wirelen, iface) in reference.items():
        if index not in got or index in TSHARK_OVERFLOWS.get(name, ()):
            continue
        ours_ts, ours_caplen, ours_wirelen, ours_iface = got[index]
        assert (ours_caplen, ours_wirelen, ours_iface) == (caplen, wirelen, iface), f"{name} frame {index}"
        if ts is not None:
            assert ours_ts == ts, f"{name} frame {index}"


def test_frames_carry_their_bytes_and_link_type():
    _ts, iface, index, caplen, _wirelen, linktype, data = next(read_frames(DATA / "taps" / "ssh.pcap"))
    assert (iface, index, linktype) == (0, 1, 1)  # Ethernet
    assert len(data) == caplen and data[12:14] == b"\x08\x00"  # IPv4


def test_nanosecond_timestamps_are_exact_integers():
    ts = [frame[0] for frame in read_frames(DATA / "timestamps" / "tcp-handshake-nano.pcap")]
    assert all(isinstance(t, int) for t in ts)
    assert ts[0] % 1000 != 0  # below the microsecond: a float would have lost it


def test_each_pcapng_interface_has_its_own_resolution_and_link_type():
    frames = list(read_frames(DATA / "pcapng" / "pcapng-example.pcapng"))
    assert {(f[1], f[5]) for f in frames} == {(0, 1), (1, 113)}  # Ethernet in ns, Linux SLL in us


def test_a_simple_packet_block_takes_the_timestamp_of_the_packet_before_it():
    frames = {f[2]: f for f in read_frames(DATA / "pcapng" / "test202-le.pcapng")}
    assert frames[5][0] == frames[4][0] and frames[8][0] == frames[6][0]


@pytest.mark.parametrize("name", ["test202-le.pcapng", "test202-be.pcapng"])
def test_both_byte_orders_read_alike(name):
    assert [f[:6] for f in read_frames(DATA / "pcapng" / name)] == \
        [f[:6] for f in read_frames(DATA / "pcapng" / "test202-le.pcapng")]


def test_a_gzip_capture_reads_like_the_plain_one(tmp_path):
    plain = DATA / "taps" / "ssh.client-side-half-duplex.pcap"
    packed = tmp_path / "tap.cap"  # not named .gz: the content decides
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(read_frames(packed)) == list(read_frames(plain))


# -- damage ---------------------------------------------------------------------------------
SSH = DATA / "taps" / "ssh.client-side-half-duplex.pcap"


def record_offsets(path: Path) -> list[int]:
    data, pos, offsets = path.read_bytes(), 24, []
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


@pytest.mark.parametrize(("cut", "complete", "reason"), [
    (lambda offsets: offsets[5] + 7, 5, "cut short: 7 bytes after the last record, less than a record header"),
    (lambda offsets: offsets[5] + 16 + 3, 5, "cut short in a record: 19 of"),  # in a record's data
    (lambda offsets: offsets[5] + 16, 5, "cut short in a record: 16 of"),  # a whole header, no data
])
def test_a_cut_file_gives_every_complete_packet_and_says_where_it_ends(tmp_path, cut, complete, reason):
    offsets = record_offsets(SSH)
    at = cut(offsets)
    path = tmp_path / "cut.pcap"
    path.write_bytes(SSH.read_bytes()[:at])
    frames, damage = frames_of(path)
    assert [f[2] for f in frames] == list(range(1, complete + 1))
    assert len(damage) == 1 and damage[0].offset == offsets[5] and reason in damage[0].reason
    assert damage[0].file == "cut.pcap" and damage[0].frame == complete + 1


def test_a_file_cut_in_its_header_is_damage_not_an_exception(tmp_path):
    path = tmp_path / "stub.pcap"
    path.write_bytes(SSH.read_bytes()[:10])
    assert frames_of(path) == ([], [Damage("stub.pcap", 0, "cut short in the file header: 10 of 24 bytes")])


def test_a_record_over_the_snaplen_is_emitted_and_reported(tmp_path):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 8, 1)  # snaplen 8
    records = b"".join(struct.pack("<IIII", 100, i, 12, 12) + bytes(12) for i in range(3))
    path = tmp_path / "snap.pcap"
    path.write_bytes(header + records)
    frames, damage = frames_of(path)
    assert len(frames) == 3 and all(f[3] == 12 for f in frames)
    assert [d.frame for d in damage] == [1, 2, 3] and "over the snaplen 8" in damage[0].reason


def test_after_an_absurd_record_length_the_read_resumes_at_the_next_record(tmp_path):
    data = bytearray(SSH.read_bytes())
    offsets = record_offsets(SSH)
    struct.pack_into("<I", data, offsets[3] + 8, 0x7FFFFFFF)
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(data))
    frames, damage = frames_of(path)
    good, _ = frames_of(SSH)
    assert [f[6] for f in frames] == [f[6] for f in good[:3] + good[4:]]
    assert len(damage) == 1 and damage[0].offset == offsets[3] and "cannot be right" in damage[0].reason
    assert f"skipped {offsets[4] - offsets[3]:,} bytes" in damage[0].reason


def test_a_pcapng_block_whose_lengths_differ_is_skipped_and_the_read_resumes_after_it(tmp_path):
    data = bytearray((DATA / "pcapng" / "pcapng-multi-interface.pcapng").read_bytes())
    good, _ = frames_of(DATA / "pcapng" / "pcapng-multi-interface.pcapng")
    pos, blocks = 0, []
    while pos < len(data):  # find the third packet block and make its trailing length lie
        btype, length = struct.unpack_from("<II", data, pos)
        blocks.append((btype, pos, length))
        pos += length
    _, at, length = [b for b in blocks if b[0] == 6][2]
    struct.pack_into("<I", data, at + length - 4, length + 4)
    path = tmp_path / "lying.pcapng"
    path.write_bytes(bytes(data))
    frames, damage = frames_of(path)
    assert [f[6] for f in frames] == [f[6] for f in good[:2] + good[3:]]
    assert len(damage) == 1 and damage[0].offset == at and "total lengths differ" in damage[0].reason


def test_an_unknown_format_is_reported_with_its_first_bytes():
    frames, damage = frames_of(DATA / "linktypes" / "solaris.snoop")
    assert frames == [] and "not a pcap or pcapng file (first bytes 736e6f6f70000000)" in damage[0].reason


def test_invalid_sub_second_fields_are_reported_and_the_packets_kept():
    frames, damage = frames_of(DATA / "timestamps" / "timestamp_invalid_micro.pcap")
    assert len(frames) == 3 and [d.frame for d in damage] == [2, 3]
    assert frames[1][0] == 1418145371 * NS  # 1418145370 s + 1,000,000 us


def test_without_a_damage_handler_the_first_damage_raises_with_file_and_offset(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(SSH.read_bytes()[:100])
    with pytest.raises(CaptureError, match=r"^cut\.pcap@\d+ \(frame 1\): cut short"):
        list(read_frames(path))


def test_a_corrupt_gzip_stream_is_damage_after_the_packets_it_held(tmp_path):
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(gzip.compress(SSH.read_bytes())[:20_000])
    frames, damage = frames_of(path)
    cut, gz = sorted(damage, key=lambda d: d.offset, reverse=True)  # the gzip stream's damage has no offset (-1)
    assert len(frames) > 10 and cut.frame == len(frames) + 1 and "cut short in a record" in cut.reason
    assert gz.offset == -1 and "compressed stream cut short" in gz.reason
