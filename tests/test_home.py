"""Bringing a process actor's state home (chronopipe.actors.home, issue 16): track in the child at
start, changes in the child at the end, apply in the parent; a pipeline's nodes and a validation
run's check hosts use it."""

from __future__ import annotations

import logging
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import chronopipe as cp
from chronopipe.actors.home import Patch, Token, apply, changes, track
from chronopipe.capture import CaptureWriter
from chronopipe.capture.checkhost import partition
from chronopipe.capture.checks import UdpSequence
from chronopipe.capture.validate import validate


class Mutator(cp.Actor):
    """A process actor that changes its (forked) copy of ``target`` and brings the changes home:
    the pattern the module documents, hook by hook."""

    def __init__(self, target: Any, change: Callable[[Any], None]) -> None:
        super().__init__("mutator", mode="process")
        self.target, self._change = target, change
        self._token: Token | None = None

    def on_start(self) -> None:
        self._token = track(self.target, "target")

    def run(self) -> None:
        self._change(self.target)

    def on_stop(self) -> Patch:
        assert self._token is not None
        return changes(self._token, self.target)

    def on_result(self, result: Patch) -> None:
        apply(self.target, result)


def in_a_process(target: Any, change: Callable[[Any], None]) -> Any:
    """Run ``change`` on a forked copy of ``target``; ``target`` once the changes came home."""
    Mutator(target, change).start().join(timeout=30)
    return target


def copy_of(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj))


# -- in a forked process, through the Runtime ------------------------------------------------------
def test_what_a_process_actor_sets_on_its_copy_is_set_on_the_parents_object() -> None:
    target = in_a_process(SimpleNamespace(n=1), lambda t: setattr(t, "n", 2))
    assert target.n == 2


def test_an_attribute_the_child_deletes_is_deleted_in_the_parent() -> None:
    target = in_a_process(SimpleNamespace(n=1, gone=True), lambda t: delattr(t, "gone"))
    assert vars(target) == {"n": 1}


def test_a_list_grown_at_its_end_is_appended_to_the_parents_same_list() -> None:
    seen = [1]
    target = in_a_process(SimpleNamespace(seen=seen), lambda t: t.seen.extend([2, 3]))
    assert target.seen is seen and seen == [1, 2, 3]


def test_a_list_changed_otherwise_comes_home_as_the_childs_list() -> None:
    target = in_a_process(SimpleNamespace(seen=[1, 2]), lambda t: t.seen.insert(0, 0))
    assert target.seen == [0, 1, 2]


def test_a_set_gets_the_childs_additions_and_removals() -> None:
    tags = {"a", "b"}
    target = in_a_process(SimpleNamespace(tags=tags), lambda t: (t.tags.add("c"), t.tags.discard("a")))
    assert target.tags is tags and tags == {"b", "c"}


def test_a_dict_is_merged_key_by_key_recursively() -> None:
    def change(t: Any) -> None:
        t.totals["a"]["m"] = 2
        t.totals["b"] = 3
        del t.totals["c"]

    totals = {"a": {"n": 1}, "c": 0}
    target = in_a_process(SimpleNamespace(totals=totals), change)
    assert target.totals is totals and totals == {"a": {"n": 1, "m": 2}, "b": 3}


def test_a_dict_is_tracked_by_its_items() -> None:
    state = in_a_process({"n": 1, "seen": []}, lambda d: (d.update(n=2), d["seen"].append("x")))
    assert state == {"n": 2, "seen": ["x"]}


def test_objects_that_refer_to_each_other_come_home_still_linked() -> None:
    def link(t: Any) -> None:  # as a TCP check's two directions of a flow do
        a, b = SimpleNamespace(name="a"), SimpleNamespace(name="b")
        a.rev, b.rev = b, a
        t.flows.update(a=a, b=b)

    target = in_a_process(SimpleNamespace(flows={}), link)
    assert target.flows["a"].rev is target.flows["b"] and target.flows["b"].rev is target.flows["a"]


# -- the calls themselves, in this process ---------------------------------------------------------
def test_parent_changes_made_meanwhile_are_kept_where_the_child_did_not_touch() -> None:
    parent = SimpleNamespace(seen=[1], n=0, other="parent's")
    child = copy_of(parent)
    token = track(child, "t")
    child.seen.append(2)
    parent.seen.append(9)
    parent.other = "changed in the parent"
    apply(parent, changes(token, child))
    assert parent.seen == [1, 9, 2] and parent.other == "changed in the parent"


def test_patches_of_several_copies_applied_in_turn_keep_what_each_appended() -> None:
    parent = SimpleNamespace(seen=[], last=None)
    patches = []
    for worker in ("w1", "w2"):
        copy = copy_of(parent)
        token = track(copy, worker)
        copy.seen.append(worker)
        copy.last = worker
        patches.append(changes(token, copy))
    for patch in patches:
        apply(parent, patch)
    assert parent.seen == ["w1", "w2"] and parent.last == "w2"


def test_nothing_changed_is_an_empty_patch_that_changes_nothing() -> None:
    obj = SimpleNamespace(n=1, seen=[1], totals={"a": 1})
    patch = changes(track(obj, "t"), obj)
    assert not patch and patch.names == ()
    apply(obj, patch)
    assert vars(obj) == {"n": 1, "seen": [1], "totals": {"a": 1}}


def test_only_the_attributes_only_accepts_are_tracked() -> None:
    child = SimpleNamespace(total=0, _cache=None)
    token = track(child, "t", only=lambda key: not key.startswith("_"))
    child.total, child._cache = 5, "big"
    assert changes(token, child).names == ("total",)


def test_a_patch_holds_the_values_of_when_it_was_made() -> None:
    child = SimpleNamespace(seen=[])
    token = track(child, "t")
    child.seen.append(1)
    patch = changes(token, child)
    child.seen.append(2)  # after the patch: not in it
    parent = SimpleNamespace(seen=[])
    apply(parent, pickle.loads(pickle.dumps(patch)))
    assert parent.seen == [1]


def test_a_value_that_cannot_be_pickled_is_named_in_a_warning_and_the_rest_comes_home(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = SimpleNamespace(n=0, lock=None)
    child = copy_of(parent)
    token = track(child, "node 'x'")
    child.n, child.lock = 1, struct.Struct(">I")
    with caplog.at_level(logging.WARNING, logger="chronopipe.actor"):
        patch = changes(token, child)
    apply(parent, patch)
    assert parent.n == 1 and parent.lock is None
    assert "node 'x': 'lock' cannot be pickled" in caplog.text


def test_a_callable_that_cannot_be_pickled_and_was_never_tracked_stays_quietly_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    child = SimpleNamespace(unpack=struct.Struct(">I").unpack_from, n=0)  # not tracked: it cannot be pickled
    token = track(child, "check 'u'")
    child.n = 1
    with caplog.at_level(logging.WARNING, logger="chronopipe.actor"):
        patch = changes(token, child)
    assert patch.names == ("n",) and not caplog.records


def test_an_object_without_attributes_tracks_nothing() -> None:
    token = track(None, "global_state")
    assert not changes(token, None)


# -- its users ------------------------------------------------------------------------------------
def test_graph_state_still_offers_global_state() -> None:
    from chronopipe.graph.state import GlobalState

    assert cp.GlobalState is GlobalState


def udp_capture(path: Path, sequence: list[int]) -> Path:
    """UDP packets to port 5000 whose payload is a 4-byte sequence number."""
    with CaptureWriter(path) as out:
        for i, n in enumerate(sequence):
            payload = struct.pack(">I", n)
            udp = struct.pack("!HHHH", 4000, 5000, 8 + len(payload), 0) + payload
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                             bytes([10, 0, 0, 2]))
            frame = bytes(6) + bytes(5) + b"\x01" + b"\x08\x00" + ip + udp
            out.write((1_700_000_000_000_000_000 + i * 1_000_000, path.name, 0, i + 1, len(frame), len(frame), 1,
                       frame))
    return path


def test_a_check_host_brings_its_checks_state_home_though_one_keeps_an_unpicklable_callable(
    tmp_path: Path,
) -> None:
    check = UdpSequence(port=5000)  # keeps a struct's unpack_from, which no pickler takes
    assert partition([check], 1) == [[], [check]]  # it runs in the check host
    counts = check.counts
    report = validate([udp_capture(tmp_path / "u.pcap", [1, 2, 4, 5, 5])], [check], check_processes=1)
    assert check.counts is counts and counts["gaps"] == 1 and counts["duplicates"] == 1
    assert report.checks[0].summary == "1 gaps (1 missing), 1 repeats, 0 steps back"
