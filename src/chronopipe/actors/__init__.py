"""Actors: named loops over an inbox, hosted on a thread or a process."""

from .actor import Actor, ActorStatistics, Mode
from .errors import ActorError

__all__ = ["Actor", "ActorError", "ActorStatistics", "Mode"]
