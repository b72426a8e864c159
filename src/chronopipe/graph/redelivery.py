"""How a replaying node on Ray is restarted: acknowledged batches and checkpoints (NodeActor's side).

A node under ``guarantee="replay"`` in ``mode="ray"`` reads an inbox opened with
``redeliver=True`` (channels/onray.py): the hub keeps the batch the node took until the node
acknowledges it. The node acknowledges a batch once it has handled every record, committed
(``Node.commit``) and sent its outputs on, and the acknowledgement carries a checkpoint of its
state: the node's own attributes (those a process brings home, state.py), its ``global_state``
copy, its counts and tallies. When its Ray actor dies, the runtime asks ``on_death`` (here, in
the parent) and starts a new Ray actor after a backoff; the new one restores the checkpoint
instead of running ``begin()`` again, and the hub hands it the unacknowledged batch first.

So every record is handled to the end at least once, and what the node did with the records of
acknowledged batches is never done again; the outputs the dead actor had sent from the batch in
flight are sent again (at most that batch). ``max_restarts`` deaths in a row with no batch
acknowledged between them fail the run, as in processes mode (a record that kills every worker
is not singled out and dead-lettered on Ray: the run fails naming the node).
"""

from __future__ import annotations

from typing import Any

from ..channels.rayhub import require_ray
from ..delivery.restart import BACKOFF
from .state import node_attribute

__all__ = ["Redelivered"]

#: A GroupByNode's group in the making: private, and part of its state all the same.
_GROUP = ("_batch", "_previous_key")


class Redelivered:
    """Mixin of NodeActor (actors.py): the ray-mode restart of a replaying node."""

    unit: Any
    inbox: Any
    policy: Any
    tally: Any
    counts: Any
    death_note: str
    _global_state: Any
    _tokens: Any

    #: set by on_death in the parent; the restarted actor's copy carries it
    restarts = 0
    _deaths_in_a_row = 0
    _acknowledged_at_death = -1

    @property
    def redelivered(self) -> bool:
        """Whether this actor reads an inbox that keeps what it took until acknowledged."""
        return self.inbox is not None and getattr(self.inbox, "redeliver", False)

    def _restored(self) -> bool:
        """On a restarted actor, in its Ray worker: the last checkpoint taken back (True), or
        False when there is none (a first start, or a death before the first acknowledgement)."""
        if not self.restarts:
            return False
        checkpoint, _, _ = self.inbox.restore()
        if checkpoint is None:
            return False
        saved = require_ray().cloudpickle.loads(checkpoint)
        node = self.unit.node
        if node is not None:
            vars(node).update(saved["attrs"])
        _replace(self._global_state, saved["state"])
        self._tokens = saved["tokens"]
        self.counts.received, self.counts.emitted = saved["counts"]
        for port, sent in zip(self.unit.ports, saved["sent"], strict=True):  # (emitted is their sum again)
            port.sent = sent
        if self.tally is not None and saved["tally"] is not None:
            self.tally.retried, self.tally.dead_lettered, self.tally.dropped = saved["tally"]
        return True

    def _checkpoint(self) -> bytes:
        node, tally = self.unit.node, self.tally
        return require_ray().cloudpickle.dumps({
            "attrs": {k: v for k, v in vars(node).items() if node_attribute(k) or k in _GROUP} if node else {},
            "state": self._global_state,
            "tokens": self._tokens,
            "counts": (self.counts.received, self.counts.emitted),
            "sent": [port.sent for port in self.unit.ports],
            "tally": (tally.retried, tally.dead_lettered, tally.dropped) if tally is not None else None,
        })

    def _acknowledge_batch(self, handled: int) -> None:
        """The batch is handled: commit, send every output on, then acknowledge it with a checkpoint."""
        if self.unit.node is not None:
            self.unit.node.commit()
        self.flush()  # type: ignore[attr-defined]
        self.counts.received += handled
        self.inbox.acknowledge(self._checkpoint())

    def on_result(self, result: Any) -> None:
        """In the parent: a Ray actor's tally (retries, dead letters, repeats dropped) comes home."""
        if result and "tally" in result and self.tally is not None:
            self.tally.retried, self.tally.dead_lettered, self.tally.dropped = result["tally"]

    def redelivery_death(self, max_restarts: int) -> float | None:
        """In the parent: seconds before a new Ray actor, or None when it died ``max_restarts``
        times in a row without acknowledging a batch in between (the run then fails)."""
        try:
            _, acknowledged, _ = self.inbox.restore()
        except Exception as exc:  # the hub is gone too: nothing to restart from
            self.death_note = f"; not restarted: its inbox cannot be read ({exc})"
            return None
        self._deaths_in_a_row = 1 if acknowledged != self._acknowledged_at_death else self._deaths_in_a_row + 1
        self._acknowledged_at_death = acknowledged
        if self._deaths_in_a_row > max_restarts:
            self.death_note = (f"; node {self.unit.owner.name!r} not restarted again: its Ray actor died "
                               f"{self._deaths_in_a_row} times in a row without finishing a batch (restarted "
                               f"{self.restarts} times in all, limit {max_restarts} in a row)")
            return None
        self.restarts += 1
        return BACKOFF[min(self._deaths_in_a_row - 1, len(BACKOFF) - 1)]


def _replace(target: Any, saved: Any) -> None:
    """Make ``target`` (a global_state: a dict, or an object with attributes) hold what ``saved`` holds."""
    if isinstance(target, dict):
        target.clear()
        target.update(saved)
    else:
        vars(target).clear()
        vars(target).update(vars(saved))
