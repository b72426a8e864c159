"""DeadLetter: a record that failed every attempt, and its line in a dead-letter file.

A dead-letter file holds one JSON object per line (JSON Lines, UTF-8), appended as letters come:

    {"v": 1, "pipeline": "orders", "node": "parse", "attempts": 4, "error_type": "ValueError",
     "error": "bad row", "traceback": "Traceback ...", "timestamp": "2024-05-01T10:00:00.000001+00:00",
     "record": "1;2", "pickle": "gASVBwAAAAAAAACMAzE7MpQu", "pickler": "pickle"}

``record`` is the record as JSON (``json.dumps(record, default=repr)``: what is not JSON shows as
its ``repr``; a record JSON cannot write at all, such as one with tuple keys or a NaN, is its
``repr`` as a string), for people and other tools. ``pickle`` is the record itself, pickled
(protocol 5, or dill when plain pickle cannot) and base64-encoded, so ``Pipeline.replay`` gets the
very object back; it is null when neither can pickle the record. Unpickling runs code chosen by
whoever wrote the file: replay only files you trust.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import dill

from ..actors.errors import qualified_name

__all__ = ["FORMAT_VERSION", "DeadLetter", "DeadLetterFileError", "preview", "read_dead_letters"]

#: The ``v`` of the lines this version writes (and the only one it reads).
FORMAT_VERSION = 1
#: Characters of a record shown by ``preview``.
PREVIEW = 60
_FIELDS = ("pipeline", "node", "attempts", "error_type", "error", "traceback", "timestamp", "record")


@dataclass(frozen=True, repr=False)
class DeadLetter:
    """A record that ``process()`` of node ``node`` raised on ``attempts`` times in a row.

    ``error_type``, ``error`` and ``traceback`` describe the last attempt's exception (its
    qualified class name, ``str()`` and formatted traceback); ``timestamp`` is when it was given
    up (seconds since the epoch); ``pipeline`` is the pipeline's name. ``record`` is the record as
    ``process()`` got it (a node that changes its input in place before raising hands on the
    changed one). ``exact`` is False only for a letter read back from a file whose record could
    not be pickled: ``record`` is then its JSON form, and it cannot be replayed.

    >>> letter = DeadLetter.of("orders", "parse", 4, ValueError("bad row"), "1;2", timestamp=0.0)
    >>> letter.error_type, letter.error, letter.attempts
    ('ValueError', 'bad row', 4)
    >>> DeadLetter.from_line(letter.to_line()) == letter
    True
    """

    pipeline: str
    node: str
    attempts: int
    error_type: str
    error: str
    traceback: str
    record: Any
    timestamp: float
    exact: bool = True

    @classmethod
    def of(cls, pipeline: str, node: str, attempts: int, exc: BaseException, record: Any,
           timestamp: float | None = None) -> DeadLetter:
        """The letter for ``record``, given up after ``attempts`` attempts that ended with ``exc``."""
        import time

        return cls(pipeline, node, attempts, qualified_name(exc), str(exc), "".join(traceback.format_exception(exc)),
                   record, time.time() if timestamp is None else timestamp)

    def portable(self) -> DeadLetter:
        """This letter, fit to cross a process channel (plain pickle): as it is when its record
        pickles, else with the record :class:`Carried` (its JSON form and its dill bytes, if any).

        >>> letter = DeadLetter.of("p", "parse", 1, ValueError("bad"), lambda r: r)
        >>> type(letter.portable().record).__name__, letter.portable().restored().record(7)
        ('Carried', 7)
        """
        try:
            pickle.dumps(self, protocol=5)
        except Exception:
            data, pickler = _pickled(self.record)
            return replace(self, record=Carried(_json_form(self.record), data, pickler))
        return self

    def restored(self) -> DeadLetter:
        """The letter with a :class:`Carried` record back as the object (or its JSON form, inexact)."""
        record = self.record
        if not isinstance(record, Carried):
            return self
        if record.data is None:
            return replace(self, record=record.json, exact=False)
        return replace(self, record=_unpickled(record.data, record.pickler))

    def __repr__(self) -> str:
        return (f"DeadLetter(node={self.node!r}, attempts={self.attempts}, error={self.error_type}: "
                f"{self.error!r:.100}, record={_repr(self.record)[:100]})")

    # -- one line of a dead-letter file ----------------------------------------------------
    def to_line(self) -> str:
        """This letter as one line of JSON (no newline at its end).

        Raises nothing for any record: what JSON cannot hold is written as its repr, and what
        cannot be pickled gets ``"pickle": null``.
        """
        data: dict[str, Any] = {"v": FORMAT_VERSION, "pipeline": self.pipeline, "node": self.node,
                                "attempts": self.attempts, "error_type": self.error_type, "error": self.error,
                                "traceback": self.traceback,
                                "timestamp": datetime.fromtimestamp(self.timestamp, UTC).isoformat(),
                                "record": self.record}
        if isinstance(self.record, Carried):  # from a node process: pickled there already
            data["record"], data["pickle"], data["pickler"] = self.record.json, self.record.data, self.record.pickler
        else:
            data["pickle"], data["pickler"] = _pickled(self.record)
        try:
            return json.dumps(data, default=repr, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):  # tuple keys, NaN, a cycle: the record as text
            data["record"] = _repr(self.record)
            return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_line(cls, line: str, originals: bool = True) -> DeadLetter:
        """The letter a line of a dead-letter file holds; ``originals=False`` leaves the record
        in its JSON form (no unpickling: what a listing wants).

        Raises:
            ValueError: the line is not JSON, not an object of this format, or its record cannot
                be unpickled here (a class that is not importable): the message says which.
        """
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION or any(k not in data for k in _FIELDS):
            missing = [k for k in _FIELDS if not isinstance(data, dict) or k not in data]
            what = f"no {', '.join(missing)}" if missing else f"format version {data.get('v')!r}, not {FORMAT_VERSION}"
            raise ValueError(f"not a chronopipe dead letter ({what})")
        try:
            when = datetime.fromisoformat(data["timestamp"]).timestamp()
            attempts = int(data["attempts"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a chronopipe dead letter ({exc})") from None
        record, exact = data["record"], False
        if originals and data.get("pickle"):
            record, exact = _unpickled(data["pickle"], data.get("pickler")), True
        return cls(str(data["pipeline"]), str(data["node"]), attempts, str(data["error_type"]), str(data["error"]),
                   str(data["traceback"]), record, when, exact)


class DeadLetterFileError(ValueError):
    """A dead-letter file has a line that is not a dead letter: ``path`` and ``line`` say where.

    >>> str(DeadLetterFileError("dl.jsonl", 3, "not JSON (Expecting value, column 1)"))
    'dl.jsonl:3: not JSON (Expecting value, column 1)'
    """

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str) -> None:
        super().__init__(f"{os.fspath(path)}:{line}: {reason}")
        self.path, self.line, self.reason = os.fspath(path), line, reason


def read_dead_letters(path: str | os.PathLike[str], *, originals: bool = True) -> list[DeadLetter]:
    """Every letter of the dead-letter file ``path``, in file order (blank lines are skipped).

    ``originals=True`` unpickles each record (the object ``process()`` got); ``False`` keeps
    the JSON form, which needs none of the records' classes (what ``chronopipe dead-letters``
    lists).

    Raises:
        OSError: the file cannot be opened (FileNotFoundError when there is none).
        DeadLetterFileError: a line that is not a dead letter, naming the file and line number.
    """
    return list(_letters(path, originals))


def _letters(path: str | os.PathLike[str], originals: bool) -> Iterator[DeadLetter]:
    with open(path, "rb") as lines:  # decoded line by line, so a bad byte names its line
        for number, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DeadLetterFileError(path, number, "not UTF-8 text") from None
            if line.strip():
                try:
                    yield DeadLetter.from_line(line, originals)
                except ValueError as exc:
                    raise DeadLetterFileError(path, number, str(exc)) from None


def preview(record: Any, width: int = PREVIEW) -> str:
    """``record`` in one short line: its JSON (strings as they are), cut at ``width`` characters.

    >>> preview({"id": 7, "text": "x" * 100}, 30)
    '{"id": 7, "text": "xxxxxxxx...'
    >>> preview("1;2")
    '1;2'
    """
    text = record if isinstance(record, str) else json.dumps(record, default=repr, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True)
class Carried:
    """A record that plain pickle cannot carry across a process channel, as a letter's line
    would hold it: its JSON form, and its pickled bytes (base64, by ``pickler``; None: none can)."""

    json: Any
    data: str | None
    pickler: str | None


def _json_form(record: Any) -> Any:
    try:
        return json.loads(json.dumps(record, default=repr, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return _repr(record)


def _pickled(record: Any) -> tuple[str | None, str | None]:
    for name, module in (("pickle", pickle), ("dill", dill)):
        try:
            data = module.dumps(record, protocol=5) if module is pickle else module.dumps(record)
        except Exception:
            continue
        return base64.b64encode(data).decode("ascii"), name
    return None, None


def _unpickled(text: str, pickler: Any) -> Any:
    module = dill if pickler == "dill" else pickle
    try:
        return module.loads(base64.b64decode(text, validate=True))
    except Exception as exc:
        raise ValueError(f"the record cannot be unpickled here ({type(exc).__name__}: {exc})") from None


def _repr(record: Any) -> str:
    try:
        return repr(record)
    except Exception as exc:
        return f"<unrepresentable {type(record).__name__}: {exc}>"
