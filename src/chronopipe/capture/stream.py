"""What the pcap and pcapng parsers share: Damage, the record shapes, and the buffered input.

:class:`Stream` hands a parser the file's bytes so that reading stays linear in the file and
bounded in memory whatever the records claim: a record longer than the buffer is read in one
go (never re-joined a chunk at a time), a length that runs past the end of a plain file is
known without reading it, and a block's trailing length can be checked by a seek before the
block is buffered. :meth:`Stream.scan` looks ahead for the next plausible record after damage,
dropping what it passed, so resynchronising costs one pass over the bytes skipped.
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["CHUNK", "NS", "CaptureError", "CustomBlock", "Damage", "Gunzip", "Stepped", "Stream", "Untimed"]

NS = 1_000_000_000
CHUNK = 1 << 16
SCAN_CHUNK = 1 << 20  # bytes read at a time while looking for the next plausible record


@dataclass(frozen=True)
class Damage:
    """Something wrong in a capture file, where it is and what it means.

    ``ts_ns`` names the place in time: the damaged record's own timestamp when its header holds
    one, else that of the packet before it in the file (None before the first packet).

    >>> str(Damage("a.pcap", 1064, "cut short in a record: 40 of 74 bytes", frame=12))
    'a.pcap@1064 (frame 12): cut short in a record: 40 of 74 bytes'
    """

    file: str
    offset: int  #: byte offset in the (decompressed) file; -1: not a place in the file
    reason: str
    frame: int | None = None  #: the frame number the damaged record has, or would have had
    ts_ns: int | None = None  #: when (see above)

    def __str__(self) -> str:
        where = self.file if self.offset < 0 else f"{self.file}@{self.offset}"
        return f"{where}{f' (frame {self.frame})' if self.frame else ''}: {self.reason}"


class CaptureError(ValueError):
    """Damage met with no ``on_damage`` handler; ``str()`` starts with ``file@offset``."""

    def __init__(self, damage: Damage) -> None:
        super().__init__(str(damage))
        self.damage = damage

    def __reduce__(self) -> Any:
        return (type(self), (self.damage,))


class Untimed(tuple):  # type: ignore[type-arg]
    """A packet with no timestamp of its own (a pcapng Simple Packet Block): its ``ts_ns`` is the
    one of the packet before it in the file (0 if none), which keeps it in place in a merge.
    A writer writes it as mergecap does, stamped 0."""

    __slots__ = ()


class CustomBlock(tuple):  # type: ignore[type-arg]
    """A pcapng custom block the format lets a tool copy (type 0x00000BAD), in a packet's shape:
    ``(ts_ns, [tag,] -1, index, length, length, 0x0BAD, body)``, the body starting with the
    Private Enterprise Number, little-endian. ``ts_ns`` is that of the packet before it."""

    __slots__ = ()


class Stepped(tuple):  # type: ignore[type-arg]
    """``(key, packet)``: a packet that steps back in its file, as a keyed reader sends it, its key
    the latest timestamp of the file before it (a writer writes the packet)."""

    __slots__ = ()


def _raise(damage: Damage) -> None:
    raise CaptureError(damage)


class Gunzip:
    """A gzip stream read with zlib, so a cut or corrupt stream still gives every byte before
    the damage (GzipFile drops the last read's bytes when it raises), then reports it."""

    def __init__(self, raw: IO[bytes], head: bytes, label: str, report: Callable[[Damage], Any]) -> None:
        self.raw, self.pending, self.label, self.report = raw, head, label, report
        self.inflate: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
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
            try:  # at most what was asked: a stream of zeros inflates a thousandfold
                chunk = self.inflate.decompress(data, max(n - size, CHUNK))
            except zlib.error as exc:
                self._damage(f"compressed stream corrupt ({exc})")
                self.inflate = None
                break
            self.pending = self.inflate.unconsumed_tail
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


class Stream:
    """A file's bytes for a parser: ``buf[pos:]`` is what is read and not yet used; ``base`` is
    the file offset of ``buf[0]``; ``size`` the file's length when known (a plain file).

    ``copied`` counts the bytes moved between buffers (what makes reading linear or not).
    """

    def __init__(self, f: Any, head: bytes) -> None:
        self.f, self.buf, self.pos, self.base = f, head, 0, 0
        self.eof = False
        self.copied = 0
        self.size: int | None = None
        self.origin = 0
        self.seekable = False
        if not isinstance(f, Gunzip):
            try:
                st = os.fstat(f.fileno())
            except (AttributeError, OSError, ValueError):
                return
            if stat.S_ISREG(st.st_mode) and f.seekable():  # a pipe has no size and cannot seek
                self.origin = f.tell() - len(head)  # where the capture starts in the file
                self.size, self.seekable = st.st_size - self.origin, True

    @property
    def offset(self) -> int:
        """The file offset of ``buf[pos]``."""
        return self.base + self.pos

    def left(self) -> int | None:
        """Bytes from ``pos`` to the end of the file, when known."""
        return None if self.size is None else self.size - self.offset

    def fill(self, n: int) -> bool:
        """Make ``buf[pos:pos + n]`` available (``buf`` rebased so that ``pos`` is 0 when it reads);
        False if the file ends first (then ``buf[pos:]`` is all that is left)."""
        have = len(self.buf) - self.pos
        if have >= n:
            return True
        parts, got = [self.buf[self.pos:]], have
        while got < n and not self.eof:
            more = self.f.read(max(n - got, CHUNK))
            if not more:
                self.eof = True
                break
            parts.append(more)
            got += len(more)
        self.copied += have
        self.buf, self.base, self.pos = b"".join(parts), self.base + self.pos, 0
        return got >= n

    def peek(self, offset: int, n: int) -> bytes | None:
        """``n`` bytes at file ``offset`` ahead of the buffer, by a seek (None: not seekable)."""
        if not self.seekable:
            return None
        here = self.f.tell()
        try:
            self.f.seek(self.origin + offset)
            return self.f.read(n)  # type: ignore[no-any-return]
        finally:
            self.f.seek(here)

    def scan(self, start: int, pattern: re.Pattern[bytes], before: int, plausible: Callable[[int], bool]) -> int | None:
        """The first file offset ``p >= start`` where ``pattern`` matches at ``p + before`` and
        ``plausible(p)`` holds, with ``pos`` there; None at the end of the file. ``plausible`` is
        called with ``pos`` at ``p``: it may ``fill`` and reads ``buf[pos:]``. The bytes passed are
        dropped as it goes, so memory stays bounded and each byte is searched about once."""
        keep = before + 16  # a match may straddle the end of what is read
        self.pos = max(start - self.base, self.pos)
        at = self.pos + before
        while True:
            match = pattern.search(self.buf, at)
            if match is not None:
                self.pos = match.start() - before
                p = self.base + self.pos
                if plausible(p):
                    self.pos = p - self.base
                    return p
                self.pos = p - self.base
                at = self.pos + before + 1
                continue
            if self.eof:
                self.pos = len(self.buf)
                return None
            self.pos = max(self.pos, len(self.buf) - keep)
            self.fill(len(self.buf) - self.pos + SCAN_CHUNK)
            at = self.pos + before
