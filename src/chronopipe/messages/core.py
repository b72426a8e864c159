"""Command and Event: frozen, JSON-only messages, and ``answer()``, which turns a command and its
handler into exactly one terminal event.

A command names an action (``STOP``); the event that answers it names the outcome in the past
tense: ``STOP_SUCCEEDED``, ``STOP_FAILED`` (with a reason) or ``STOP_REJECTED`` (unknown or not
allowed), with the command's id as its ``correlation_id``. The seed's spelling of a command,
``STOP_REQUESTED``, is read as ``STOP``.

Data is JSON values only (dicts with str keys, lists, str, int, finite float, bool, None). It is
copied when a message is made and kept read-only: dicts become ``MappingProxyType`` views and
lists become tuples, so nothing reachable from a message can change it. ``get_data`` and
``to_dict`` hand out fresh plain dicts and lists. Messages compare equal field by field and are
hashable: the hash leaves ``data`` out (a read-only mapping has no hash), so equal messages still
hash equal.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from chronopipe.either import Either, Left, Pending, Right

from .values import (
    KEYS,
    MAX_ID,
    OUTCOMES,
    MessageError,
    check_text,
    check_type_name,
    command_name,
    finite,
    freeze,
    load,
    one_line,
    short,
    thaw,
)

__all__ = [
    "OUTCOMES",
    "Command",
    "Event",
    "MessageError",
    "answer",
    "failed",
    "parse",
    "rejected",
    "succeeded",
]


@dataclass(frozen=True, slots=True, repr=False)
class _Message:
    """The fields and methods Command and Event share."""

    KIND: ClassVar[str] = "message"

    type: str
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: float = field(default_factory=time.time)
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        _Message._check(self)

    def _check(self) -> None:
        kind = self.KIND
        check_type_name(self.type, f"{kind} type")
        if not isinstance(self.data, Mapping):
            raise MessageError(f"{kind} data: must be a JSON object, got {type(self.data).__name__}")
        object.__setattr__(self, "data", freeze(self.data, f"{kind} data"))
        for name in ("id", "correlation_id"):
            value = getattr(self, name)
            if value is None and name == "correlation_id":
                continue
            if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
                raise MessageError(f"{kind} {name}: must be a string of 1 to {MAX_ID} characters, got {short(value)}")
            object.__setattr__(self, name, check_text(str.__str__(value), f"{kind} {name}"))
        stamp = self.timestamp
        if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not finite(stamp):
            raise MessageError(f"{kind} timestamp: must be a finite number of seconds, got {short(stamp)}")
        object.__setattr__(self, "timestamp", float(stamp))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(type={self.type!r}, data={thaw(self.data)!r}, id={self.id!r}, "
            f"timestamp={self.timestamp!r}, correlation_id={self.correlation_id!r})"
        )

    def get_data(self, key: str) -> Either[Any]:
        """``Right(value)`` of ``data[key]`` (a plain copy), or ``Left(KeyError(key))``.

        >>> Command("STOP", {"timeout": 5}).get_data("timeout")
        Right(5)
        >>> Command("STOP").getData("timeout")
        Left(KeyError('timeout'))
        """
        if key in self.data:
            return Right(thaw(self.data[key]))
        return Left(KeyError(key))

    getData = get_data  # noqa: N815 (the seed's spelling)

    def to_dict(self) -> dict[str, Any]:
        """The message as plain JSON values: kind, type, id, timestamp, correlation_id, data."""
        return {
            "kind": self.KIND,
            "type": self.type,
            "id": self.id,
            "timestamp": self.timestamp,
            "correlation_id": self.correlation_id,
            "data": thaw(self.data),
        }

    def to_json(self) -> str:
        """The message as one line of JSON (``from_json`` reads it back to an equal message).

        >>> stop = Command("STOP", {"timeout": 5}, id="1", timestamp=0.0)
        >>> print(stop.to_json())
        {"kind": "command", "type": "STOP", "id": "1", "timestamp": 0.0, "correlation_id": null, "data": {"timeout": 5}}
        >>> Command.from_json(stop.to_json()) == stop
        True
        """
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, obj: Any) -> Self:
        """The message ``obj`` (a mapping with exactly the keys ``to_dict`` gives) describes.

        Raises:
            MessageError: not a mapping, another kind, a key missing or unknown, or a bad field.
        """
        kind = cls.KIND
        if not isinstance(obj, Mapping):
            raise MessageError(f"{kind}: must be a JSON object, got {type(obj).__name__}")
        if obj.get("kind") != kind:
            raise MessageError(f"{kind} kind: expected {kind!r}, got {short(obj.get('kind'))}")
        missing = [key for key in KEYS if key not in obj]
        if missing:
            raise MessageError(f"{kind}: missing {', '.join(missing)}")
        extra = sorted(str(key) for key in obj if key not in KEYS)
        if extra:
            raise MessageError(f"{kind}: unknown key {short(extra[0])}")
        if not isinstance(obj["data"], Mapping):
            raise MessageError(f"{kind} data: must be a JSON object, got {type(obj['data']).__name__}")
        return cls(obj["type"], obj["data"], obj["id"], obj["timestamp"], obj["correlation_id"])

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """The message in the JSON text (``to_json``'s form).

        >>> Command.from_json('{"kind": "command", "type": "STOP", "id": 7, "timestamp": 0, '
        ...                   '"correlation_id": null, "data": {}}')
        Traceback (most recent call last):
        ...
        chronopipe.messages.MessageError: command id: must be a string of 1 to 128 characters, got 7

        Raises:
            MessageError: not JSON (NaN and duplicate keys included), or as ``from_dict``.
        """
        return cls.from_dict(load(text))


@dataclass(frozen=True, slots=True, repr=False)
class Command(_Message):
    """A request to a running system: ``Command("STOP", {"timeout": 5})``.

    ``type`` is a type name (``STOP_REQUESTED``, the seed's spelling, becomes ``STOP``); ``id`` is
    a uuid4 string and ``timestamp`` the time of making, unless given. A command of a type not
    registered can still be made and read, so that it can be answered ``<TYPE>_REJECTED``.

    >>> Command("STOP_REQUESTED", {"timeout": 5}).type
    'STOP'
    >>> Command("stop")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chronopipe.messages.MessageError: command type: 'stop' is not a type name (A-Z, 0-9 and _, ...)

    Raises:
        MessageError: a field is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "command"

    def __post_init__(self) -> None:
        _Message._check(self)
        object.__setattr__(self, "type", command_name(self.type))



@dataclass(frozen=True, slots=True, repr=False)
class Event(_Message):
    """Something that happened: a terminal event ``<COMMAND>_<OUTCOME>`` answers a command.

    >>> stop = Command("STOP")
    >>> done = failed(stop, "still draining")
    >>> done.type, done.command_type, done.outcome, done.reason, done.correlation_id == stop.id
    ('STOP_FAILED', 'STOP', 'FAILED', 'still draining', True)

    Raises:
        MessageError: a field is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "event"

    @property
    def outcome(self) -> str | None:
        """``"SUCCEEDED"``, ``"FAILED"`` or ``"REJECTED"`` for a terminal event, else None."""
        for outcome in OUTCOMES:
            if self.type.endswith("_" + outcome) and len(self.type) > len(outcome) + 1:
                return outcome
        return None

    @property
    def command_type(self) -> str | None:
        """The type of command a terminal event answers (``STOP`` for ``STOP_SUCCEEDED``), else None."""
        outcome = self.outcome
        return None if outcome is None else self.type[: -len(outcome) - 1]

    @property
    def is_terminal(self) -> bool:
        """True for ``<COMMAND>_SUCCEEDED``, ``_FAILED`` and ``_REJECTED``."""
        return self.outcome is not None

    @property
    def reason(self) -> str | None:
        """Why a FAILED or REJECTED event's command did not succeed (``data["reason"]``), else None."""
        reason = self.data.get("reason")
        return reason if self.outcome in ("FAILED", "REJECTED") and isinstance(reason, str) else None



def parse(obj: str | bytes | Mapping[str, Any]) -> Command | Event:
    """The Command or Event ``obj`` (JSON text or a mapping) describes, by its ``"kind"``.

    >>> parse('{"kind": "event", "type": "UNKNOWN_EVENT_RECEIVED", "id": "e-1", "timestamp": 0, '
    ...       '"correlation_id": null, "data": {}}').type
    'UNKNOWN_EVENT_RECEIVED'

    Raises:
        MessageError: not JSON, not an object, no known kind, or as ``Command.from_dict``.
    """
    if isinstance(obj, str | bytes | bytearray):
        obj = load(obj)
    if not isinstance(obj, Mapping):
        raise MessageError(f"message: must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind == "command":
        return Command.from_dict(obj)
    if kind == "event":
        return Event.from_dict(obj)
    raise MessageError(f"message kind: expected 'command' or 'event', got {short(kind)}")


def _terminal(command: Command, outcome: str, data: Mapping[str, Any]) -> Event:
    if not isinstance(command, Command):
        raise TypeError(f"answers a Command, got {type(command).__name__}")
    return Event(f"{command.type}_{outcome}", data, correlation_id=command.id)


def succeeded(command: Command, data: Mapping[str, Any] | None = None) -> Event:
    """``<TYPE>_SUCCEEDED`` answering ``command`` (``data``: the event's JSON object).

    Raises:
        MessageError: ``data`` is not a JSON object.
        TypeError: ``command`` is not a Command.
    """
    return _terminal(command, "SUCCEEDED", {} if data is None else data)


def failed(command: Command, reason: str) -> Event:
    """``<TYPE>_FAILED`` answering ``command``, data ``{"reason": reason}`` (made one line).

    Raises:
        TypeError: ``command`` is not a Command.
    """
    return _terminal(command, "FAILED", {"reason": one_line(str(reason))})


def rejected(command: Command, reason: str) -> Event:
    """``<TYPE>_REJECTED`` answering ``command`` (unknown or not allowed), data ``{"reason": reason}``.

    Raises:
        TypeError: ``command`` is not a Command.
    """
    return _terminal(command, "REJECTED", {"reason": one_line(str(reason))})


def _describe(error: Any, with_type: bool) -> str:
    try:
        text = one_line(str(error))
    except Exception:
        text = ""
    if isinstance(error, BaseException) and (with_type or not text):
        name = type(error).__name__
        return f"{name}: {text}" if text else name
    return text or "no reason given"


def answer(
    command: Command,
    handler: Callable[[Command], Any] | None,
    *,
    allowed: bool = True,
    timeout: float | None = None,
) -> Event:
    """Exactly one terminal event for ``command``, whatever ``handler`` does.

    * no handler (an unknown type): ``<TYPE>_REJECTED`` "unknown command TYPE";
    * ``allowed`` false: ``<TYPE>_REJECTED`` "not allowed" (the handler is not called);
    * the handler returns ``Right(v)`` or a plain ``v``: ``<TYPE>_SUCCEEDED`` with data
      ``{"result": v}`` (``v`` a JSON value, else FAILED);
    * it returns ``Left(e)``: ``<TYPE>_FAILED``, reason ``str(e)``; it raises: FAILED
      "ExcType: message";
    * it returns a ``Pending``: waited for up to ``timeout`` seconds, then as above (still
      pending: FAILED "timed out after T s").

    >>> stop = Command("STOP", {"timeout": 5})
    >>> answer(stop, lambda c: c.get_data("timeout").map(lambda t: t * 2)).get_data("result")
    Right(10)
    >>> answer(stop, lambda c: 1 / 0).reason
    'ZeroDivisionError: division by zero'
    >>> answer(Command("LAUNCH"), None).reason
    'unknown command LAUNCH'

    Raises:
        TypeError: ``command`` is not a Command.
        KeyboardInterrupt, SystemExit: raised by the handler, they pass (Ctrl-C and exit are the
            program's). Nothing else the handler does makes ``answer`` raise: any other
            BaseException (GeneratorExit, asyncio.CancelledError, ...) is a FAILED event too.
    """
    if not isinstance(command, Command):
        raise TypeError(f"answer() takes a Command, got {type(command).__name__}")
    if handler is None:
        return rejected(command, f"unknown command {command.type}")
    if not allowed:
        return rejected(command, "not allowed")
    try:
        result = handler(command)
        if isinstance(result, Pending):
            try:
                result = result.wait(timeout)
            except TimeoutError:
                return failed(command, f"timed out after {timeout:g} s")
        if isinstance(result, Left):
            return failed(command, _describe(result.error, with_type=False))
        if isinstance(result, Right):
            result = result.value
        try:
            return succeeded(command, {"result": result})
        except MessageError as exc:
            return failed(command, f"the result is not JSON: {exc}")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return failed(command, _describe(exc, with_type=True))
