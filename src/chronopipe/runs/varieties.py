"""Varieties: what a runner's ``variety`` names, and the options each one accepts.

A consumer's variety makes its *source*: every reader and every source of chronopipe by name
(``csv``, ``file``, ``capture``, ``generator``, ``socket``/``websocket``, ``tcp-server``,
``tcp-client``, ``udp``, ``http``, ``interval``, ``cron``, ``follow``, ``stdin``), ``push`` (records
sent through the control API: runs/push.py), or a class of yours by import path
(``variety: mypackage.module:MyConsumer``). A producer's variety makes its
*sink*: ``csv``, ``parquet``, ``callable``, ``postgres``, or a class of yours by import path.

The options a variety accepts are the keyword parameters of what it constructs, minus those a
YAML file cannot give (channels, modes, objects): :func:`accepted_options` tells the config
loader, which refuses any other key with its file, line and column. Values naming files are
taken relative to the YAML file's folder; values naming callables (``action``, ``on_connect``,
``target``) may be import paths (``package.module:function``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["CONSUMERS", "PRODUCERS", "VarietyError", "accepted_options", "make_sink", "make_source",
           "packet_row", "resolve_import", "row_maker"]

#: consumer varieties: name -> "module:attribute" of what they construct (imported when used)
CONSUMERS: dict[str, str] = {
    "csv": "chronopipe.runs.csvtable:CSVBatches",
    "file": "chronopipe.readers:FileReader",
    "capture": "chronopipe.capture:CaptureReader",
    "generator": "chronopipe.runs.varieties:generator",
    "socket": "chronopipe.sources:WebSocketSource",  # the seed's name for its websocket consumer
    "websocket": "chronopipe.sources:WebSocketSource",
    "tcp-server": "chronopipe.sources:TCPServerSource",
    "tcp-client": "chronopipe.sources:TCPClientSource",
    "udp": "chronopipe.sources:UDPSource",
    "http": "chronopipe.sources:HTTPSource",
    "interval": "chronopipe.sources:IntervalSource",
    "cron": "chronopipe.sources:CronSource",
    "follow": "chronopipe.sources:FollowSource",
    "stdin": "chronopipe.sources:StdinSource",
    "push": "chronopipe.runs.push:push_input",
}

#: producer varieties: name -> "module:attribute" of their sink class
PRODUCERS: dict[str, str] = {
    "csv": "chronopipe.runs.sinks:CSVSink",
    "parquet": "chronopipe.runs.sinks:ParquetSink",
    "callable": "chronopipe.runs.sinks:CallableSink",
    "postgres": "chronopipe.runs.postgres:PostgresSink",
}

#: parameters a YAML file cannot give: the runtime's own, or objects
NOT_OPTIONS = frozenset({"self", "name", "queue", "mode", "wrapper", "start", "stream", "backoff", "clock",
                         "stamp", "maxsize", "event_time", "lateness", "profile", "size", "connect_options"})
#: built-in varieties whose options are these alone (``maxsize``, which NOT_OPTIONS hides; no
#: ``limit``: a push consumer ends at ``POST /stop``)
OWN_OPTIONS: dict[str, frozenset[str]] = {"push": frozenset({"maxsize"})}
#: parameters of a class of yours that the runner fills in itself (make_source, make_sink)
RUNNER_GIVES = frozenset({"self", "name", "size", "profile"})
#: options whose value is a file: taken relative to the YAML file's folder
PATH_OPTIONS = frozenset({"path", "filename", "position", "rotated"})
#: options whose value may be an import path to a callable
CALLABLE_OPTIONS = frozenset({"action", "on_connect", "target"})


class VarietyError(ValueError):
    """A variety that does not exist or cannot be imported, or options it refuses (one line)."""


def resolve_import(spec: str, what: str = "import path") -> Any:
    """The object ``package.module:attribute`` names.

    Raises:
        VarietyError: not of that form, the module cannot be imported, or it has no such attribute.

    >>> resolve_import("os.path:join").__name__
    'join'
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise VarietyError(f"{what} {spec!r}: expected 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever importing the module raised
        from .batch import one_line

        raise VarietyError(f"{what} {spec!r}: cannot import {module_name!r}: "
                           f"{type(exc).__name__}: {one_line(exc)}") from None
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise VarietyError(f"{what} {spec!r}: {module_name!r} has no {attribute!r}")
        obj = getattr(obj, part)
    return obj


def _target(kind: str, variety: str) -> Any:
    table = CONSUMERS if kind == "consumer" else PRODUCERS
    if variety in table:
        try:
            return resolve_import(table[variety], f"{kind} variety {variety!r}")
        except VarietyError as exc:
            extra = {"socket": "websocket", "websocket": "websocket", "cron": "cron", "parquet": "parquet",
                     "postgres": "postgres", "csv": "parquet"}.get(variety)
            hint = f" (pip install 'chronopipe[{extra}]')" if extra else ""
            raise VarietyError(f"{exc}{hint}") from None
    if ":" in variety:
        return resolve_import(variety, f"{kind} variety")
    raise VarietyError(f"unknown {kind} variety {variety!r} (built in: {', '.join(sorted(table))}; "
                       "or a class of yours as 'package.module:Class')")


def accepted_options(kind: str, variety: str) -> set[str] | None:
    """The option keys a runner of ``kind`` ("consumer" or "producer") and ``variety`` takes
    beside the common ones; None when anything goes (a class of yours taking ``**kwargs``).

    Raises:
        VarietyError: the variety is unknown or cannot be imported.

    >>> sorted(accepted_options("consumer", "interval"))[:4]
    ['action', 'every', 'grace', 'jitter']
    """
    params = inspect.signature(_target(kind, variety)).parameters.values()
    if kind == "consumer" and variety in OWN_OPTIONS:
        return set(OWN_OPTIONS[variety])
    if any(p.kind is p.VAR_KEYWORD for p in params) and ":" in variety:
        return None
    # a class of yours takes whatever its parameters say, but what the runner itself passes
    hidden = RUNNER_GIVES if ":" in variety and variety not in (CONSUMERS if kind == "consumer" else PRODUCERS) \
        else NOT_OPTIONS
    names = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - hidden
    if kind == "consumer":
        names.add("limit")  # every consumer: stop after this many records
    return names


def _values(options: Mapping[str, Any], base: Path) -> dict[str, Any]:
    values = dict(options)
    for key in PATH_OPTIONS & values.keys():
        if isinstance(values[key], str) and not Path(values[key]).is_absolute():
            values[key] = str(base / values[key])
    for key in CALLABLE_OPTIONS & values.keys():
        if isinstance(values[key], str) and ":" in values[key]:
            values[key] = resolve_import(values[key], f"option {key}")
    return values


def make_source(variety: str, options: Mapping[str, Any], *, name: str, base: Path, size: int) -> Any:
    """The source of a consumer runner: a reader or source (hosted by the runner), an iterable
    of records, or a ``CSVBatches`` (yielding whole tables). Called in the runner's own thread
    or process. ``limit`` is the runner's, not the source's, unless the source takes it itself.

    Raises:
        VarietyError: the variety is unknown or cannot be imported.
        TypeError, ValueError: what the source's constructor raises for a bad option value.
    """
    target = _target("consumer", variety)
    values = _values(options, base)
    params = inspect.signature(target).parameters
    if "limit" in values and "limit" not in params:
        values.pop("limit")
    if "name" in params:
        values["name"] = name
    if "size" in params:
        values["size"] = size
    if "mode" in params and ":" not in variety:
        values["mode"] = "thread"  # hosted inside the runner, which has the runner's mode
    return target(**values)


def make_sink(variety: str, options: Mapping[str, Any], *, base: Path, profile: Any = None) -> Any:
    """The sink of a producer runner (runs/sinks.py states the contract). Called in the runner's
    own thread or process.

    Raises:
        VarietyError: the variety is unknown, or needs a profile none was given.
        TypeError, ValueError: what the sink's constructor raises for a bad option value.
    """
    target = _target("producer", variety)
    values = _values(options, base)
    params = inspect.signature(target).parameters
    if "profile" in params:
        if profile is None and params["profile"].default is inspect.Parameter.empty:
            raise VarietyError(f"producer variety {variety!r} needs a profile: add 'profile: NAME' "
                               "(a key of ~/.chronopipe/profiles.yml)")
        values["profile"] = profile
    return target(**values)


def packet_row(packet: tuple[Any, ...]) -> dict[str, Any]:
    """A capture's packet (a plain tuple, capture.reader.PACKET_FIELDS) as a stage row.

    >>> packet_row((1564085940628353000, "a.pcap", 0, 1, 60, 60, 1, b"..."))["wirelen"]
    60
    """
    from ..capture.reader import PACKET_FIELDS

    return dict(zip(PACKET_FIELDS, packet, strict=False))


def row_maker(variety: str) -> Callable[[Any], dict[str, Any] | None]:
    """How a consumer of ``variety`` makes a stage row of a record (None: a marker, not a row)."""
    if variety == "capture":
        return packet_row
    from .runners import as_row

    return as_row


def generator(target: Callable[..., Iterable[Any]] | str, args: list[Any] | None = None,
              kwargs: Mapping[str, Any] | None = None) -> Iterable[Any]:
    """The ``generator`` variety: the records ``target(*args, **kwargs)`` returns or yields.

    >>> list(generator("builtins:range", [3]))
    [0, 1, 2]
    """
    function = resolve_import(target, "generator target") if isinstance(target, str) else target
    return function(*(args or ()), **(kwargs or {}))
