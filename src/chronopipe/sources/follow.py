"""FollowSource: the lines of a file as it grows, like ``tail -F``.

The file is read with ``os.pread`` on a raw descriptor, a MiB at a time, and split at ``\\n`` a chunk at a
time (one decode and one split per chunk, in C): one list of lines per read. At the end of the file the
source looks, every ``poll`` seconds, for what changed:

- *rename rotation*: the path names another file now (its (st_dev, st_ino) is not the open descriptor's).
  The old file is drained to its end, then the new one is read from 0.
- *truncation* (``: > file``, logrotate's ``copytruncate``): the file is shorter than what was read, or its
  first bytes (up to 4 KiB, the file's *head*) changed. It is read again from 0. The lines appended between
  the last read and a copytruncate are in the copy: given ``rotated`` (the copy's path), when the copy
  starts with the same head, the rest of the copy is read from where the file was left first.
- the file does not exist (yet, or between a rename and the new file): the source waits.

A file truncated and written past the old offset between two looks would give its new bytes there: so after
each read the head is read again (a 4 KiB ``pread``); a read made after it changed is dropped, the truncation
followed. A polling follower cannot tell a file written again with the same head (``min(offset, 4 KiB)``
bytes) from the same file; nor recover what only a copy held that the next rotation replaced before it looked.

A line is emitted once its ``\\n`` arrived; a partial last line is held until then, also when the source
stops. When a file is left for good (rotated away, truncated), its unterminated last line is emitted as it
is (``detail["unterminated"]`` counts those). A line longer than ``max_record`` bytes is skipped up to its
``\\n`` and counted as an error: memory stays bounded.

With ``position`` the follower keeps its place in a small JSON file (replaced atomically): device, inode,
head, and the offset after the last whole line taken (not those a consumer left or stop() could not send).
Started again with it, it goes on from there: no line lost, none repeated, also when the file was rotated
meanwhile (the old file being ``rotated``). Not with ``event_time``: held records would be past it.
A save that fails (a full disk) leaves no temporary file, is counted as an error once, and is tried
again every second (silently while the position is the same) until one succeeds.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import stat
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Self, Unpack

from .base import Source, SourceError, SourceOptions
from .framing import MAX_RECORD, split_lines

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["FollowSource"]

CHUNK = 1 << 20  #: bytes read at once
HEAD = 4096  #: bytes of the file's start kept to recognise it (its copy, its restart)
SAVE_EVERY = 1.0  #: seconds between saves of the position while running
TAIL = 1 << 16  #: bytes looked back from the end for the last whole line (from_start=False)

_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_Ident = tuple[int, int]


class FollowSource(Source):
    """A followed file (``tail -F``): its lines (str, without line endings), as it grows.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "app.log")
    >>> with open(path, "w") as f:
    ...     _ = f.write("one\\ntwo\\nthr")
    >>> source = FollowSource(path).start()                  # hosted on a thread
    >>> [source.queue.get(timeout=5) for _ in range(2)]      # "thr" is held: no newline yet
    ['one', 'two']
    >>> with open(path, "a") as f:
    ...     _ = f.write("ee\\n")
    >>> source.queue.get(timeout=5)
    'three'
    >>> source.stop()                                        # a followed file never ends by itself
    >>> stats = source.join(5)
    >>> stats.records, stats.detail["offset"]
    (3, 14)

    ``from_start``: read the file found at start from its beginning; when False, from the end of its last
    whole line (ignored when a position is restored; a file created later is always read from 0). ``poll``:
    seconds between looks at an idle file. ``encoding``: any ASCII-compatible codec (a UTF-8 BOM is skipped);
    undecodable bytes become backslash escapes, each such line counted as an error (``_failed``). ``rotated``:
    where a rotated copy or the renamed file goes (``app.log.1``). ``position``: the file keeping the place,
    saved at most every second and at the end. ``max_record``: the longest line kept, in bytes. ``queue``,
    ``mode``, ``stamp``, ``event_time``, ``lateness``, ``maxsize``: as for every :class:`Source`.

    ``detail``: ``file`` (the path), ``offset`` (after the last whole line read), ``rotations``, ``truncations``,
    ``recovered`` (bytes read from a rotated copy), ``unterminated``, ``waiting`` (the path does not exist now).

    Raises ValueError at once for a bad argument; :class:`SourceError` (from the iteration or the actor's
    ``join()``) when the path is a directory or no regular file, cannot be read, or the position is corrupt.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None, from_start: bool = True,
                 poll: float = 0.05, encoding: str = "utf-8", rotated: str | os.PathLike[str] | None = None,
                 position: str | os.PathLike[str] | None = None, max_record: int = MAX_RECORD,
                 **options: Unpack[SourceOptions]) -> None:
        self.path = os.fspath(path)
        super().__init__(name or os.path.basename(self.path), **options)
        what = f"FollowSource {self.name!r}:"
        if not poll > 0:
            raise ValueError(f"{what} poll must be more than 0 seconds, not {poll!r}")
        if not (isinstance(max_record, int) and max_record > 0):
            raise ValueError(f"{what} max_record must be a number of bytes above 0, not {max_record!r}")
        if position is not None and options.get("event_time") is not None:
            raise ValueError("FollowSource: position= cannot be used with event_time= (records held for"
                             " ordering would be skipped on restart)")
        try:
            self.encoding = codecs.lookup(encoding).name
        except LookupError:
            raise ValueError(f"{what} unknown encoding {encoding!r}") from None
        if self.encoding.startswith(("utf-16", "utf-32")):
            raise ValueError(f"{what} encoding {encoding!r} is not supported: lines are split at b'\\n' (use utf-8)")
        self.from_start, self.poll, self.max_record = from_start, poll, max_record
        self.rotated, self.position = (None if p is None else os.fspath(p) for p in (rotated, position))
        self.detail.update(file=self.path, offset=0, rotations=0, truncations=0, recovered=0, unterminated=0,
                           waiting=False)
        self._fd: int | None = None
        self._ident: _Ident | None = None

    def start(self, runtime: Runtime | None = None) -> Self:
        """Host the source (as :meth:`Source.start`); raises SourceError at once if the path is a directory."""
        if os.path.isdir(self.path):
            raise SourceError(self.name, f"{self.path} is a directory, not a file")
        return super().start(runtime)

    def _batches(self) -> Iterator[list[str]]:
        self._fd, self._ident, self._read_at, self._head = None, None, 0, b""
        self._held: list[bytes] = []
        self._held_len = self._unconsumed = 0
        self._block: bytes | None = None  # the whole lines of the last list yielded
        self._skipping = self._copy = False  # in a line over max_record (dropped to its \n); in a rotated copy
        self._saved: tuple[Any, ...] | None = None  # the state saved
        self._unsaved: tuple[Any, ...] | None = None  # the state whose save failed (counted once)
        self._saved_at = time.monotonic()
        try:
            if self.position is None or not self._restore():
                self._open(self.path, 0 if self.from_start else None)
            while not self.stopping:
                if self._fd is None and not self._open(self.path, 0):
                    self.detail["waiting"] = True
                    self._pause(self.poll)
                    continue
                yield from self._read_to_end()
                if self.stopping:
                    break
                self._save_now_and_then()
                if not (yield from self._changed()):  # nothing changed
                    self._pause(self.poll)
                    yield []  # quiet (what a source ordering by event time learns it from)
        finally:
            try:
                self._save()
            finally:
                self._close()

    def _read_to_end(self) -> Iterator[list[str]]:
        """Lists of lines from the open file, until a read is short (its end, for now) or the head changed."""
        fd, limit = self._fd, self.max_record
        assert fd is not None
        size = min(CHUNK, limit + 1)  # so a line longer than the limit never fits in one read
        while True:
            at, head = self._read_at, self._head
            try:  # the head is read after the bytes: if it changed, they may be the new file's
                chunk = os.pread(fd, size, at)
                if not chunk or (head and os.pread(fd, len(head), 0) != head):
                    return
            except OSError as exc:
                raise SourceError(self.name, f"cannot read {self.detail['file']}: {exc.strerror or exc}") from exc
            self.bytes += (n := len(chunk))
            self.detail["recovered"] += n if self._copy else 0
            self._read_at = at + n
            if len(head) < HEAD and at <= len(head) < at + n:
                self._head = head + chunk[len(head) - at : HEAD - at]
            begun, end = at - self._held_len, chunk.rfind(b"\n") + 1  # where the held line begins
            if not end:
                self._held_len += n
                self._held.append(chunk)
                if self._held_len > limit:
                    self._skip(begun)
            else:
                cut = 0
                if self._skipping or self._held_len + chunk.find(b"\n") > limit:
                    self._skip(begun)
                    cut, self._skipping = chunk.find(b"\n") + 1, False
                block = chunk if end == n and not cut else chunk[cut:end]
                if self._held:
                    block = b"".join([*self._held, block])
                self._held, self._held_len = ([chunk[end:]], n - end) if end < n else ([], 0)
                self.detail["offset"] = self._read_at - self._held_len
                if block:
                    self._block = block
                    yield self._lines(block, begun == 0 and not cut)
                    if self.stopping:
                        return
                    self._save_now_and_then()
            if n < size:
                return

    def _skip(self, begun: int) -> None:
        if not self._skipping:
            self._failed(f"{self.detail['file']}: line at byte {begun} longer than {self.max_record:,} bytes: skipped")
        self._held, self._skipping = [], True

    def _changed(self) -> Generator[list[str], None, bool]:
        """At the end of the file: follow a truncation or a rotation; True once it did."""
        fd = self._fd
        assert fd is not None
        if os.fstat(fd).st_size >= self._read_at and os.pread(fd, len(self._head), 0) == self._head:
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                self.detail["waiting"] = True
                return False
            except OSError as exc:
                raise SourceError(self.name, f"cannot look at {self.path}: {exc.strerror or exc}") from exc
            self.detail["waiting"] = False
            if (now.st_dev, now.st_ino) == self._ident:
                return False
            yield from self._read_to_end()  # what was written to the old file since
            if self.stopping:
                return False
            self.detail["rotations"] += not self._copy
        else:  # truncated (a copy: replaced by the next rotation's, all unread, so it too is read from 0)
            self.detail["truncations"] += 1
            if not self._copy and self._adopt_copy():
                return True  # the held partial line goes on in the copy
            yield from self._flush_held()
            self._read_at, self._head, self.detail["offset"] = 0, b"", 0
            return True
        yield from self._flush_held()  # the file is left for good: the path's file is read from 0
        self._close()
        self._copy = False
        self._open(self.path, 0)
        return True

    def _adopt_copy(self) -> bool:
        """After a truncation: go on with the rotated copy from our offset, if it is this file's."""
        if self.rotated is None or not self._head:
            return False
        try:
            fd = os.open(self.rotated, _OPEN)
        except OSError:
            return False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < self._read_at or os.pread(fd, len(self._head), 0) != self._head:
            os.close(fd)
            return False
        self._close()
        self._fd, self._ident, self._copy = fd, (st.st_dev, st.st_ino), True
        self.detail["file"] = self.rotated
        return True

    def _flush_held(self) -> Iterator[list[str]]:
        """The unterminated last line of a file left for good, as a line."""
        held, self._held, self._held_len, self._skipping = self._held, [], 0, False
        if held:
            raw, self._block = b"".join(held), None
            self.detail["unterminated"] += 1
            self.detail["offset"] = self._read_at
            yield self._lines(raw + b"\n", self._read_at == len(raw))

    def _lines(self, block: bytes, first: bool) -> list[str]:
        """The lines of ``block`` (whole lines, each with its ``\\n``); ``first``: it starts the file."""
        if first and block.startswith(codecs.BOM_UTF8) and self.encoding in ("utf-8", "utf-8-sig"):
            block = block[len(codecs.BOM_UTF8):]
        lines, undecodable = split_lines(block[:-1], self.encoding)
        if undecodable:  # each such line is an error
            self._failed(f"{undecodable} line(s) of {self.detail['file']} with undecodable bytes ({self.encoding}): "
                         "kept with backslash escapes", undecodable)
        return lines

    def _stream(self) -> Iterator[Any]:
        # as Source's, noting the records of the last list a consumer did not take: the position stops before them
        batches = self._counted()
        try:
            for batch in batches:
                rest = iter(batch)
                try:
                    yield from rest
                except GeneratorExit:
                    self._unconsumed = rest.__length_hint__()
                    self.records -= self._unconsumed
                    raise
        finally:
            batches.close()

    def _open(self, path: str, offset: int | None) -> bool:
        """Make ``path`` the file read, from ``offset`` (None: after its last whole line); False if missing."""
        try:
            fd = os.open(path, _OPEN)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SourceError(self.name, f"cannot open {path}: {exc.strerror or exc}") from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise SourceError(self.name, f"{path} is {what}, not a file to follow")
        if offset is None:
            tail = os.pread(fd, min(TAIL, st.st_size), max(0, st.st_size - TAIL))
            offset = st.st_size - (len(tail) - tail.rfind(b"\n") - 1 if b"\n" in tail else 0)
        self._fd, self._ident, self._read_at = fd, (st.st_dev, st.st_ino), offset
        self._head = os.pread(fd, min(HEAD, offset), 0) if offset else b""
        self.detail.update(file=path, offset=offset, waiting=False)
        return True

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _restore(self) -> bool:
        """Go on from the saved position, if there is one (False when there is none)."""
        assert self.position is not None
        try:
            with open(self.position, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SourceError(self.name, f"cannot read the position file {self.position}: {exc}") from exc
        try:
            saved = json.loads(raw)
            ident, offset = (int(saved["dev"]), int(saved["ino"])), int(saved["offset"])
            head = bytes.fromhex(saved["head"])
            if offset < 0 or len(head) > HEAD:
                raise ValueError(f"offset {offset}, {len(head)} bytes of head")
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(self.name, f"the position file {self.position} is corrupt ({type(exc).__name__}: {exc});"
                              " remove it to start afresh") from exc
        for candidate in (self.path, self.rotated):
            if candidate is None or not self._open(candidate, 0):
                continue
            fd, same = self._fd, self._ident == ident
            assert fd is not None
            if same and os.fstat(fd).st_size >= offset and os.pread(fd, len(head), 0) == head:
                self._read_at, self._head, self._saved = offset, head, (ident, offset, head)
                self.detail["offset"] = offset
                return True
            self._close()
            if same:  # the file, but not as it was
                break
        self._ident = None
        self._failed(f"{self.path}: the saved position ({self.position}) does not match the file; read from 0")
        self._open(self.path, 0)
        return True

    def _save_now_and_then(self) -> None:
        if self.position is not None and time.monotonic() - self._saved_at >= SAVE_EVERY:
            self._save()

    def _save(self) -> None:
        """Write the position (atomically: temporary file, fsync, replace, fsync of the folder)."""
        self._saved_at = time.monotonic()
        if self.position is None or self._ident is None:
            return
        offset = self._read_at - self._held_len
        unsent = self._unconsumed or self.detail.get("unsent", 0)  # stop() met a full channel
        if unsent and self._block is not None:  # the last list was not all taken: save before the rest
            block, end = self._block, len(self._block) - 1
            for _ in range(unsent):
                end = block.rfind(b"\n", 0, end)
            offset -= len(block) - end - 1
        state = (self._ident, offset, self._head)
        if state == self._saved:
            return
        text = json.dumps({"file": self.detail["file"], "dev": self._ident[0], "ino": self._ident[1],
                           "offset": offset, "head": self._head.hex()})
        temporary = f"{self.position}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="ascii") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.position)
            dfd = os.open(os.path.dirname(os.path.abspath(self.position)), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # FileNotFoundError: replaced before the folder's fsync
                os.remove(temporary)
            if state != self._unsaved:  # once, not at every retry
                self._failed(f"cannot save the position to {self.position}: {exc}")
            self._unsaved = state
            return
        self._saved, self._unsaved = state, None
