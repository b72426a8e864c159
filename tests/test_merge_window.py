"""merge_sorted and MergeWindow: the sorted merge's core, exact against a stable sort."""

import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chronopipe as cp
from chronopipe.multiplex import MergeWindow

# inputs of small keys (many ties), each sorted; records are (key, input, position)
sorted_inputs = st.lists(st.lists(st.integers(0, 12)).map(sorted), max_size=6)


def tagged(inputs, descending=False):
    return [[(k, i, j) for j, k in enumerate(sorted(keys, reverse=descending))] for i, keys in enumerate(inputs)]


@settings(max_examples=300, deadline=None)
@given(inputs=sorted_inputs, batch_size=st.integers(1, 8))
def test_merge_sorted_equals_a_stable_sort_with_ties_in_argument_order(inputs, batch_size):
    records = tagged(inputs)
    merged = list(cp.merge_sorted(*records, key=operator.itemgetter(0), batch_size=batch_size))
    assert merged == sorted((r for rs in records for r in rs), key=operator.itemgetter(0))


@settings(max_examples=300, deadline=None)
@given(inputs=sorted_inputs, batch_size=st.integers(1, 8))
def test_merge_sorted_max_direction_equals_a_stable_descending_sort(inputs, batch_size):
    records = tagged(inputs, descending=True)
    merged = list(cp.merge_sorted(*records, key=operator.itemgetter(0), direction="max", batch_size=batch_size))
    assert merged == sorted((r for rs in records for r in rs), key=operator.itemgetter(0), reverse=True)


@settings(max_examples=300, deadline=None)
@given(inputs=st.lists(st.lists(st.integers(0, 12)), max_size=5), batch_size=st.integers(1, 8))
def test_unsorted_input_is_emitted_in_order_and_the_rest_is_late_never_lost(inputs, batch_size):
    records = tagged_unsorted = [[(k, i, j) for j, k in enumerate(keys)] for i, keys in enumerate(inputs)]
    late: list = []
    merged = list(cp.merge_sorted(*records, key=operator.itemgetter(0), late=late.append, batch_size=batch_size))
    assert [r[0] for r in merged] == sorted(r[0] for r in merged)
    assert sorted(merged + late) == sorted(r for rs in tagged_unsorted for r in rs)


def test_the_seed_example_merges_by_timestamp():
    a = [{"timestamp": t} for t in (1010, 1020, 1030)]
    b = [{"timestamp": t} for t in (1019, 1020, 1021)]
    assert [r["timestamp"] for r in cp.merge_sorted(a, b)] == [1010, 1019, 1020, 1020, 1021, 1030]


def test_an_out_of_order_record_raises_without_a_late_callback():
    with pytest.raises(ValueError, match="out of order.*'t': 1.*after key 5"):
        list(cp.merge_sorted([{"t": 5}, {"t": 1}], key="t"))


@pytest.mark.parametrize("key", ["a.b", ["a", "b"], ("a.b", "c"), lambda r: r["a"]["b"]])
def test_merge_sorted_takes_every_key_form_of_the_multiplexer(key):
    a = [{"a": {"b": 1}, "c": 0}, {"a": {"b": 3}, "c": 0}]
    b = [{"a": {"b": 2}, "c": 0}]
    assert [r["a"]["b"] for r in cp.merge_sorted(a, b, key=key)] == [1, 2, 3]


def test_keys_that_cannot_be_compared_fail_with_a_clear_error():
    with pytest.raises(TypeError, match="cannot be compared"):
        list(cp.merge_sorted([{"t": 1}], [{"t": "x"}], key="t"))


def test_a_record_without_the_key_fails_naming_the_field():
    with pytest.raises(KeyError, match="no field 't'"):
        list(cp.merge_sorted([{"t": 1}], [{"u": 2}], key="t"))


def test_merge_sorted_rejects_a_batch_size_below_one():
    with pytest.raises(ValueError, match="batch_size"):
        cp.merge_sorted([1], key=lambda x: x, batch_size=0)


def test_the_window_holds_records_an_input_may_still_precede():
    window = MergeWindow("t")
    a, b = window.add(), window.add()
    window.feed(a, [{"t": 1}, {"t": 9}])
    assert window.take() == []  # b said nothing yet: anything may come first
    window.feed(b, [{"t": 4}])
    assert [r["t"] for r in window.take()] == [1, 4]
    assert window.waiting_on() == [b]


def test_a_tie_at_the_cut_waits_while_an_earlier_input_may_send_that_key():
    window = MergeWindow("t")
    a, b = window.add(), window.add()
    window.feed(a, [{"t": 5, "from": "a"}])
    window.feed(b, [{"t": 5, "from": "b"}])
    assert [r["from"] for r in window.take()] == ["a"]  # b's 5 waits: a may send another 5
    window.feed(a, [{"t": 5, "from": "a2"}, {"t": 6, "from": "a3"}])
    assert [r["from"] for r in window.take()] == ["a2", "b"]


def test_an_idle_input_no_longer_holds_the_window_and_its_old_records_are_late():
    late: list = []
    window = MergeWindow("t", on_late=lambda i, record, floor: late.append((i, record, floor)))
    a, b = window.add(), window.add()
    window.feed(a, [{"t": 1}, {"t": 2}])
    window.set_idle(b)
    assert [r["t"] for r in window.take()] == [1, 2]
    window.feed(b, [{"t": 1}, {"t": 3}])
    assert late == [(b, {"t": 1}, 2)]
    window.end(a)
    window.end(b)
    assert [r["t"] for r in window.take()] == [3] and window.done
