"""The one registry of message types: the commands a control plane knows, and their events."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .values import OUTCOMES, MessageError, command_name

__all__ = ["COMMANDS", "UNKNOWN_EVENT_RECEIVED", "CommandType", "event_types", "register"]

UNKNOWN_EVENT_RECEIVED = "UNKNOWN_EVENT_RECEIVED"  # the seed's event for an event nobody knows


@dataclass(frozen=True, slots=True)
class CommandType:
    """A registered command: its name, whether it changes anything, and what it does."""

    name: str
    changes: bool
    description: str


_COMMANDS: dict[str, CommandType] = {}
_LOCK = threading.Lock()
COMMANDS: Mapping[str, CommandType] = MappingProxyType(_COMMANDS)  # read-only, always up to date


def register(name: str, *, changes: bool, description: str) -> None:
    """Register the command type ``name``; its events ``NAME_SUCCEEDED``, ``NAME_FAILED`` and
    ``NAME_REJECTED`` follow. Registering the same type again the same way does nothing.

    ``changes`` says whether the command changes anything (a control server asks for its token).

    >>> COMMANDS["STOP"].changes, COMMANDS["GET_STATS"].changes
    (True, False)

    Raises:
        MessageError: ``name`` is not a command type name (``STOP``, not ``stop``, ``STOP_REQUESTED``
            or ``STOP_FAILED``).
        ValueError: ``name`` is registered already, with another ``changes`` or ``description``.
        TypeError: ``changes`` is not a bool or ``description`` not a str.
    """
    if command_name(name) != name:
        raise MessageError(f"command type: register {command_name(name)!r}, not {name!r}")
    if not isinstance(changes, bool):
        raise TypeError(f"changes must be True or False, got {changes!r}")
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    entry = CommandType(name, changes, description)
    with _LOCK:
        known = _COMMANDS.get(name)
        if known is not None and known != entry:
            raise ValueError(f"command type {name} is registered already, as {known}")
        _COMMANDS[name] = entry


def event_types() -> frozenset[str]:
    """Every known event type: ``NAME_<OUTCOME>`` of each registered command, and
    ``UNKNOWN_EVENT_RECEIVED``.

    >>> {"STOP_SUCCEEDED", "STOP_FAILED", "STOP_REJECTED", "UNKNOWN_EVENT_RECEIVED"} <= event_types()
    True
    """
    with _LOCK:
        names = list(_COMMANDS)
    return frozenset({f"{name}_{outcome}" for name in names for outcome in OUTCOMES} | {UNKNOWN_EVENT_RECEIVED})


for _name, _changes, _description in (
    ("GET_INFO", False, "what is running: version, pid, start time, the target's state"),
    ("GET_ACTORS", False, "one row per actor: state, records in and out, rate, queue, RSS"),
    ("GET_STATS", False, "totals and per-actor counts"),
    ("GET_FEATURES", False, "field names and types seen in the records, per input"),
    ("PUSH", True, 'records into a named input; data {"input": name, "records": [...]}'),
    ("STOP", True, 'drain and end, answering the final counts; data {"timeout": seconds}'),
    ("KILL", True, "end the process within 1 s"),
):
    register(_name, changes=_changes, description=_description)
del _name, _changes, _description
