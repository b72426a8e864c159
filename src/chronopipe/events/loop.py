"""An EventManager's ``run()`` loop as an actor: each record of its inbox, in order, until END."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..actors.actor import Actor
from ..channels import END, Channel
from ..channels.base import POLL_INTERVAL

if TYPE_CHECKING:
    from .manager import EventManager
    from .subscription import EventStatistics

__all__ = ["QueueDispatcher"]


class QueueDispatcher(Actor):
    """An EventManager's loop as an actor: each record of the inbox, in order, until END.

    ``run`` runs in the actor's thread (a runtime thread of this process); a callback that
    raises with ``on_error="raise"`` ends the loop with its error (``join`` raises it).
    """

    def __init__(self, manager: EventManager, name: str, inbox: Channel) -> None:
        super().__init__(name, inbox=inbox, mode="thread")
        self.manager = manager

    def run(self) -> None:
        inbox, stop, trigger = self.inbox, self._stop, self.manager.trigger
        assert inbox is not None
        while not stop[0]:
            try:
                batch = inbox.get_batch(POLL_INTERVAL)
            except TimeoutError:
                self.manager.statistics()  # idle: count and log the async results that finished
                continue
            for item in batch:
                if item is END:
                    return
                try:
                    trigger(item)
                except BaseException:
                    self._failed_record = item
                    raise
                self.counts.received += 1
                if stop[0]:
                    return

    def on_stop(self) -> EventStatistics:
        return self.manager.statistics()
