"""The layering: channels registered by mode, the merge of iterables apart from the merge of
branches, the pure order package, and what ``import chronopipe`` loads."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import chronopipe
from chronopipe.channels import Channel, ProcessChannel, ThreadChannel
from chronopipe.channels import base as channel_base
from chronopipe.channels.base import channel_class, open_channel
from chronopipe.graph import Node, Pipeline, merge_branches
from chronopipe.multiplex import SortedQueueMultiplexer
from chronopipe.testing import ListSink


# -- channels: the base class looks modes up, the subclasses register them -----------------
def test_channel_mode_makes_the_registered_class():
    ch = Channel(mode="process", name="p")
    try:
        assert type(ch) is ProcessChannel and ch.name == "p"
    finally:
        ch.close()
    assert type(Channel(name="t")) is ThreadChannel
    assert channel_class("thread") is ThreadChannel and channel_class("process") is ProcessChannel


def test_open_channel_is_the_factory_and_passes_a_modes_options():
    ch = open_channel(8, mode="process", name="o", batch_size=2)
    try:
        assert type(ch) is ProcessChannel and ch.maxsize == 8 and ch.batch_size == 2
    finally:
        ch.close()
    with pytest.raises(TypeError):
        open_channel(8, mode="thread", batch_size=2)


def test_an_unknown_mode_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"must be 'thread', 'process' or 'ray', not 'pigeon'"):
        open_channel(mode="pigeon")  # type: ignore[arg-type]


def test_a_subclass_registers_its_mode_and_a_second_class_for_it_is_refused():
    class LoopChannel(ThreadChannel, mode="loop"):
        pass

    try:
        assert type(Channel(mode="loop")) is LoopChannel and LoopChannel.mode == "loop"  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="already implemented by"):

            class OtherLoop(ThreadChannel, mode="loop"):
                pass
    finally:
        channel_base._MODES.pop("loop", None)


def test_kind_the_older_name_of_mode_still_makes_that_channel_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="kind= is deprecated: a Channel takes mode="):
        ch = Channel(kind="process", name="old")
    assert ch.mode == "process"


def test_the_base_module_imports_no_implementation():  # .importlinter forbids it too
    source = Path(channel_base.__file__).read_text()
    assert "from .pipe" not in source and "from .thread" not in source and "from .queues" not in source


# -- merge_sorted (iterables) and merge_branches (pipeline branches) ------------------------
def test_chronopipe_merge_sorted_merges_iterables_only():
    assert list(chronopipe.merge_sorted([1, 4], [2, 3], key=lambda x: x)) == [1, 2, 3, 4]
    assert chronopipe.merge_sorted is chronopipe.multiplex.merge_sorted is chronopipe.order.merge_sorted


def test_merge_sorted_of_branches_piped_into_a_node_says_to_use_merge_branches():
    with pytest.raises(TypeError, match="merge_branches"):
        chronopipe.merge_sorted([Node("b"), Node("c")]) | Node("d")


def test_graph_merge_sorted_is_merge_branches_with_a_deprecation_warning():
    from chronopipe.graph import merge_sorted as old_name

    class Tag(Node):
        def process(self, item):
            self.push({"timestamp": item})

    a, b, out = Tag("a"), Tag("b"), ListSink("out")
    with pytest.warns(DeprecationWarning, match="merge_branches"):
        old_name([a, b], key="timestamp") | out
    src = ListSink("src")
    src | [a, b]
    Pipeline(src).consume([1, 2])
    assert [r["timestamp"] for r in out.items] == [1, 1, 2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merge_branches([Node("x")], key="t")  # the new name does not warn


def test_the_old_homes_of_keys_and_the_window_re_export_the_order_package():
    from chronopipe.multiplex import keys, window
    from chronopipe.order import MergeWindow, key_function

    assert window.MergeWindow is MergeWindow and keys.key_function is key_function


# -- one word per idea: maxsize, and the seed's max_size ------------------------------------
def test_sorted_multiplexer_takes_the_seeds_max_size_and_maxsize():
    assert SortedQueueMultiplexer("t", "min", 100, channel_mode="thread").maxsize == 100
    assert SortedQueueMultiplexer(max_size=7, channel_mode="thread").max_size == 7
    assert SortedQueueMultiplexer(maxsize=5, channel_mode="thread").maxsize == 5
    assert SortedQueueMultiplexer(channel_mode="thread").maxsize == 10_000
    with pytest.raises(ValueError, match="same bound"):
        SortedQueueMultiplexer(max_size=5, maxsize=6, channel_mode="thread")


# -- what an import loads ------------------------------------------------------------------
def loaded_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


def test_import_chronopipe_loads_no_subpackage_no_parser_and_no_capture_code():
    loaded = loaded_after("import chronopipe")
    assert {m for m in loaded if m.startswith("chronopipe.")} == set()
    assert "ply" not in loaded
    loaded = loaded_after("import chronopipe; chronopipe.Runtime")
    assert "ply" not in loaded and not {m for m in loaded if m.startswith(("chronopipe.capture", "chronopipe.scl"))}


def test_the_order_package_imports_nothing_else_of_chronopipe():
    loaded = loaded_after("import chronopipe.order")
    assert {m for m in loaded if m.startswith("chronopipe")} == {
        "chronopipe", "chronopipe.order", "chronopipe.order.keys", "chronopipe.order.reorder",
        "chronopipe.order.window"}


def test_no_module_of_the_package_is_over_400_lines():
    package = Path(chronopipe.__file__).parent
    long = {str(p.relative_to(package)): n for p in package.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines (split them by job): {long}"
