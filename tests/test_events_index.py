"""ConditionIndex: always exactly what testing every condition in turn gives, only faster."""

from __future__ import annotations

import math
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronopipe.events import Condition, ConditionIndex, IndexEntry, exists, gt, not_, regex, satisfies
from chronopipe.events import groups as groups_module
from chronopipe.events import index as index_module

# Values that are equal, or hash equal, across types (1, 1.0, True), falsy ones, a NaN object.
VALUES = [0, 1, 1.0, 2, -1, True, False, None, "", "x", "y", (1, 2), math.nan]
FIELDS = ["a", "b", "c", "n.x", "n.y"]

values = st.sampled_from(VALUES)


def raising(v):
    return 1 / v > 0  # ZeroDivisionError for 0, TypeError for strings and None


rules = st.recursive(
    st.one_of(
        values,
        st.lists(values, max_size=3),
        st.builds(gt, st.sampled_from([0, 1, 1.5])),
        st.builds(not_, values),
        st.just(exists()),
        st.just(regex("^x")),
        st.just(satisfies(lambda v: v == 1, "is 1")),
        st.just(raising),
    ),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y"]), inner, max_size=2),
    ),
    max_leaves=4,
)
conditions = st.dictionaries(st.sampled_from(FIELDS), rules, max_size=3)

field_values = st.one_of(values, st.lists(values, max_size=3), st.dictionaries(st.sampled_from(["x"]), values))
nested = st.one_of(
    st.dictionaries(st.sampled_from(["x", "y"]), field_values, max_size=2),
    st.lists(st.dictionaries(st.sampled_from(["x", "y"]), field_values, max_size=2), max_size=2),
    values,
)
events = st.one_of(
    st.fixed_dictionaries({}, optional={"a": field_values, "b": field_values, "c": field_values, "n": nested}),
    values,
)


def linear(entries: list[IndexEntry], event) -> list[IndexEntry]:
    return [entry for entry in entries if entry.condition.matches(event)]


@pytest.mark.parametrize("refile_first", [1, 5, 64])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(conditions, max_size=25), removed=st.lists(st.integers(0, 24), max_size=10),
       sample=st.lists(events, min_size=1, max_size=8))
def test_the_index_gives_what_a_linear_scan_gives(refile_first, specs, removed, sample):
    with mock.patch.object(index_module, "REFILE_FIRST", refile_first):
        index: ConditionIndex[IndexEntry] = ConditionIndex()
        entries = [IndexEntry(Condition(spec), i) for i, spec in enumerate(specs)]
        for entry in entries:
            index.add(entry)
        for i in removed:
            if i < len(entries) and entries[i] in index.entries():
                index.remove(entries[i].seq)
        live = index.entries()
        for event in sample:
            assert index.match(event) == linear(live, event)


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(conditions, min_size=1, max_size=25), sample=st.lists(events, min_size=1, max_size=5))
def test_adding_again_after_removing_everything_gives_the_linear_scan_too(specs, sample):
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    for entry in [IndexEntry(Condition(spec)) for spec in specs]:
        index.add(entry)
    for entry in index.entries():
        index.remove(entry.seq)
    fresh = [IndexEntry(Condition(spec)) for spec in reversed(specs)]
    for entry in fresh:
        index.add(entry)
    for event in sample:
        assert index.match(event) == linear(fresh, event)


def test_matches_come_in_insertion_order_across_buckets():
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    for spec in [{"b": 1}, {"a": 1}, {}, {"c": gt(0)}, {"a": 1, "b": 1}]:
        index.add(IndexEntry(Condition(spec)))
    assert [e.seq for e in index.match({"a": 1, "b": 1, "c": 1})] == [0, 1, 2, 3, 4]


def test_the_first_entry_can_be_removed():
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    first = IndexEntry(Condition({"a": 1}))
    index.add(first)
    index.add(IndexEntry(Condition({"a": 1})))
    assert index.remove(first.seq) is first
    assert [e.seq for e in index.match({"a": 1})] == [1]


def test_removing_what_is_not_there_gives_none():
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    assert index.remove(0) is None


def test_an_entry_is_filed_once():
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    entry = IndexEntry(Condition({"a": 1}))
    index.add(entry)
    with pytest.raises(ValueError, match="filed already"):
        index.add(entry)


def counting(calls: list):
    return satisfies(lambda v: calls.append(v) or True, "counted")


def test_a_condition_is_tested_only_on_events_with_one_of_its_wanted_values():
    calls: list = []
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    for device in range(1000):
        index.add(IndexEntry(Condition({"device": f"d{device}", "probe": counting(calls)})))
    index.match({"device": "d7", "probe": 1})
    assert calls == [1]


def test_a_condition_is_filed_under_its_rarest_value():
    calls: list = []
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    for device in range(1000):
        index.add(IndexEntry(Condition({"type": "error", "device": f"d{device}", "probe": counting(calls)})))
    index.match({"type": "error", "device": "d7", "probe": 1})
    assert calls == [1]


def test_a_condition_with_only_predicates_is_tested_only_on_events_with_its_field():
    calls: list = []
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    index.add(IndexEntry(Condition({"probe": counting(calls)})))
    index.match({"other": 1})
    assert calls == []
    index.match({"probe": 2})
    assert calls == [2]


def test_an_event_value_that_cannot_be_hashed_is_no_candidate_and_no_error():
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    index.add(IndexEntry(Condition({"a": 1})))
    assert index.match({"a": {"unhashable": 1}}) == []
    assert index.errors == 0


def test_errors_of_the_conditions_tested_are_counted():
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    index.add(IndexEntry(Condition({"n": raising})))
    index.match({"n": 0})
    assert index.errors == 1


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(conditions, min_size=1, max_size=25))
def test_removing_every_entry_leaves_nothing_behind(specs):
    with mock.patch.object(index_module, "REFILE_FIRST", 4):
        index: ConditionIndex[IndexEntry] = ConditionIndex()
        for spec in specs:
            index.add(IndexEntry(Condition(spec)))
        for entry in index.entries():
            index.remove(entry.seq)
    tables = (index._top, index._deep, index._present, index._always, index._asked)
    assert len(index) == 0 and not any(tables)


@settings(max_examples=150, deadline=None)
@given(specs=st.lists(conditions, min_size=1, max_size=12), more=st.lists(conditions, max_size=4),
       sample=st.lists(events, min_size=1, max_size=4))
def test_merges_kept_for_events_of_one_kind_follow_every_add_and_remove(specs, more, sample):
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    for spec in specs:
        index.add(IndexEntry(Condition(spec)))
    for spec in more:  # the same events again after each change: what was kept for them must not serve stale
        for event in sample:
            assert index.match(event) == linear(index.entries(), event)
        index.add(IndexEntry(Condition(spec)))
        for event in sample:
            assert index.match(event) == linear(index.entries(), event)
        index.remove(index.entries()[0].seq)
    for event in sample:
        assert index.match(event) == linear(index.entries(), event)


def test_events_of_one_kind_share_one_merge_of_their_groups():
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    for spec in [{}, {"tcp": exists()}, {"malformed": exists()}, {"sliced": True}, {}]:
        index.add(IndexEntry(Condition(spec)))
    packets = [{"tcp": {"seq": n}, "sliced": False} for n in range(3)]
    assert [[e.seq for e in index.match(p)] for p in packets] == [[0, 1, 4]] * 3
    assert index.matched(packets[0]) is index.matched(packets[1])  # kept, not merged again
    assert index.match(packets[0]) is not index.match(packets[0])  # match: a list of the caller's own


def test_a_condition_proved_by_where_it_is_filed_is_not_tested_again():
    calls: list = []
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    index.add(IndexEntry(Condition({"tcp": exists()})))
    index.add(IndexEntry(Condition({"tcp": exists(), "len": counting(calls)})))
    assert [e.seq for e in index.match({"tcp": 1, "len": 5})] == [0, 1] and calls == [5]


# -- crowded groups: what their candidates matched, kept by value -----------------------
@pytest.mark.parametrize("memo_from", [1, 4])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(conditions, max_size=25), sample=st.lists(events, min_size=1, max_size=8))
def test_what_a_crowded_group_keeps_by_value_gives_what_a_linear_scan_gives(memo_from, specs, sample):
    with mock.patch.object(groups_module, "MEMO_FROM", memo_from):
        index: ConditionIndex[IndexEntry] = ConditionIndex()
        for spec in specs:
            index.add(IndexEntry(Condition(spec)))
        for event in sample + sample:  # the second time, from what was kept
            assert index.match(event) == linear(index.entries(), event)


FILLER = 60


def crowded() -> ConditionIndex[IndexEntry]:
    """Six conditions on source "s", each adding an equality clause on another field (#0 to #5
    below: seqs FILLER + 0 to 5). Sixty others, on other sources, make those fields' values
    common and the source rare, so that the six are filed under "s" together."""
    index: ConditionIndex[IndexEntry] = ConditionIndex()
    for i in range(FILLER):
        index.add(IndexEntry(Condition({"source": f"t{i}", "flag": [1, True, "z"], "level": ["a", "b", "c"],
                                        "n.x": 0})))
    for spec in [{"source": "s", "flag": 1}, {"source": "s", "flag": True}, {"source": "s", "level": ["a", "b"]},
                 {"source": "s", "level": "c"}, {"source": "s", "n.x": 0}, {"source": "s", "flag": [1, "z"]}]:
        index.add(IndexEntry(Condition(spec)))
    return index


def seqs(entries: list[IndexEntry]) -> list[int]:
    return [e.seq - FILLER for e in entries]


def test_events_with_the_same_values_share_what_their_crowded_group_matched():
    index = crowded()
    first, second = {"source": "s", "flag": 1, "other": 1}, {"source": "s", "flag": 1, "other": 2}
    assert seqs(index.matched(first)) == [0, 5]
    assert index.matched(second) is index.matched(first)


def test_what_was_kept_for_an_int_does_not_serve_a_bool():
    index = crowded()
    assert seqs(index.match({"source": "s", "flag": 1})) == [0, 5]
    assert seqs(index.match({"source": "s", "flag": True})) == [1]


def test_what_was_kept_for_a_missing_field_does_not_serve_a_present_one():
    index = crowded()
    assert seqs(index.match({"source": "s"})) == []
    assert seqs(index.match({"source": "s", "n": {"x": 0}})) == [4]
    assert seqs(index.match({"source": "s", "n": {}})) == []


def test_a_list_valued_field_in_a_crowded_group_is_tested_not_looked_up():
    index = crowded()
    assert seqs(index.match({"source": "s", "level": ["c", "a"]})) == [2, 3]
    assert seqs(index.match({"source": "s", "level": ["c", "a"]})) == [2, 3]


def test_a_group_whose_values_rarely_repeat_stops_keeping_them():
    with mock.patch.object(index_module, "MEMO_KEPT", 2):
        index = crowded()
        for n in range(10):
            assert seqs(index.match({"source": "s", "level": "c", "flag": f"v{n}"})) == [3]
        [(_, _, memo)] = index._plans.values()
        assert memo is not None and memo.results is None
