"""The host contract (issue 16): what a runtime calls of an Actor, and nothing else; the layers."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import threading

import pytest

import chronopipe as cp
from chronopipe.actors import hosting
from chronopipe.runtime.counts import SharedCounts
from chronopipe.runtime.hosts import HostRecord, ProcessHost, ThreadHost

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "chronopipe"


def _imports(path: pathlib.Path):
    """(module imported, names) of every import in ``path``, relative ones resolved."""
    package = ["chronopipe", *path.relative_to(SRC).parts[:-1]]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_actors_import_no_runtime_code():
    for path in (SRC / "actors").glob("*.py"):
        for module, _ in _imports(path):
            assert not module.startswith("chronopipe.runtime"), f"{path.name} imports {module}"
    code = "import sys, chronopipe.actors; print(any(m.startswith('chronopipe.runtime') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_underscore_name_is_imported_across_packages():
    for path in SRC.rglob("*.py"):
        home = ".".join(["chronopipe", *path.relative_to(SRC).parts[:2]][:2])
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if module.startswith("chronopipe") and private:
                there = ".".join(module.split(".")[:2])
                assert there == home, f"{path.relative_to(SRC)} imports {private} from {module}"


def test_an_actor_started_in_a_fresh_interpreter_finds_the_runtime_by_itself():
    code = ("from chronopipe.actors import Actor\nfrom chronopipe.channels import Channel\n"
            "out = Channel(name='out')\nActor('src', source=[1, 2], outputs=out).start().join()\nprint(list(out))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "[1, 2]"


def test_the_default_runtime_is_installed_not_imported():
    started = []

    class Recorder:
        def start(self, actor):
            started.append(actor)
            return actor

    previous = hosting._default_runtime
    hosting.install_default_runtime(Recorder)
    try:
        actor = cp.Actor("a", source=[1])
        assert actor.start() is actor and started == [actor]
    finally:
        hosting.install_default_runtime(previous)
    assert hosting.default_runtime() is cp.Runtime()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_runtime_keeps_the_host_state_not_the_actor(mode):
    kind = "process" if mode == "process" else "thread"
    inbox, out = cp.Channel(mode=kind, name="in"), cp.Channel(mode=kind, name="out")
    actor = cp.Actor("double", lambda x: 2 * x, inbox=inbox, outputs=out, mode=mode).start()
    record = cp.Runtime()._records[id(actor)]
    assert isinstance(record, HostRecord) and record.actor is actor
    assert isinstance(record.host, ProcessHost if mode == "process" else ThreadHost)
    assert record.pid == actor.pid and record.cancelled_by is None
    inbox.put_many(range(5))
    inbox.close()
    assert list(out) == [0, 2, 4, 6, 8] and actor.join() is None
    for private in ("_host", "_runtime", "_cancelled_by", "_status_r", "_outcome", "_shared_counts"):
        assert not hasattr(actor, private), private
    assert type(actor) is cp.Actor  # no class swapped to share the counts
    assert (actor.counts.received, actor.counts.emitted) == (5, 5)
    assert isinstance(actor.counts, SharedCounts if mode == "process" else hosting.Counts)


class Adopting(cp.Actor):
    def __init__(self, mode, fail=False):
        super().__init__("adopting", source=[1, 2, 3], outputs=cp.Channel(mode=mode, name="o"), mode=mode)
        self.total, self.fail, self.seen = 0, fail, []

    def on_receive(self, item):
        return item

    def on_stop(self):
        return {"total": 6, "pid": self.pid}

    def on_result(self, result):
        self.seen.append((result, threading.current_thread().name))
        if self.fail:
            raise ValueError("cannot adopt")
        self.total = result["total"]


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_on_result_adopts_the_hosts_result_in_the_parent_before_join_returns(mode):
    actor = Adopting(mode).start()
    list(actor.outputs[0])
    result = actor.join(10)
    assert actor.total == 6 and len(actor.seen) == 1 and actor.seen[0][0] == result
    if mode == "process":
        assert result["pid"] == actor.pid  # on_stop ran in the child
        assert actor.seen[0][1] in ("chronopipe-supervisor", threading.current_thread().name)
    else:
        assert actor.seen[0][1] == "chronopipe:adopting"


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_an_on_result_that_raises_fails_the_actor(mode):
    actor = Adopting(mode, fail=True).start()
    assert list(actor.outputs[0]) == [1, 2, 3]  # its outputs were closed normally
    with pytest.raises(cp.ActorError, match="on_result: cannot adopt") as caught:
        actor.join(10)
    assert actor.state == "failed" and caught.value.exc_type == "ValueError"


def test_a_cancelled_actor_adopts_nothing():
    inbox = cp.Channel(mode="process", name="in")
    actor = Adopting("process")
    actor._source, actor.inbox = None, inbox
    actor.start()
    cp.Runtime().cancel([actor], cp.ActorError("test", "Cancelled", "go away"), wait=10)
    assert actor.state == "cancelled" and actor.seen == []


def test_the_seeds_names_live_in_one_module_that_says_what_the_seed_was():
    from chronopipe.runtime import seed

    assert seed.MultiProcessing is cp.Runtime is cp.MultiProcessing
    assert "pathos.multiprocessing" in seed.__doc__ and "onKeyboardInterupt" in seed.__doc__
    rt = cp.Runtime()
    assert rt.GlobalThreadPool() is rt.thread_pool() and rt.onKeyboardInterupt == rt.onExit
