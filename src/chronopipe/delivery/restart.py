"""Restarting a dead node process under ``guarantee="replay"``: the journal of its inbox.

A replaying node's worker process (``mode="processes"``) takes each batch from its inbox pipe
straight into a journal, an unlinked temporary file: the frame's bytes go from the pipe into
the file with ``splice`` (:meth:`Journal.receive`, the inbox's ``tap``), so at any instant they
are either still in the pipe or in the file, and a kill in the middle of a read leaves a partial
frame in the journal that the next worker completes from the pipe. The worker records the index
of the record it is handling, and acknowledges the batch once it has handled every record and
sent their outputs on (then the journal is empty again). All of it survives a SIGKILL: the
parent reads it when the process dies.

The parent (the runtime's supervisor, through ``NodeActor.on_death``) then decides with
:meth:`Journal.died`: restart the same unit in a new process after a backoff (``BACKOFF``), the
new worker first handling the batch that was in flight, or give up (``MAX_RESTARTS`` deaths in a
row without a batch acknowledged between them), the run then failing with an ActorError. A
record that killed its worker ``kills`` times in a row (at the same place of the same batch) is
not handed to the next worker: it goes to the dead letters instead. A worker that dies before it
journaled the batch it was given (in its start or ``begin()``) leaves that batch to the next one.

What the dead worker had already sent on from the batch in flight is sent again by the new one:
``duplicates`` counts those records (at most the batch, fewer: the records handled before the
killing one). The new worker reads the same inbox pipe (the parent holds every pipe end), so what
upstream sent meanwhile waits there, in order.

>>> j = Journal(kills=2)
>>> j.took(pickle.dumps([10, 11, 12]))  # a batch handled whole: where it dies is not known
>>> j.died(-9), j.resume.records, j.resume.skip, j.duplicates
(0.0, [10, 11, 12], None, 3)
>>> j.took(pickle.dumps([10, 11, 12])); j.at(1)  # the replay goes record by record
>>> j.died(-9), j.resume.skip, j.resume.kills, j.restarts
(0.05, 1, 2, 2)
>>> j.died(-9), j.resume.records  # the next one died before it journaled that batch: still its
(0.0, [10, 11, 12])
>>> j.done(); j.died(-9), j.resume
(0.0, None)
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import tempfile
import weakref
from dataclasses import dataclass
from typing import Any

import multiprocess

from ..channels.pipe import framed, scan

__all__ = ["BACKOFF", "MAX_RESTARTS", "REPLAY_CHUNK", "Journal", "Resume", "WorkerKilledError", "exit_name"]

_ctx = multiprocess.get_context("fork")
#: Deaths in a row (no batch acknowledged between them) after which the run fails instead.
MAX_RESTARTS = 5
#: Seconds to wait before the n-th restart in a row (the last one for every later restart).
BACKOFF = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)
#: Re-injected records a worker handles and sends on before it acknowledges them.
REPLAY_CHUNK = 1000
# the shared slots (_BASE: _ENDS when the frame in the journal began, to tell whether its END was counted)
_BASE, _POS, _ACKED, _REPLAYED, _ENDED, _ENDS, _CLOSING, _LETTERS = range(8)


def exit_name(exitcode: int | None) -> str:
    """``SIGKILL`` for -9, ``exit code 3`` for 3.

    >>> exit_name(-9), exit_name(3)
    ('SIGKILL', 'exit code 3')
    """
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class WorkerKilledError(RuntimeError):
    """The error of a dead letter whose record killed its worker process K times in a row."""


@dataclass
class Resume:
    """What the next worker handles first: the batch in flight at the death, ``skip`` being the
    index of a record to dead-letter instead (it killed ``kills`` workers, the last by ``how``);
    ``skipped`` those of this batch an earlier worker dead-lettered already."""

    records: list[Any]
    skip: int | None = None
    kills: int = 0
    how: str = ""
    skipped: frozenset[int] = frozenset()  # dead-lettered by an earlier worker: left out silently

    def error(self) -> WorkerKilledError:
        """What the dead letter of the skipped record says."""
        return WorkerKilledError(f"killed its worker {self.kills} times ({self.how})")


class _Tap:
    """``Journal.took``: callable as before, and with ``receive`` (pipe.py reads through it)."""

    __slots__ = ("receive", "took")

    def __init__(self, journal: Journal) -> None:
        self.took, self.receive = journal._took, journal.receive

    def __call__(self, data: bytes | None) -> None:
        self.took(data)


class Journal:
    """One replaying process unit's journal (made in the parent, before the first fork)."""

    def __init__(self, kills: int, max_restarts: int | None = None) -> None:
        # at least 2: the first death in a batch handled whole does not say which record it was
        self.kills = max(2, min(kills, MAX_RESTARTS if max_restarts is None else max_restarts))
        self.max_restarts = MAX_RESTARTS if max_restarts is None else max_restarts
        self._view = memoryview(_ctx.RawArray("q", 8)).cast("B").cast("q")
        fd, path = tempfile.mkstemp(prefix="chronopipe-journal-")
        os.unlink(path)  # only the fd: gone with the last process holding it
        self._fd = fd
        weakref.finalize(self, os.close, fd)
        # parent side
        self.replay_total = 0  # records Pipeline.replay gives this unit first (set by its actor)
        self.restarts = 0  # every restart of this unit
        self.duplicates = 0  # records possibly sent on twice
        self.in_a_row = 0  # deaths since the last acknowledged batch
        self.resume: Resume | None = None
        self.last_exit = ""
        self._streak: tuple[int, int, int] = (-1, -1, 0)  # (acked, position, kills)
        self._skips: set[int] = set()  # records of the batch in flight already dead-lettered
        self._acked = -1  # batches acknowledged at the last death
        self._acked_at_resume = -1  # batches acknowledged when ``resume`` was set
        self._extra = b""  # in the worker: bytes read past a damaged frame (the next frame's)
        self._letters_met = 0  # in the worker: letters the batch in hand gave so far

    # -- in the worker -----------------------------------------------------------------
    @property
    def took(self) -> _Tap:
        """The inbox's tap: ``took(data)`` journals a batch's bytes (the batch a restarted worker
        handles first), ``took(None)`` counts one writer's END (a restarted worker's inbox starts
        from ``ends``), ``took.receive(fd)`` takes the next frame from the pipe into the journal."""
        return _Tap(self)

    def _took(self, data: bytes | None) -> None:
        if data is None:
            self._view[_ENDS] += 1
            return
        frame = struct.pack("!i", len(data) + 16) + framed(data)
        os.pwrite(self._fd, frame, 0)
        os.ftruncate(self._fd, len(frame))
        self._view[_POS] = -1  # not known until a replay handles it record by record (at())

    def receive(self, fd: int) -> bytes:
        """The next frame's payload (b"" for an END, counted), read from the pipe ``fd`` into the
        journal first: ``splice`` moves the bytes, so a kill leaves them in the pipe or here."""
        jfd, view = self._fd, self._view
        size = os.fstat(jfd).st_size
        buf = os.pread(jfd, size, 0) if size else b""
        if not buf and self._extra:  # what followed a damaged frame (read in this process): journaled now
            buf, self._extra = self._extra, b""
            os.pwrite(jfd, buf, 0)
        while True:
            if not buf:
                view[_BASE], view[_POS] = view[_ENDS], -1
            k, payload = scan(buf)
            if payload is not None:
                break
            if k > 0:  # the rest of the frame, from the pipe into the file
                moved = os.splice(fd, jfd, k, offset_dst=len(buf))
                if not moved:
                    raise EOFError if not buf else OSError("got end of file during message")
                buf += os.pread(jfd, moved, len(buf))
            else:  # a writer died mid-frame: drop its part
                buf = buf[-k:]
                os.pwrite(jfd, buf, 0)
                os.ftruncate(jfd, len(buf))
        if len(buf) > k:  # only after damage: what follows the frame waits here for the next call
            self._extra = buf[k:]
            os.ftruncate(jfd, k)
        if not payload:  # an END: counted, then nothing is in flight
            view[_ENDS] += 1
            os.ftruncate(jfd, 0)
        return payload

    def at(self, index: int) -> None:
        self._view[_POS] = index

    def done(self) -> None:
        """The batch is handled and its outputs are sent on."""
        os.ftruncate(self._fd, 0)
        self._view[_LETTERS] = self._letters_met = 0
        self._view[_ACKED] += 1

    def letter(self) -> bool:
        """The batch in hand gave one more dead letter: whether to send it (False: a worker that
        died in this batch sent it already, as the first ones of its letters)."""
        self._letters_met += 1
        if self._letters_met <= self._view[_LETTERS]:
            return False
        self._view[_LETTERS] = self._letters_met
        return True

    @property
    def position(self) -> Any:
        """The shared array (slot 1 is the index of the record being handled)."""
        return self._view

    @property
    def replayed_count(self) -> int:
        """Re-injected records (``Pipeline.replay``) handled and sent on: a restarted worker
        starts after them."""
        return self._view[_REPLAYED]

    def replayed(self, count: int) -> None:
        self._view[_REPLAYED] = count

    @property
    def ends(self) -> int:
        """The ENDs of the inbox's writers the workers have read so far."""
        return self._view[_ENDS]

    @property
    def ended(self) -> bool:
        """Whether a worker got to its inbox's end (then it is not restarted: its end() may
        have run and its outputs may be closed)."""
        return bool(self._view[_ENDED])

    def end(self) -> None:
        self._view[_ENDED] = 1

    @property
    def closing(self) -> bool:
        """Whether a worker began closing its outputs: from then on its death cannot be replayed
        (its downstream may have seen its END). Until then, a worker that died after its input
        ended (in ``end()``) could be followed by one that runs ``end()`` again."""
        return bool(self._view[_CLOSING])

    def close(self) -> None:
        self._view[_CLOSING] = 1

    # -- in the parent -----------------------------------------------------------------
    def died(self, exitcode: int | None) -> float | None:
        """The worker died without reporting: seconds to wait before starting the next one, or
        None to give up (``max_restarts`` deaths in a row with no batch finished and no record
        dead-lettered between them). Sets ``resume`` for the next one."""
        view, how = self._view, exit_name(exitcode)
        self.last_exit = how
        acked, pos = view[_ACKED], view[_POS]
        size = os.fstat(self._fd).st_size
        payload = scan(os.pread(self._fd, size, 0))[1] if size else None
        if payload == b"":  # it died reading an END: count it if it did not, then nothing is in flight
            if view[_ENDS] == view[_BASE]:
                view[_ENDS] += 1
            os.ftruncate(self._fd, 0)
            size = 0
        if acked != self._acked:  # a batch was finished since: a fresh start
            self.in_a_row, self._streak, self._skips = 0, (acked, -1, 0), set()
        self._acked = acked
        self.in_a_row += 1
        if self.in_a_row > self.max_restarts:
            return None
        delay = BACKOFF[min(self.in_a_row - 1, len(BACKOFF) - 1)]
        if not size and self.resume is not None and acked == self._acked_at_resume:
            # it died before journaling the batch it was given (in its start or its begin()):
            # that batch is still the next one's, as it was (nothing of it was sent on again)
            self.restarts += 1
            return delay
        self.resume = None
        left = self.replay_total - view[_REPLAYED]
        if left > 0:  # it died among the re-injected records: those since the last chunk come again
            self.duplicates += min(REPLAY_CHUNK, left)
            self.restarts += 1
            return delay
        if payload is not None:  # a whole batch: the next worker handles it first
            records = pickle.loads(payload)
            _, streak_pos, streak_kills = self._streak
            # the same record again: at the same place, or after a death whose place is unknown
            # (a batch handled whole: the first death in it)
            kills = streak_kills + 1 if pos >= 0 and streak_kills and streak_pos in (pos, -1) else 1
            self._streak = (acked, pos, kills)
            self.duplicates += len(records) if pos < 0 else min(pos, len(records))
            letter = pos if kills >= self.kills and pos >= 0 else None
            self.resume = Resume(records, letter, kills, how, frozenset(self._skips))
            self._acked_at_resume = acked
            if letter is not None:  # progress: that record will not be met again
                self._skips.add(letter)
                self._streak, self.in_a_row = (acked, -1, 0), 0
            os.ftruncate(self._fd, 0)
        # else nothing, or part of a frame: the next worker's first receive() completes it
        self.restarts += 1
        return delay
