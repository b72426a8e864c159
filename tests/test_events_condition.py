"""Condition: what a rule dict means, field by field (the EventManager's index must agree)."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from chronopipe.events import (
    Condition,
    all_of,
    any_of,
    between,
    eq,
    exists,
    ge,
    gt,
    le,
    lt,
    not_,
    regex,
    satisfies,
)


def matches(spec, event) -> bool:
    return Condition(spec).matches(event)


# -- equality ---------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "event", "expected"), [
    ({"type": "response"}, {"type": "response"}, True),
    ({"type": "response"}, {"type": "command"}, False),
    ({"code": 200}, {"code": 200}, True),
    ({"code": 1}, {"code": 1.0}, True),
    ({"t": ("a", 1)}, {"t": ("a", 1)}, True),
])
def test_a_value_asks_for_equality(spec, event, expected):
    assert matches(spec, event) is expected


@pytest.mark.parametrize(("wanted", "actual"), [(True, 1), (1, True), (False, 0), (0, False), (1.0, True)])
def test_bools_are_not_numbers(wanted, actual):
    assert not matches({"flag": wanted}, {"flag": actual})


def test_a_nan_object_matches_itself_as_a_dict_lookup_would():
    assert matches({"x": math.nan}, {"x": math.nan})
    assert not matches({"x": math.nan}, {"x": float("nan")})


@pytest.mark.parametrize("falsy", [0, 0.0, False, "", None, b""])
def test_a_falsy_value_is_a_value_that_matches_when_asked_for(falsy):
    assert matches({"x": falsy}, {"x": falsy})


@pytest.mark.parametrize("falsy", [0, False, "", None, [], {}])
def test_a_field_with_a_falsy_value_exists(falsy):
    assert matches({"x": exists()}, {"x": falsy})


@pytest.mark.parametrize("rule", [None, 0, False, "", exists(), not_("x"), lambda v: True])
def test_a_missing_field_never_matches(rule):
    assert not matches({"x": rule}, {"y": 1})


def test_keys_are_anded():
    spec = {"type": "response", "code": 0}
    assert [matches(spec, {"type": "response", "code": 0}), matches(spec, {"type": "response", "code": 1})] == [
        True, False]


@pytest.mark.parametrize("spec", [None, {}])
def test_an_empty_condition_matches_every_event(spec):
    assert matches(spec, {"anything": 1}) and matches(spec, 42)


# -- nested fields ----------------------------------------------------------------------
def test_a_dotted_key_reads_nested_dicts():
    assert matches({"name.type": "command"}, {"name": {"type": "command"}})


def test_a_nested_dict_reads_nested_fields_like_a_dotted_key():
    assert Condition({"name": {"type": "command"}}) == Condition({"name.type": "command"})
    assert matches({"name": {"type": "command"}}, {"name": {"type": "command"}})


def test_a_dotted_key_reads_attributes_of_objects():
    @dataclass
    class Name:
        type: str

    assert matches({"name.type": "command"}, {"name": Name("command")})
    assert matches({"name.type": "command"}, SimpleNamespace(name={"type": "command"}))


def test_a_dict_field_is_never_read_as_an_attribute():
    assert not matches({"keys": exists()}, {"a": 1})


def test_a_tuple_key_is_a_path_taken_literally():
    assert matches({("a.b",): 1}, {"a.b": 1})
    assert not matches({"a.b": 1}, {"a.b": 1})


def test_an_empty_nested_dict_asks_only_that_the_field_exists():
    assert matches({"name": {}}, {"name": None})
    assert not matches({"name": {}}, {"other": 1})


def test_a_nested_field_below_a_missing_one_is_missing():
    assert not matches({"name.type": None}, {"name": None})


# -- lists: OR in rules, any element in events ------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [("command", True), ("response", True), ("event", False)])
def test_a_list_is_an_or_over_its_values(value, expected):
    assert matches({"type": ["command", "response"]}, {"type": value}) is expected


def test_a_set_is_an_or_too():
    assert matches({"type": {"command", "response"}}, {"type": "response"})


def test_a_list_may_mix_values_helpers_and_predicates():
    spec = {"code": [0, gt(499), lambda c: c == 42]}
    assert [matches(spec, {"code": c}) for c in (0, 500, 42, 7)] == [True, True, True, False]


def test_a_dict_in_a_list_is_a_condition_on_the_fields_value():
    spec = {"name": [{"type": "command"}, {"type": "response", "final": True}]}
    assert matches(spec, {"name": {"type": "response", "final": True}})
    assert not matches(spec, {"name": {"type": "response"}})


def test_an_empty_list_matches_nothing():
    assert not matches({"type": []}, {"type": "command"})


@pytest.mark.parametrize(("rule", "expected"), [
    ("b", True),
    (["x", "c"], True),
    ("z", False),
    (gt(2), True),
    (lambda v: v == "a", True),
    (regex("^c"), True),
])
def test_a_list_field_matches_if_any_element_matches(rule, expected):
    assert matches({"tags": rule}, {"tags": ["a", "b", "c", 3]}) is expected


def test_lists_met_along_a_dotted_path_fan_out():
    event = {"items": [{"kind": "x"}, {"kind": ["y", "z"]}, {"other": 1}]}
    assert matches({"items.kind": "z"}, event)
    assert not matches({"items.kind": "w"}, event)


def test_eq_compares_a_list_as_a_whole():
    assert matches({"tags": eq(["a", "b"])}, {"tags": ["a", "b"]})
    assert not matches({"tags": eq(["a", "b"])}, {"tags": ["a"]})


def test_eq_compares_a_dict_as_a_whole_instead_of_reading_its_fields():
    assert matches({"meta": eq({"a": 1})}, {"meta": {"a": 1}})
    assert not matches({"meta": eq({"a": 1})}, {"meta": {"a": 1, "b": 2}})


def test_an_unhashable_field_value_equals_no_hashable_wanted_value():
    assert not matches({"x": frozenset({1})}, {"x": {1}})


def test_not_of_a_list_field_means_no_element_matches():
    assert not matches({"tags": not_("a")}, {"tags": ["a", "b"]})
    assert matches({"tags": not_("a")}, {"tags": []})


def test_exists_on_an_empty_list_field_holds():
    assert matches({"tags": exists()}, {"tags": []})


# -- helpers ----------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "value", "expected"), [
    (gt(5), 6, True), (gt(5), 5, False),
    (ge(5), 5, True), (ge(5), 4, False),
    (lt(5), 4, True), (lt(5), 5, False),
    (le(5), 5, True), (le(5), 6, False),
    (between(1, 3), 1, True), (between(1, 3), 3, True), (between(1, 3), 4, False),
    (between("a", "c"), "b", True),
    (regex("^test"), "testCommand", True), (regex("^test"), "a test", False),
    (regex("cmd", re.IGNORECASE), "CMD", True),
    (regex(b"^\x01"), b"\x01\x02", True), (regex(b"^\x01"), "\x01", False),
    (regex(re.compile(r"\d+")), "a1", True),
    (not_("x"), "y", True), (not_("x"), "x", False),
    (not_(gt(3)), 1, True),
    (exists(), None, True),
    (any_of(lt(0), gt(10)), 11, True), (any_of(lt(0), gt(10)), 5, False),
    (all_of(gt(0), lt(10)), 5, True), (all_of(gt(0), lt(10)), 10, False),
    (gt(0) & lt(10), 5, True),
    (lt(0) | gt(10), -1, True),
    (~eq(3), 3, False),
    (satisfies(str.isupper), "ABC", True),
    (satisfies(lambda v: v % 2, "odd"), 4, False),
])
def test_every_helper(rule, value, expected):
    assert matches({"f": rule}, {"f": value}) is expected


@pytest.mark.parametrize("rule", [gt(3), between(1, 5), regex("x")])
def test_values_that_do_not_compare_do_not_match_and_are_no_error(rule):
    condition = Condition({"f": rule})
    assert not condition.matches({"f": {"a": 1}})
    assert condition.error_count == 0


def test_all_of_on_a_list_field_lets_different_elements_satisfy_each_part():
    assert matches({"f": gt(1) & lt(5)}, {"f": [0, 9]})


# -- predicates and their errors --------------------------------------------------------
def test_a_callable_is_a_predicate_on_the_fields_value():
    assert matches({"action": lambda x: x.startswith("test")}, {"action": "testCommand"})


def test_a_raising_predicate_does_not_match():
    assert not matches({"action": lambda x: x.startsWith("test")}, {"action": "testCommand"})


def test_a_raising_predicate_is_recorded_on_its_condition():
    condition = Condition({"action": lambda x: x.startsWith("test")})
    condition.matches({"action": "testCommand"})
    error = condition.errors[0]
    assert (condition.error_count, error.field, error.value, error.exc_type) == (
        1, "action", "'testCommand'", "AttributeError")
    assert "startsWith" in error.message and "x.startsWith" in error.traceback


def test_a_raising_predicate_is_logged_once_then_counted(caplog):
    condition = Condition({"n": lambda n: 1 / n})
    with caplog.at_level(logging.WARNING, logger="chronopipe.events"):
        for _ in range(3):
            condition.matches({"n": 0})
    assert condition.error_count == 3
    assert len(caplog.records) == 1
    assert "ZeroDivisionError" in caplog.records[0].getMessage()


def test_only_the_first_errors_are_kept_in_detail():
    condition = Condition({"n": lambda n: 1 / n})
    for _ in range(150):
        condition.matches({"n": 0})
    assert (condition.error_count, len(condition.errors)) == (150, 100)


def test_a_raising_predicate_in_a_nested_condition_is_recorded_on_the_outer_one():
    condition = Condition({"name": [{"type": lambda t: t.nope}]})
    assert not condition.matches({"name": {"type": "x"}})
    assert condition.errors[0].field == "name"


def test_a_predicate_under_not_that_raises_still_does_not_match():
    assert not matches({"n": not_(lambda n: 1 / n)}, {"n": 0})


# -- repr, equality, errors of spelling -------------------------------------------------
def on_command(value):
    return True


@pytest.mark.parametrize(("spec", "expected"), [
    ({"name.type": ["command", "response"]}, "Condition({'name.type': ['command', 'response']})"),
    ({"name": {"type": "command"}}, "Condition({'name.type': 'command'})"),
    ({"flag": True, "n": None}, "Condition({'flag': True, 'n': None})"),
    ({"action": lambda x: x}, "Condition({'action': satisfies(<lambda>)})"),
    ({"action": on_command}, "Condition({'action': satisfies(on_command)})"),
    ({"n": gt(1) & lt(5)}, "Condition({'n': all_of(gt(1), lt(5))})"),
    ({"n": [1, gt(5)]}, "Condition({'n': any_of(1, gt(5))})"),
    ({"n": ~eq(3)}, "Condition({'n': not_(3)})"),
    ({"s": regex("^a", re.I)}, "Condition({'s': regex('^a', re.IGNORECASE)})"),
    ({"s": {"b", "a"}}, "Condition({'s': ['a', 'b']})"),
    ({("a.b",): 1}, "Condition({('a.b',): 1})"),
    ({"e": {}}, "Condition({'e': exists()})"),
    ({"m": [{"k": 1}]}, "Condition({'m': {'k': 1}})"),
    ({"t": eq([1, 2])}, "Condition({'t': eq([1, 2])})"),
    (None, "Condition({})"),
])
def test_repr_is_stable_and_readable(spec, expected):
    assert repr(Condition(spec)) == expected


def test_conditions_with_the_same_clauses_are_equal():
    assert Condition({"a": [1, 2], "b": gt(3)}) == Condition({"a": [2, 1], "b": gt(3)})
    assert Condition({"a": 1}) != Condition({"a": True})


def test_condition_of_a_condition_is_that_condition():
    condition = Condition({"a": 1})
    assert Condition.of(condition) is condition


def test_clauses_lists_paths_and_matchers():
    assert [(path, repr(m)) for path, m in Condition({"a.b": 1, "c": gt(2)}).clauses] == [
        (("a", "b"), "1"), (("c",), "gt(2)")]


def test_a_class_as_a_rule_is_refused_with_what_to_write_instead():
    with pytest.raises(TypeError, match="isinstance"):
        Condition({"value": int})


def test_a_condition_that_is_not_a_dict_is_refused():
    with pytest.raises(TypeError, match="dict of field -> rule"):
        Condition(["type", "command"])


@pytest.mark.parametrize("key", ["a..b", ".a", "a.", ""])
def test_an_empty_name_in_a_dotted_key_is_refused(key):
    with pytest.raises(ValueError, match="empty name"):
        Condition({key: 1})
