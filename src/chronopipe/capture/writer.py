"""Writing packets: pcapng with one interface per (tap, interface), or nanosecond pcap.

``CaptureWriter(path)`` picks the format from the name (``.pcapng`` or ``.pcap``) and takes the
packet tuples CaptureReader sends. pcapng keeps every tap apart: each (source, interface) pair
becomes an interface of its own, named ``source`` (or ``source:N``), with its link type and a
nanosecond resolution, so timestamps stay exact. pcap has one link type for the whole file: a
packet of another link type is refused with a clear error (write pcapng instead).
"""

from __future__ import annotations

import os
import struct
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["CaptureWriter"]

NS = 1_000_000_000
_EPB = struct.Struct("<IIIIIII")


class CaptureWriter:
    """Write packet tuples ``(ts_ns, source, interface, index, caplen, wirelen, linktype, data)``.

    >>> import os, tempfile
    >>> from chronopipe.capture import read_frames
    >>> path = os.path.join(tempfile.mkdtemp(), "out.pcapng")
    >>> with CaptureWriter(path) as out:
    ...     out.write((1_700_000_000_123_456_789, "tapA", 0, 1, 3, 60, 1, b"abc"))
    ...     out.write((1_700_000_000_123_456_790, "tapB", 0, 1, 2, 60, 1, b"de"))
    >>> [(f[0], f[1], f[6]) for f in read_frames(path)]
    [(1700000000123456789, 0, b'abc'), (1700000000123456790, 1, b'de')]
    """

    def __init__(self, path: str | os.PathLike[str], *, snaplen: int = 0) -> None:
        self.path = os.fspath(path)
        self.format = "pcap" if self.path.endswith(".pcap") else "pcapng"
        self.snaplen = snaplen
        self.packets = 0
        self._interfaces: dict[tuple[str, int], int] = {}
        self._linktype: int | None = None
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        if self.format == "pcapng":
            self._file.write(_shb())

    @property
    def interfaces(self) -> dict[tuple[str, int], int]:
        """(source, interface) -> interface id in the output (pcapng)."""
        return dict(self._interfaces)

    def write(self, packet: tuple[Any, ...]) -> None:
        ts, source, interface, _index, caplen, wirelen, linktype, data = packet
        if not 0 <= ts < 1 << 64:
            raise ValueError(f"packet {source}:{_index}: timestamp {ts} ns is outside 1970-2554, which 64-bit "
                             "nanosecond fields hold")
        if self.format == "pcap":
            self._pcap_record(ts, caplen, wirelen, linktype, data, source, _index)
            return
        key = (source, interface)
        iface = self._interfaces.get(key)
        if iface is None:
            iface = self._interfaces[key] = len(self._interfaces)
            self._file.write(_idb(linktype, self.snaplen, source if interface == 0 else f"{source}:{interface}"))
        pad = -caplen % 4
        self._file.write(_EPB.pack(6, 32 + caplen + pad, iface, ts >> 32, ts & 0xFFFFFFFF, caplen, wirelen))
        self._file.write(data)
        self._file.write(b"\0" * pad + struct.pack("<I", 32 + caplen + pad))
        self.packets += 1

    def _pcap_record(self, ts: int, caplen: int, wirelen: int, linktype: int, data: bytes, source: str,
                     index: int) -> None:
        if self._linktype is None:
            self._linktype = linktype
            self._file.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, self.snaplen or 262144, linktype))
        elif linktype != self._linktype:
            raise ValueError(f"packet {source}:{index} has link type {linktype}, but this pcap file holds link type "
                             f"{self._linktype}: pcap has one link type per file; write .pcapng instead")
        seconds, nanos = divmod(ts, NS)
        self._file.write(struct.pack("<IIII", seconds, nanos, caplen, wirelen))
        self._file.write(data)
        self.packets += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _shb() -> bytes:
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(4, b"chronopipe") + _option(0, b"")
    return struct.pack("<II", 0x0A0D0D0A, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _idb(linktype: int, snaplen: int, name: str) -> bytes:
    options = _option(2, name.encode()) + _option(9, b"\x09") + _option(0, b"")  # if_name, if_tsresol = 10^-9
    body = struct.pack("<HHI", linktype, 0, snaplen) + options
    return struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
