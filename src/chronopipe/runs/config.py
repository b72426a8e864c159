"""The run configuration: the YAML file ``chronopipe run`` and ``chronopipe lint`` read.

A run is a list of runners: a consumer reads a source into a stage folder in batches, a producer
loads the batches of the consumers it ``depends_on`` into a sink. Keys beside the common ones are
the variety's options (``uri:`` of a socket consumer). docs/runs.schema.json describes the format.

Read with :class:`~chronopipe.runs.yamlread.StrictLoader` (a yaml ``SafeLoader`` refusing a key given
twice in one mapping, and aliases expanding the document by more than 100,000 nodes), validated by the
models below. All errors are reported at once, one line each in the file's order, naming the file,
line, column and YAML path (a missing key at the mapping lacking it, an unknown key at the key)::

    pipeline.yml:12:7: runners[2].stage: Field required
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from .yamlread import StrictLoader, yaml_error_line

__all__ = [
    "AcceptedOptions", "BatchConfig", "ConfigError", "ConsumerConfig", "Loc", "ProducerConfig", "RunConfig",
    "Runner", "RunnerConfig", "StageConfig", "StrictLoader", "format_loc", "load_config", "parse_config",
    "yaml_error_line",
]  # fmt: skip

Loc = tuple[str | int, ...]
"""A YAML path: ``("runners", 2, "stage", "path")`` is written ``runners[2].stage.path``."""

AcceptedOptions = Callable[[str, str], Collection[str] | None]
"""``accepted_options(type, variety)``: the option keys that variety takes, or None for "any".
It may raise ValueError (an unknown variety, say): its message is reported at the runner's variety."""

_NAME = r"^[A-Za-z0-9_.-]+$"
_COMMON = frozenset({"name", "variety", "type", "profile", "mode"})
_ONLY = {"consumer": ("batch_configuration", "stage"), "producer": ("depends_on",)}  # keys of one type alone
_OTHER = {"consumer": "producer", "producer": "consumer"}
#: consumer varieties that run as a thread only, and why
_THREAD_ONLY = {"push": "its records arrive through the control API, in this process"}


class ConfigError(Exception):
    """A run configuration that cannot be used: ``lines``, one per problem (``FILE:LINE:COL: PATH: message``,
    sorted by position in the file); ``str(error)`` joins them with newlines."""

    def __init__(self, lines: str | Sequence[str]):
        self.lines: list[str] = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


# -- the models ------------------------------------------------------------------------------
class StageConfig(BaseModel):
    """Where a consumer puts its batches. ``path`` is kept as written; ``resolved_path`` is the folder:
    relative to the YAML file's folder when loaded by :func:`load_config` (validation context
    ``{"base": folder}``), else to the working directory at validation time. ``~`` is expanded."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: Literal["local", "parquet"] = Field(description="local: JSON lines files; parquet: Parquet files")
    path: str = Field(min_length=1, description="the stage folder, relative to the YAML file's folder")
    keep: bool = Field(False, description="keep batch files once every producer loaded them")
    _base: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _remember_base(self, info: ValidationInfo) -> StageConfig:
        self._base = Path((info.context or {}).get("base") or self._base)
        return self

    @property
    def resolved_path(self) -> Path:
        """The stage folder: ``path`` joined to the base folder unless it is absolute."""
        return self._base / Path(self.path).expanduser()


class BatchConfig(BaseModel):
    """How a consumer cuts batches: ``size`` rows, or fewer after ``seconds`` (for live sources)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    size: int | None = Field(None, ge=1, description="rows per batch (default: 50,000 for csv consumers, "
                                                     "whose batches are Arrow tables; 1,000 for the others)")
    seconds: float | None = Field(None, gt=0, description="flush a partial batch after this many seconds")


class RunnerConfig(BaseModel):
    """The keys every runner has. Every other key is a variety option, kept in ``options``."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: str = Field(pattern=_NAME, description="unique among the runners: letters, digits, '_', '.', '-'")
    variety: str = Field(min_length=1, description="a built-in variety or 'package.module:Class'")
    profile: str | None = Field(None, description="a profile name (profiles.yml or CHRONOPIPE_PROFILE_*)")
    mode: Literal["thread", "process"] = Field("thread", description="host the runner on a thread or a process")

    @property
    def options(self) -> dict[str, Any]:
        """The variety options: the keys of this runner that are not common keys."""
        return dict(self.model_extra or {})


class ConsumerConfig(RunnerConfig):
    """A runner that reads its variety's source into its stage, ``batch_configuration.size`` rows a batch."""

    model_config = ConfigDict(json_schema_extra={"not": {"anyOf": [{"required": [key]} for key in _ONLY["producer"]]}})

    type: Literal["consumer"]
    stage: StageConfig
    batch_configuration: BatchConfig = Field(default_factory=BatchConfig)


class ProducerConfig(RunnerConfig):
    """A runner that loads the batches of the consumers it depends on into its variety's sink."""

    model_config = ConfigDict(json_schema_extra={"not": {"anyOf": [{"required": [key]} for key in _ONLY["consumer"]]}})

    type: Literal["producer"]
    depends_on: list[str] = Field(min_length=1, description="the consumers whose batches this producer loads")


Runner = Annotated[ConsumerConfig | ProducerConfig, Field(discriminator="type")]


class RunConfig(BaseModel):
    """A run: its runners, in the file's order. :func:`load_config` also keeps where each value was
    written, for later errors: see :meth:`where`. Validated from data, the rules across runners
    (unique names, depends_on naming consumers, no key of the other type) raise one ValueError."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, title="chronopipe run configuration")

    runners: list[Runner] = Field(min_length=1, description="consumers and producers")
    _source: str | None = PrivateAttr(None)
    _base: Path = PrivateAttr(default_factory=Path.cwd)
    _values: dict[Loc, tuple[int, int]] = PrivateAttr(default_factory=dict)
    _keys: dict[Loc, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_runners(self, info: ValidationInfo) -> RunConfig:
        context = info.context or {}
        if not context.get("checked"):  # load_config checks the raw data itself, with positions
            data = {"runners": [runner.model_dump() for runner in self.runners]}
            if issues := list(_semantic_issues(data, context.get("accepted_options"))):
                raise ValueError("; ".join(f"{format_loc(loc)}: {message}" for loc, message, _ in issues))
        return self

    @property
    def source(self) -> str | None:
        """The file this configuration was loaded from (None when validated from data)."""
        return self._source

    @property
    def base(self) -> Path:
        """The folder relative paths resolve against: the YAML file's (absolute), or the working
        directory at validation time for a configuration validated from data."""
        return self._base

    def where(self, loc: Sequence[str | int], *, key: bool = False) -> str:
        """``"FILE:LINE:COL: runners[0].uri"`` for a YAML path: the position of its value (of its key
        with ``key=True``), or of the nearest enclosing value written in the file (a key left out
        is placed at the mapping that lacks it). Without a file (validated from data), just the path."""
        if self._source is None:
            return format_loc(loc)
        line, column = _locate(tuple(loc), self._values, self._keys, key=key) or (0, 0)  # () is always there
        return f"{self._source}:{line}:{column}: {format_loc(loc)}"

    def error(self, loc: Sequence[str | int], message: str, *, key: bool = False) -> ConfigError:
        """A ConfigError ``"FILE:LINE:COL: PATH: message"`` about a value of this configuration
        (for errors found later, building a runner's variety from its options, say)."""
        return ConfigError(f"{self.where(loc, key=key)}: {message}")


# -- YAML with positions ---------------------------------------------------------------------
def format_loc(loc: Sequence[str | int]) -> str:
    """``runners[2].stage.path`` for ``("runners", 2, "stage", "path")``.

    >>> format_loc(("runners", 2, "stage", "path")), format_loc(("runners", 0, "my key"))
    ('runners[2].stage.path', "runners[0]['my key']")
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _positions(node: yaml.Node, loader: StrictLoader) -> tuple[dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]]:
    """(value positions, key positions) by YAML path, 1-based (line, column)."""
    values: dict[Loc, tuple[int, int]] = {}
    keys: dict[Loc, tuple[int, int]] = {}

    def walk(node: yaml.Node, loc: Loc, path: frozenset[int]) -> None:
        values.setdefault(loc, _at(node))
        if id(node) in path:  # an alias of an enclosing node (&a [*a]): no end to walk to
            return
        path = path | {id(node)}
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if isinstance(key, str | int):
                    keys.setdefault((*loc, key), _at(key_node))
                    walk(value_node, (*loc, key), path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*loc, index), path)

    walk(node, (), frozenset())
    return values, keys


def _at(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _locate(loc: Loc, values: Mapping[Loc, tuple[int, int]], keys: Mapping[Loc, tuple[int, int]], *, key: bool):
    if key and loc in keys:
        return keys[loc]
    while loc not in values and loc:
        loc = loc[:-1]
    return values.get(loc)


# -- loading ---------------------------------------------------------------------------------
def load_config(path: str | Path, *, accepted_options: AcceptedOptions | None = None) -> RunConfig:
    """Read and validate a run configuration file; stage paths resolve against its folder.

    ``accepted_options(type, variety)`` names the option keys a variety takes (None: any); a key
    outside them is refused. Raises: ConfigError, one line per problem, all of them.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse_config(text, source=str(path), base=path.parent.resolve(), accepted_options=accepted_options)


def parse_config(text: str, *, source: str = "<config>", base: str | Path | None = None,
                 accepted_options: AcceptedOptions | None = None) -> RunConfig:  # fmt: skip
    """Validate the YAML ``text`` of a run configuration; ``source`` names it in errors, stage paths
    resolve against ``base`` (default: the working directory). Raises: ConfigError."""
    loader = StrictLoader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
        values, keys = _positions(node, loader) if node is not None else ({}, {})
    except yaml.YAMLError as error:
        raise ConfigError(yaml_error_line(source, error)) from None
    finally:
        loader.dispose()
    if data is None:
        raise ConfigError(f"{source}: empty: a run configuration is a mapping with a runners: list")
    if not isinstance(data, dict):
        raise ConfigError("{}:{}:{}: the top level must be a mapping with a runners: list".format(source, *_at(node)))
    if not data.get("runners"):
        line, column = keys.get(("runners",), _at(node))
        raise ConfigError(f"{source}:{line}:{column}: runners: no runners: list at least one consumer")

    issues = list(_semantic_issues(data, accepted_options))
    folder = Path(base).resolve() if base is not None else Path.cwd()
    try:
        config = RunConfig.model_validate(data, context={"base": folder, "checked": True})
    except ValidationError as error:
        issues += [_pydantic_issue(detail) for detail in error.errors(include_url=False)]
    if issues:
        lines: dict[str, tuple[int, int]] = {}
        for loc, message, at in issues:
            position = _locate(loc, values, keys, key=at == "key") or (0, 0)
            lines.setdefault(f"{source}:{position[0]}:{position[1]}: {format_loc(loc)}: {message}", position)
        raise ConfigError(sorted(lines, key=lambda line: (lines[line], line)))
    config._source, config._base, config._values, config._keys = source, folder, values, keys
    return config


# -- the rules across runners, and pydantic's errors in the file's terms --------------------
Issue = tuple[Loc, str, str]  # (YAML path, message, "key" | "value": which position to name)


def _semantic_issues(data: Mapping[str, Any], accepted_options: AcceptedOptions | None) -> Iterator[Issue]:
    """The rules across runners, on the raw data: anything malformed is pydantic's to report, skipped."""
    runners = data.get("runners")
    if not isinstance(runners, list):
        return
    named: dict[str, tuple[Any, int]] = {}  # name -> (type, index of the first runner with it)
    for index, runner in enumerate(runners):
        name = runner.get("name") if isinstance(runner, Mapping) else None
        if isinstance(name, str) and name in named:
            yield ("runners", index, "name"), f"duplicate runner name {name!r} (runners[{named[name][1]}])", "value"
        elif isinstance(name, str):
            named[name] = (runner.get("type"), index)
    for index, runner in enumerate(runners):
        kind = runner.get("type") if isinstance(runner, Mapping) else None
        if kind not in _ONLY:
            continue
        other = _OTHER[kind]
        for key in runner:
            if key in _ONLY[other]:
                yield ("runners", index, key), f"a {kind} takes no {key} (a {other} does)", "key"
        if kind == "producer":
            yield from _dependency_issues(index, runner, named)
        elif runner.get("mode") == "process" and str(variety := runner.get("variety")) in _THREAD_ONLY:
            yield ("runners", index, "mode"), f"a {variety} consumer runs as a thread: {_THREAD_ONLY[variety]}", "value"
        if accepted_options is not None:
            yield from _option_issues(index, runner, kind, accepted_options)


def _dependency_issues(index: int, runner: Mapping[str, Any], named: Mapping[str, tuple[Any, int]]) -> Iterator[Issue]:
    depends_on = runner.get("depends_on")
    if not isinstance(depends_on, list):
        return
    consumers = ", ".join(name for name, (kind, _) in named.items() if kind == "consumer") or "none"
    seen: set[str] = set()
    for position, name in enumerate(depends_on):
        loc = ("runners", index, "depends_on", position)
        if not isinstance(name, str):
            pass  # pydantic's to report
        elif name == runner.get("name"):
            yield loc, "a producer cannot depend on itself", "value"
        elif name not in named:
            yield loc, f"no runner named {name!r} (consumers: {consumers})", "value"
        elif named[name][0] != "consumer":
            yield loc, f"{name!r} is a {named[name][0]}: a producer depends on consumers only", "value"
        elif name in seen:
            yield loc, f"{name!r} is listed twice", "value"
        seen.add(name)


def _option_issues(index: int, runner: Mapping[str, Any], kind: str, accepted: AcceptedOptions) -> Iterator[Issue]:
    variety = runner.get("variety")
    if not isinstance(variety, str) or not variety:
        return
    try:
        keys = accepted(kind, variety)
    except ValueError as error:
        yield ("runners", index, "variety"), str(error), "value"
        return
    if keys is None:
        return
    known = ", ".join(sorted(keys)) or "none"
    for key in runner:
        if isinstance(key, str) and key not in {*_COMMON, *_ONLY["consumer"], *_ONLY["producer"], *keys}:
            yield ("runners", index, key), f"unknown option for variety {variety!r} (accepted: {known})", "key"


_FIXED: dict[str, type[BaseModel]] = {"stage": StageConfig, "batch_configuration": BatchConfig}


def _pydantic_issue(detail: Mapping[str, Any]) -> Issue:
    loc: Loc = tuple(detail["loc"])
    if len(loc) > 2 and loc[0] == "runners" and loc[2] in _ONLY:  # the union's tag: not in the file
        loc = loc[:2] + loc[3:]
    kind, message = detail["type"], detail["msg"]
    if kind == "union_tag_not_found":
        return (*loc, "type"), "Field required: consumer or producer", "value"
    if kind == "union_tag_invalid":
        return (*loc, "type"), f"Input should be 'consumer' or 'producer', not {detail['input'].get('type')!r}", "value"
    if kind == "extra_forbidden":
        model = _FIXED.get(str(loc[-2]), RunConfig) if len(loc) > 1 else RunConfig
        return loc, f"unknown key (accepted: {', '.join(model.model_fields)})", "key"
    if kind == "string_pattern_mismatch" and loc[-1] == "name":
        message = "a runner name is letters, digits, '_', '.' and '-'"
    return loc, message.removeprefix("Value error, "), "value"
