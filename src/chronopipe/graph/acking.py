"""The caller's side of acknowledgements: feeding with marks, the window, the saved state.

Under ``guarantee="confirm"`` or ``"track"`` (any node), or with a ``state_dir``, ``consume()``
feeds the source through :class:`Acking`: the run's executor sends a mark after every batch of
records (delivery/acks.py) and the terminal nodes confirm them in the run's ledger. Here:

* the source learns how many of its records are done with: its ``confirm(n)`` method, if it has
  one, is called on the feeding thread whenever that number grows, and once at the end;
* the feed never runs more than ``WINDOW`` records ahead of the confirmed (with a state_dir: the
  saved) offset: it waits, watching for a failed actor, so what a kill can make the next run
  handle twice is bounded. Unless confirmations stall for ``STALL`` seconds (a merge holding
  records while one of its branches stays silent): then it feeds on without the window, says
  so in a warning and in the state (a rerun then counts every record it feeds as possibly
  handled twice), rather than wait for records it holds back itself;
* with a ``state_dir``, the confirmed offset is saved (delivery/state.py) at most every
  ``SAVE_EVERY`` seconds or when the window is half used, and a run starts after the saved one,
  counting the records it may handle a second time in ``duplicates_possible``. The last batch's
  offset is saved only once the run finished (its nodes' end() ran): a run killed in end() is
  redone from the batch before.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from typing import Any

from ..delivery import StateError, StateFile, source_identity
from .wiring import MARKED, _first

__all__ = ["SAVE_EVERY", "STALL", "WINDOW", "Acking"]

log = logging.getLogger("chronopipe.graph")
#: Records the feed may send beyond the confirmed (or saved) offset before it waits.
WINDOW = 100_000
#: Seconds between two saves of the state while the confirmed offset grows.
SAVE_EVERY = 0.5
#: Seconds the feed waits at the window for a confirmation before it feeds on without one.
STALL = 5.0


class Acking:
    """One acknowledged run of ``consume(source)``: made before the run begins.

    Raises:
        StateError: with a ``state_dir``, a source that cannot be resumed (names no file, has no
            ``resume_key``), or a saved state of another source or of a file that changed.
    """

    def __init__(self, name: str, source: Any, state_dir: Any) -> None:
        self.state = StateFile(state_dir, name) if state_dir is not None else None
        self.identity = source_identity(source) if self.state is not None else {}
        previous = self.state.load() if self.state is not None else None
        self.start = self.state.resume_at(self.identity) if self.state is not None else 0
        self.resumed = previous is not None  # an earlier run saved a state: we go on after it
        #: the killed run before us may have handled up to WINDOW records after ``start``
        self._redo = 0 if previous is None or previous.get("finished") else previous.get("window") or sys.maxsize
        self.bounded = True  # the feed keeps within WINDOW of the confirmed records (until a stall)
        self.saved = self.confirmed = self.fed = self.start
        self.finished = False
        self._confirm = getattr(source, "confirm", None)
        self._told = self.start
        self._last_save = time.monotonic()
        self.run: Any = None
        self._pulled = itertools.count()

    @property
    def duplicates_possible(self) -> int:
        """Records of this run the killed run before it may have handled already."""
        return min(self._redo, self.fed - self.start)

    def prepare(self, source: Any) -> Any:
        """Before the run begins (a refusal leaves nothing running): hold the state, note that a
        run started, and skip the records a saved state confirmed; the rest of ``source``.

        Raises:
            StateError: another run holds the state, it cannot be saved, or the source has fewer
                records than the state confirmed. TypeError: ``source`` is not iterable.
        """
        records = iter(source)
        if self.state is not None:
            self._hold_and_skip(records)
        # counts what was taken from the source, the record a node failed on too (in C: no cost per record)
        return map(_first, zip(records, self._pulled, strict=False))

    def _hold_and_skip(self, records: Any) -> None:
        assert self.state is not None
        self.state.lock()
        try:
            if self.start:
                skipped = sum(1 for _ in itertools.islice(records, self.start))
                if skipped < self.start:
                    raise StateError(f"{self.state.path}: the state confirmed {self.start:,} records but the source "
                                     f"has {skipped:,}; delete the state file to start over")
                log.info("resuming after record %d (state %s)", self.start, self.state.path)
            self._save(self.start, finished=False)  # a rerun after a kill from now on knows this run may have begun
        except BaseException:
            self.state.unlock()
            raise

    def feed(self, run: Any, records: Any) -> None:
        """Feed ``records`` (:meth:`prepare`'s) into ``run`` (begun)."""
        self.run = run
        run.feed_marked(records, self.start, self._marked)

    def _marked(self, offset: int, last: bool) -> None:
        self.fed = offset
        if last:  # saved once the run finished
            return
        self._advance(force=False)
        delay, since = 0.0005, time.monotonic()
        while self.bounded and offset - (self.saved if self.state is not None else self.confirmed) >= WINDOW:
            if self._advance(force=True):
                since = time.monotonic()
                continue
            self.run.check()
            if time.monotonic() - since >= STALL:  # a merge holding records for a silent branch
                self._unbound()
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _unbound(self) -> None:
        """Confirmations stalled: feed on without the window (as without acknowledgements), and
        say in the state that a kill now leaves an unbounded number of records to do again."""
        log.warning("confirmations made no progress for %.0f s with %d records in flight (a merge_sorted node "
                    "waiting for a silent branch?): feeding on without the window of %d records", STALL,
                    self.fed - self.confirmed, WINDOW)
        self.bounded = False
        if self.state is not None:
            self._save(self.saved, finished=False)

    def _advance(self, force: bool) -> bool:
        """Take the ledger's confirmed offset; save it when due (or ``force``d); whether it grew."""
        confirmed = self.latest()
        grew = confirmed > self.confirmed
        if grew:
            self.confirmed = confirmed
            self._tell(confirmed)
        if self.state is not None and confirmed > self.saved and (
                force or confirmed - self.saved >= WINDOW // 2 or time.monotonic() - self._last_save >= SAVE_EVERY):
            self._save(confirmed, finished=False)
            return True
        return grew and self.state is None

    def counts(self) -> dict[str, Any]:
        """``fed``, ``confirmed`` and ``resumed_at`` (None unless a saved state was resumed): for statistics."""
        return {"fed": self.fed, "confirmed": self.latest(), "resumed_at": self.start if self.resumed else None}

    def latest(self) -> int:
        """The records confirmed now (the ledger's, once the letters of its records are written)."""
        if self.finished or self.run is None or self.run.ledger is None:
            return self.confirmed
        confirmed = min(self.run.ledger.confirmed, self.fed)
        return confirmed if confirmed > self.confirmed and self.run.letters_pending() <= 0 else self.confirmed

    def _save(self, confirmed: int, finished: bool) -> None:
        assert self.state is not None
        window = WINDOW if self.bounded else None  # None: the feed ran ahead without a bound
        self.state.save({**self.identity, "confirmed": confirmed, "window": window, "finished": finished})
        self.saved, self._last_save = confirmed, time.monotonic()

    def _tell(self, confirmed: int) -> None:
        if self._confirm is not None and confirmed > self._told:
            self._told = confirmed
            self._confirm(confirmed)

    # -- the end -------------------------------------------------------------------------
    def finish(self) -> None:
        """The run finished: every record fed is done with."""
        self.confirmed, self.finished = self.fed, True
        if self.state is not None:
            try:
                self._save(self.fed, finished=True)
            finally:
                self.state.unlock()
        self._tell(self.fed)

    def fail(self, error: BaseException) -> None:
        """The run failed: keep what was confirmed (saved), say what was not."""
        self.fed = max(self.fed, self.start + next(self._pulled))
        self.confirmed = self.latest()
        if self.state is not None:
            try:
                if self.confirmed > self.saved:
                    self._save(self.confirmed, finished=False)
            except StateError as exc:
                log.error("could not save the state after the failure: %s", exc)
            finally:
                self.state.unlock()
        self._tell(self.confirmed)
        if self.fed > self.confirmed:
            try:
                error.unconfirmed = range(self.confirmed, self.fed)  # type: ignore[attr-defined]
            except AttributeError:
                pass
            log.warning("records %d to %d of the source (batches from %d) were not confirmed",
                        self.confirmed, self.fed - 1, self.confirmed // MARKED)
