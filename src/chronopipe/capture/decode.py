"""Decoding a frame's headers: link layer, IPv4/IPv6, TCP/UDP/ICMP, into one flat dict.

``decode(frame, source)`` turns a ``read_frames`` tuple into the record a validation run
works on: the frame's own fields plus what its headers say, as nested dicts that Conditions
address with dotted keys (``"ip.src"``, ``"tcp.dport"``)::

    ts_ns source interface index caplen wirelen linktype data
    eth:  src dst type vlan mpls      (Ethernet; vlan / mpls: VLAN ids / MPLS labels, outermost first)
    ip:   version src dst proto ttl id len frag   (IPv4; IPv6 has no id and ttl = hop limit)
    tcp:  sport dport seq ack flags hdrlen len     (len: payload bytes, from the IP length)
    udp:  sport dport len
    icmp: type code [id seq]          (ICMP and ICMPv6; id and seq for echo requests and replies)
    payload: the transport payload bytes captured (may be shorter than tcp.len / udp.len)
    sliced: True when the capture cut the packet short (caplen < wirelen)
    malformed: why the headers could not be read, or absent

Link types: Ethernet (1, with 802.1Q/802.1ad VLAN tags and MPLS labels), Linux SLL (113) and SLL2 (276), raw IP
(101, 228, 229), BSD loopback/null (0) and OpenBSD loop (108). Other link types give the frame
fields only. Only the first fragment of a fragmented IP packet has a transport header.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = ["LINKTYPES", "decode"]

LINKTYPES = {0: "null", 1: "ethernet", 101: "raw", 108: "loop", 113: "linux_sll", 228: "ipv4", 229: "ipv6",
             276: "linux_sll2"}

_ntop = socket.inet_ntop
_AF4, _AF6 = socket.AF_INET, socket.AF_INET6
_U16 = struct.Struct("!H").unpack_from
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_IP6 = struct.Struct("!IHBB16s16s").unpack_from
_TCP = struct.Struct("!HHIIBB").unpack_from
_UDP = struct.Struct("!HHH").unpack_from
# Ethernet (addresses, type), an IPv4 header without options, a TCP header's first 14 bytes:
# most packets, read with one unpack (see decode)
_ETH_IP4_TCP = struct.Struct("!12sHBBHHHBBH4s4sHHIIBB")
_ETH_IP4_TCP_SIZE = _ETH_IP4_TCP.size
_VLAN = {0x8100, 0x88A8, 0x9100}
_ECHO = {0, 8, 128, 129}  # ICMP echo reply / request, ICMPv6 echo request / reply
_IPV6_EXTENSIONS = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH (fragment: 44)

# Text of the addresses seen, by their raw bytes: a capture has far fewer hosts than packets, and a
# dict lookup costs a fraction of inet_ntop or bytes.hex. Emptied when full, to bound the memory.
_IP_TEXT: dict[bytes, str] = {}  # 4 or 16 raw bytes -> "10.0.0.1" / "2001:db8::1"
_MAC_TEXT: dict[bytes, tuple[str, str]] = {}  # the first 12 bytes of a frame -> (dst, src)
TEXTS_KEPT = 65_536  # per dict


def _ip_text(raw: bytes) -> str:
    text = _IP_TEXT[raw] = _ntop(_AF4 if len(raw) == 4 else _AF6, raw)
    if len(_IP_TEXT) > TEXTS_KEPT:
        _IP_TEXT.clear()
    return text


def _mac_text(raw: bytes) -> tuple[str, str]:
    text = _MAC_TEXT[raw] = (raw[0:6].hex(":"), raw[6:12].hex(":"))
    if len(_MAC_TEXT) > TEXTS_KEPT:
        _MAC_TEXT.clear()
    return text


def decode(frame: tuple, source: str = "") -> dict[str, Any]:
    """The record of one packet: its fields and its decoded headers.

    ``frame`` is a CaptureReader packet ``(ts_ns, source, interface, index, caplen, wirelen,
    linktype, data)`` or a ``read_frames`` frame (the same without ``source``, given apart).

    >>> eth = bytes.fromhex("ffffffffffff" "020000000001" "0800")
    >>> ip = bytes.fromhex("4500002c" "1c46" "4000" "40" "06" "0000" "c0a80001" "c0a80002")
    >>> tcp = bytes.fromhex("3039" "0050" "00000001" "00000000" "50" "02" "ffff" "0000" "0000")
    >>> r = decode((1700000000000000001, 0, 1, 58, 58, 1, eth + ip + tcp + b"hi\\x00\\x00"), "tapA")
    >>> r["ip"]["src"], r["ip"]["dst"], r["tcp"]["dport"], r["tcp"]["flags"], r["tcp"]["len"]
    ('192.168.0.1', '192.168.0.2', 80, 2, 4)
    >>> r["payload"], r["sliced"]
    (b'hi\\x00\\x00', False)
    """
    if len(frame) == 8:
        ts_ns, source, interface, index, caplen, wirelen, linktype, data = frame
    else:
        ts_ns, interface, index, caplen, wirelen, linktype, data = frame
    record: dict[str, Any] = {
        "ts_ns": ts_ns, "source": source, "interface": interface, "index": index, "caplen": caplen,
        "wirelen": wirelen, "linktype": linktype, "data": data, "sliced": caplen < wirelen,
    }
    if linktype == 1 and len(data) >= _ETH_IP4_TCP_SIZE:
        # The common case, Ethernet / IPv4 without options / TCP, in one unpack and no call: a
        # third of the cost of the general path below, which gives the same record
        # (tests/test_capture_decode.py compares them) and decodes every other packet.
        (macs, ethertype, vihl, _tos, total, ident, frag, ttl, proto, _sum, src, dst, sport, dport, seq, ack, off,
         flags) = _ETH_IP4_TCP.unpack_from(data)
        if ethertype == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x1FFF:
            macs = _MAC_TEXT.get(macs) or _mac_text(macs)
            record["eth"] = {"dst": macs[0], "src": macs[1], "type": ethertype}
            record["ip"] = {"version": 4, "src": _IP_TEXT.get(src) or _ip_text(src),
                            "dst": _IP_TEXT.get(dst) or _ip_text(dst), "proto": 6, "ttl": ttl, "id": ident,
                            "len": total, "frag": 0}
            hlen, length = (off >> 4) * 4, total - 20
            record["tcp"] = {"sport": sport, "dport": dport, "seq": seq, "ack": ack, "flags": flags, "hdrlen": hlen,
                             "len": length - hlen if length > hlen else 0}
            record["payload"] = data[34 + hlen:34 + (length if length > hlen else hlen)]
            return record
    _decode_headers(record, linktype, data)
    return record


def _decode_headers(record: dict[str, Any], linktype: int, data: bytes) -> None:
    """Add what the headers say to ``record`` (the general path of decode)."""
    try:
        ethertype, pos = _link(record, linktype, data)
        if ethertype == 0x0800:
            _ipv4(record, data, pos)
        elif ethertype == 0x86DD:
            _ipv6(record, data, pos)
    except (struct.error, IndexError, ValueError) as exc:
        record["malformed"] = _why(exc, record)


def _why(exc: Exception, record: dict[str, Any]) -> str:
    layer = "tcp" if "ip" in record else "ip" if "eth" in record or record["linktype"] != 1 else "link"
    if isinstance(exc, struct.error | IndexError):
        cut = " (the capture cut it short)" if record["sliced"] else ""
        return f"{layer} header incomplete{cut}"
    return str(exc)


def _link(record: dict[str, Any], linktype: int, data: bytes) -> tuple[int, int]:
    """(ethertype of what follows, its offset); ethertype 0: nothing we decode."""
    if linktype == 1:
        ethertype, pos = _U16(data, 12)[0], 14
        raw = data[0:12]
        macs = _MAC_TEXT.get(raw) or _mac_text(raw)
        eth = {"dst": macs[0], "src": macs[1], "type": ethertype}
        if ethertype in _VLAN:
            vlans = []
            while ethertype in _VLAN:
                vlans.append(_U16(data, pos)[0] & 0x0FFF)
                ethertype, pos = _U16(data, pos + 2)[0], pos + 4
            eth["vlan"], eth["type"] = vlans, ethertype
        record["eth"] = eth
        if ethertype in (0x8847, 0x8848):  # MPLS: labels down to the bottom of the stack, then IP
            labels = []
            while True:
                entry = struct.unpack_from("!I", data, pos)[0]
                labels.append(entry >> 12)
                pos += 4
                if entry & 0x100:
                    break
            eth["mpls"] = labels
            version = data[pos] >> 4
            ethertype = 0x0800 if version == 4 else 0x86DD if version == 6 else 0
        return ethertype, pos
    if linktype in (101, 228, 229, 14):
        if not data:
            raise ValueError("empty frame")
        version = data[0] >> 4
        return (0x0800 if version == 4 else 0x86DD if version == 6 else 0), 0
    if linktype == 113:
        return _U16(data, 14)[0], 16
    if linktype == 276:
        return _U16(data, 0)[0], 20
    if linktype in (0, 108):
        family = struct.unpack_from("!I" if linktype == 108 else "=I", data)[0]
        if linktype == 0 and family > 0xFFFF:  # written on a host of the other byte order
            family = struct.unpack_from("<I" if struct.pack("=I", 1)[0] == 0 else ">I", data)[0]
        return (0x0800 if family == 2 else 0x86DD if family in (10, 24, 28, 30) else 0), 4
    return 0, 0


def _ipv4(record: dict[str, Any], data: bytes, pos: int) -> None:
    vihl, _tos, total, ident, frag, ttl, proto, _sum, src, dst = _IP4(data, pos)
    if vihl >> 4 != 4:
        raise ValueError(f"IPv4 header with version {vihl >> 4}")
    hlen = (vihl & 0x0F) * 4
    if hlen < 20:
        raise ValueError(f"IPv4 header length {hlen} is under 20")
    offset = frag & 0x1FFF
    record["ip"] = {"version": 4, "src": _IP_TEXT.get(src) or _ip_text(src), "dst": _IP_TEXT.get(dst) or _ip_text(dst),
                    "proto": proto, "ttl": ttl, "id": ident, "len": total, "frag": offset}
    if offset == 0:
        _transport(record, data, pos + hlen, proto, total - hlen)


def _ipv6(record: dict[str, Any], data: bytes, pos: int) -> None:
    first, plen, nxt, hops, src, dst = _IP6(data, pos)
    if first >> 28 != 6:
        raise ValueError(f"IPv6 header with version {first >> 28}")
    ip = {"version": 6, "src": _IP_TEXT.get(src) or _ip_text(src), "dst": _IP_TEXT.get(dst) or _ip_text(dst),
          "proto": nxt, "ttl": hops, "len": plen + 40, "frag": 0}
    record["ip"] = ip
    pos += 40
    while nxt in _IPV6_EXTENSIONS or nxt == 44:
        if nxt == 44:  # fragment header: offset in 8-byte units
            ip["frag"] = _U16(data, pos + 2)[0] >> 3
            size = 8
        else:
            size = (data[pos + 1] + 2) * 4 if nxt == 51 else (data[pos + 1] + 1) * 8
        nxt, pos, plen = data[pos], pos + size, plen - size
        ip["proto"] = nxt
    if ip["frag"] == 0:
        _transport(record, data, pos, nxt, plen)


def _transport(record: dict[str, Any], data: bytes, pos: int, proto: int, length: int) -> None:
    if proto == 6:
        sport, dport, seq, ack, off, flags = _TCP(data, pos)
        hlen = (off >> 4) * 4
        record["tcp"] = {"sport": sport, "dport": dport, "seq": seq, "ack": ack, "flags": flags, "hdrlen": hlen,
                         "len": max(length - hlen, 0)}
        record["payload"] = data[pos + hlen:pos + max(length, hlen)]
    elif proto == 17:
        sport, dport, ulen = _UDP(data, pos)
        record["udp"] = {"sport": sport, "dport": dport, "len": ulen}
        record["payload"] = data[pos + 8:pos + max(length, 8)]
    elif proto in (1, 58):
        icmp = record["icmp"] = {"type": data[pos], "code": data[pos + 1]}
        if icmp["type"] in _ECHO:  # echo request / reply: identifier and sequence pair them
            icmp["id"], icmp["seq"] = _U16(data, pos + 4)[0], _U16(data, pos + 6)[0]
        record["payload"] = data[pos + 4:pos + max(length, 4)]
