"""How a replaying worker process is restarted (delivery/restart.py): the NodeActor's side.

Each batch the worker takes is journaled before it is handled and acknowledged once the node
committed what it did with it and its outputs are sent on; a restarted worker first handles the
batch its predecessor died in, record by record (a record that kills it too is found and, after
K deaths, dead-lettered), without sending again the dead letters its predecessor sent from it.
In the parent, ``on_death`` decides whether to restart (``Journal.died``).
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

from ..actors.errors import NO_RECORD as _NO_RECORD
from ..delivery import DeadLetter, Journal, Resume, to_channel
from ..delivery.acks import Aligner, Mark, split
from .plan import PROGRESS, Unit

__all__ = ["Restartable"]


class Restartable:
    """Mixin of NodeActor (actors.py), whose attributes these are."""

    unit: Unit
    journal: Journal | None
    policy: Any
    tally: Any
    counts: Any
    death_note: str
    _aligner: Aligner | None
    _each: Any
    _pipeline: str
    _failed_record: Any

    if TYPE_CHECKING:  # NodeActor's

        def flush(self) -> None: ...

        def _pass(self, mark: Mark) -> None: ...

        def _inbox_batches(self, inbox: Any) -> Any: ...

        def _blame(self, item: Any) -> None: ...

    def _letters(self) -> Any:
        """Where the retry wrapper sends a letter: the dead-letters channel; for a restartable
        worker, not the letters a worker that died in the same batch had sent already."""
        send, journal, tally = to_channel(self.unit.dead_letters), self.journal, self.tally
        if journal is None:
            return send

        def once(letter: DeadLetter) -> None:
            if journal.letter():
                send(letter)
            else:
                tally.dead_lettered -= 1  # (the wrapper counts it once this returns)

        return once

    # -- a restartable worker (delivery/restart.py) ----------------------------------------
    def _run_journaled(self, journal: Journal) -> None:
        """The inbox's batches, each journaled before it is handled (the inbox's tap) and
        acknowledged once its outputs are sent on; a restarted worker first handles the batch
        its predecessor died in (``journal.resume``, set by on_death in the parent)."""
        resume = journal.resume
        if resume is not None:
            journal.took(pickle.dumps(resume.records, protocol=5))
            self._handle_journaled(journal, resume.records, resume)
        assert self.inbox is not None
        # a batch at a time: where it died is not known
        each, item = self._numbered if self.unit.current is not None else self._each, _NO_RECORD
        for batch in self._inbox_batches(self.inbox):
            pieces = split(batch) if self._aligner is not None else None
            try:
                if pieces is None:
                    each(batch)
                else:  # acks: the marks are passed on after the records before them
                    for records, mark in pieces:
                        each(records)
                        if mark is not None:
                            self._pass(mark)
            except BaseException:
                self._blame(item)
                raise
            self._acknowledge(journal, batch)
        journal.end()

    def _handle_journaled(self, journal: Journal, batch: list[Any], resume: Resume) -> None:
        """The batch a worker died in, record by record, noting where it is (a record that
        kills this one too is found); ``resume.skip`` is dead-lettered instead."""
        at, entry, skip, current = journal.position, self.unit.entry, resume.skip, self.unit.current
        assert entry is not None
        item: Any = _NO_RECORD
        try:
            for i, item in enumerate(batch):
                at[1] = i
                if current is not None and type(item) is tuple:  # an ordered worker's (number, record)
                    current[0], item = item
                if i == skip:
                    assert self.tally is not None
                    letter = DeadLetter.of(self._pipeline, self.unit.owner.name, resume.kills, resume.error(), item)
                    to_channel(self.unit.dead_letters)(letter)
                    self.tally.dead_lettered += 1
                    continue
                if i in resume.skipped:
                    continue
                if type(item) is Mark:
                    self._pass(item)
                    continue
                entry(item)
        except BaseException:
            self._blame(item)
            raise
        if current is not None and batch:
            self.unit.ports[0].pending.append((current[0], PROGRESS))
        self._acknowledge(journal, batch)

    def _numbered(self, batch: list[Any]) -> None:
        """An ordered worker's batch of ``(number, record)``: what it pushes carries the number."""
        current, entry = self.unit.current, self.unit.entry
        assert current is not None and entry is not None
        for current[0], item in batch:
            entry(item)
        if batch:
            self.unit.ports[0].pending.append((current[0], PROGRESS))

    def _acknowledge(self, journal: Journal, batch: list[Any]) -> None:
        """``batch`` is handled: commit what the node did with it, send its outputs on, then mark
        it done and received (a death after this does not replay it, so nothing may wait)."""
        if self.unit.node is not None:
            self.unit.node.commit()
        self.flush()
        journal.done()
        self.counts.received += len(batch) - (list(map(type, batch)).count(Mark) if self._aligner is not None else 0)

    def on_death(self, exitcode: int | None) -> float | None:
        """In the parent: restart a journaled worker (its in-flight batch goes to the next one)."""
        journal = self.journal
        if journal is None:
            if getattr(self, "redelivered", False):  # a replaying node on Ray (redelivery.py)
                return self.redelivery_death(self._max_restarts)  # type: ignore[attr-defined]
            if self.policy is not None and self.policy.replays and self.unit.mode == "process":
                self.death_note = "; not restarted: under guarantee='replay' merge nodes are not restarted yet"
            return None
        if journal.closing:
            self.death_note = "; not restarted: it died closing its outputs (its downstream may have seen its end)"
            return None
        delay = journal.died(exitcode)
        if delay is None:
            self.death_note = (f"; node {self.unit.owner.name!r} not restarted again: its process died "
                               f"{journal.in_a_row} times in a row without finishing a batch (restarted "
                               f"{journal.restarts} times in all, limit {journal.max_restarts} in a row; "
                               f"last exit: {journal.last_exit})")
        return delay
