"""The `|` algebra and the graph around a node: chain, broadcast, route, merge, sorted merge."""

from __future__ import annotations

import pytest

from chronopipe.graph import MergeSorted, Node, merge_branches
from chronopipe.graph.node import RouterNode, top_down_order


def names(nodes) -> set[str]:
    return {n.name for n in nodes}


def downstream(node: Node) -> list[str]:
    return [n.name for n in node._downstream_nodes]


def upstream(node: Node) -> list[str]:
    return [n.name for n in node._upstream_nodes]


def parity(item):
    return "even" if item % 2 == 0 else "odd"


# -- shapes --------------------------------------------------------------------------------
def test_chain_connects_each_node_to_the_next() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    a | b | c
    assert (downstream(a), downstream(b), upstream(c)) == (["b"], ["c"], ["b"])


def test_or_returns_its_left_operand() -> None:
    a, b = Node("a"), Node("b")
    assert (a | b) is a


def test_broadcast_connects_the_node_to_every_node_of_the_list_in_list_order() -> None:
    a, b, c, d = Node("a"), Node("b"), Node("c"), Node("d")
    a | [b, c, d]
    assert downstream(a) == ["b", "c", "d"]


def test_broadcast_to_branches_connects_to_the_top_of_each_branch() -> None:
    a, b, c, d = Node("a"), Node("b"), Node("c"), Node("d")
    a | [b | c, d]
    assert (downstream(a), downstream(b)) == (["b", "d"], ["c"])


def test_route_puts_a_router_node_named_after_its_parent_and_the_callable() -> None:
    a, even, odd = Node("a"), Node("even"), Node("odd")
    a | [even, odd, parity]
    router = a._downstream_nodes[0]
    assert (isinstance(router, RouterNode), router.name, downstream(router)) == (True, "a.parity", ["even", "odd"])


def test_route_with_a_callable_object_is_named_after_its_class() -> None:
    class ByParity:
        def __call__(self, item):
            return parity(item)

    a, even, odd = Node("a"), Node("even"), Node("odd")
    a | [even, odd, ByParity()]
    assert downstream(a) == ["a.ByParity"]


def test_route_after_several_open_ends_puts_one_router_after_each() -> None:
    a, b, c, d, e = Node("a"), Node("b"), Node("c"), Node("d"), Node("e")
    a | [b, c] | [d, e, parity]
    assert (downstream(b), downstream(c)) == (["b.parity"], ["c.parity"])


def test_merge_connects_every_node_of_the_list_to_the_node() -> None:
    b, c, d = Node("b"), Node("c"), Node("d")
    [b, c] | d
    assert upstream(d) == ["b", "c"]


def test_merge_returns_its_right_operand() -> None:
    b, c, d = Node("b"), Node("c"), Node("d")
    assert ([b, c] | d) is d


def test_merge_after_broadcast_makes_a_diamond() -> None:
    a, b, c, d = Node("a"), Node("b"), Node("c"), Node("d")
    a | [b, c] | d
    assert (downstream(a), upstream(d)) == (["b", "c"], ["b", "c"])


def test_nested_lists_are_flattened() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    a | [[b, c]]
    assert downstream(a) == ["b", "c"]


def test_piping_into_a_fragment_connects_to_its_top_nodes() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    b | c
    a | c  # c's graph starts at b
    assert downstream(a) == ["b"]


# -- merge_sorted ----------------------------------------------------------------------------
def test_merge_sorted_connects_the_branches_to_the_node() -> None:
    b, c, d = Node("b"), Node("c"), Node("d")
    merge_branches([b, c], key="timestamp") | d
    assert upstream(d) == ["b", "c"]


def test_merge_sorted_records_the_key_direction_and_branch_order_on_the_node() -> None:
    b, c, d = Node("b"), Node("c"), Node("d")
    merge_branches([c, b], key="t", direction="max") | d
    assert (d._merge.key, d._merge.direction, names(d._merge.branches)) == ("t", "max", {"b", "c"})
    assert [n.name for n in d._merge.branches] == ["c", "b"]


def test_merge_sorted_returns_the_node_so_the_chain_goes_on() -> None:
    b, c, d, e = Node("b"), Node("c"), Node("d"), Node("e")
    assert (merge_branches([b, c]) | d | e) is d
    assert downstream(d) == ["e"]


def test_merge_sorted_is_a_spec_until_piped() -> None:
    assert isinstance(merge_branches([Node("b")], key="t"), MergeSorted)


def test_merge_sorted_rejects_a_bad_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        merge_branches([Node("b")], direction="up")


def test_merge_sorted_rejects_a_bad_key() -> None:
    with pytest.raises(TypeError, match="sort_key"):
        merge_branches([Node("b")], key=3)


def test_merge_sorted_into_a_list_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="one node"):
        merge_branches([Node("b")]) | [Node("c")]


def test_merge_sorted_on_the_right_of_or_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="left of"):
        Node("a") | merge_branches([Node("b")])


# -- what | refuses --------------------------------------------------------------------------
def test_piping_to_a_number_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="don't know what to do with 7"):
        Node("a") | 7


def test_piping_to_a_string_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="don't know"):
        Node("a") | "b"


def test_a_list_with_a_number_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="inside a list"):
        Node("a") | [Node("b"), 7]


def test_two_routers_in_one_list_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="one router"):
        Node("a") | [Node("b"), parity, parity]


def test_a_router_left_of_or_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="right of"):
        [Node("b"), parity] | Node("c")


def test_two_nodes_with_one_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unique"):
        Node("a") | [Node("b"), Node("b")]


def test_connecting_a_node_to_itself_is_a_value_error() -> None:
    a = Node("a")
    with pytest.raises(ValueError, match="itself"):
        a.add_downstream(a)


def test_a_loop_is_a_value_error() -> None:
    a, b = Node("a"), Node("b")
    a | b
    with pytest.raises(ValueError, match="loop"):
        b.add_downstream(a)


def test_a_refused_connection_leaves_the_graph_unchanged() -> None:
    a, b = Node("a"), Node("b")
    a | b
    with pytest.raises(ValueError):
        b.add_downstream(a)
    assert (downstream(a), downstream(b), upstream(a)) == (["b"], [], [])


def test_connecting_twice_is_a_value_error() -> None:
    a, b = Node("a"), Node("b")
    a.add_downstream(b)
    with pytest.raises(ValueError, match="already connected"):
        a.add_downstream(b)


def test_connecting_to_something_else_than_a_node_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="only connect to a Node"):
        Node("a").add_downstream("b")


def test_indexing_a_node_is_a_value_error_that_suggests_or() -> None:
    with pytest.raises(ValueError, match=r"did you mean N\(a\) \| \['b'\]"):
        Node("a")["b"]


def test_a_node_needs_a_name() -> None:
    with pytest.raises(ValueError, match="name"):
        Node("")


# -- the graph around a node -------------------------------------------------------------------
def test_remove_downstream_disconnects_both_ways() -> None:
    a, b = Node("a"), Node("b")
    a | b
    a.remove_downstream(b)
    assert (downstream(a), upstream(b)) == ([], [])


def test_every_node_of_a_graph_sees_the_same_top_node() -> None:
    a, b, c, d = Node("a"), Node("b"), Node("c"), Node("d")
    a | [b, c] | d
    assert {n.top_node for n in (a, b, c, d)} == {a}


def test_a_graph_with_two_top_nodes_has_no_top_node() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    [a, b] | c
    with pytest.raises(ValueError, match="exactly one top node"):
        _ = c.top_node


def test_all_nodes_is_the_same_set_from_every_node() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    a | [b, c]
    assert a.all_nodes == b.all_nodes == c.all_nodes == {a, b, c}


def test_initial_and_terminal_node_sets_are_the_open_ends() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    a | [b, c]
    assert (names(c.initial_node_set), names(a.terminal_node_set)) == ({"a"}, {"b", "c"})


def test_breadth_first_walk_down_visits_level_by_level() -> None:
    a, b, c, d, e = (Node(x) for x in "abcde")
    a | [b, c] | [d, e]
    order = [n.name for n in a.breadth_first_walk("down", as_ordered_list=True)]
    assert (order[0], set(order[1:3]), set(order[3:])) == ("a", {"b", "c"}, {"d", "e"})


def test_walk_rejects_a_bad_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        Node("a").walk(direction="sideways")


def test_walk_rejects_a_bad_method() -> None:
    with pytest.raises(ValueError, match="how"):
        Node("a").walk(how="randomly")


def test_top_down_order_puts_a_merge_after_all_its_parents() -> None:
    a, b, c, d, e = (Node(x) for x in "abcde")
    a | [b | c, d] | e
    order = [n.name for n in top_down_order(a)]
    assert order.index("e") > max(order.index("c"), order.index("d"))


def test_nodes_compare_by_identity_and_sort_by_name() -> None:
    a, b = Node("a"), Node("b")
    assert (a == a, a == Node("a"), sorted([b, a])) == (True, False, [a, b])


def test_keyword_arguments_become_attributes() -> None:
    assert Node("a", threshold=3).threshold == 3
