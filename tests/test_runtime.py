"""Runtime: the per-process singleton that owns pools and actors."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import psutil
import pytest

import chronopipe as cp


def test_runtime_is_one_object_per_process():
    assert cp.Runtime() is cp.Runtime()


def test_multiprocessing_is_the_seeds_name_for_the_runtime():
    assert cp.MultiProcessing is cp.Runtime
    assert cp.MultiProcessing().GlobalProcessPool() is cp.Runtime().process_pool()


def test_pools_are_created_once_and_reused():
    rt = cp.Runtime()
    assert rt.process_pool() is rt.process_pool()
    assert rt.thread_pool() is rt.thread_pool()


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_map_runs_closures_in_order(mode):
    base = 10
    assert cp.Runtime().map(lambda x: x + base, range(20), mode=mode) == [x + base for x in range(20)]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_task_exception_arrives_as_actor_error_with_traceback_and_input(mode):
    def check(x):
        if x == 2:
            raise KeyError("missing")
        return x

    with pytest.raises(cp.ActorError) as caught:
        cp.Runtime().map(check, [1, 2, 3], mode=mode)
    assert caught.value.exc_type == "KeyError" and "in check" in caught.value.traceback
    assert caught.value.record == 2


def test_a_pool_worker_killed_mid_task_raises_instead_of_hanging():
    rt = cp.Runtime(processes=2)
    with pytest.raises(cp.ActorError, match="BrokenProcessPool|died") as caught:
        rt.map(lambda x: os.kill(os.getpid(), signal.SIGKILL), [1, 2], timeout=30)
    assert "SIGKILL" in str(caught.value)
    assert rt.map(lambda x: x * 2, [1, 2]) == [2, 4]  # the next call gets a fresh pool


def test_an_exception_unpicklable_in_the_parent_does_not_hang_the_pool():
    class Local(Exception):
        def __init__(self, a, b):
            super().__init__(a + b)

    def fail(x):
        raise Local("a", "b")

    with pytest.raises(cp.ActorError, match="ab"):
        cp.Runtime().map(fail, [1], timeout=30)


def test_submit_returns_a_task_whose_get_gives_the_result():
    task = cp.Runtime().submit(pow, 2, 10)
    assert task.get(timeout=30) == 1024 and task.ready()


def test_changing_the_pool_size_replaces_the_pool():
    rt = cp.Runtime(processes=1)
    first = rt.process_pool()
    cp.Runtime(processes=2)
    assert rt.process_pool() is not first and rt.process_pool().nodes == 2


def test_the_manager_is_owned_and_usable():
    queue = cp.Runtime().manager().Queue()
    queue.put("x")
    assert queue.get(timeout=5) == "x"


def test_statistics_list_the_actors_by_name():
    ch = cp.Channel()
    cp.Actor("lister", source=[1, 2], outputs=ch).start()
    assert list(ch) == [1, 2]
    stats = cp.Runtime().statistics()
    assert "lister" in stats["actors"]


def test_forking_actors_while_another_thread_holds_channel_locks_does_not_deadlock():
    """fork is the start method: locks a parent thread held at fork time are re-made in the child."""
    children = 20
    shared = cp.Channel(mode="process", name="shared", writers=children + 1, batch_size=7)
    stop = threading.Event()

    def hammer():
        n = 0
        while not stop.is_set():
            shared.put(("thread", n))  # takes and releases the channel's write lock constantly
            n += 1
        shared.close()

    writer = threading.Thread(target=hammer)
    writer.start()
    for i in range(children):
        cp.Actor(f"child-{i}", source=[("child", i)] * 10, outputs=shared, mode="process").start()
    stop_timer = threading.Timer(0.2, stop.set)
    stop_timer.start()
    from_children = [r for r in shared if r[0] == "child"]
    writer.join()
    assert len(from_children) == children * 10


def test_a_lambda_sees_a_global_defined_after_the_pool_was_forked():
    rt = cp.Runtime()
    rt.process_pool()  # workers are forked now
    globals()["LATE_GLOBAL"] = 5
    try:
        assert rt.map(lambda x: x + LATE_GLOBAL, [1, 2]) == [6, 7]  # noqa: F821
    finally:
        del globals()["LATE_GLOBAL"]


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}{b}")


def test_a_result_that_cannot_be_unpickled_in_the_parent_is_an_error_not_a_hang():
    with pytest.raises(cp.ActorError, match="cannot be unpickled"):
        cp.Runtime().map(lambda x: NeedsTwoArgs(x, x), [1], timeout=30)


def test_the_seeds_lock_is_one_shared_lock():
    rt = cp.MultiProcessing()
    assert rt.Lock() is rt.Lock()
    with rt.Lock():
        pass


def test_cancel_ends_a_producer_blocked_on_a_full_channel_with_the_reason_given(mode):
    full = cp.Channel(10, mode=mode, name="full")
    producer = cp.Actor("endless", source=iter(int, 1), outputs=full, mode=mode).start()  # never ends by itself
    reason = cp.ActorError("owner", "Cancelled", "the owner gave up")
    cp.Runtime().cancel([producer], reason, wait=5.0)
    assert producer.state == "cancelled" and producer.error is reason
    with pytest.raises(cp.ActorError, match="the owner gave up"):
        full.get_batch(0)


def test_a_task_hung_on_the_thread_pool_does_not_keep_the_interpreter_from_exiting(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "hung.py"
    script.write_text("import time, chronopipe as cp\ncp.Runtime().submit(time.sleep, 3600, mode='thread')\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and time.monotonic() - started < 10, done.stderr


def test_a_ctrl_c_swallowed_by_a_weakref_callback_is_delivered_again(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "swallowed.py"
    script.write_text(
        "import time, weakref, chronopipe as cp\n"
        "cp.Runtime()._setup()\n"
        "class Thing: pass\n"
        "thing = Thing()\n"
        "def gone(ref): raise KeyboardInterrupt  # as a SIGINT handler would, inside the callback\n"
        "ref = weakref.ref(thing, gone)\n"
        "del thing\n"
        "time.sleep(10)\n"
        "print('went on as if nothing happened')\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 8, "the signal waited for the sleep to end"
    assert "went on" not in done.stdout
    assert done.returncode in (130, 1, -signal.SIGINT), done.stderr
    assert "Exception ignored" not in done.stderr


def test_a_program_starting_process_actors_again_and_again_keeps_no_descriptor_of_theirs():
    def one():
        out = cp.Channel(10, mode="process")
        actor = cp.Actor("again", source=[1, 2], outputs=out, mode="process").start()
        assert list(out) == [1, 2]
        actor.join(10)

    for _ in range(40):  # past ENDED_KEPT: the oldest ended actors are let go
        one()
    gc.collect()
    before = psutil.Process().num_fds()
    for _ in range(60):
        one()
    gc.collect()
    assert psutil.Process().num_fds() <= before + 4
