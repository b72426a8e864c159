"""decode against tshark on real captures: addresses and ports of every frame, per link type."""

import importlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronopipe.capture import read_frames
from chronopipe.capture.decode import decode

decode_module = importlib.import_module("chronopipe.capture.decode")  # the package's name decode is the function

DATA = Path(__file__).parent / "data" / "captures"
CAPTURES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix != ".md" and p.name != "solaris.snoop")
FIELDS = ["frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
          "udp.dstport", "frame.protocols"]


def rel(path: Path) -> str:
    return path.relative_to(DATA).as_posix()


def frames(path: Path) -> list[dict]:
    return [decode(f, path.name) for f in read_frames(path, on_damage=lambda damage: None)]


def tshark_addresses(path: Path) -> dict[int, tuple]:
    """frame -> (src, dst, sport, dport, protocols), outermost header of each kind (-E occurrence=f)."""
    args = ["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
    for name in FIELDS:
        args += ["-e", name]
    rows = {}
    for line in subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.splitlines():
        n, s4, d4, s6, d6, ts, td, us, ud, protocols = line.split("\t")
        rows[int(n)] = (s4 or s6 or None, d4 or d6 or None, int(ts or us or 0) or None, int(td or ud or 0) or None,
                        protocols)
    return rows


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (./requirements.sh installs it "
                    "where apt-get can)")
@pytest.mark.parametrize("path", CAPTURES, ids=rel)
def test_addresses_and_ports_agree_with_tshark(path):
    reference = tshark_addresses(path)
    for record in frames(path):
        if record["index"] not in reference:
            continue  # a frame tshark does not show (a custom block)
        src, dst, sport, dport, protocols = reference[record["index"]]
        if "pweth" in protocols:
            continue  # Ethernet inside MPLS pseudowires: not decoded here (the MPLS labels are)
        ip, l4 = record.get("ip"), record.get("tcp") or record.get("udp")
        assert (ip and ip["src"], ip and ip["dst"]) == (src, dst), f"{rel(path)} frame {record['index']}"
        if "icmp" not in record:  # tshark takes the ports of the packet quoted inside an ICMP error
            assert (l4 and l4["sport"], l4 and l4["dport"]) == (sport, dport), f"{rel(path)} frame {record['index']}"


def first(name: str) -> dict:
    return frames(DATA / name)[0]


def test_a_record_keeps_the_frame_fields():
    record = first("taps/ssh.pcap")
    assert {k: record[k] for k in ("source", "interface", "index", "linktype")} == \
        {"source": "ssh.pcap", "interface": 0, "index": 1, "linktype": 1}
    assert record["caplen"] == len(record["data"])


def test_tcp_fields_and_payload_length_come_from_the_headers():
    syn = first("taps/ssh.pcap")
    assert syn["tcp"]["flags"] & 0x02 and syn["tcp"]["len"] == 0 and syn["payload"] == b""


def test_a_sliced_packet_says_so_and_keeps_the_lengths_its_headers_give():
    record = next(r for r in frames(DATA / "snaplen" / "tcp-timestamp.pcap") if r["sliced"])
    assert record["tcp"]["len"] > len(record["payload"])
    assert "malformed" not in record


def test_a_header_cut_by_the_snaplen_is_reported_as_incomplete():
    frame = next(read_frames(DATA / "taps" / "ssh.pcap"))
    cut = frame[6][:14 + 20 + 10]  # Ethernet, IPv4, then 10 of the 40 TCP header bytes
    record = decode((*frame[:3], len(cut), frame[4], 1, cut))
    assert record["sliced"] and record["ip"]["proto"] == 6
    assert record["malformed"] == "tcp header incomplete (the capture cut it short)"


@pytest.mark.parametrize(("name", "linktype", "version"), [
    ("linktypes/sll2.pcap", 276, 4),
    ("linktypes/test_loopback.pcap", 0, 6),
    ("linktypes/raw_ip.pcap", 101, 6),
    ("pcapng/pcapng-example.pcapng", 1, 4),
])
def test_each_link_type_leads_to_the_ip_header(name, linktype, version):
    record = first(name)
    assert record["linktype"] == linktype and record["ip"]["version"] == version


def test_vlan_tags_are_listed_and_skipped():
    frame = next(read_frames(DATA / "taps" / "ssh.pcap"))
    data = frame[6]
    tagged = data[:12] + struct.pack("!HH", 0x8100, 42) + struct.pack("!HH", 0x8100, 7) + data[12:]
    record = decode((*frame[:3], len(tagged), len(tagged), 1, tagged))
    plain = decode(frame)
    assert record["eth"]["vlan"] == [42, 7] and record["eth"]["type"] == 0x0800
    assert record["ip"] == plain["ip"] and record["tcp"] == plain["tcp"]


def test_mpls_labels_are_listed_and_the_ip_inside_decoded():
    record = next(r for r in frames(DATA / "dups" / "tcpreplay-test.pcap") if "mpls" in r.get("eth", {}))
    assert record["eth"]["mpls"] and record["ip"]["version"] == 4


def test_icmp_type_and_code():
    record = next(r for r in frames(DATA / "reqresp" / "dns_icmp.pcap") if "icmp" in r)
    assert record["icmp"]["type"] in (0, 3, 8, 11)


def test_an_ipv6_fragment_header_is_followed_to_the_transport():
    frame = next(read_frames(DATA / "taps" / "ssh.pcap"))
    udp = struct.pack("!HHHH", 5000, 53, 12, 0) + b"abcd"
    fragment = struct.pack("!BBHI", 17, 0, 0, 1)  # next header UDP, offset 0, more fragments: first fragment
    ip6 = struct.pack("!IHBB", 6 << 28, len(fragment) + len(udp), 44, 64) + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    data = frame[6][:12] + b"\x86\xdd" + ip6 + fragment + udp
    record = decode((*frame[:3], len(data), len(data), 1, data))
    assert record["ip"]["src"] == "::1" and record["ip"]["proto"] == 17
    assert record["udp"] == {"sport": 5000, "dport": 53, "len": 12} and record["payload"] == b"abcd"


def test_garbage_is_malformed_not_an_exception():
    record = decode((0, 0, 1, 5, 5, 1, b"\x00\x01\x02\x03\x04"))
    assert record["malformed"] == "link header incomplete"


def test_an_ipv4_header_with_a_bad_length_is_malformed_with_the_reason():
    frame = next(read_frames(DATA / "taps" / "ssh.pcap"))
    data = bytearray(frame[6])
    data[14] = 0x42  # version 4, header length 8 bytes
    record = decode((*frame[:6], bytes(data)))
    assert record["malformed"] == "IPv4 header length 8 is under 20"


def general_path(frame: tuple) -> dict:
    """decode's record for ``frame`` by its general path only (no Ethernet / IPv4 / TCP shortcut)."""
    ts_ns, interface, index, caplen, wirelen, linktype, data = frame
    record = {"ts_ns": ts_ns, "source": "", "interface": interface, "index": index, "caplen": caplen,
              "wirelen": wirelen, "linktype": linktype, "data": data, "sliced": caplen < wirelen}
    decode_module._decode_headers(record, linktype, data)
    return record


@settings(max_examples=300, deadline=None)
@given(ethertype=st.sampled_from([0x0800, 0x86DD, 0x8100]), vihl=st.sampled_from([0x45, 0x46, 0x44, 0x65]),
       total=st.integers(0, 120) | st.integers(0, 0xFFFF), frag=st.sampled_from([0, 0x4000, 0x2000, 1]) |
       st.integers(0, 0xFFFF), proto=st.sampled_from([6, 17, 1]),
       offset=st.integers(0, 255), flags=st.integers(0, 255), tail=st.binary(max_size=80), cut=st.integers(0, 140),
       common=st.booleans())
def test_the_ethernet_ipv4_tcp_shortcut_gives_the_record_of_the_general_path(ethertype, vihl, total, frag, proto,
                                                                             offset, flags, tail, cut, common):
    if common:  # what the shortcut takes, but for the lengths, the fragment offset and the TCP header
        ethertype, vihl, proto = 0x0800, 0x45, 6
    ip = struct.pack("!BBHHHBBH4s4s", vihl, 0, total, 7, frag, 64, proto, 0, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 2, offset, flags, 1000, 0, 0)
    data = (bytes.fromhex("020000000002" "020000000001") + struct.pack("!H", ethertype) + ip + tcp + tail)[:cut]
    frame = (1, 0, 1, len(data), len(data) + 3, 1, data)
    assert decode(frame) == general_path(frame)


@pytest.mark.parametrize("path", CAPTURES[:20], ids=rel)
def test_every_frame_of_a_capture_decodes_as_the_general_path_decodes_it(path):
    for frame in read_frames(path, on_damage=lambda damage: None):
        assert decode(frame) == general_path(frame)


def test_address_texts_are_remembered_within_a_bound(monkeypatch):
    monkeypatch.setattr(decode_module, "TEXTS_KEPT", 3)
    monkeypatch.setattr(decode_module, "_IP_TEXT", {})
    frame = next(read_frames(DATA / "taps" / "ssh.pcap"))
    records = []
    for last in range(10):  # 10 sources: the remembered texts are forgotten now and then, never wrong
        data = bytearray(frame[6])
        data[29] = last
        records.append(decode((*frame[:6], bytes(data))))
        assert len(decode_module._IP_TEXT) <= 3
    assert [r["ip"]["src"].rpartition(".")[2] for r in records] == [str(n) for n in range(10)]
