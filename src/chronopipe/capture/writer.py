"""Writing packets: pcapng with one interface per (tap, interface), or nanosecond pcap.

``CaptureWriter(path)`` picks the format from the name (``.pcapng`` or ``.pcap``) and takes the
packet tuples CaptureReader sends. pcapng keeps every tap apart: each (source, interface) pair
becomes an interface of its own, named ``source`` (or ``source:N``), with its link type and a
nanosecond resolution, so timestamps stay exact (an interface whose first packet is stamped
after 2554, past what 64-bit nanoseconds hold, gets the finest of micro-, milli- or whole seconds
that holds it, as its source file must have had). pcap has one link type for the whole file: a
packet of another link type is refused with :class:`WriteError` (write pcapng instead).

As mergecap: a packet with no timestamp of its own (:class:`~chronopipe.capture.stream.Untimed`,
from a Simple Packet Block) is written stamped 0, and a copyable pcapng custom block
(:class:`~chronopipe.capture.stream.CustomBlock`) is copied (pcap has no place for one).

A packet whose timestamp the file cannot hold (before 1970, or past its interface's range or
resolution) is refused with :class:`UnwritableError` and nothing of it is written: the caller
reports it and goes on.
"""

from __future__ import annotations

import os
import struct
from types import TracebackType
from typing import IO, Any, Self

from .stream import CustomBlock, Stepped, Untimed

__all__ = ["CaptureWriter", "UnwritableError", "WriteError"]

NS = 1_000_000_000
_EPB = struct.Struct("<IIIIIII")
_RESOLUTIONS = ((9, 1), (6, 1_000), (3, 1_000_000), (0, NS))  # if_tsresol, nanoseconds per unit
_LIMIT = 1 << 64


class WriteError(ValueError):
    """The output cannot hold these packets at all (pcap: a second link type)."""


class UnwritableError(ValueError):
    """This one packet cannot be written (its timestamp does not fit); nothing of it was."""


def _resolution(ts: int) -> tuple[int, int] | None:
    """The finest resolution whose 64-bit field holds ``ts`` exactly: (if_tsresol, ns per unit).

    >>> _resolution(1_700_000_000_123_456_789), _resolution(18446744073204126329000), _resolution(-1)
    ((9, 1), (6, 1000), None)
    """
    for code, unit in _RESOLUTIONS:
        if ts >= 0 and ts % unit == 0 and ts // unit < _LIMIT:
            return code, unit
    return None


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
        self.blocks = 0  #: custom blocks given (copied to pcapng, not to pcap)
        self._interfaces: dict[tuple[str, int], tuple[int, int]] = {}  # -> (id, ns per unit)
        self._linktype: int | None = None
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        if self.format == "pcapng":
            self._file.write(_shb())

    @property
    def interfaces(self) -> dict[tuple[str, int], int]:
        """(source, interface) -> interface id in the output (pcapng)."""
        return {key: value[0] for key, value in self._interfaces.items()}

    def write(self, packet: tuple[Any, ...]) -> None:
        """Write one packet (or copy one custom block; a :class:`Stepped` one is unwrapped).

        Raises:
            UnwritableError: its timestamp does not fit; nothing was written.
            WriteError: pcap, and a link type other than the file's.
        """
        if packet.__class__ is Stepped:
            packet = packet[1]
        ts, source, interface, index, caplen, wirelen, linktype, data = packet
        if packet.__class__ is not tuple:
            if packet.__class__ is CustomBlock:
                self.blocks += 1
                self._custom(data)
                return
            if packet.__class__ is Untimed:
                ts = 0
        if self.format == "pcap":
            self._pcap_record(ts, caplen, wirelen, linktype, data, source, index)
            return
        key = (source, interface)
        iface = self._interfaces.get(key)
        if iface is None:
            iface = self._interface(key, ts, linktype, source, index)
        number, unit = iface
        if ts < 0:
            raise UnwritableError(f"timestamp {ts} ns is before 1970: a pcapng timestamp cannot hold it: packet not "
                                  "written")
        if unit != 1:
            if ts % unit:
                raise UnwritableError(f"timestamp {ts} ns is not a whole number of the {unit} ns units its interface "
                                      "was written with: packet not written")
            ts //= unit
        if ts >= _LIMIT:
            raise UnwritableError(f"timestamp {ts * unit} ns does not fit: it is past what a 64-bit field of {unit} ns "
                                  f"units holds (1970 to {_last_year(unit)}): packet not written")
        pad = -caplen % 4
        self._file.write(_EPB.pack(6, 32 + caplen + pad, number, ts >> 32, ts & 0xFFFFFFFF, caplen, wirelen))
        self._file.write(data)
        self._file.write(b"\0" * pad + struct.pack("<I", 32 + caplen + pad))
        self.packets += 1

    def _interface(self, key: tuple[str, int], ts: int, linktype: int, source: str, index: int) -> tuple[int, int]:
        resolution = _resolution(ts)
        if resolution is None:
            why = "is before 1970" if ts < 0 else (
                "does not fit: it is after 2554, past 64 bits of nanoseconds, and no coarser unit (micro-, "
                "milliseconds, seconds) holds it exactly")
            raise UnwritableError(f"timestamp {ts} ns {why}: a pcapng timestamp cannot hold it: packet not written")
        code, unit = resolution
        iface = self._interfaces[key] = (len(self._interfaces), unit)
        name = key[0] if key[1] == 0 else f"{key[0]}:{key[1]}"
        self._file.write(_idb(linktype, self.snaplen, name, code))
        return iface

    def _custom(self, body: bytes) -> None:
        if self.format == "pcapng":
            pad = -len(body) % 4
            length = 12 + len(body) + pad
            self._file.write(struct.pack("<II", 0x00000BAD, length) + body + b"\0" * pad + struct.pack("<I", length))

    def _pcap_record(self, ts: int, caplen: int, wirelen: int, linktype: int, data: bytes, source: str,
                     index: int) -> None:
        if self._linktype is None:
            self._linktype = linktype
            self._file.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, self.snaplen or 262144, linktype))
        elif linktype != self._linktype:
            raise WriteError(f"packet {source}:{index} has link type {linktype}, but this pcap file holds link type "
                             f"{self._linktype}: pcap has one link type per file; write .pcapng instead")
        seconds, nanos = divmod(ts, NS)
        if not 0 <= seconds < 1 << 32:
            raise UnwritableError(f"timestamp {ts} ns is outside 1970-2106, what a pcap file holds: packet not written")
        self._file.write(struct.pack("<IIII", seconds, nanos, caplen, wirelen))
        self._file.write(data)
        self.packets += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _last_year(unit: int) -> str:
    """The year a 64-bit count of ``unit`` nanoseconds since 1970 ends in.

    >>> _last_year(1), _last_year(1000)
    ('2554', 'about 586,500')
    """
    if unit == 1:
        return "2554"
    return f"about {round(1970 + _LIMIT * unit / NS / 31_556_952, -2):,.0f}"


def _shb() -> bytes:
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(4, b"chronopipe") + _option(0, b"")
    return struct.pack("<II", 0x0A0D0D0A, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _idb(linktype: int, snaplen: int, name: str, resolution: int = 9) -> bytes:
    options = _option(2, name.encode()) + _option(9, bytes([resolution])) + _option(0, b"")  # if_name, if_tsresol
    body = struct.pack("<HHI", linktype, 0, snaplen) + options
    return struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
