"""The Ray host: actors and pipeline nodes with mode="ray", on a local Ray started by the tests.

The behaviours every mode shares are in the pipeline mode suite (the ``pipeline_mode`` fixture
runs it on Ray too); here is what is Ray's own: where actors run, batches and bounds, deaths,
restarts from a checkpoint, and the error without Ray.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from chronopipe.actors import Actor, ActorError
from chronopipe.channels import END, Channel
from chronopipe.graph import GlobalState, Node, Pipeline
from chronopipe.testing import ListSink, MapNode

pytestmark = pytest.mark.usefixtures("ray_cluster")


class Sum(Node):
    """Adds up what it gets; pushes the total at its end."""

    def begin(self):
        self.total = 0

    def process(self, item):
        self.total += item

    def end(self):
        self.push(self.total)


class DiesOnce(Sum):
    """Kills its own process at record ``at``, the first time only (a file says it did)."""

    def process(self, item):
        if item == self.at and not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        super().process(item)


class AlwaysDies(Node):
    def process(self, item):
        if item == 3:
            os.kill(os.getpid(), signal.SIGKILL)


# -- actors ------------------------------------------------------------------------------------
def test_a_ray_actor_runs_in_a_process_of_its_own() -> None:
    inbox, out = Channel(mode="ray", name="in"), Channel(mode="ray", name="out")
    actor = Actor("where", lambda _: os.getpid(), inbox=inbox, outputs=out, mode="ray").start()
    inbox.put(1)
    inbox.close()
    [pid] = list(out)
    actor.join(30)
    assert pid not in (os.getpid(), None) and actor.pid == pid


def test_records_cross_ray_in_order_and_are_counted() -> None:
    inbox, out = Channel(100_000, mode="ray", name="in"), Channel(100_000, mode="ray", name="out")
    actor = Actor("square", lambda x: x * x, inbox=inbox, outputs=out, mode="ray").start()
    inbox.put_many(list(range(20_000)))
    inbox.close()
    assert list(out) == [x * x for x in range(20_000)]
    actor.join(30)
    assert (actor.counts.received, actor.counts.emitted) == (20_000, 20_000)


def test_records_cross_in_batches_not_one_by_one() -> None:
    ch = Channel(100_000, mode="ray", name="batched", batch_size=1000)
    ch.put_many(list(range(10_000)))
    ch.close()
    assert list(ch) == list(range(10_000))
    assert ch.statistics().batches_sent == 10


def test_a_full_ray_channel_holds_the_writer_back() -> None:
    ch = Channel(10, mode="ray", name="bounded", batch_size=5)  # room for 10 // 5 = 2 batches, and 2 ahead
    ch.put_many(list(range(20)), timeout=5)
    with pytest.raises(TimeoutError):
        ch.put_many(list(range(5)), timeout=0.5)
    got: list = []
    while len(got) < 20:
        got += ch.get_batch(5)
    assert got == list(range(20))  # in order, and the batch that timed out was not sent


def test_on_stop_result_comes_back_from_ray() -> None:
    class Totals(Actor):
        def on_start(self):
            self.total = 0

        def on_receive(self, item):
            self.total += item

        def on_stop(self):
            return {"total": self.total}

    inbox = Channel(mode="ray", name="in")
    actor = Totals("totals", inbox=inbox, mode="ray").start()
    inbox.put_many([1, 2, 3])
    inbox.close()
    assert actor.join(30) == {"total": 6}


def test_an_error_in_a_ray_actor_names_the_actor_and_the_record() -> None:
    inbox = Channel(mode="ray", name="in")
    actor = Actor("picky", lambda x: 1 // x, inbox=inbox, mode="ray").start()
    inbox.put_many([2, 0])
    inbox.close()
    with pytest.raises(ActorError) as caught:
        actor.join(30)
    assert (caught.value.actor, caught.value.exc_type, caught.value.record) == ("picky", "ZeroDivisionError", 0)


def test_a_ray_actor_killed_from_outside_is_reported_dead() -> None:
    inbox = Channel(mode="ray", name="in")
    actor = Actor("victim", lambda x: x, inbox=inbox, mode="ray").start()
    deadline = time.monotonic() + 30
    while actor.pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(actor.pid, signal.SIGKILL)
    with pytest.raises(ActorError, match="its Ray actor died without reporting"):
        actor.join(30)


def test_stop_reaches_the_ray_actor() -> None:
    inbox = Channel(mode="ray", name="in")
    actor = Actor("endless", lambda x: x, inbox=inbox, mode="ray").start()
    inbox.put(1)
    actor.stop()
    actor.join(30)
    assert actor.state == "stopped"


def test_a_ray_actor_needs_ray_channels() -> None:
    with pytest.raises(ValueError, match="use Channel\\(mode='ray'\\)"):
        Actor("mixed", lambda x: x, inbox=Channel(mode="process"), mode="ray").start()


def test_a_class_ray_workers_cannot_import_is_a_clear_error(tmp_path) -> None:
    module = tmp_path / "elsewhere.py"
    module.write_text("from chronopipe.actors import Actor\nclass Far(Actor):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from elsewhere import Far  # type: ignore[import-not-found]

        inbox = Channel(mode="ray", name="in")
        actor = Far("far", lambda x: x, inbox=inbox, mode="ray").start()
        inbox.put(END)
        with pytest.raises(ActorError, match="cannot be unpickled on its Ray worker.*No module named 'elsewhere'"):
            actor.join(30)
    finally:
        sys.path.remove(str(tmp_path))


# -- pipelines -----------------------------------------------------------------------------------
def test_workers_of_a_ray_node_run_in_distinct_processes() -> None:
    class Pid(Node):
        def process(self, item):
            self.push(os.getpid())

    sink = ListSink("sink")
    Pipeline(Pid("pid", workers=3) | sink, mode="ray").consume(range(3000))
    assert len(set(sink.items)) == 3 and os.getpid() not in sink.items


def test_a_ray_node_that_dies_under_replay_is_restored_from_its_checkpoint(tmp_path) -> None:
    sink = ListSink("sink")
    pipeline = Pipeline(MapNode("src", lambda x: x) | DiesOnce("sum", at=6000, marker=str(tmp_path / "died"))
                        | sink, mode="ray", guarantee="replay")
    pipeline.consume(range(10_000))
    assert sink.items == [sum(range(10_000))]  # nothing counted twice, nothing lost
    stats = pipeline.statistics()
    assert (tmp_path / "died").exists() and stats.restarts == 1
    assert [(n.name, n.received, n.sent) for n in stats.nodes] == [("src", 10_000, 10_000), ("sum", 10_000, 1),
                                                                   ("sink", 1, 0)]


def test_a_ray_node_dying_again_and_again_fails_the_run_naming_it() -> None:
    pipeline = Pipeline(MapNode("src", lambda x: x) | AlwaysDies("doomed"), mode="ray", guarantee="replay",
                        max_restarts=1)
    with pytest.raises(ActorError, match="node 'doomed' not restarted again"):
        pipeline.consume(range(10))


def test_without_replay_a_dead_ray_node_fails_the_run() -> None:
    with pytest.raises(ActorError, match="its Ray actor died without reporting"):
        Pipeline(MapNode("src", lambda x: x) | AlwaysDies("doomed"), mode="ray").consume(range(10))


class Heard:
    """A source that notes each confirmation it hears."""

    def __init__(self, n: int) -> None:
        self.n, self.confirmed = n, []

    def __iter__(self):
        for i in range(self.n):
            if i % 1000 == 999:
                time.sleep(0.002)  # a source that takes its time: confirmations come back meanwhile
            yield i

    def confirm(self, n: int) -> None:
        self.confirmed.append(n)


def test_ray_terminals_confirm_every_record_while_the_run_goes_on() -> None:
    source, sink = Heard(12_500), ListSink("sink")
    pipeline = Pipeline(MapNode("add", lambda x: x + 1, workers=2) | sink, mode="ray", guarantee="confirm")
    pipeline.consume(source)
    assert source.confirmed == sorted(set(source.confirmed)) and len(source.confirmed) > 1
    assert source.confirmed[-1] == 12_500 == pipeline.statistics().confirmed


class Boom(Node):
    def process(self, item):
        if item == self.bad:
            raise ValueError("boom")
        self.push(item)


class Numbers:
    """0 to n - 1, a source a state_dir can resume (it names itself)."""

    resume_key = "numbers"

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        return iter(range(self.n))


def test_a_ray_rerun_with_a_state_dir_goes_on_after_what_was_confirmed(tmp_path) -> None:
    first = Pipeline(Boom("boom", bad=7_777) | ListSink("sink"), mode="ray", state_dir=tmp_path)
    with pytest.raises(ValueError):
        first.consume(Numbers(20_000))
    confirmed = first.statistics().confirmed
    assert confirmed is not None and 0 < confirmed <= 7_777
    sink = ListSink("sink")
    Pipeline(Boom("boom", bad=-1) | sink, mode="ray", state_dir=tmp_path).consume(Numbers(20_000))
    assert sink.items == list(range(confirmed, 20_000))


def test_global_state_of_ray_nodes_comes_home() -> None:
    class Count(Node):
        def process(self, item):
            self.global_state.n = getattr(self.global_state, "n", 0) + 1

    pipeline = Pipeline(Count("count"), global_state=GlobalState(), mode="ray")
    pipeline.consume(range(7))
    assert pipeline.global_state.n == 7


def test_a_node_that_cannot_be_pickled_fails_the_run_at_once_naming_it() -> None:
    import threading

    started = time.monotonic()
    with pytest.raises(ActorError, match=r"cannot be sent to Ray: actor\..*\.guard \(TypeError: .*_thread.lock"):
        Pipeline(MapNode("src", lambda x: x) | MapNode("locked", lambda x: x, guard=threading.Lock()),
                 mode="ray").consume(range(10))
    assert time.monotonic() - started < 10


def test_a_threads_node_can_feed_ray_nodes() -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("here", lambda x: x + 1, mode="threads") | MapNode("there", lambda x: 2 * x) | sink,
             mode="ray").consume(range(1000))
    assert sink.items == [2 * (x + 1) for x in range(1000)]


def test_ray_options_asking_more_than_the_cluster_has_fail_the_run_naming_the_node() -> None:
    with pytest.raises(ActorError, match="actor 'greedy' failed.*ask for 64 CPU and the Ray cluster has 2 in all"):
        Pipeline(MapNode("src", lambda x: x) | MapNode("greedy", lambda x: x, ray_options={"num_cpus": 64}),
                 mode="ray").consume(range(10))


def test_ray_options_ray_refuses_fail_the_run_naming_the_node() -> None:
    with pytest.raises(ActorError, match="actor 'typo' failed: ValueError: Invalid option keyword num_cpu"):
        Pipeline(MapNode("typo", lambda x: x, ray_options={"num_cpu": 1}), mode="ray").consume(range(10))


def test_a_record_that_cannot_be_pickled_is_a_one_line_error() -> None:
    import threading

    with pytest.raises(ActorError) as caught:
        Pipeline(MapNode("src", lambda x: threading.Lock()) | ListSink("sink"), mode="ray").consume(range(3))
    assert "a record cannot be pickled (cannot pickle '_thread.lock' object)" in caught.value.message
    assert "\n" not in caught.value.message.split("--- traceback")[0].strip()


def test_a_pipeline_cannot_mix_processes_and_ray() -> None:
    with pytest.raises(ValueError, match="cannot run nodes both in processes and on Ray"):
        Pipeline(MapNode("a", lambda x: x) | MapNode("b", lambda x: x, mode="processes"), mode="ray").consume([1])


# -- without Ray -------------------------------------------------------------------------------
WITHOUT_RAY = """
import sys
sys.modules["ray"] = None  # as if it were not installed
from chronopipe.graph import Pipeline
from chronopipe.testing import MapNode
Pipeline(MapNode("a", lambda x: x), mode="ray").consume([1])
"""


def test_without_ray_mode_ray_says_how_to_install_it(tmp_path) -> None:
    script = tmp_path / "no_ray.py"
    script.write_text(textwrap.dedent(WITHOUT_RAY))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "RayMissingError: mode='ray' needs Ray, which is not installed: pip install 'chronopipe[ray]'" in done.stderr


def test_other_modes_never_load_ray() -> None:
    script = ("import sys\nfrom chronopipe.graph import Pipeline\nfrom chronopipe.testing import MapNode\n"
              "import chronopipe.distribute, chronopipe.cli\n"
              "Pipeline(MapNode('a', lambda x: x), mode='processes').consume([1])\nprint('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_a_ray_run_leaves_no_actor_process_behind() -> None:
    sink = ListSink("sink")
    Pipeline(MapNode("a", lambda x: x, workers=2) | sink, mode="ray").consume(range(100))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shells = [p for p in psutil.Process().children(recursive=True) if _title(p).startswith("ray::_Shell")]
        if not shells:
            break
        time.sleep(0.1)
    assert shells == []


def _title(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


ENDLESS = """
import itertools
from chronopipe.graph import Node, Pipeline

class Ready(Node):
    said = False
    def process(self, item):
        if not self.said:
            print("READY", flush=True)
            self.said = True

Pipeline(Ready("ready", workers=2), mode="ray").consume(itertools.count())
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_actors_of_a_ray_run_end_with_their_driver(tmp_path, how) -> None:
    script = tmp_path / "endless.py"
    script.write_text(textwrap.dedent(ENDLESS))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip().endswith("READY")
        shells = [p for p in psutil.Process(proc.pid).children(recursive=True) if _title(p).startswith("ray::_Shell")]
        assert len(shells) == 2
        proc.send_signal(how)
        proc.wait(30)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in shells) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p.pid for p in shells if _alive(p)] == []
    finally:
        proc.kill()
        # Ray's own agents notice their raylet is gone within about a minute; not this test's to wait for
        for p in psutil.process_iter():
            if p.pid != os.getpid() and _in_session(p, proc.pid):
                p.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _in_session(process: psutil.Process, sid: int) -> bool:
    try:
        return os.getsid(process.pid) == sid
    except (OSError, psutil.Error):
        return False


SHUT_DOWN_THEN_AGAIN = """
import ray
from chronopipe.graph import Pipeline
from chronopipe.testing import ListSink, MapNode
for run in (1, 2):
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    sink = ListSink("sink")
    Pipeline(MapNode("a", lambda x: x + run), mode="ray").consume(range(3))
    Pipeline(MapNode("b", lambda x: x + run) | sink, mode="ray").consume(range(3))
    print(sink.items)
    ray.shutdown()
"""


def test_a_run_after_ray_shutdown_and_init_again_works(tmp_path) -> None:
    script = tmp_path / "again.py"
    script.write_text(SHUT_DOWN_THEN_AGAIN)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[:2] == ["[1, 2, 3]", "[2, 3, 4]"], done.stderr[-2000:]
