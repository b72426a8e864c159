"""pcap and pcapng, read with ``struct``: frames with integer-nanosecond timestamps, damage reported.

``read_frames(path)`` yields one plain tuple per packet, ``(ts_ns, interface, index, caplen,
wirelen, linktype, data)``, in file order, streaming (memory does not grow with the file).
``read_batches(path)`` gives them a list per chunk read, and with ``tag=...`` each tuple has
the tag after its timestamp (CaptureReader's packet): the parsing loops build those lists and
nothing else per packet, and ``read_frames`` only flattens them, in C.

- pcap: microsecond and nanosecond magic, both byte orders; pcapng: every section with its own
  byte order, every interface with its own link type, snaplen, ``if_tsresol`` and
  ``if_tsoffset``; Enhanced, Simple and obsolete Packet Blocks; any other block is skipped by
  its length. A ``.gz`` (gzip) file is read through gzip, whatever its name.
- ``index`` is the 1-based frame number as tshark counts it: tshark also shows pcapng custom
  blocks as frames, so they take a number here too (and are not yielded).
- A Simple Packet Block has no timestamp: it gets the one of the packet before it in the file
  (0 if none), which keeps it in place in a chronological merge.
- Timestamps are exact integers, never floats (a float loses about 238 ns on current dates).

Damage never stops a read silently and never loses a complete packet: a cut-short file, stray
trailing bytes, a block length that lies, an ``incl_len`` over the snaplen, a sub-second field
of one second or more... each is reported as a :class:`Damage` (file, byte offset, frame,
reason) to ``on_damage``; the read goes on where the rest of the file can be trusted and stops
where it cannot (a length that lies). Without ``on_damage`` the first damage raises
:class:`CaptureError`. A batch ends before each report, so a frame-by-frame reader still
gets every packet before a damage ahead of its report.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO, Any

__all__ = ["CaptureError", "Damage", "Frame", "Packet", "read_batches", "read_frames"]

NS = 1_000_000_000
CHUNK = 1 << 16
MAX_RECORD = 1 << 18  # wiretap's largest standard packet: a longer record means a corrupt file
MAX_BLOCK = 1 << 26

#: ``(ts_ns, interface, index, caplen, wirelen, linktype, data)``
Frame = tuple[int, int, int, int, int, int, bytes]
#: ``(ts_ns, tag, interface, index, caplen, wirelen, linktype, data)``: a frame with a tag
Packet = tuple[int, Any, int, int, int, int, int, bytes]

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True),
}
_SHB = 0x0A0D0D0A
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_PACKET_BLOCKS = (_EPB, _PB)  # enhanced, and the obsolete packet block: the same fields but the first
_FRAME_BLOCKS = {0x00000BAD, 0x40000BAD, 0x00000009}  # custom blocks, systemd journal: frames in tshark
_GZIP = b"\x1f\x8b"


@dataclass(frozen=True)
class Damage:
    """Something wrong in a capture file, where it is and what it means.

    >>> str(Damage("a.pcap", 1064, "cut short in a record: 40 of 74 bytes", frame=12))
    'a.pcap@1064 (frame 12): cut short in a record: 40 of 74 bytes'
    """

    file: str
    offset: int  #: byte offset in the (decompressed) file
    reason: str
    frame: int | None = None  #: the frame number the damaged record has, or would have had

    def __str__(self) -> str:
        where = f"{self.file}@{self.offset}" + (f" (frame {self.frame})" if self.frame else "")
        return f"{where}: {self.reason}"


class CaptureError(ValueError):
    """Damage met with no ``on_damage`` handler; ``str()`` starts with ``file@offset``."""

    def __init__(self, damage: Damage) -> None:
        super().__init__(str(damage))
        self.damage = damage

    def __reduce__(self) -> Any:
        return (type(self), (self.damage,))


def read_frames(source: str | os.PathLike[str] | IO[bytes], *, name: str | None = None,
                on_damage: Callable[[Damage], Any] | None = None) -> Iterator[Frame]:
    """The packets of a pcap or pcapng file (see the module docstring).

    >>> import os, struct, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "one.pcap")
    >>> header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    >>> record = struct.pack("<IIII", 1700000000, 250, 4, 60) + b"abcd"
    >>> _ = open(path, "wb").write(header + record + b"xyz")
    >>> damage = []
    >>> list(read_frames(path, on_damage=damage.append))
    [(1700000000000250000, 0, 1, 4, 60, 1, b'abcd')]
    >>> print(damage[0])
    one.pcap@44 (frame 2): cut short: 3 bytes after the last record, less than a record header
    """
    return chain.from_iterable(read_batches(source, name=name, on_damage=on_damage))


def read_batches(source: str | os.PathLike[str] | IO[bytes], *, name: str | None = None,
                 on_damage: Callable[[Damage], Any] | None = None,
                 tag: Any = None) -> Iterator[list[Any]]:
    """The frames of a pcap or pcapng file, in file order, a list per chunk read (see the module
    docstring); with a ``tag`` (not None), :data:`Packet` tuples: each frame with the tag after its
    timestamp.
    Damage as in :func:`read_frames`; a list ends before each report.

    >>> from pathlib import Path
    >>> path = Path(__file__).parents[3] / "tests" / "data" / "captures" / "taps" / "ssh.pcap"
    >>> batches = list(read_batches(path, tag="tap-A"))
    >>> sum(map(len, batches)), batches[0][0][:5], next(read_batches(path))[0][:4]
    (1797, (1324071333493287000, 'tap-A', 0, 1, 78), (1324071333493287000, 0, 1, 78))
    """
    label = name or (os.path.basename(source) if isinstance(source, str | os.PathLike) else
                     getattr(source, "name", "capture"))
    report = on_damage if on_damage is not None else _raise
    return _read(source, str(label), report, tag)


def _raise(damage: Damage) -> None:
    raise CaptureError(damage)


def _read(source: Any, label: str, report: Callable[[Damage], Any], tag: Any) -> Iterator[list[Any]]:
    f = open(source, "rb") if isinstance(source, str | os.PathLike) else source  # noqa: SIM115 (closed below)
    try:
        head = f.read(4)
        if head[:2] == _GZIP:
            f = _Gunzip(f, head, label, report)
            head = f.read(4)
        buf = head + f.read(CHUNK)
        if len(buf) >= 4 and struct.unpack_from("<I", buf)[0] == _SHB:
            yield from _pcapng(f, buf, label, report, tag)
        elif buf[:4] in _PCAP_MAGIC:
            yield from _pcap(f, buf, label, report, tag)
        else:
            what = "an empty file" if not buf else "too short for a capture header" if len(buf) < 24 else \
                f"not a pcap or pcapng file (first bytes {buf[:8].hex()})"
            report(Damage(label, 0, what))
    finally:
        if f is not source:
            f.close()


class _Gunzip:
    """A gzip stream read with zlib, so a cut or corrupt stream still gives every byte before
    the damage (GzipFile drops the last read's bytes when it raises), then reports it."""

    def __init__(self, raw: IO[bytes], head: bytes, label: str, report: Callable[[Damage], Any]) -> None:
        self.raw, self.pending, self.label, self.report = raw, head, label, report
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.out = 0  # decompressed bytes handed out

    def read(self, n: int) -> bytes:
        parts, size = [], 0
        while size < n and self.inflate is not None:
            data = self.pending or self.raw.read(CHUNK)
            self.pending = b""
            if not data:
                if not self.inflate.eof:
                    self._damage("compressed stream cut short")
                self.inflate = None
                break
            try:
                chunk = self.inflate.decompress(data)
            except zlib.error as exc:
                self._damage(f"compressed stream corrupt ({exc})")
                self.inflate = None
                break
            if self.inflate.eof and self.inflate.unused_data:  # another gzip member follows
                self.pending = self.inflate.unused_data
                self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            parts.append(chunk)
            size += len(chunk)
        out = b"".join(parts)
        self.out += len(out)
        return out

    def _damage(self, reason: str) -> None:
        self.report(Damage(self.label, -1, f"{reason} after {self.out:,} bytes: the capture ends there"))

    def close(self) -> None:
        self.raw.close()


def _flushed(out: list[Any]) -> Iterator[list[Any]]:
    """The packets parsed so far, as a list of their own (``out`` is emptied): a parser hands them
    on before it reports damage, so they reach a frame-by-frame reader before the report."""
    if out:
        yield out.copy()
        out.clear()


def _pcap(f: IO[bytes], buf: bytes, label: str, report: Callable[[Damage], Any], tag: Any) -> Iterator[list[Any]]:
    if len(buf) < 24:
        report(Damage(label, 0, f"cut short in the file header: {len(buf)} of 24 bytes"))
        return
    endian, nano = _PCAP_MAGIC[buf[:4]]
    snaplen, network = struct.unpack_from(endian + "II", buf, 16)
    linktype = network & 0xFFFF  # the upper bits carry FCS information
    unpack = struct.Struct(endian + "IIII").unpack_from
    mult, sub = (1, NS) if nano else (1000, 1_000_000)
    snap = snaplen or MAX_RECORD
    pos, base, index, tagged = 24, 0, 0, tag is not None
    out: list[Any] = []
    append = out.append
    while True:
        end = len(buf)
        while pos + 16 <= end:
            sec, frac, incl, orig = unpack(buf, pos)
            stop = pos + 16 + incl
            if frac >= sub or incl > snap:
                yield from _flushed(out)
                if incl > max(snap, MAX_RECORD):
                    report(Damage(label, base + pos, f"record length {incl} is beyond any snaplen (file corrupt "
                                                     f"from here); {end - pos} bytes left unread", index + 1))
                    return
                if frac >= sub:
                    report(Damage(label, base + pos, f"sub-second field {frac} is one second or more", index + 1))
                if incl > snap:
                    report(Damage(label, base + pos, f"incl_len {incl} is over the snaplen {snaplen}", index + 1))
            if stop > end:
                break
            index += 1
            if tagged:  # one tuple per packet, of the shape asked for
                append((sec * NS + frac * mult, tag, 0, index, incl, orig, linktype, buf[pos + 16:stop]))
            else:
                append((sec * NS + frac * mult, 0, index, incl, orig, linktype, buf[pos + 16:stop]))
            pos = stop
        yield from _flushed(out)  # before reading on: a gzip stream reports its damage as it is read
        more = f.read(CHUNK)
        if not more:
            break
        buf, base, pos = buf[pos:] + more, base + pos, 0
    left = len(buf) - pos
    if left:
        if left < 16:
            reason = f"cut short: {left} bytes after the last record, less than a record header"
        else:
            reason = f"cut short in a record: {left} of {16 + unpack(buf, pos)[2]} bytes"
        report(Damage(label, base + pos, reason, index + 1))


class _Interface:
    __slots__ = ("div", "linktype", "mult", "offset_ns", "snaplen")

    def __init__(self, linktype: int, snaplen: int) -> None:
        self.linktype, self.snaplen = linktype, snaplen
        self.mult, self.div, self.offset_ns = 1000, 1, 0  # default resolution: microseconds

    def resolution(self, code: int) -> None:
        units = 2 ** (code & 0x7F) if code & 0x80 else 10 ** code
        self.mult, self.div = (NS // units, 1) if NS % units == 0 else (NS, units)


def _pcapng(f: IO[bytes], buf: bytes, label: str, report: Callable[[Damage], Any],
            tag: Any) -> Iterator[list[Any]]:
    pos, base, index, last_ts, tagged = 0, 0, 0, 0, tag is not None
    endian, interfaces, skipping = "<", [], False
    epb, u32 = struct.Struct("<IIIII").unpack_from, struct.Struct("<I").unpack_from
    out: list[Any] = []
    append = out.append
    while True:
        if len(buf) - pos < 12 or len(buf) - pos < _peek_length(buf, pos, endian):
            yield from _flushed(out)  # before reading on: a gzip stream reports its damage as it is read
            more = f.read(CHUNK)
            if more:
                buf, base, pos = buf[pos:] + more, base + pos, 0
                continue
            left = len(buf) - pos
            if left:
                what = f"cut short: {left} bytes after the last block, less than a block header" if left < 12 \
                    else f"cut short in a block: {left} of {_peek_length(buf, pos, endian)} bytes"
                report(Damage(label, base + pos, what, index + 1))
            return
        btype = u32(buf, pos)[0]
        if btype == _SHB:
            bom = buf[pos + 8:pos + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not endian:
                yield from _flushed(out)
                report(Damage(label, base + pos, f"section header with a bad byte-order magic {bom.hex()}; "
                                                 "the rest of the file is unreadable", index + 1))
                return
            epb, u32 = struct.Struct(endian + "IIIII").unpack_from, struct.Struct(endian + "I").unpack_from
        length = u32(buf, pos + 4)[0]
        if length < 12 or length > MAX_BLOCK:
            yield from _flushed(out)
            report(Damage(label, base + pos, f"block type {btype:#x} has an impossible length {length}; "
                                             "the rest of the file is unreadable", index + 1))
            return
        size = (length + 3) & ~3  # tshark reads a length that is not a multiple of 4 as padded: so do we
        if len(buf) - pos < size:
            continue  # read more (or report the cut) above
        trailer = u32(buf, pos + size - 4)[0]
        if trailer != length:
            yield from _flushed(out)
            report(Damage(label, base + pos, f"block type {btype:#x}: total lengths differ ({length} and "
                                             f"{trailer}); the rest of the file is unreadable", index + 1))
            return
        if length != size:
            yield from _flushed(out)
            report(Damage(label, base + pos, f"block type {btype:#x}: length {length} is not a multiple of 4",
                          index + 1))
        body = pos + 8
        if btype in _PACKET_BLOCKS and not skipping:
            if btype == _EPB:
                iface, high, low, caplen, wirelen = epb(buf, body)
            else:
                iface, _drops, high, low, caplen, wirelen = struct.unpack_from(endian + "HHIIII", buf, body)
            if iface >= len(interfaces) or caplen > size - 32:
                yield from _flushed(out)
                report(Damage(label, base + pos, _bad_packet(iface, len(interfaces), caplen, size - 32),
                              index + 1))
            else:
                i = interfaces[iface]
                last_ts = ((high << 32 | low) * i.mult) // i.div + i.offset_ns
                index += 1
                data = buf[body + 20:body + 20 + caplen]
                append((last_ts, tag, iface, index, caplen, wirelen, i.linktype, data) if tagged else
                       (last_ts, iface, index, caplen, wirelen, i.linktype, data))
        elif btype == _SHB:
            major, minor = struct.unpack_from(endian + "HH", buf, body + 4)
            interfaces, skipping = [], major != 1
            if skipping:
                yield from _flushed(out)
                report(Damage(label, base + pos, f"section version {major}.{minor} is not pcapng 1.x: its "
                                                 "blocks are skipped", index + 1))
        elif skipping:
            pass
        elif btype == _IDB:
            interfaces.append(_idb(buf, body, pos + size - 4, endian))
        elif btype == _SPB:
            wirelen = struct.unpack_from(endian + "I", buf, body)[0]
            if not interfaces:
                yield from _flushed(out)
                report(Damage(label, base + pos, "simple packet block before any interface", index + 1))
            else:
                i = interfaces[0]
                caplen = min(wirelen, size - 16, i.snaplen or wirelen)
                index += 1
                data = buf[body + 4:body + 4 + caplen]
                append((last_ts, tag, 0, index, caplen, wirelen, i.linktype, data) if tagged else
                       (last_ts, 0, index, caplen, wirelen, i.linktype, data))
        elif btype in _FRAME_BLOCKS:
            index += 1
        pos += size


def _peek_length(buf: bytes, pos: int, endian: str) -> int:
    if len(buf) - pos < 12:
        return 12
    if struct.unpack_from("<I", buf, pos)[0] == _SHB:  # a new section may change the byte order
        bom = buf[pos + 8:pos + 12]
        endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
    length = struct.unpack_from(endian + "I", buf, pos + 4)[0]
    return (length + 3) & ~3 if 12 <= length <= MAX_BLOCK else 12


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
