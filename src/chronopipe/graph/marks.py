"""How a node actor passes acknowledgement marks on (delivery/acks.py): the NodeActor's side.

A node with one inbox passes a mark once every writer of the inbox sent it (its Aligner); a
merge (``merge_sorted``, or an ordered node's collector) once every input sent it and every
record that came before it on each input has left the merge window: records the window holds
for a slower input hold the mark back with them. Passing is the same for both: the node's
``commit()``, send on everything pushed, then the mark down every output; a terminal node
writes the offset into its ledger slot.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ..delivery.acks import Aligner, Ledger, Mark, split
from ..order.window import MergeWindow
from .plan import Unit
from .wiring import send_mark

__all__ = ["MarkPassing"]


class MarkPassing:
    """Mixin of NodeActor (actors.py), whose attributes these are."""

    unit: Unit
    _aligner: Aligner | None
    _ledger: Ledger | None
    _slot: int | None
    _arrived: list[int]
    _marks: list[deque[tuple[int, int]]]

    if TYPE_CHECKING:  # NodeActor's

        def flush(self) -> None: ...

    def _pass(self, mark: Mark) -> None:
        """A mark from one writer of the inbox: passed on once every writer sent it."""
        if self._aligner is not None and self._aligner.arrived(mark):
            self._passed(mark.offset)

    def _passed(self, offset: int) -> None:
        """Everything before mark ``offset`` is handled: commit, send on all we pushed, then the
        mark (from us) down every output; a terminal also confirms it in the ledger."""
        unit = self.unit
        if unit.node is not None:
            unit.node.commit()
        send_mark(unit.ports, [], Mark(offset, unit.flag))
        self.flush()  # (counts what the ports sent)
        if self._slot is not None:  # a terminal node (the caller waits for its letters itself: acking.py)
            assert self._ledger is not None
            self._ledger.confirm(self._slot, offset)

    # -- acks through a merge ----------------------------------------------------------------
    def _sift(self, i: int, batch: list[Any]) -> list[Any]:
        """Input ``i``'s batch without its marks, each noted with how many records of ``i``
        came before it."""
        pieces = split(batch)
        if pieces is None:
            self._arrived[i] += len(batch)
            return batch
        kept: list[Any] = []
        for records, found in pieces:
            kept += records
            self._arrived[i] += len(records)
            if found is not None:
                self._marks[i].append((found.offset, self._arrived[i]))
        return kept

    def _pass_merged(self, window: MergeWindow) -> None:
        """Pass each mark that every input sent and before which every record the window got
        has left it (was handled here): records held in the window for a slower input hold the
        mark back with them."""
        marks, arrived = self._marks, self._arrived
        while marks and all(marks):
            for i, waiting in enumerate(marks):
                held = len(window.bufs[i]) - window.pos[i]
                if arrived[i] - held < waiting[0][1]:
                    return
            offset = marks[0][0][0]
            for waiting in marks:
                waiting.popleft()
            self._passed(offset)
