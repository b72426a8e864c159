"""pcap (libpcap) files: microsecond and nanosecond magic, both byte orders.

Records are parsed a buffer at a time by a loop that does nothing else per packet; anything
unusual (a record across the buffer's end, a field out of range) leaves that loop for
:func:`_slow`, which looks at that one record once, so one fault gives one report.

A file that ends inside a record whose header is believable (see below) is cut short: that is
reported and the read ends there; the bytes of a record cut by the end of the file are never a
place to look for more packets. A record length over what the link type allows (wiretap's
limits: 256 KiB for most, more for D-Bus and USB), or an unbelievable header whose length runs
past the end of the file, cannot be right: the bytes from just after its header are searched,
byte by byte, for the first believable record header (a sub-second field under one second, a
captured length at most the snaplen, the link type's limit and the original length, an original
length that is not 0, and seconds at most a minute before the last packet's and at most two days
after them) whose record is whole in the file and is followed by the end of the file or by
another record header stamped the same way from it (its length may lie too). The damage says
how many bytes were skipped. The search is a regular expression over the header's fixed bits
(the seconds' high half, the top bytes of the sub-second field and of the lengths) and the
check above at each match: linear in the bytes skipped. No believable record: the rest of the
file is reported unread.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

from .stream import NS, Damage, Stream

__all__ = ["MAGIC", "MAX_RECORD", "max_record", "read_pcap"]

MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True),
}
MAX_RECORD = 1 << 18  #: wiretap's largest standard packet: a longer record means a corrupt file
#: wiretap's larger limits: D-Bus, USB (usbpcap, Linux, Linux mmapped, Darwin), EBHSCR
_LIMITS = {231: 1 << 27, 249: 1 << 27, 189: 1 << 27, 220: 1 << 27, 266: 1 << 27, 279: 1 << 23}
WINDOW_S = 2 * 86_400  #: how far after the last packet a record found after damage may be stamped
BACK_S = 60  #: how far before it


def max_record(linktype: int) -> int:
    """The longest record a link type may hold (wiretap's ``wtap_max_snaplen_for_encapsulation``).

    >>> max_record(1), max_record(231)
    (262144, 134217728)
    """
    return _LIMITS.get(linktype, MAX_RECORD)


class _File:
    """One pcap file's header facts."""

    def __init__(self, buf: bytes) -> None:
        self.endian, nano = MAGIC[buf[:4]]
        snaplen, network = struct.unpack_from(self.endian + "II", buf, 16)
        self.snaplen, self.linktype = snaplen, network & 0xFFFF  # the upper bits carry FCS information
        self.limit = max_record(self.linktype)
        self.snap = snaplen or self.limit
        self.most = min(self.snap, self.limit)  # the longest record a believable header claims
        self.mult, self.sub = (1, NS) if nano else (1000, 1_000_000)
        self.unpack = struct.Struct(self.endian + "IIII").unpack_from

    def believable(self, header: tuple[int, int, int, int], anchor: int | None) -> bool:
        """Whether ``header`` looks like a record's, stamped at most BACK_S before the second
        ``anchor`` and WINDOW_S after it (None: any time)."""
        sec, frac, incl, orig = header
        return (frac < self.sub and orig > 0 and incl <= orig and incl <= self.most
                and (anchor is None or anchor - BACK_S <= sec <= anchor + WINDOW_S))

    def pattern(self, anchor: int | None) -> tuple[re.Pattern[bytes], int]:
        """A regular expression every believable header matches (:meth:`believable`, but for
        ``incl <= orig``), and where in the header its match starts."""
        def most(m: int) -> list[bytes]:  # the two high bytes of a field <= m, high byte first
            if m >> 24:
                return [b"[\\x00-\\x%02x]" % (m >> 24), b"."]
            return [b"\\x00", b"[\\x00-\\x%02x]" % (m >> 16 & 0xFF)]

        big = self.endian == ">"

        def field(high: list[bytes]) -> bytes:  # a 4-byte field in the file's byte order
            return b"".join(high) + b".." if big else b".." + b"".join(reversed(high))

        if anchor is None:
            seconds = b"...."
        else:
            lo, hi = max(anchor - BACK_S, 0) >> 16, min(anchor + WINDOW_S, 0xFFFFFFFF) >> 16
            halves = b"|".join(re.escape(struct.pack(self.endian + "H", h)) for h in range(lo, hi + 1))
            seconds = b"(?:" + halves + b")" + (b".." if big else b"")
        rest = field(most(self.sub - 1)) + field(most(self.most)) + b"(?!\\x00\\x00\\x00\\x00)"
        if big or anchor is None:
            return re.compile(b"(?s)" + seconds + rest), 0
        return re.compile(b"(?s)" + seconds + rest), 2  # little-endian: the match starts at the high half


def read_pcap(stream: Stream, label: str, report: Callable[[Damage], Any], tag: Any) -> Iterator[list[Any]]:
    """The packets of the pcap file on ``stream``, a list per buffer (see the module docstring)."""
    if not stream.fill(24):
        report(Damage(label, 0, f"cut short in the file header: {len(stream.buf)} of 24 bytes"))
        return
    pcap = _File(stream.buf)
    unpack, sub, snap, mult, linktype = pcap.unpack, pcap.sub, pcap.snap, pcap.mult, pcap.linktype
    stream.pos = 24
    index, last_ts, tagged = 0, None, tag is not None
    out: list[Any] = []
    append = out.append
    while True:
        buf, pos = stream.buf, stream.pos
        end = len(buf)
        while pos + 16 <= end:  # whole records with nothing wrong
            sec, frac, incl, orig = unpack(buf, pos)
            stop = pos + 16 + incl
            if stop > end or frac >= sub or incl > snap:
                break
            index += 1
            if tagged:  # one tuple per packet, of the shape asked for
                append((sec * NS + frac * mult, tag, 0, index, incl, orig, linktype, buf[pos + 16:stop]))
            else:
                append((sec * NS + frac * mult, 0, index, incl, orig, linktype, buf[pos + 16:stop]))
            pos = stop
        stream.pos = pos
        if out:
            last_ts = out[-1][0]
            yield out.copy()  # before reading on: a gzip stream reports its damage as it is read
            out.clear()
        packet = _slow(stream, pcap, label, report, index, last_ts)
        if packet is None:
            return
        if packet:
            index += 1
            last_ts = packet[0]
            append((packet[0], tag, *packet[1:]) if tagged else packet)


def _slow(stream: Stream, pcap: _File, label: str, report: Callable[[Damage], Any], index: int,
          last_ts: int | None) -> tuple[Any, ...] | None:
    """The record at ``stream.pos``, read and judged once: ``()`` to go on with the fast loop,
    the packet (untagged) it gives after reporting what is wrong with it, or None: the end."""
    if not stream.fill(16):
        left = len(stream.buf) - stream.pos
        if left:
            report(Damage(label, stream.offset, f"cut short: {left} bytes after the last record, less than a "
                                                "record header", index + 1, last_ts))
        return None
    at = stream.offset
    header = pcap.unpack(stream.buf, stream.pos)
    sec, frac, incl, orig = header
    left = stream.left()
    if incl > pcap.limit or (left is not None and 16 + incl > left) or not stream.fill(16 + incl):
        cut = left if left is not None else len(stream.buf) - stream.pos  # what is left of the file
        anchor = None if last_ts is None else last_ts // NS
        if incl <= pcap.limit and pcap.believable(header, anchor):  # a file cut short, not a length that lies
            report(Damage(label, at, f"cut short in a record: {cut} of {16 + incl} bytes", index + 1, last_ts))
            return None
        return _resync(stream, pcap, label, report, (at, cut), header, index, last_ts)
    if frac < pcap.sub and incl <= pcap.snap:
        return ()  # it only needed the bytes after the buffer
    ts = sec * NS + frac * pcap.mult
    if frac >= pcap.sub:
        report(Damage(label, at, f"sub-second field {frac} is one second or more", index + 1, ts))
    if incl > pcap.snap:
        report(Damage(label, at, f"incl_len {incl} is over the snaplen {pcap.snaplen}", index + 1, ts))
    data = stream.buf[stream.pos + 16:stream.pos + 16 + incl]
    stream.pos += 16 + incl
    return (ts, 0, index + 1, incl, orig, pcap.linktype, data)


def _resync(stream: Stream, pcap: _File, label: str, report: Callable[[Damage], Any], where: tuple[int, int],
            header: tuple[int, int, int, int], index: int, last_ts: int | None) -> tuple[Any, ...] | None:
    """A record whose length cannot be right at ``where = (offset, bytes left in the file)``: go on
    at the first believable record after its header (see the module docstring)."""
    at, cut = where
    incl = header[2]
    anchor = None if last_ts is None else last_ts // NS
    pattern, before = pcap.pattern(anchor)
    unpack, believable = pcap.unpack, pcap.believable

    def plausible(_p: int) -> bool:
        if not stream.fill(16):
            return False
        first = unpack(stream.buf, stream.pos)
        if not believable(first, anchor):
            return False
        size = 16 + first[2]
        if not stream.fill(size + 16):
            return len(stream.buf) - stream.pos == size  # the last record of the file, whole
        sec, frac, _incl, orig = unpack(stream.buf, stream.pos + size)  # its length may lie: not judged
        return frac < pcap.sub and orig > 0 and first[0] - BACK_S <= sec <= first[0] + WINDOW_S

    if incl > pcap.limit:
        why = f"record length {incl} cannot be right (link type {pcap.linktype} holds at most {pcap.limit})"
    else:
        why = f"record length {incl} runs past the end of the file"
    found = stream.scan(at + 16, pattern, before, plausible)
    if found is not None:
        report(Damage(label, at, f"{why}; skipped {found - at:,} bytes to the next plausible record, at byte "
                                 f"{found}", index + 1, last_ts))
        return ()
    if incl <= pcap.limit:
        report(Damage(label, at, f"cut short in a record: {cut} of {16 + incl} bytes", index + 1, last_ts))
    else:
        report(Damage(label, at, f"{why}, and no plausible record follows: the last {stream.offset - at:,} bytes "
                                 "are not read", index + 1, last_ts))
    return None
