"""ActorError: what the caller sees when an actor fails, in whatever thread or process."""

from __future__ import annotations

import signal
import traceback
from typing import Any

import dill

__all__ = [
    "NO_RECORD", "ActorError", "describe_exit", "error_envelope", "error_from_envelope", "from_exception",
    "qualified_name",
]

_REPR_LIMIT = 1000


class ActorError(RuntimeError):
    """An actor failed. Carries the actor's name, the original exception type and message,
    the child's traceback text and the record being processed when there was one.

    ``cause`` (also ``__cause__``) is the original exception when it could be rebuilt in this
    process; an exception that cannot be unpickled still arrives here, as text.

    ``progress`` ({actor name: (received, emitted)}) and ``in_flight`` ({channel name: records})
    say, for an actor of the runtime that failed, how far every actor connected to it got and
    how many records were written but never handled, i.e. lost (None when not known).

    >>> err = ActorError("parse", "ValueError", "bad row", record={"line": 3})
    >>> str(err).splitlines()[0]
    "actor 'parse' failed: ValueError: bad row (record: {'line': 3})"
    """

    def __init__(
        self,
        actor: str,
        exc_type: str,
        message: str,
        *,
        traceback: str = "",
        record: Any = None,
        record_repr: str | None = None,
        exitcode: int | None = None,
        cause: BaseException | None = None,
        progress: dict[str, tuple[int, int]] | None = None,
        in_flight: dict[str, int] | None = None,
    ) -> None:
        self.actor = actor
        self.progress = progress
        self.in_flight = in_flight
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.record = record
        self.record_repr = record_repr if record_repr is not None else _short_repr(record)
        self.exitcode = exitcode
        self.cause = cause
        super().__init__(actor, exc_type, message)
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        text = f"actor {self.actor!r} failed: {self.exc_type}: {self.message}"
        if self.record_repr is not None:
            text += f" (record: {self.record_repr})"
        if self.traceback:
            text += "\n--- traceback in the actor ---\n" + self.traceback.rstrip()
        return text

    def __reduce__(self) -> Any:
        return (_rebuild, (self.actor, self.exc_type, self.message, self.traceback, self.record_repr, self.exitcode,
                           self.progress, self.in_flight))

    @property
    def lost(self) -> int | None:
        """Records in flight when the actor failed (None when not known)."""
        return None if self.in_flight is None else sum(self.in_flight.values())


def _rebuild(
    actor: str, exc_type: str, message: str, tb: str, record_repr: str | None, exitcode: int | None,
    progress: dict[str, tuple[int, int]] | None = None, in_flight: dict[str, int] | None = None,
) -> ActorError:
    return ActorError(actor, exc_type, message, traceback=tb, record_repr=record_repr, exitcode=exitcode,
                      progress=progress, in_flight=in_flight)


class _NoRecord:
    """What an error names as its record when there was none (one object, in every process)."""

    def __reduce__(self) -> str:
        return "NO_RECORD"  # unpickled as this module's own, wherever that is (a Ray worker too)

    def __repr__(self) -> str:
        return "NO_RECORD"


#: "No record was being handled" (a record may well be None).
NO_RECORD = _NoRecord()


def _short_repr(record: Any) -> str | None:
    if record is None or record is NO_RECORD:
        return None
    try:
        text = repr(record)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<unrepresentable {type(record).__name__}: {exc}>"
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "...[truncated]"


def qualified_name(exc: BaseException) -> str:
    """The exception's class name, with its module unless a builtin (``json.decoder.JSONDecodeError``)."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def from_exception(actor: str, exc: BaseException, record: Any = NO_RECORD) -> ActorError:
    """Wrap an exception raised in this process (a thread actor, a callback)."""
    if isinstance(exc, ActorError):
        return exc
    return ActorError(
        actor, qualified_name(exc), str(exc),
        traceback="".join(traceback.format_exception(exc)),
        record=None if record is NO_RECORD else record,
        cause=exc,
    )


def error_envelope(actor: str, exc: BaseException, record: Any = NO_RECORD) -> dict[str, Any]:
    """Everything about a failure as plain data, safe to send to another process."""
    if isinstance(exc, ActorError):  # a nested runtime call failed: keep its story
        return {"actor": exc.actor, "exc_type": exc.exc_type, "message": exc.message,
                "traceback": exc.traceback, "record_repr": exc.record_repr, "exception": None, "record": None}
    envelope: dict[str, Any] = {
        "actor": actor,
        "exc_type": qualified_name(exc),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "record_repr": _short_repr(record),
        "exception": None,
        "record": None,
    }
    for key, value in (("exception", exc), ("record", record)):
        if value is NO_RECORD:
            continue
        try:
            envelope[key] = dill.dumps(value)
        except Exception:  # unpicklable: the text above still tells the story
            pass
    return envelope


def error_from_envelope(envelope: dict[str, Any], exitcode: int | None = None) -> ActorError:
    """Rebuild the ActorError in the parent; never fails on what cannot be unpickled."""
    loaded: dict[str, Any] = {}
    for key in ("exception", "record"):
        if envelope.get(key) is not None:
            try:
                loaded[key] = dill.loads(envelope[key])
            except Exception:
                loaded[key] = None
    cause = loaded.get("exception")
    return ActorError(
        envelope["actor"],
        envelope["exc_type"],
        envelope["message"],
        traceback=envelope["traceback"],
        record=loaded.get("record"),
        record_repr=envelope["record_repr"],
        exitcode=exitcode,
        cause=cause if isinstance(cause, BaseException) else None,
    )


def describe_exit(actor: str, exitcode: int | None) -> ActorError:
    """An actor process that ended without reporting: killed by a signal or os._exit.

    >>> describe_exit("sink", -9).message
    'the process was killed by signal SIGKILL (OOM killer or kill -9?) without reporting'
    """
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (OOM killer or kill -9?)" if name == "SIGKILL" else ""
        return ActorError(actor, "ProcessKilled", f"the process was killed by signal {name}{hint} without reporting",
                          exitcode=exitcode)
    return ActorError(actor, "ProcessExited", f"the process exited with code {exitcode} without reporting",
                      exitcode=exitcode)
