"""pcap and pcapng, read with ``struct``: frames with integer-nanosecond timestamps, damage reported.

``read_frames(path)`` yields one plain tuple per packet, ``(ts_ns, interface, index, caplen,
wirelen, linktype, data)``, in file order, streaming (memory does not grow with the file).
``read_batches(path)`` gives them a list per chunk read, and with ``tag=...`` each tuple has
the tag after its timestamp (CaptureReader's packet): the parsing loops build those lists and
nothing else per packet, and ``read_frames`` only flattens them, in C.

- pcap (pcap.py): microsecond and nanosecond magic, both byte orders; pcapng (pcapng.py): every
  section with its own byte order, every interface with its own link type, snaplen,
  ``if_tsresol`` and ``if_tsoffset``; Enhanced, Simple and obsolete Packet Blocks; any other
  block is skipped by its length (``blocks=True``: copyable custom blocks are given too, as
  :class:`CustomBlock`). A ``.gz`` (gzip) file is read through gzip, whatever its name.
- ``index`` is the 1-based frame number as tshark counts it: tshark also shows pcapng custom
  blocks as frames, so they take a number here too.
- A Simple Packet Block has no timestamp: it is an :class:`Untimed` tuple with the one of the
  packet before it in the file (0 if none), which keeps it in place in a chronological merge.
- Timestamps are exact integers, never floats (a float loses about 238 ns on current dates).

Damage never stops a read silently and never loses a complete packet: a cut-short file, stray
trailing bytes, a block length that lies, an ``incl_len`` over the snaplen, a sub-second field
of one second or more... each is reported once as a :class:`Damage` (file, byte offset, frame,
reason, time) to ``on_damage``. A damaged block gives no packet; after a length that cannot be
right the read goes on at the next plausible record, and the report says how many bytes were
skipped. Reading is linear in the file and its memory bounded, whatever the file claims
(stream.py). Without ``on_damage`` the first damage raises :class:`CaptureError`. A batch ends
before each report, so a frame-by-frame reader still gets every packet before a damage ahead of
its report.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from itertools import chain
from typing import IO, Any

from .pcap import MAGIC as _PCAP_MAGIC
from .pcap import MAX_RECORD, read_pcap
from .pcapng import MAX_BLOCK, SHB, read_pcapng
from .stream import CHUNK, NS, CaptureError, CustomBlock, Damage, Gunzip, Stream, Untimed, _raise

__all__ = ["CHUNK", "MAX_BLOCK", "MAX_RECORD", "NS", "CaptureError", "CustomBlock", "Damage", "Frame", "Packet",
           "Untimed", "read_batches", "read_frames"]

#: ``(ts_ns, interface, index, caplen, wirelen, linktype, data)``
Frame = tuple[int, int, int, int, int, int, bytes]
#: ``(ts_ns, tag, interface, index, caplen, wirelen, linktype, data)``: a frame with a tag
Packet = tuple[int, Any, int, int, int, int, int, bytes]

_GZIP = b"\x1f\x8b"

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
                 tag: Any = None, blocks: bool = False) -> Iterator[list[Any]]:
    """The frames of a pcap or pcapng file, in file order, a list per chunk read (see the module
    docstring); with a ``tag`` (not None), :data:`Packet` tuples: each frame with the tag after its
    timestamp. ``blocks=True``: copyable pcapng custom blocks too, each in a list of its own.
    Damage as in :func:`read_frames`; a list ends before each report.

    >>> import os, struct, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "two.pcap")
    >>> header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    >>> records = [struct.pack("<IIII", 1324071333 + s, 493287, 4, 78) + b"abcd" for s in (0, 1)]
    >>> _ = open(path, "wb").write(header + b"".join(records))
    >>> batches = list(read_batches(path, tag="tap-A"))
    >>> sum(map(len, batches)), batches[0][0][:5], next(read_batches(path))[0][:4]
    (2, (1324071333493287000, 'tap-A', 0, 1, 4), (1324071333493287000, 0, 1, 4))
    """
    label = name or (os.path.basename(source) if isinstance(source, str | os.PathLike) else
                     getattr(source, "name", "capture"))
    report = on_damage if on_damage is not None else _raise
    return _read(source, str(label), report, tag, blocks)


def _read(source: Any, label: str, report: Callable[[Damage], Any], tag: Any, blocks: bool) -> Iterator[list[Any]]:
    f = open(source, "rb") if isinstance(source, str | os.PathLike) else source  # noqa: SIM115 (closed below)
    try:
        head = f.read(4)
        if head[:2] == _GZIP:
            f = Gunzip(f, head, label, report)
            head = b""
        stream = Stream(f, head)
        stream.fill(24)
        buf = stream.buf
        if len(buf) >= 4 and struct.unpack_from("<I", buf)[0] == SHB:
            yield from read_pcapng(stream, label, report, tag, blocks)
        elif buf[:4] in _PCAP_MAGIC:
            yield from read_pcap(stream, label, report, tag)
        else:
            what = "an empty file" if not buf else "too short for a capture header" if len(buf) < 24 else \
                f"not a pcap or pcapng file (first bytes {buf[:8].hex()})"
            report(Damage(label, 0, what))
    finally:
        if f is not source:
            f.close()
