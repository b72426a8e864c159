"""Messages: Commands and Events are frozen JSON values that survive a JSON round trip, and
every command is answered by exactly one terminal event, whatever its handler does."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from concurrent.futures import Future

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronopipe.either import Left, Pending, Right
from chronopipe.messages import (
    COMMANDS,
    OUTCOMES,
    UNKNOWN_EVENT_RECEIVED,
    Command,
    CommandType,
    Event,
    MessageError,
    answer,
    event_types,
    failed,
    parse,
    register,
    rejected,
    succeeded,
)
from chronopipe.messages import registry as messages_registry

# -- strategies ---------------------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
command_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,40}", fullmatch=True).filter(
    lambda name: not name.endswith(("_SUCCEEDED", "_FAILED", "_REJECTED", "_REQUESTED"))
)
event_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,63}", fullmatch=True)
ids = st.text(min_size=1, max_size=128)
stamps = st.floats(allow_nan=False, allow_infinity=False)
commands = st.builds(Command, command_names, json_objects, ids, stamps, st.none() | ids)
events = st.builds(Event, event_names, json_objects, ids, stamps, st.none() | ids)


def settled_future(value: object = None, error: BaseException | None = None) -> Future:
    future: Future = Future()
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
    return future


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


# A handler for each behaviour answer() must survive; the outcome it gets.
BEHAVIOURS = {
    "returns a value": (lambda c: {"ok": [1, 2]}, "SUCCEEDED"),
    "returns None": (lambda c: None, "SUCCEEDED"),
    "returns Right": (lambda c: Right(3), "SUCCEEDED"),
    "returns Left of an exception": (lambda c: Left(ValueError("bad input")), "FAILED"),
    "returns Left of a string": (lambda c: Left("no such input"), "FAILED"),
    "returns Left of an empty string": (lambda c: Left(""), "FAILED"),
    "raises": (lambda c: 1 / 0, "FAILED"),
    "raises an unprintable exception": (lambda c: (_ for _ in ()).throw(Unprintable()), "FAILED"),
    "raises MessageError": (lambda c: Command("lower"), "FAILED"),
    "returns a non-JSON value": (lambda c: {1, 2}, "FAILED"),
    "returns Right of a non-JSON value": (lambda c: Right(object()), "FAILED"),
    "returns a dict with int keys": (lambda c: {1: "one"}, "FAILED"),
    "returns NaN": (lambda c: math.nan, "FAILED"),
    "returns a settled Pending": (lambda c: Pending(settled_future(7)), "SUCCEEDED"),
    "returns a failing Pending": (lambda c: Pending(settled_future(error=KeyError("k"))), "FAILED"),
    "returns a Pending that never settles": (lambda c: Pending(Future()), "FAILED"),
    "returns a Pending whose map raises": (lambda c: Pending(settled_future(1)).map(lambda x: x / 0), "FAILED"),
}


@pytest.fixture
def scratch_registry():
    """Commands a test registers are gone after it."""
    before = dict(messages_registry._COMMANDS)
    yield
    messages_registry._COMMANDS.clear()
    messages_registry._COMMANDS.update(before)


# -- making messages ----------------------------------------------------------------------
def test_a_command_gets_a_uuid4_id_and_the_time_of_making():
    command = Command("STOP")
    assert len(command.id) == 36 and command.id[14] == "4"
    assert command.correlation_id is None and dict(command.data) == {}
    assert isinstance(command.timestamp, float)
    assert Command("STOP").id != command.id


def test_the_seeds_requested_spelling_is_normalized_to_the_command_type():
    assert Command("STOP_REQUESTED").type == "STOP"
    assert Command("GET_INFO_WORKER_REQUESTED").type == "GET_INFO_WORKER"


@pytest.mark.parametrize("name", ["stop", "", "1STOP", "_STOP", "STOP-NOW", "S" * 65, "STÖP", 7, None])
def test_a_type_that_is_not_a_type_name_is_refused(name):
    with pytest.raises(MessageError, match="type: .* is not a type name"):
        Command(name)


@pytest.mark.parametrize("name", ["STOP_SUCCEEDED", "STOP_FAILED", "STOP_REJECTED"])
def test_a_command_named_like_an_event_is_refused(name):
    with pytest.raises(MessageError, match="names an outcome, not a command"):
        Command(name)


def test_a_command_type_too_long_for_its_events_is_refused():
    Command("S" * 54)
    with pytest.raises(MessageError, match="too long for its events"):
        Command("S" * 55)


def test_an_event_type_may_be_any_type_name_up_to_64_characters():
    assert Event("E" * 64).type == "E" * 64


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"x": {1, 2}}, r"data\['x'\]: set is not a JSON value"),
        ({"x": [1, b"raw"]}, r"data\['x'\]\[1\]: bytes is not a JSON value"),
        ({"x": math.inf}, r"data\['x'\]: inf is not a JSON number"),
        ({"x": math.nan}, r"data\['x'\]: nan is not a JSON number"),
        ({"x": {3: "three"}}, r"data\['x'\]: key 3 is not a string"),
        ({1: "one"}, r"data: key 1 is not a string"),
        ({"x": 10**5000}, r"data\['x'\]: an integer over"),
        (["not", "an", "object"], r"data: must be a JSON object, got list"),
    ],
)
def test_data_that_is_not_json_is_refused_naming_where(data, where):
    with pytest.raises(MessageError, match=where):
        Command("STOP", data)


def test_data_nested_too_deeply_is_refused():
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(MessageError, match="nested deeper than 100 levels"):
        Command("STOP", {"x": deep})


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"id": 7}, "command id: must be a string"),
        ({"id": ""}, "command id: must be a string"),
        ({"id": "x" * 129}, "command id: must be a string"),
        ({"correlation_id": 7}, "command correlation_id: must be a string"),
        ({"timestamp": "now"}, "command timestamp: must be a finite number"),
        ({"timestamp": True}, "command timestamp: must be a finite number"),
        ({"timestamp": math.inf}, "command timestamp: must be a finite number"),
        ({"timestamp": 10**400}, "command timestamp: must be a finite number"),
    ],
)
def test_a_bad_field_is_refused_naming_the_field(fields, where):
    with pytest.raises(MessageError, match=where):
        Command("STOP", **fields)


def test_a_message_error_is_a_value_error_of_one_line():
    with pytest.raises(ValueError) as caught:
        Command("STOP", {"x\ny": {"a\nb": object()}})
    assert isinstance(caught.value, MessageError) and "\n" not in str(caught.value)


# -- immutability, equality, hashing ------------------------------------------------------
def test_a_message_is_a_frozen_slotted_dataclass():
    command = Command("STOP")
    assert dataclasses.is_dataclass(command) and not hasattr(command, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.type = "KILL"  # type: ignore[misc]


def test_changing_the_callers_data_afterwards_does_not_change_the_message():
    data = {"records": [{"a": 1}]}
    command = Command("PUSH", data)
    data["records"][0]["a"] = 2
    data["records"].append({"b": 3})
    data["input"] = "x"
    assert command.get_data("records") == Right([{"a": 1}]) and "input" not in command.data


def test_data_cannot_be_changed_through_the_message():
    command = Command("PUSH", {"records": [{"a": 1}]})
    with pytest.raises(TypeError):
        command.data["input"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        command.data["records"][0]["a"] = 2
    with pytest.raises(AttributeError):
        command.data["records"].append({})


def test_get_data_hands_out_a_copy_the_caller_may_change():
    command = Command("PUSH", {"records": [1]})
    command.get_data("records").unwrap().append(2)
    assert command.get_data("records") == Right([1])


def test_equal_messages_are_equal_and_hash_equal():
    one = Command("PUSH", {"records": [1, {"a": None}]}, id="c", timestamp=1.0)
    other = Command("PUSH", {"records": (1, {"a": None})}, id="c", timestamp=1)
    assert one == other and hash(one) == hash(other) and len({one, other}) == 1


def test_messages_that_differ_only_in_data_are_unequal():
    assert Command("PUSH", {"a": 1}, id="c", timestamp=1.0) != Command("PUSH", {"a": 2}, id="c", timestamp=1.0)


def test_a_command_never_equals_an_event_with_the_same_fields():
    assert Command("STOP", id="c", timestamp=1.0) != Event("STOP", id="c", timestamp=1.0)


# -- get_data / getData -------------------------------------------------------------------
def test_get_data_returns_right_of_a_present_key():
    assert Command("STOP", {"timeout": 5}).get_data("timeout") == Right(5)


def test_get_data_returns_left_key_error_for_a_missing_key():
    result = Command("STOP").get_data("timeout")
    assert result.is_left and isinstance(result.error, KeyError) and result.error.args == ("timeout",)


def test_get_data_keeps_a_present_none_apart_from_a_missing_key():
    assert Command("STOP", {"timeout": None}).get_data("timeout") == Right(None)


def test_getdata_is_the_seeds_spelling_of_get_data():
    command = Command("STOP", {"timeout": 5})
    assert command.getData("timeout") == command.get_data("timeout") == Right(5)


# -- JSON ---------------------------------------------------------------------------------
def test_to_dict_has_exactly_the_documented_keys():
    assert list(Command("STOP").to_dict()) == ["kind", "type", "id", "timestamp", "correlation_id", "data"]
    assert Event("STOP_SUCCEEDED").to_dict()["kind"] == "event"


@settings(max_examples=200)
@given(commands)
def test_any_command_survives_a_json_round_trip(command):
    assert Command.from_json(command.to_json()) == command
    assert parse(command.to_json().encode()) == command


@settings(max_examples=200)
@given(events)
def test_any_event_survives_a_json_round_trip(event):
    assert Event.from_json(event.to_json()) == event
    assert parse(event.to_dict()) == event


def wire(**changes: object) -> str:
    obj = {"kind": "command", "type": "STOP", "id": "c", "timestamp": 1.0, "correlation_id": None, "data": {}}
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[1, 2]", "must be a JSON object, got list"),
        ('"STOP"', "must be a JSON object, got str"),
        ("{not json", "JSON: Expecting property name"),
        (b"\xff\xfe{", "JSON:"),
        (wire(kind="event"), "kind: expected 'command', got 'event'"),
        (wire(kind=...), "kind: expected 'command', got None"),
        (wire(id=...), "missing id"),
        (wire(data=..., timestamp=...), "missing timestamp, data"),
        (wire(extra=1), "unknown key 'extra'"),
        (wire(type="stop"), "type: 'stop' is not a type name"),
        (wire(id=7), "id: must be a string"),
        (wire(correlation_id=[]), "correlation_id: must be a string"),
        (wire(timestamp="1"), "timestamp: must be a finite number"),
        (wire(timestamp=None), "timestamp: must be a finite number"),
        (wire(data=[]), "data: must be a JSON object, got list"),
        (wire(data="x"), "data: must be a JSON object, got str"),
        (wire().replace("1.0", "NaN"), "JSON: NaN is not a JSON number"),
        (wire().replace("1.0", "Infinity"), "JSON: Infinity is not a JSON number"),
        (wire().replace("1.0", "1e999"), "JSON: '1e999' is too large for a number"),
        (wire().replace('"id": "c"', '"id": "c", "id": "d"'), "JSON: duplicate key 'id'"),
        ("[" * 100_000, "JSON: nested too deeply"),
    ],
)
def test_from_json_refuses_a_bad_message_in_one_line(text, why):
    with pytest.raises(MessageError) as caught:
        Command.from_json(text)
    assert why in str(caught.value) and "\n" not in str(caught.value)


def test_from_json_reads_the_seeds_requested_spelling():
    assert Command.from_json(wire(type="STOP_REQUESTED")).type == "STOP"


def test_from_json_accepts_an_integer_timestamp_as_seconds():
    assert Command.from_json(wire(timestamp=5)).timestamp == 5.0


def test_from_json_refuses_something_that_is_not_text():
    with pytest.raises(MessageError, match="expected str or bytes, got dict"):
        Command.from_json({"kind": "command"})  # type: ignore[arg-type]


def test_parse_reads_a_message_by_its_kind():
    assert type(parse(wire())) is Command
    assert type(parse(wire(kind="event", type="UNKNOWN_EVENT_RECEIVED"))) is Event


@pytest.mark.parametrize("kind", ["query", None, 1])
def test_parse_refuses_an_unknown_kind(kind):
    with pytest.raises(MessageError, match="message kind: expected 'command' or 'event'"):
        parse(wire(kind=kind))


def test_a_command_of_an_unregistered_type_is_read_so_it_can_be_rejected():
    command = parse(wire(type="LAUNCH_MISSILES"))
    assert "LAUNCH_MISSILES" not in COMMANDS
    assert answer(command, None).type == "LAUNCH_MISSILES_REJECTED"


# -- events -------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", OUTCOMES)
def test_a_terminal_event_knows_its_command_type_and_outcome(outcome):
    event = Event(f"GET_INFO_{outcome}")
    assert (event.command_type, event.outcome, event.is_terminal) == ("GET_INFO", outcome, True)


@pytest.mark.parametrize("name", [UNKNOWN_EVENT_RECEIVED, "RECORDS_ARRIVED", "SUCCEEDED", "FAILED"])
def test_an_event_not_named_for_an_outcome_is_not_terminal(name):
    event = Event(name)
    assert (event.command_type, event.outcome, event.is_terminal, event.reason) == (None, None, False, None)


def test_succeeded_answers_the_command_with_its_id_as_correlation_id():
    command = Command("GET_STATS")
    event = succeeded(command, {"state": "running"})
    assert (event.type, event.correlation_id) == ("GET_STATS_SUCCEEDED", command.id)
    assert event.get_data("state") == Right("running")
    assert event.id != command.id and event.reason is None


@pytest.mark.parametrize(("make", "outcome"), [(failed, "FAILED"), (rejected, "REJECTED")])
def test_failed_and_rejected_carry_the_reason_on_one_line(make, outcome):
    event = make(Command("STOP"), "could not\n  drain  in time")
    assert (event.type, event.reason, event.data["reason"]) == (f"STOP_{outcome}", "could not drain in time",
                                                               "could not drain in time")


def test_a_long_reason_is_cut_to_500_characters():
    assert len(failed(Command("STOP"), "x" * 10_000).reason) == 500


def test_answering_something_that_is_not_a_command_is_a_type_error():
    with pytest.raises(TypeError, match="takes a Command, got Event"):
        answer(Event("STOP"), lambda c: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="answers a Command"):
        succeeded(Event("STOP"))  # type: ignore[arg-type]


# -- answer -------------------------------------------------------------------------------
@pytest.mark.parametrize(("handler", "outcome"), BEHAVIOURS.values(), ids=BEHAVIOURS.keys())
def test_answer_gives_the_outcome_of_the_handlers_behaviour(handler, outcome):
    command = Command("STOP")
    event = answer(command, handler, timeout=0.01)
    assert (event.type, event.correlation_id) == (f"STOP_{outcome}", command.id)
    assert (event.reason is None) == (outcome == "SUCCEEDED")


def test_answer_puts_the_handlers_value_in_data_result():
    assert answer(Command("GET_STATS"), lambda c: Right({"received": 3})).get_data("result") == Right({"received": 3})


def test_answer_names_an_exception_by_type_and_message():
    assert answer(Command("STOP"), lambda c: {}["timeout"]).reason == "KeyError: 'timeout'"


def test_answer_gives_a_lefts_error_as_the_reason():
    assert answer(Command("STOP"), lambda c: Left(ValueError("bad input"))).reason == "bad input"


def test_answer_rejects_a_command_without_a_handler_as_unknown():
    event = answer(Command("LAUNCH"), None)
    assert (event.type, event.reason) == ("LAUNCH_REJECTED", "unknown command LAUNCH")


def test_answer_rejects_a_command_not_allowed_without_calling_the_handler():
    called = []
    event = answer(Command("KILL"), called.append, allowed=False)
    assert (event.type, event.reason, called) == ("KILL_REJECTED", "not allowed", [])


def test_answer_waits_for_a_pending_result_up_to_the_timeout():
    future: Future = Future()
    threading.Timer(0.05, future.set_result, ["done"]).start()
    assert answer(Command("STOP"), lambda c: Pending(future), timeout=10).get_data("result") == Right("done")


def test_answer_fails_a_result_still_pending_after_the_timeout():
    assert answer(Command("STOP"), lambda c: Pending(Future()), timeout=0.01).reason == "timed out after 0.01 s"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_answer_lets_keyboard_interrupt_and_system_exit_through(exc):
    def handler(command):
        raise exc

    with pytest.raises(exc):
        answer(Command("STOP"), handler)


@settings(max_examples=300, deadline=None)
@given(
    commands,
    st.sampled_from(sorted(BEHAVIOURS)) | st.just("unknown"),
    st.booleans(),
)
def test_any_command_gets_exactly_one_terminal_event_correlated_to_it(command, behaviour, allowed):
    handler = None if behaviour == "unknown" else BEHAVIOURS[behaviour][0]
    event = answer(command, handler, allowed=allowed, timeout=0.001)
    assert isinstance(event, Event) and event.is_terminal
    assert event.correlation_id == command.id
    assert event.type == f"{command.type}_{event.outcome}" and event.command_type == command.type
    assert [o for o in OUTCOMES if event.type.endswith("_" + o)] == [event.outcome]
    assert Event.from_json(event.to_json()) == event


# -- the registry -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "changes"),
    [("GET_INFO", False), ("GET_ACTORS", False), ("GET_STATS", False), ("GET_FEATURES", False),
     ("PUSH", True), ("STOP", True), ("KILL", True)],
)
def test_the_built_in_commands_are_registered(name, changes):
    entry = COMMANDS[name]
    assert entry == CommandType(name, changes, entry.description) and entry.description


def test_event_types_are_each_commands_outcomes_and_the_seeds_unknown_event():
    names = event_types()
    assert {"STOP_SUCCEEDED", "STOP_FAILED", "STOP_REJECTED", "UNKNOWN_EVENT_RECEIVED"} <= names
    assert len(names) == 3 * len(COMMANDS) + 1


def test_register_adds_a_command_and_its_three_events(scratch_registry):
    register("PAUSE", changes=True, description="stop feeding until RESUME")
    assert COMMANDS["PAUSE"] == CommandType("PAUSE", True, "stop feeding until RESUME")
    assert {"PAUSE_SUCCEEDED", "PAUSE_FAILED", "PAUSE_REJECTED"} <= event_types()


def test_registering_the_same_command_again_the_same_way_does_nothing(scratch_registry):
    register("PAUSE", changes=True, description="pause")
    register("PAUSE", changes=True, description="pause")
    assert COMMANDS["PAUSE"].description == "pause"


def test_registering_a_command_again_differently_is_refused(scratch_registry):
    with pytest.raises(ValueError, match="STOP is registered already"):
        register("STOP", changes=False, description="something else")


@pytest.mark.parametrize(("name", "why"), [("pause", "not a type name"), ("PAUSE_REQUESTED", "register 'PAUSE'"),
                                           ("PAUSE_FAILED", "names an outcome")])
def test_register_refuses_a_name_that_is_not_a_command_type(scratch_registry, name, why):
    with pytest.raises(MessageError, match=why):
        register(name, changes=False, description="")


def test_commands_is_read_only():
    with pytest.raises(TypeError):
        COMMANDS["X"] = CommandType("X", False, "")  # type: ignore[index]


def test_the_package_imports_only_either_and_the_stdlib():
    import sys
    from pathlib import Path

    from chronopipe import messages

    for path in Path(messages.__file__).parent.glob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")) and not line.startswith(("from .", "from __future__")):
                module = line.split()[1].split(".")[0]
                assert module in sys.stdlib_module_names or line.startswith("from chronopipe.either"), line


@pytest.mark.parametrize("make", [
    lambda: Command("STOP", id="\ud800"),
    lambda: Command("STOP", correlation_id="a\udfff"),
    lambda: Command("STOP", {"\ud800": 1}),
    lambda: Command("STOP", {"records": ["ok", {"note": "\udc80"}]}),
    lambda: Event("STOP_SUCCEEDED", {"result": "\ud800"}),
    lambda: Command.from_json('{"kind": "command", "type": "STOP", "id": "\\ud800", "timestamp": 0, '
                              '"correlation_id": null, "data": {}}'),
])
def test_a_string_with_a_lone_surrogate_is_refused_anywhere_in_a_message(make):
    with pytest.raises(MessageError, match="lone surrogate") as caught:
        make()
    str(caught.value).encode("utf-8")  # the reason itself is Unicode text


def test_a_number_too_large_for_a_float_in_data_is_refused_by_from_json():
    text = ('{"kind": "command", "type": "STOP", "id": "c", "timestamp": 0, "correlation_id": null, '
            '"data": {"x": 1e999}}')
    with pytest.raises(MessageError, match="too large for a number"):
        Command.from_json(text)


def test_answer_fails_a_handler_raising_generator_exit_or_another_base_exception():
    import asyncio

    for exc in (GeneratorExit("closed"), asyncio.CancelledError()):
        def handler(command, exc=exc):
            raise exc

        event = answer(Command("STOP"), handler)
        assert (event.outcome, event.reason) == ("FAILED", f"{type(exc).__name__}: {exc}" if str(exc)
                                                 else type(exc).__name__)
