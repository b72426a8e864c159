"""ProcessChannel: pickled batches through a one-way OS pipe, for actors in other processes.

Records travel as plain pickle (protocol 5) in batches of up to ``batch_size``; a partial
batch leaves after at most ``linger`` seconds (or at once when its actor goes idle), so a
lone record is not parked. A process-shared semaphore bounds the batches in flight, which
bounds memory to about ``maxsize + 2 * batch_size`` records whatever the pipe holds.

A batch of flat tuples (rows of ints, floats, strings, bytes: packets, CSV rows) is pickled
without the memo (see :func:`dumps_batch`): half the cost to send and a tenth less to receive.
A batch is a frame (:func:`framed`: magic, length and crc32s before it), so a reader drops the
half frame a writer killed mid-send left and goes on with the next (:func:`scan`); writers of a
shared pipe take turns under a lock the kernel drops with a dead holder (``fcntl.lockf``).

Children are forked (see chronopipe.runtime): a channel made before an actor starts is
inherited by it; channels cannot be pickled into pool tasks.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import struct
import tempfile
import time
import weakref
import zlib
from collections.abc import Iterable
from typing import Any

import multiprocess
from multiprocess.connection import Pipe

from .base import Channel, ChannelBroken, Mode, NotPicklable, remaining
from .batched import BatchedWriter
from .end import END
from .outbox import LINGER, dumps_batch

__all__ = ["HEAD", "ProcessChannel", "dumps_batch", "framed", "keep_only", "live_channels", "scan"]

_ctx = multiprocess.get_context("fork")
_F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20
_END_FRAME = b""
_MAGIC = b"\xc7cP\x1d"
#: multiprocess's length prefix, magic, payload length, payload crc32, crc32 of the 16 bytes before
_HEAD = struct.Struct("!i4sIII")
HEAD = _HEAD.size

log = logging.getLogger("chronopipe.channels")
_live: weakref.WeakSet[ProcessChannel] = weakref.WeakSet()


def framed(data: bytes) -> bytes:
    """``data`` behind the header, as ``send_bytes`` is given it (it adds the length prefix)."""
    head = _HEAD.pack(len(data) + 16, _MAGIC, len(data), zlib.crc32(data), 0)
    return head[4:16] + struct.pack("!I", zlib.crc32(head[:16])) + data


def scan(buf: bytes) -> tuple[int, bytes | None]:
    """``buf`` from where a frame should start: ``(k, None)``, k > 0: up to k more bytes needed;
    ``(end, payload)``: ``buf[:end]`` is a whole frame; ``(-i, None)``: drop i bytes of damage
    (a frame cut short by a dead writer: the next whole header shows where it stops).

    >>> frame = struct.pack("!i", 19) + framed(b"abc")
    >>> scan(frame[:7]), scan(frame), scan(frame[:10] + frame), scan(frame[:22] + frame)
    ((13, None), (23, b'abc'), (-10, None), (-22, None))
    """
    if len(buf) < HEAD:
        return HEAD - len(buf), None
    size, magic, n, crc, check = _HEAD.unpack_from(buf)
    if magic == _MAGIC and size == n + 16 and zlib.crc32(buf[:16]) == check:
        if len(buf) < HEAD + n:  # wait for the rest, unless another frame began inside it
            j = _header_at(buf, HEAD, True)
            return (HEAD + n - len(buf), None) if j < 0 else (-j, None)
        if zlib.crc32(payload := buf[HEAD:HEAD + n]) == crc:
            return HEAD + n, payload
    j = _header_at(buf, 1, False)
    return -(j if j >= 0 else len(buf) - 7), None


def _header_at(buf: bytes, start: int, whole: bool) -> int:
    """Where the first whole, valid header at or after ``start`` begins (or, unless ``whole``,
    one cut off by the end of ``buf``); -1 if none."""
    i = buf.find(_MAGIC, start + 4)
    while i >= 0:
        if i + HEAD - 4 > len(buf):
            return -1 if whole else i - 4
        size, _, n, _, check = _HEAD.unpack_from(buf, i - 4)
        if size == n + 16 and zlib.crc32(buf[i - 4:i + 12]) == check:
            return i - 4
        i = buf.find(_MAGIC, i + 1)
    return -1


def read_some(fd: int, k: int, started: bool) -> bytes:
    """Up to ``k`` bytes from ``fd`` (waits for one); EOFError at the end of file, OSError mid-frame."""
    chunk = os.read(fd, k)
    if not chunk:
        raise EOFError if not started else OSError("got end of file during message")
    return chunk


class _WriterLock:
    """A POSIX record lock on an unlinked file (gone with a dead holder); threads: ``_wlock``."""

    def __init__(self) -> None:
        self.fd, path = tempfile.mkstemp(prefix="chronopipe-writers-")
        os.unlink(path)
        weakref.finalize(self, os.close, self.fd)

    def acquire(self, timeout: float) -> bool:
        end, delay = time.monotonic() + timeout, 0.0001
        while True:
            with contextlib.suppress(OSError):
                return fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB) is None
            if time.monotonic() >= end:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)


def live_channels() -> list[ProcessChannel]:
    """Every process channel alive in this process."""
    return list(_live)


class ProcessChannel(BatchedWriter, Channel, mode="process"):
    """Cross-process channel with batching, bounded by a semaphore over batches in flight.

    Its writer side is a :class:`~chronopipe.channels.batched.BatchedWriter` (as a ray
    channel's): an :class:`~chronopipe.channels.outbox.Outbox` whose sender pickles one batch of
    ``batch_size`` into the pipe, the process's linger thread as its timer.
    """

    def __init__(
        self,
        maxsize: int = 10_000,
        *,
        name: str = "channel",
        mode: Mode = "process",
        kind: Mode | None = None,
        writers: int = 1,
        batch_size: int = 1000,
        linger: float = 0.005,
    ) -> None:
        super().__init__(maxsize, name=name, mode=mode, kind=kind, writers=writers)
        if batch_size < 1 or linger < 0:
            raise ValueError(f"channel {name!r}: batch_size must be >= 1 and linger >= 0")
        self.batch_size = min(batch_size, maxsize)
        self.linger = linger
        self._reader, self._writer = Pipe(duplex=False)
        try:  # a larger pipe halves the context switches; capped for non-root users
            fcntl.fcntl(self._writer.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass
        self._slots = _ctx.BoundedSemaphore(max(1, maxsize // self.batch_size))
        self._send_lock = _WriterLock() if writers > 1 else None
        self._reset_local_state()
        _live.add(self)

    def _reset_local_state(self) -> None:
        """Per-process state: a forked child must not resend its parent's partial batch."""
        self._reset_writer()
        self._rbatch, self._ridx = [], 0
        self._carry = b""  # bytes read past a damaged frame: the start of the next one
        self.damaged = 0  # bytes of damaged frames dropped here (a writer died mid-frame)
        self.tap: Any = None  # the reader's: called with each batch's bytes before it is unpickled, None for an END

    def __reduce__(self) -> Any:
        raise TypeError(f"channel {self.name!r} cannot be pickled: give it to an Actor, which inherits it "
                        "when its process starts")

    # -- writer side (put, put_many, the linger timer: batched.py) --------------------
    def flush(self) -> None:
        self._outbox.flush()

    def close(self) -> None:
        """One writer is done: what this process holds is sent, then one END.

        Each writer closes once, and the reader ends after ``writers`` ENDs, whichever processes
        they came from; several writers in one process (two thread actors) close it once each.
        Closing it again once ``writers`` closes came from this process does nothing."""
        with self._wlock:
            if self._closed_here:
                return
            self._outbox.flush()
            self._send(_END_FRAME, None)
            self._closes_here += 1
            self._closed_here = self._closes_here >= self.writers

    def _send_batch(self, batch: list[Any] | tuple[Any, ...], timeout: float | None) -> None:
        """Pickle and send one batch (under _wlock); raises, having sent nothing, if it cannot."""
        try:
            data = dumps_batch(batch)
        except Exception as exc:
            raise NotPicklable(
                f"channel {self.name!r}: a record cannot be pickled ({exc}); process channels carry "
                "plain pickle: send plain data, or connect the actors with a thread channel"
            ) from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._slots.acquire(timeout=remaining(deadline, f"channel {self.name!r} stayed full")):
            self._check_broken()
        self._send(data, deadline)
        self._items_put += len(batch)
        self._batches_sent += 1

    def _send(self, data: bytes, deadline: float | None) -> None:
        self._check_broken()
        lock = self._send_lock
        if lock is not None:
            while not lock.acquire(timeout=remaining(deadline, f"channel {self.name!r}: writers busy")):
                self._check_broken()
        try:
            self._writer.send_bytes(framed(data))
        except (OSError, ValueError, TypeError) as exc:  # TypeError: abort() closed the pipe mid-send
            self._check_broken()
            raise ChannelBroken(f"channel {self.name!r}: the reader is gone ({exc})") from exc
        finally:
            if lock is not None:
                lock.release()

    # -- reader side -------------------------------------------------------------------
    def _receive(self, timeout: float) -> list[Any] | None:
        tap = self.tap
        journal = getattr(tap, "receive", None)  # a journaled reader: each frame lands in its journal first
        try:
            if not self._carry and not self._reader.poll(timeout):
                return None
            data = journal(self._reader.fileno()) if journal is not None else self._read_frame()
        except (EOFError, OSError, TypeError) as exc:  # TypeError: abort() closed the pipe mid-receive
            self._check_broken()
            raise ChannelBroken(
                f"channel {self.name!r}: every writer is gone before END (a producer died?)"
            ) from exc
        if data == _END_FRAME:
            self._ends_seen += 1
            if tap is not None and journal is None:
                tap(None)
            return [END] if self._ends_seen >= self.writers else None
        if tap is not None and journal is None:
            tap(data)
        self._slots.release()
        try:
            return pickle.loads(data)
        except Exception as exc:  # a record whose class is not importable here, or whose __reduce__ raises
            raise NotPicklable(f"channel {self.name!r}: a batch cannot be unpickled here ({type(exc).__name__}: "
                               f"{exc}); process channels carry plain pickle: send plain data") from exc

    def _read_frame(self) -> bytes:
        """The next whole frame's payload; a damaged one (a writer died mid-frame) is dropped."""
        fd, buf, self._carry, dropped = self._reader.fileno(), self._carry, b"", 0
        while (found := scan(buf))[1] is None:
            if found[0] > 0:
                buf += read_some(fd, found[0], bool(buf))
                continue
            dropped -= found[0]
            buf = buf[-found[0]:]
        if dropped:
            self.damaged += dropped
            log.warning("channel %r: dropped %d bytes a writer left unfinished", self.name, dropped)
        self._carry = buf[found[0]:]
        return found[1]

    def qsize(self) -> int:
        return len(self._outbox) + super().qsize()

    def wait_handle(self) -> int | None:
        """The pipe's read end, for wait_any (None once this process closed it: ready() tells why)."""
        return None if self._reader.closed else self._reader.fileno()

    # -- cancellation and fork hygiene -------------------------------------------------
    def abort(self, reason: BaseException | None = None) -> None:
        """Break the channel here; closing our ends wakes a thread blocked in the pipe."""
        super().abort(reason)
        LINGER.forget(self)
        self.release()

    def release(self, *, read: bool = True, write: bool = True) -> None:
        """Close this process's copy of the pipe ends (no END is sent)."""
        for conn, wanted in ((self._reader, read), (self._writer, write)):
            if wanted and not conn.closed:
                try:
                    conn.close()
                except OSError:
                    pass


def keep_only(readers: Iterable[Channel] = (), writers: Iterable[Channel] = ()) -> None:
    """In a fresh child: close every inherited pipe end this process will not use.

    Then a dead neighbour shows up as EOF or a broken pipe instead of a silent hang.
    """
    read_ids, write_ids = {id(c) for c in readers}, {id(c) for c in writers}
    for ch in live_channels():
        ch.release(read=id(ch) not in read_ids, write=id(ch) not in write_ids)


def _after_fork_in_child() -> None:
    LINGER._after_fork_in_child()
    for ch in live_channels():
        ch._reset_local_state()


os.register_at_fork(after_in_child=_after_fork_in_child)
