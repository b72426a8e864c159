"""Framing: bytes as they arrive on a stream (a socket, a pipe) cut into records.

A framer is fed the bytes of one stream in the pieces they came in and returns the records
completed so far; what is left over waits for the next piece. One framer per stream. Both
framers do their work in C, a piece at a time, not a byte or a record at a time.

>>> f = LineFramer()
>>> f.feed(b"first\\nsec"), f.feed(b"ond\\r\\nthi"), f.pending
(['first'], ['second'], 3)
>>> f.end()
['thi']
>>> g = LengthFramer()
>>> g.feed(b"\\x00\\x00\\x00\\x02hi\\x00\\x00"), g.feed(b"\\x00\\x01!")
([b'hi'], [b'!'])
"""

from __future__ import annotations

import codecs
from typing import Any, Literal

__all__ = ["Framing", "FramingError", "LengthFramer", "LineFramer", "framer", "split_lines"]

Framing = Literal["lines", "length"]

#: The longest line or frame a stream may send before it is cut off as a protocol error: the
#: bound on what one stream can make a framer hold.
MAX_RECORD = 1 << 20


class FramingError(ValueError):
    """The stream broke its framing (a line or a frame longer than the limit). ``records``
    holds the records completed before the break. The stream's reader drops the stream's
    connection; the framer must not be fed again."""

    def __init__(self, message: str, records: list[Any] | None = None) -> None:
        super().__init__(message)
        self.records = records or []


class LineFramer:
    """Lines cut at ``\\n`` (a ``\\r`` before it is dropped too), decoded with ``encoding``
    (``None``: bytes lines).

    A line that does not decode is kept, its bad bytes as backslash escapes, and counted in
    ``undecodable``.
    """

    def __init__(self, encoding: str | None = "utf-8", max_line: int = MAX_RECORD) -> None:
        self.encoding = encoding
        self.max_line = max_line
        self.undecodable = 0
        self._rest = b""

    @property
    def pending(self) -> int:
        """Bytes held: the start of a line whose end has not come yet."""
        return len(self._rest)

    def feed(self, data: bytes) -> list[str] | list[bytes]:
        """The lines that ``data`` completes, in order.

        Raises:
            FramingError: a line is longer than ``max_line`` bytes."""
        cut = data.rfind(b"\n")
        if cut < 0:
            self._rest += data
            if len(self._rest) > self.max_line:
                raise FramingError(f"a line longer than {self.max_line:,} bytes")
            return []
        whole = self._rest + data[:cut] if self._rest else data[:cut]
        self._rest = data[cut + 1:]
        lines = self._split(whole)
        if len(self._rest) > self.max_line:
            raise FramingError(f"a line longer than {self.max_line:,} bytes", lines)
        if len(whole) > self.max_line:  # (only then can a whole line be too long: no cost on short reads)
            for i, line in enumerate(lines):
                if len(line) > self.max_line:
                    raise FramingError(f"a line longer than {self.max_line:,} bytes", lines[:i])
        return lines

    def end(self) -> list[str] | list[bytes]:
        """The stream ended: its last line, if it had no ``\\n`` (the stream closed cleanly, so
        the line is whole)."""
        rest, self._rest = self._rest, b""
        return self._split(rest) if rest else []

    def _split(self, whole: bytes) -> list[str] | list[bytes]:
        lines, undecodable = split_lines(whole, self.encoding)
        self.undecodable += undecodable
        return lines


def split_lines(whole: bytes, encoding: str | None) -> tuple[list[Any], int]:
    """The lines of ``whole`` cut at ``\\n`` (a ``\\r`` before it dropped), decoded with
    ``encoding`` (None: bytes), and how many of them did not decode: those keep their bad bytes
    as backslash escapes. The whole text is decoded and split at once, in C.

    >>> split_lines(b"a\\r\\nb\\n\\xff", "utf-8")
    (['a', 'b', '\\\\xff'], 1)
    """
    if encoding is None:
        raw: list[bytes] = whole.split(b"\n")
        return ([line.removesuffix(b"\r") for line in raw] if b"\r" in whole else raw), 0
    try:
        text = whole.decode(encoding)
    except UnicodeDecodeError:
        pass
    else:
        lines = text.split("\n")
        return ([line.removesuffix("\r") for line in lines] if "\r" in text else lines), 0
    out, undecodable = [], 0
    for part in whole.split(b"\n"):
        try:
            line = part.decode(encoding)
        except UnicodeDecodeError:
            line = part.decode(encoding, "backslashreplace")
            undecodable += 1
        out.append(line.removesuffix("\r"))
    return out, undecodable


class LengthFramer:
    """Frames of a 4-byte big-endian length, then that many bytes; records are the bytes."""

    def __init__(self, max_frame: int = MAX_RECORD) -> None:
        self.max_frame = max_frame
        self._rest = b""

    @property
    def pending(self) -> int:
        """Bytes held: a frame not yet whole."""
        return len(self._rest)

    def feed(self, data: bytes) -> list[bytes]:
        """The frames that ``data`` completes, in order.

        Raises:
            FramingError: a frame says it is longer than ``max_frame`` bytes."""
        buf = self._rest + data if self._rest else data
        out, at, size = [], 0, len(buf)
        while size - at >= 4:
            length = int.from_bytes(buf[at:at + 4], "big")
            if length > self.max_frame:
                raise FramingError(f"a frame of {length:,} bytes, more than the limit of {self.max_frame:,}", out)
            if size - at - 4 < length:
                break
            out.append(buf[at + 4:at + 4 + length])
            at += 4 + length
        self._rest = buf[at:]
        return out

    def end(self) -> list[bytes]:
        """The stream ended; a frame cut short is not a record.

        Raises:
            FramingError: the stream ended inside a frame."""
        rest, self._rest = self._rest, b""
        if rest:
            raise FramingError(f"the stream ended inside a frame ({len(rest)} bytes of it came)")
        return []


def framer(framing: Framing, encoding: str | None = "utf-8",
           max_record: int = MAX_RECORD) -> LineFramer | LengthFramer:
    """A new framer for one stream: ``"lines"`` (decoded with ``encoding``) or ``"length"``.

    Raises:
        ValueError: another framing, an unknown encoding, a ``max_record`` below 1."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
    if not isinstance(max_record, int) or max_record < 1:
        raise ValueError(f"max_record must be a number of bytes >= 1, not {max_record!r}")
    if framing == "lines":
        return LineFramer(encoding, max_record)
    if framing == "length":
        return LengthFramer(max_record)
    raise ValueError(f"framing must be 'lines' or 'length', not {framing!r}")
