# Layer: bottom (beside channels and either). Imports only chronopipe.either and the stdlib;
# chronopipe.control and everything above it may import this, never the other way round.
"""Command and Event messages: frozen, JSON-only, answered by exactly one terminal event.

See docs/messages.md.
"""

from .core import Command, Event, answer, failed, parse, rejected, succeeded
from .registry import COMMANDS, UNKNOWN_EVENT_RECEIVED, CommandType, event_types, register
from .values import OUTCOMES, MessageError

__all__ = [
    "COMMANDS",
    "OUTCOMES",
    "UNKNOWN_EVENT_RECEIVED",
    "Command",
    "CommandType",
    "Event",
    "MessageError",
    "answer",
    "event_types",
    "failed",
    "parse",
    "register",
    "rejected",
    "succeeded",
]
