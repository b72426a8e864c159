"""The run configuration file: what loads, what is refused, and how an error names its place.

Every error is one line ``FILE:LINE:COL: YAML.PATH: message``; a missing key points at the mapping
that lacks it, an unknown key at the key, a bad value at the value.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from chronopipe.runs.config import (
    BatchConfig,
    ConfigError,
    ConsumerConfig,
    ProducerConfig,
    RunConfig,
    StageConfig,
    format_loc,
    load_config,
)
from chronopipe.runs.schema import json_schema, render

ROOT = Path(__file__).resolve().parents[1]

SEED = """\
runners:
  - name: websocket_1
    variety: socket
    type: consumer
    uri: wss://ws.coincap.io/trades/binance
    stage:
      type: local
      path: 'tmp'
    batch_configuration:
      size: 100

  - name: websocket_2
    variety: socket
    type: consumer
    uri: wss://ws.coincap.io/trades/huobi
    stage:
      type: local
      path: 'tmp'
    batch_configuration:
      size: 100

  - name: postgres
    variety: postgres
    depends_on:
      - websocket_1
      - websocket_2
    type: producer
    profile: postgres
"""

# A consumer that loads; the error cases below add to it or change it.
CONSUMER = """\
runners:
  - name: a
    variety: socket
    type: consumer
    stage: {type: local, path: tmp}
"""


def write(folder: Path, text: str, name: str = "pipeline.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors(folder: Path, text: str, **options) -> list[str]:
    """The lines of the ConfigError loading ``text`` raises, the file named ``pipeline.yml``."""
    path = write(folder, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, **options)
    assert str(caught.value) == "\n".join(caught.value.lines)
    return [line.replace(str(path), "pipeline.yml", 1) for line in caught.value.lines]


# -- the seed's file loads as written --------------------------------------------------------
def test_the_seeds_config_loads_two_consumers_and_a_producer(tmp_path):
    config = load_config(write(tmp_path, SEED))
    first, second, producer = config.runners
    assert isinstance(first, ConsumerConfig) and isinstance(second, ConsumerConfig)
    assert isinstance(producer, ProducerConfig)
    assert [r.name for r in config.runners] == ["websocket_1", "websocket_2", "postgres"]
    assert first.variety == "socket" and first.stage.type == "local" and first.stage.path == "tmp"
    assert first.batch_configuration.size == 100 and first.batch_configuration.seconds is None
    assert producer.depends_on == ["websocket_1", "websocket_2"] and producer.profile == "postgres"


def test_the_keys_beside_the_common_ones_are_the_varietys_options(tmp_path):
    config = load_config(write(tmp_path, SEED))
    assert config.runners[0].options == {"uri": "wss://ws.coincap.io/trades/binance"}
    assert config.runners[2].options == {}


def test_an_option_named_like_a_pydantic_method_is_an_option_still(tmp_path):
    config = load_config(write(tmp_path, CONSUMER + "    schema: raw\n    copy: 2\n    options: x\n"))
    assert config.runners[0].options == {"schema": "raw", "copy": 2, "options": "x"}


def test_the_defaults_of_a_runner(tmp_path):
    runner = load_config(write(tmp_path, CONSUMER)).runners[0]
    assert runner.mode == "thread" and runner.profile is None
    assert runner.batch_configuration == BatchConfig(size=None, seconds=None)  # the variety's default size
    assert runner.stage.keep is False


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_mode_is_thread_or_process(tmp_path, mode):
    assert load_config(write(tmp_path, CONSUMER + f"    mode: {mode}\n")).runners[0].mode == mode


def test_a_stage_path_resolves_against_the_yaml_files_folder_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", SEED)
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf") / "pipeline.yml")
    assert config.runners[0].stage.path == "tmp"  # as written
    assert config.runners[0].stage.resolved_path == tmp_path / "conf" / "tmp"
    assert config.base == tmp_path / "conf" and config.base.is_absolute()


def test_an_absolute_stage_path_stays_as_it_is(tmp_path):
    config = load_config(write(tmp_path, CONSUMER.replace("path: tmp", f"path: {tmp_path / 'elsewhere'}")))
    assert config.runners[0].stage.resolved_path == tmp_path / "elsewhere"


def test_a_stage_validated_from_data_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert StageConfig(type="parquet", path="s").resolved_path == tmp_path / "s"


def test_anchors_and_merge_keys_share_options_and_a_merged_key_may_be_overridden(tmp_path):
    config = load_config(write(tmp_path, """\
        runners:
          - &a {name: a, variety: socket, type: consumer, stage: {type: local, path: tmp}}
          - {<<: *a, name: b, variety: tcp}
        """))
    assert [(r.name, r.variety, r.stage.path) for r in config.runners] == [("a", "socket", "tmp"), ("b", "tcp", "tmp")]


# -- one error per line, naming file, line, column and YAML path ------------------------------
CASES = {
    "a missing key, at the mapping lacking it": (
        CONSUMER.replace("stage: {type: local, path: tmp}", "stage:\n      type: local"),
        "pipeline.yml:6:7: runners[0].stage.path: Field required",
    ),
    "a missing stage, at the runner": (
        CONSUMER.replace("    stage: {type: local, path: tmp}\n", ""),
        "pipeline.yml:2:5: runners[0].stage: Field required",
    ),
    "an unknown stage key, at the key": (
        CONSUMER.replace("path: tmp}", "path: tmp, pth: x}"),
        "pipeline.yml:5:37: runners[0].stage.pth: unknown key (accepted: type, path, keep)",
    ),
    "an unknown top-level key": (
        CONSUMER + "extra: 1\n",
        "pipeline.yml:6:1: extra: unknown key (accepted: runners)",
    ),
    "a stage type": (
        CONSUMER.replace("type: local", "type: s3"),
        "pipeline.yml:5:19: runners[0].stage.type: Input should be 'local' or 'parquet'",
    ),
    "a stage path that is not a string": (
        CONSUMER.replace("path: tmp", "path: 5"),
        "pipeline.yml:5:32: runners[0].stage.path: Input should be a valid string",
    ),
    "a batch size below 1": (
        CONSUMER + "    batch_configuration: {size: 0}\n",
        "pipeline.yml:6:33: runners[0].batch_configuration.size: Input should be greater than or equal to 1",
    ),
    "a batch size given as a string (strict)": (
        CONSUMER + "    batch_configuration: {size: '10'}\n",
        "pipeline.yml:6:33: runners[0].batch_configuration.size: Input should be a valid integer",
    ),
    "batch seconds not above 0": (
        CONSUMER + "    batch_configuration: {seconds: 0}\n",
        "pipeline.yml:6:36: runners[0].batch_configuration.seconds: Input should be greater than 0",
    ),
    "a mode": (
        CONSUMER + "    mode: fork\n",
        "pipeline.yml:6:11: runners[0].mode: Input should be 'thread' or 'process'",
    ),
    "a runner name with a space": (
        CONSUMER.replace("name: a", "name: a b"),
        "pipeline.yml:2:11: runners[0].name: a runner name is letters, digits, '_', '.' and '-'",
    ),
    "a missing variety": (
        CONSUMER.replace("    variety: socket\n", ""),
        "pipeline.yml:2:5: runners[0].variety: Field required",
    ),
    "a missing type": (
        CONSUMER.replace("    type: consumer\n", ""),
        "pipeline.yml:2:5: runners[0].type: Field required: consumer or producer",
    ),
    "a type that is neither": (
        CONSUMER.replace("type: consumer", "type: prod"),
        "pipeline.yml:4:11: runners[0].type: Input should be 'consumer' or 'producer', not 'prod'",
    ),
    "a runner that is not a mapping": (
        CONSUMER + "  - just a string\n",
        "pipeline.yml:6:5: runners[1]: Input should be a valid dictionary or object to extract fields from",
    ),
    "runners that is not a list": (
        "runners: {a: 1}\n",
        "pipeline.yml:1:10: runners: Input should be a valid list",
    ),
    "a consumer with depends_on, at the key": (
        CONSUMER + "    depends_on: [b]\n",
        "pipeline.yml:6:5: runners[0].depends_on: a consumer takes no depends_on (a producer does)",
    ),
    "a producer with a stage, at the key": (
        CONSUMER + "  - {name: p, variety: csv, type: producer, depends_on: [a], stage: {type: local, path: t}}\n",
        "pipeline.yml:6:62: runners[1].stage: a producer takes no stage (a consumer does)",
    ),
    "a producer without depends_on": (
        CONSUMER + "  - {name: p, variety: csv, type: producer}\n",
        "pipeline.yml:6:5: runners[1].depends_on: Field required",
    ),
    "a producer with an empty depends_on": (
        CONSUMER + "  - {name: p, variety: csv, type: producer, depends_on: []}\n",
        "pipeline.yml:6:57: runners[1].depends_on: List should have at least 1 item after validation, not 0",
    ),
    "a producer depending on a runner not in the file": (
        CONSUMER + "  - {name: p, variety: csv, type: producer, depends_on: [a, nope]}\n",
        "pipeline.yml:6:61: runners[1].depends_on[1]: no runner named 'nope' (consumers: a)",
    ),
    "a producer depending on itself": (
        CONSUMER + "  - {name: p, variety: csv, type: producer, depends_on: [p]}\n",
        "pipeline.yml:6:58: runners[1].depends_on[0]: a producer cannot depend on itself",
    ),
    "a producer depending on a producer": (
        CONSUMER
        + "  - {name: p, variety: csv, type: producer, depends_on: [a]}\n"
        + "  - {name: q, variety: csv, type: producer, depends_on: [p]}\n",
        "pipeline.yml:7:58: runners[2].depends_on[0]: 'p' is a producer: a producer depends on consumers only",
    ),
    "a consumer listed twice in depends_on": (
        CONSUMER + "  - {name: p, variety: csv, type: producer, depends_on: [a, a]}\n",
        "pipeline.yml:6:61: runners[1].depends_on[1]: 'a' is listed twice",
    ),
    "a runner name used twice, at the second": (
        CONSUMER + CONSUMER.removeprefix("runners:\n"),
        "pipeline.yml:6:11: runners[1].name: duplicate runner name 'a' (runners[0])",
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_an_error_is_one_line_naming_file_line_column_and_yaml_path(tmp_path, text, expected):
    assert errors(tmp_path, text) == [expected]


def test_several_errors_are_all_reported_one_per_line_in_the_files_order(tmp_path):
    text = """\
        runners:
          - name: p
            variety: csv
            type: producer
            depends_on: [nope]
          - name: a
            variety: socket
            type: consumer
            stage: {type: local}
            batch_configuration: {size: 0}
        """
    assert errors(tmp_path, text) == [
        "pipeline.yml:5:18: runners[0].depends_on[0]: no runner named 'nope' (consumers: a)",
        "pipeline.yml:9:12: runners[1].stage.path: Field required",
        "pipeline.yml:10:33: runners[1].batch_configuration.size: Input should be greater than or equal to 1",
    ]


# -- variety options ------------------------------------------------------------------------
def socket_options(kind: str, variety: str) -> set[str] | None:
    if variety == "socket":
        return {"uri", "end_on_close", "limit"}
    if variety == "anything":
        return None
    raise ValueError(f"unknown {kind} variety {variety!r}")


def test_an_option_the_variety_does_not_take_is_refused_at_its_key_naming_those_it_takes(tmp_path):
    text = CONSUMER + "    urii: ws://x\n"
    assert errors(tmp_path, text, accepted_options=socket_options) == [
        "pipeline.yml:6:5: runners[0].urii: unknown option for variety 'socket' (accepted: end_on_close, limit, uri)"
    ]


def test_the_options_a_variety_takes_load(tmp_path):
    path = write(tmp_path, CONSUMER + "    uri: ws://x\n    limit: 3\n")
    assert load_config(path, accepted_options=socket_options).runners[0].options == {"uri": "ws://x", "limit": 3}


def test_a_variety_taking_anything_accepts_any_option(tmp_path):
    path = write(tmp_path, CONSUMER.replace("socket", "anything") + "    whatever: 1\n")
    assert load_config(path, accepted_options=socket_options).runners[0].options == {"whatever": 1}


def test_the_accepted_options_callback_is_asked_with_the_type_and_variety_of_each_runner(tmp_path):
    asked = []
    load_config(write(tmp_path, SEED), accepted_options=lambda kind, variety: asked.append((kind, variety)))
    assert asked == [("consumer", "socket"), ("consumer", "socket"), ("producer", "postgres")]


def test_an_unknown_variety_reported_by_the_callback_is_placed_at_the_variety(tmp_path):
    text = CONSUMER.replace("variety: socket", "variety: sockt")
    assert errors(tmp_path, text, accepted_options=socket_options) == [
        "pipeline.yml:3:14: runners[0].variety: unknown consumer variety 'sockt'"
    ]


def test_without_a_callback_options_are_not_checked(tmp_path):
    assert load_config(write(tmp_path, CONSUMER + "    urii: x\n")).runners[0].options == {"urii": "x"}


# -- problems with the file as a whole: one line each ---------------------------------------
def test_a_key_given_twice_in_a_mapping_is_refused_at_the_second(tmp_path):
    text = CONSUMER + "    name: b\n"
    assert errors(tmp_path, text) == ["pipeline.yml:6:5: duplicate key 'name' (first at line 2)"]


def test_a_yaml_syntax_error_keeps_yamls_line_and_column_on_one_line(tmp_path):
    assert errors(tmp_path, CONSUMER + "    uri: [unclosed\n  - name: b\n") == [
        "pipeline.yml:7:9: expected ',' or ']', but got ':' (while parsing a flow sequence at line 6)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "pipeline.yml: empty: a run configuration is a mapping with a runners: list"),
        ("# only a comment\n", "pipeline.yml: empty: a run configuration is a mapping with a runners: list"),
        ("- a\n- b\n", "pipeline.yml:1:1: the top level must be a mapping with a runners: list"),
        ("runners: []\n", "pipeline.yml:1:1: runners: no runners: list at least one consumer"),
        ("runners:\n", "pipeline.yml:1:1: runners: no runners: list at least one consumer"),
        ("other: 1\n", "pipeline.yml:1:1: runners: no runners: list at least one consumer"),
    ],
    ids=["empty", "comments only", "a list", "no runners", "runners null", "runners missing"],
)
def test_a_file_without_runners_is_one_clear_line(tmp_path, text, expected):
    assert errors(tmp_path, text) == [expected]


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yml")
    assert caught.value.lines == [f"{tmp_path / 'nope.yml'}: no such file"]


def test_a_self_referencing_alias_loads_without_walking_forever(tmp_path):
    config = load_config(write(tmp_path, CONSUMER + "    loop: &l [1, *l]\n"))
    loop = config.runners[0].options["loop"]
    assert loop[0] == 1 and loop[1] is loop


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)) + "runners: *i\n"


@pytest.mark.timeout(20)
def test_a_billion_laughs_of_aliases_is_refused_in_one_line_at_the_first_node_too_big(tmp_path):
    # 9**9 nodes expanded: before the refusal, loading it grew to gigabytes and never ended
    assert errors(tmp_path, BILLION_LAUGHS) == [
        "pipeline.yml:6:4: the document expands to more than 100,000 nodes through aliases"]


def test_a_big_document_without_aliases_is_not_refused_for_its_size(tmp_path):
    config = load_config(write(tmp_path, CONSUMER + f"    kwargs: {{values: {list(range(150_000))}}}\n"))
    assert len(config.runners[0].options["kwargs"]["values"]) == 150_000


# -- where: positions for errors found after loading ------------------------------------------
def test_where_names_the_file_line_and_column_of_a_value(tmp_path):
    path = write(tmp_path, SEED)
    config = load_config(path)
    assert config.where(("runners", 1, "uri")) == f"{path}:15:10: runners[1].uri"
    assert config.where(("runners", 2, "depends_on", 1)) == f"{path}:26:9: runners[2].depends_on[1]"


def test_where_with_key_names_the_position_of_the_key(tmp_path):
    path = write(tmp_path, SEED)
    assert load_config(path).where(("runners", 1, "uri"), key=True) == f"{path}:15:5: runners[1].uri"


def test_where_places_a_key_not_in_the_file_at_the_mapping_that_lacks_it(tmp_path):
    path = write(tmp_path, SEED)
    assert load_config(path).where(("runners", 0, "limit")) == f"{path}:2:5: runners[0].limit"


def test_error_makes_a_config_error_at_a_value(tmp_path):
    path = write(tmp_path, SEED)
    error = load_config(path).error(("runners", 0, "uri"), "cannot connect")
    assert isinstance(error, ConfigError) and error.lines == [f"{path}:5:10: runners[0].uri: cannot connect"]


def test_a_pickled_config_keeps_its_positions(tmp_path):
    path = write(tmp_path, SEED)
    config = pickle.loads(pickle.dumps(load_config(path)))
    assert config.where(("runners", 1, "uri")) == f"{path}:15:10: runners[1].uri" and config.source == str(path)
    assert config.runners[0].stage.resolved_path == tmp_path / "tmp"


def test_a_config_validated_from_data_has_no_file_to_name():
    data = {"runners": [{"name": "a", "variety": "v", "type": "consumer", "stage": {"type": "local", "path": "s"}}]}
    config = RunConfig.model_validate(data)
    assert config.source is None and config.where(("runners", 0, "uri")) == "runners[0].uri"


def test_validated_from_data_the_rules_across_runners_still_hold():
    runner = {"name": "a", "variety": "v", "type": "consumer", "stage": {"type": "local", "path": "s"}}
    with pytest.raises(ValidationError, match=r"runners\[1\]\.name: duplicate runner name 'a' \(runners\[0\]\)"):
        RunConfig.model_validate({"runners": [runner, runner]})


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        (("runners", 2, "stage", "path"), "runners[2].stage.path"),
        (("runners",), "runners"),
        (("runners", 0, "my key"), "runners[0]['my key']"),
        (("runners", 0, "depends_on", 3), "runners[0].depends_on[3]"),
    ],
)
def test_format_loc_writes_a_yaml_path_as_in_the_file(loc, text):
    assert format_loc(loc) == text


# -- the JSON Schema of the format ----------------------------------------------------------
def test_the_committed_schema_is_what_the_models_generate():
    assert (ROOT / "docs" / "runs.schema.json").read_text(encoding="utf-8") == render(), (
        "docs/runs.schema.json is stale: python -m chronopipe.runs.schema > docs/runs.schema.json"
    )


def test_python_m_chronopipe_runs_schema_prints_the_schema():
    command = [sys.executable, "-m", "chronopipe.runs.schema"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == render()


def test_the_schema_allows_variety_options_beside_the_common_keys_and_nothing_unknown_in_a_stage():
    definitions = json_schema()["$defs"]
    assert definitions["ConsumerConfig"]["additionalProperties"] is True
    assert definitions["ConsumerConfig"]["required"] == ["name", "variety", "type", "stage"]
    assert definitions["ProducerConfig"]["required"] == ["name", "variety", "type", "depends_on"]
    assert definitions["StageConfig"]["additionalProperties"] is False
    assert json_schema()["additionalProperties"] is False


def test_the_schema_tells_consumers_from_producers_by_type_and_keeps_each_types_keys_to_it():
    definitions = json_schema()["$defs"]
    runners = json_schema()["properties"]["runners"]["items"]
    assert runners["discriminator"]["propertyName"] == "type"
    assert definitions["ConsumerConfig"]["not"] == {"anyOf": [{"required": ["depends_on"]}]}
    assert definitions["ProducerConfig"]["not"] == {
        "anyOf": [{"required": ["batch_configuration"]}, {"required": ["stage"]}]
    }


@pytest.mark.parametrize(("variety", "size"), [("csv", 50_000), ("file", 1000)])
def test_a_consumer_without_a_batch_size_gets_its_varietys(tmp_path, variety, size):
    from chronopipe.runs.engine import batch_size

    text = CONSUMER.replace("variety: socket", f"variety: {variety}")
    assert "variety: " + variety in text
    assert batch_size(load_config(write(tmp_path, text)).runners[0]) == size
