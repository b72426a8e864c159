"""pcapng files: every section with its own byte order, every interface with its own link type,
snaplen, ``if_tsresol`` and ``if_tsoffset``; Enhanced, Simple and obsolete Packet Blocks; copyable
custom blocks on request; any other block skipped by its length.

Enhanced Packet Blocks whole in the buffer with nothing wrong are parsed by a loop that does
nothing else; every other block goes through :func:`_block`, once.

Damage, as tshark sees it: a block whose length cannot be right (under 12, over 64 MiB, past the
end of the file, or with a different trailing length) gives no packet; the bytes after it are
searched for the next plausible block (a known type at a 4-byte boundary, a length within reason,
the same length at its end) and the damage says how many were skipped. A length that is not a
multiple of 4 is damage and its block gives nothing. A section whose major version is not 1 ends
the read (tshark and mergecap stop there too).
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

from .pcap import MAX_RECORD, max_record
from .stream import NS, CustomBlock, Damage, Stream, Untimed

__all__ = ["MAX_BLOCK", "SHB", "read_pcapng"]

SHB = 0x0A0D0D0A
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_PACKET_BLOCKS = (_EPB, _PB)  # enhanced, and the obsolete packet block: the same fields but the first
_COPYABLE = 0x00000BAD  # a custom block a tool may copy (0x40000BAD: must not)
_FRAME_BLOCKS = {0x00000BAD, 0x40000BAD, 0x00000009}  # custom blocks, systemd journal: frames in tshark
_KNOWN = (_EPB, _SPB, _PB, _IDB, 4, 5, 7, 8, 9, 10, 0x00000BAD, 0x40000BAD)
MAX_BLOCK = 1 << 26
_PEEK_OVER = 1 << 20  # a block longer than this has its trailing length checked by a seek before it is read
_OPTIONS = 1 << 16  # room for a packet block's options
_RESYNC_BLOCK = MAX_RECORD + _OPTIONS  # the longest block a resynchronisation accepts
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


class _Interface:
    __slots__ = ("div", "linktype", "mult", "offset_ns", "snaplen")

    def __init__(self, linktype: int, snaplen: int) -> None:
        self.linktype, self.snaplen = linktype, snaplen
        self.mult, self.div, self.offset_ns = 1000, 1, 0  # default resolution: microseconds

    def resolution(self, code: int) -> None:
        units = 2 ** (code & 0x7F) if code & 0x80 else 10 ** code
        self.mult, self.div = (NS // units, 1) if NS % units == 0 else (NS, units)


class _Section:
    """The parse state: byte order, interfaces, frame count, the last timestamp."""

    def __init__(self, label: str, report: Callable[[Damage], Any], tag: Any, blocks: bool) -> None:
        self.label, self.report, self.tag, self.blocks = label, report, tag, blocks
        self.interfaces: list[_Interface] = []
        self.index, self.last_ts, self.seen = 0, 0, False  # seen: a packet was read (last_ts is one's)
        self.order("<")

    def order(self, endian: str) -> None:
        self.endian = endian
        self.head = struct.Struct(endian + "II").unpack_from
        self.epb = struct.Struct(endian + "IIIII").unpack_from
        self.u32 = struct.Struct(endian + "I").unpack_from

    def damage(self, at: int, reason: str, ts: int | None = None) -> None:
        self.report(Damage(self.label, at, reason, self.index + 1,
                           ts if ts is not None else self.last_ts if self.seen else None))

    def record(self, kind: type[tuple[Any, ...]], ts: int, iface: int, caplen: int, wirelen: int, linktype: int,
               data: bytes) -> tuple[Any, ...]:
        self.index += 1
        fields = (ts, iface, self.index, caplen, wirelen, linktype, data)
        return kind((ts, self.tag, *fields[1:]) if self.tag is not None else fields)


def read_pcapng(stream: Stream, label: str, report: Callable[[Damage], Any], tag: Any,
                blocks: bool = False) -> Iterator[list[Any]]:
    """The packets of the pcapng file on ``stream``, a list per buffer (see the module docstring)."""
    s = _Section(label, report, tag, blocks)
    tagged = tag is not None
    out: list[Any] = []
    append = out.append
    while True:
        buf, pos = stream.buf, stream.pos
        end, interfaces, head, epb, u32, index = len(buf), s.interfaces, s.head, s.epb, s.u32, s.index
        while pos + 12 <= end:  # Enhanced Packet Blocks whole in the buffer with nothing wrong
            btype, length = head(buf, pos)
            stop = pos + length
            if btype != _EPB or length & 3 or length < 32 or stop > end or u32(buf, stop - 4)[0] != length:
                break
            iface, high, low, caplen, wirelen = epb(buf, pos + 8)
            if iface >= len(interfaces) or caplen > length - 32:
                break
            i = interfaces[iface]
            ts = ((high << 32 | low) * i.mult) // i.div + i.offset_ns
            index += 1
            data = buf[pos + 28:pos + 28 + caplen]
            append((ts, tag, iface, index, caplen, wirelen, i.linktype, data) if tagged else
                   (ts, iface, index, caplen, wirelen, i.linktype, data))
            pos = stop
        stream.pos, s.index = pos, index
        if out:
            s.last_ts, s.seen = out[-1][0], True
            yield out.copy()  # before reading on: a gzip stream reports its damage as it is read
            out.clear()
        record = _block(stream, s)
        if record is None:
            return
        if record.__class__ is CustomBlock:
            yield [record]  # a list of its own: a reader counts packets a list at a time
        elif record:
            s.last_ts, s.seen = record[0], True
            append(record)


def _block(stream: Stream, s: _Section) -> tuple[Any, ...] | None:
    """The block at ``stream.pos``, read and judged once: its packet or custom block, ``()`` for
    none, None at the end of what can be read."""
    if not stream.fill(12):
        left = len(stream.buf) - stream.pos
        if left:
            s.damage(stream.offset, f"cut short: {left} bytes after the last block, less than a block header")
        return None
    buf, pos, at = stream.buf, stream.pos, stream.offset
    btype = s.u32(buf, pos)[0]
    if btype == SHB:
        bom = buf[pos + 8:pos + 12]
        if bom not in _BOM:
            s.damage(at, f"section header with a bad byte-order magic {bom.hex()}; the rest of the file is unreadable")
            return None
        s.order(_BOM[bom])
    length = s.u32(buf, pos + 4)[0]
    size = (length + 3) & ~3  # tshark reads a length that is not a multiple of 4 as padded: so do we
    left = stream.left()
    why = _bad_length(stream, s, length, size, left)
    if why is not None:
        return _resync(stream, s, (at, size), btype, why, left)
    buf, pos = stream.buf, stream.pos
    stream.pos = pos + size
    if length != size and not (btype == _SPB and _spb_misfit(s, buf, pos, size)):
        s.damage(at, f"block type {btype:#x}: length {length} is not a multiple of 4 (read as padded, as tshark "
                     "does)")
    return _contents(s, btype, buf, pos, size, at)


def _bad_length(stream: Stream, s: _Section, length: int, size: int, left: int | None) -> str | None:
    """Why the block at ``stream.pos`` cannot be read whole by its length (None: it is read)."""
    if length < 12 or length > MAX_BLOCK:
        return f"impossible length {length}"
    limit = _packet_limit(s, stream.buf, stream.pos)
    if length > limit:
        return f"length {length} cannot be right (its packet may be {limit - 32 - _OPTIONS:,} bytes at most)"
    if left is not None and size > left:
        return f"length {length} runs past the end of the file"
    if len(stream.buf) - stream.pos < size:
        if size > _PEEK_OVER:  # check its end before reading it all
            tail = stream.peek(stream.offset + size - 4, 4)
            if tail is not None and s.u32(tail)[0] != length:
                return f"total lengths differ ({length} and {s.u32(tail)[0]})"
        if not stream.fill(size):
            return f"length {length} runs past the end of the file"
    trailer = s.u32(stream.buf, stream.pos + size - 4)[0]
    return None if trailer == length else f"total lengths differ ({length} and {trailer})"


def _packet_limit(s: _Section, buf: bytes, pos: int) -> int:
    """The longest a packet block at ``pos`` may be: wiretap's limit for its interface's link type
    and room for options (any other block: MAX_BLOCK)."""
    btype = s.u32(buf, pos)[0]
    if btype not in (_EPB, _PB, _SPB) or not s.interfaces:
        return MAX_BLOCK
    iface = 0 if btype == _SPB else s.u32(buf, pos + 8)[0] if btype == _EPB else \
        struct.unpack_from(s.endian + "H", buf, pos + 8)[0]
    linktype = s.interfaces[iface].linktype if iface < len(s.interfaces) else 0
    return 32 + max_record(linktype) + _OPTIONS


def _contents(s: _Section, btype: int, buf: bytes, pos: int, size: int, at: int) -> tuple[Any, ...] | None:
    body = pos + 8
    if btype in _PACKET_BLOCKS:
        if btype == _EPB:
            iface, high, low, caplen, wirelen = s.epb(buf, body)
        else:
            iface, _drops, high, low, caplen, wirelen = struct.unpack_from(s.endian + "HHIIII", buf, body)
        if iface >= len(s.interfaces) or caplen > size - 32:
            i = s.interfaces[iface] if iface < len(s.interfaces) else None
            ts = None if i is None else ((high << 32 | low) * i.mult) // i.div + i.offset_ns
            s.damage(at, _bad_packet(iface, len(s.interfaces), caplen, size - 32), ts)
            return ()
        i = s.interfaces[iface]
        ts = ((high << 32 | low) * i.mult) // i.div + i.offset_ns
        return s.record(tuple, ts, iface, caplen, wirelen, i.linktype, buf[body + 20:body + 20 + caplen])
    if btype == SHB:
        major, minor = struct.unpack_from(s.endian + "HH", buf, body + 4)
        s.interfaces = []
        if major != 1:
            s.damage(at, f"section version {major}.{minor} is not pcapng 1.x: the file is not read from here "
                         "(as tshark and mergecap do not)")
            return None
    elif btype == _IDB:
        s.interfaces.append(_idb(buf, body, pos + size - 4, s.endian))
    elif btype == _SPB:
        wirelen = s.u32(buf, body)[0]
        if not s.interfaces:
            s.damage(at, "simple packet block before any interface")
            return ()
        misfit = _spb_misfit(s, buf, pos, size)
        if misfit:
            s.damage(at, misfit)
            return ()
        i = s.interfaces[0]
        caplen = min(wirelen, i.snaplen or wirelen)
        return s.record(Untimed, s.last_ts, 0, caplen, wirelen, i.linktype, buf[body + 4:body + 4 + caplen])
    elif btype in _FRAME_BLOCKS:
        if btype == _COPYABLE and s.blocks:
            data = struct.pack("<I", s.u32(buf, body)[0]) + buf[body + 4:pos + size - 4]
            return s.record(CustomBlock, s.last_ts, -1, len(data), len(data), _COPYABLE, data)
        s.index += 1
    return ()


def _resync(stream: Stream, s: _Section, where: tuple[int, int], btype: int, why: str,
            left: int | None) -> tuple[Any, ...] | None:
    """The block at ``where = (offset, size claimed)`` cannot be read by its length: go on at the
    next plausible block."""
    at, size = where
    cut = left if left is not None else len(stream.buf) - stream.pos
    pattern, before = _pattern(s.endian)

    def plausible(p: int) -> bool:
        if p & 3 or not stream.fill(12):
            return False
        buf, pos = stream.buf, stream.pos
        kind, length = s.head(buf, pos)
        if kind not in _KNOWN and kind != SHB:
            return False
        endian = s.endian
        if kind == SHB:
            endian = _BOM.get(buf[pos + 8:pos + 12], "")
            if not endian:
                return False
            length = struct.unpack_from(endian + "I", buf, pos + 4)[0]
        if length < 12 or length & 3 or length > _RESYNC_BLOCK or not stream.fill(length):
            return False
        buf, pos = stream.buf, stream.pos
        if struct.unpack_from(endian + "I", buf, pos + length - 4)[0] != length:
            return False
        if kind == _EPB:
            iface, caplen = s.u32(buf, pos + 8)[0], s.u32(buf, pos + 20)[0]
            return iface < len(s.interfaces) and caplen <= length - 32
        return True

    found = stream.scan(at + 1, pattern, before, plausible)
    if found is not None:
        s.damage(at, f"block type {btype:#x}: {why}; skipped {found - at:,} bytes to the next plausible block, at "
                     f"byte {found}")
        return ()
    if "past the end" in why:
        s.damage(at, f"cut short in a block: {cut} of {size} bytes")
    else:
        s.damage(at, f"block type {btype:#x}: {why}, and no plausible block follows: the last "
                     f"{stream.offset - at:,} bytes are not read")
    return None


@functools.cache
def _pattern(endian: str) -> tuple[re.Pattern[bytes], int]:
    """A regular expression every block a resynchronisation may accept matches, and where in the
    block its match starts: the low byte of a known type (checked whole by the caller) first, so
    that ``re`` skips what cannot start one in C, then a length that is a multiple of 4 and at most
    _RESYNC_BLOCK, or for a section header its byte-order magic. Bytes that only look like a block
    type (a run of them, or zeros) then cost no Python call each."""
    low = b"[" + b"".join(b"\\x%02x" % t for t in sorted({t & 0xFF for t in (*_KNOWN, SHB)})) + b"]"
    fours = b"[" + b"".join(b"\\x%02x" % b for b in range(0, 256, 4)) + b"]"
    high = b"[\\x00-\\x%02x]" % (_RESYNC_BLOCK >> 16)
    bom = b"(?:" + b"|".join(map(re.escape, _BOM)) + b")"
    if endian == ">":  # the match starts at the type's last byte
        return re.compile(b"(?s)" + low + b"(?:\\x00" + high + b"." + fours + b"|...." + bom + b")"), 3
    rest = b"[" + b"".join(b"\\x%02x" % (t >> 8 & 0xFF) for t in sorted(set(_KNOWN))) + b"]" + b"\\x00[\\x00\\x40]"
    shb = b"\\x0d\\x0d\\x0a...." + bom
    return re.compile(b"(?s)" + low + b"(?:" + rest + fours + b"." + high + b"\\x00|" + shb + b")"), 0


def _spb_misfit(s: _Section, buf: bytes, pos: int, size: int) -> str:
    """Why a Simple Packet Block's length does not fit its packet ('' if it does): its packet is
    min(original length, snaplen) bytes, padded, and nothing else (wiretap reads the trailing
    length right after them, so tshark finds such a block damaged)."""
    if not s.interfaces:
        return ""
    wirelen = s.u32(buf, pos + 8)[0]
    caplen = min(wirelen, s.interfaces[0].snaplen or wirelen)
    if size - 16 == (caplen + 3) & ~3:
        return ""
    length = s.u32(buf, pos + 4)[0]
    return (f"simple packet block of {length} bytes for a packet of {caplen} (original length {wirelen}, snaplen "
            f"{s.interfaces[0].snaplen}), which takes {16 + ((caplen + 3) & ~3)}: block skipped")


def _bad_packet(iface: int, known: int, caplen: int, room: int) -> str:
    if iface >= known:
        return f"packet on interface {iface}, but the section describes {known}: packet skipped"
    return f"captured length {caplen} is over the {room} bytes its block holds: packet skipped"


def _idb(buf: bytes, body: int, end: int, endian: str) -> _Interface:
    linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", buf, body)
    interface = _Interface(linktype, snaplen)
    pos = body + 8
    while pos + 4 <= end:
        code, size = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            break
        value = pos + 4
        if code == 9 and size >= 1:
            interface.resolution(buf[value])
        elif code == 14 and size >= 8:
            interface.offset_ns = struct.unpack_from(endian + "q", buf, value)[0] * NS
        pos = value + (size + 3) // 4 * 4
    return interface
