"""Nothing hangs on a hung EventManager callback: statistics() answers meanwhile, a timeout turns
it into a Left and the manager moves on, the interpreter still exits (abandoning it with a
warning), and Ctrl-C then exits 130 without a traceback.

Each case where something could hang runs in its own Python process, watched with psutil and
killed (with its children) if it outlives a generous bound."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

import chronopipe as cp
from chronopipe.either import Left, Pending, Right
from chronopipe.events import EventManager, exists

BOUND = 30.0  # seconds a script may take before it counts as hung (far above what it needs)

HUNG = """
import json, sys, threading, time
from chronopipe.events import EventManager

started = threading.Event()

def hang(event):
    started.set()
    threading.Event().wait()  # never returns
"""


class Script:
    """A Python script in its own process: stdout lines as they come, stderr at the end."""

    def __init__(self, body: str) -> None:
        self.proc = psutil.Popen([sys.executable, "-c", textwrap.dedent(HUNG) + textwrap.dedent(body)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def line(self) -> str:
        """The next line it prints (it must print one within BOUND seconds)."""
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(BOUND)
        assert got and got[0], f"no line from the script within {BOUND} s (hung?)"
        return got[0].strip()

    def wait(self, bound: float = BOUND) -> tuple[int, str]:
        """Its exit status (negative: the signal that ended it) and its stderr; killed if it outlives ``bound``."""
        try:
            code = self.proc.wait(bound)
        except psutil.TimeoutExpired:
            self.kill()
            pytest.fail(f"the script did not exit within {bound} s")
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        for proc in [*self.proc.children(recursive=True), self.proc]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(BOUND)


@pytest.fixture
def script():
    made: list[Script] = []

    def run(body: str) -> Script:
        made.append(Script(body))
        return made[-1]

    yield run
    for s in made:
        if s.proc.is_running() and s.proc.status() != psutil.STATUS_ZOMBIE:
            s.kill()


# -- in a subprocess: what could hang ---------------------------------------------------
def test_a_hung_sync_callback_does_not_block_statistics_from_another_thread(script):
    s = script("""
        manager = EventManager()
        manager.register(hang, {"kind": "hang"})
        threading.Thread(target=manager.trigger, args=({"kind": "hang"},), daemon=True).start()
        started.wait(30)
        stats = manager.statistics()  # from the main thread, while the callback hangs in the other
        print(json.dumps([stats.events, stats.dispatched]), flush=True)
        import os; os._exit(0)
    """)
    assert json.loads(s.line()) == [1, 1]
    assert s.wait()[0] == 0


def test_a_sync_callback_past_its_timeout_is_a_left_timeout_and_later_events_are_still_dispatched(script):
    s = script("""
        manager = EventManager()
        manager.register(hang, {"kind": "hang"}, {"timeout": 0.2})
        manager.register(lambda event: "ok", {"kind": "ok"})
        start = time.monotonic()
        [hung] = manager.trigger({"kind": "hang"})
        waited = time.monotonic() - start
        print(json.dumps([hung.error.exc_type, waited < 5, repr(manager.trigger({"kind": "ok"})),
                          manager.statistics().errors]), flush=True)
    """)
    assert json.loads(s.line()) == ["TimeoutError", True, "[Right('ok')]", 1]
    code, stderr = s.wait()
    assert code == 0, stderr


def test_an_async_callback_that_never_returns_does_not_keep_the_interpreter_from_exiting(script):
    s = script("""
        manager = EventManager()
        manager.register(hang, {"kind": "hang"}, {"async": True})
        manager.trigger({"kind": "hang"})
        started.wait(30)
        print("end of script", flush=True)
    """)
    assert s.line() == "end of script"
    end = time.monotonic()
    code, stderr = s.wait()
    assert time.monotonic() - end < 3.0
    assert code == 0
    assert "still running at exit, abandoned" in stderr and "events:hang" in stderr
    assert "Traceback" not in stderr


def test_ctrl_c_while_exit_waits_for_a_hung_callback_exits_130_without_a_traceback(script):
    s = script("""
        try:
            import chronopipe.events.threads
            chronopipe.events.threads.EXIT_WAIT = 60.0  # the wait at exit lasts until the Ctrl-C
        except ImportError:
            pass
        manager = EventManager()
        manager.register(hang, {"kind": "hang"}, {"async": True})
        manager.trigger({"kind": "hang"})
        started.wait(30)
        print("end of script", flush=True)
    """)
    assert s.line() == "end of script"
    time.sleep(0.5)  # at exit now, waiting for the hung callback
    s.proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code, stderr = s.wait()
    assert time.monotonic() - sent < 3.0
    assert code in (130, -signal.SIGINT)  # -2: ended by SIGINT, which a shell shows as 130
    assert "Traceback" not in stderr


# -- in this process: nothing hangs here ------------------------------------------------
@pytest.fixture
def gate():
    """Released at the end of the test: the callbacks that wait on it end, and their threads with them."""
    event = threading.Event()
    yield event
    event.set()
    cp.Runtime().shutdown()


def test_the_manager_timeout_applies_to_callbacks_registered_without_one(gate):
    manager = EventManager(timeout=0.1)
    manager.register(lambda e: gate.wait(), {"a": 1})
    [result] = manager.trigger({"a": 1})
    assert isinstance(result, Left) and result.error.exc_type == "TimeoutError"


def test_a_timeout_of_none_in_the_options_overrides_the_managers(gate):
    manager = EventManager(timeout=0.1)
    sub = manager.register(lambda e: "done", {"a": 1}, {"timeout": None})
    assert (sub.timeout, sub.fast is not None, manager.trigger({"a": 1})) == (None, True, [Right("done")])


def test_a_timed_callback_that_finishes_in_time_gives_its_value():
    manager = EventManager()
    manager.register(lambda e: e["a"] * 2, {"a": exists()}, {"timeout": 30})
    assert manager.trigger({"a": 21}) == [Right(42)]


def test_a_timed_callback_that_raises_gives_a_left_with_its_traceback():
    manager = EventManager()

    def explode(event):
        raise ValueError("boom")

    manager.register(explode, {"a": 1}, {"timeout": 30})
    [result] = manager.trigger({"a": 1})
    assert (result.error.exc_type, result.error.message) == ("ValueError", "boom")
    assert "in explode" in result.error.traceback


def test_a_timed_callback_may_trigger_events_itself():
    manager, seen = EventManager(), []
    manager.register(lambda e: manager.trigger({"b": 1}), {"a": 1}, {"timeout": 30})
    manager.register(lambda e: seen.append(threading.current_thread().name) or "inner", {"b": 1})
    [outer] = manager.trigger({"a": 1})
    assert outer == Right([Right("inner")]) and seen[0].startswith("chronopipe-events")


def test_a_timed_out_callback_with_on_error_raise_makes_trigger_raise(gate):
    manager = EventManager(on_error="raise")
    manager.register(lambda e: gate.wait(), {"a": 1}, {"timeout": 0.1})
    with pytest.raises(cp.ActorError, match="timeout"):
        manager.trigger({"a": 1})


def test_an_async_callback_past_its_timeout_settles_to_a_left_timeout(gate):
    manager = EventManager()
    manager.register(lambda e: gate.wait(), {"a": 1}, {"async": True, "timeout": 0.2})
    [pending] = manager.trigger({"a": 1})
    assert isinstance(pending, Pending)
    settled = pending.wait(BOUND)
    assert settled.is_left and settled.error.exc_type == "TimeoutError"
    assert manager.join(BOUND).errors == 1


def test_register_and_subscriptions_answer_while_a_callback_runs(gate):
    manager, inside = EventManager(), threading.Event()
    manager.register(lambda e: inside.set() or gate.wait(BOUND), {"a": 1})
    worker = threading.Thread(target=manager.trigger, args=({"a": 1},))
    worker.start()
    try:
        assert inside.wait(BOUND)
        manager.register(print, {"b": 1})
        assert (len(manager.subscriptions()), manager.statistics().rules) == (2, 2)
        assert worker.is_alive()  # answered while the callback was still running
    finally:
        gate.set()
        worker.join(BOUND)


@pytest.mark.parametrize("timeout", [0, -1, "1", True])
def test_a_bad_timeout_is_refused(timeout):
    with pytest.raises(ValueError, match="timeout"):
        EventManager().register(print, {"a": 1}, {"timeout": timeout})
    with pytest.raises(ValueError, match="timeout"):
        EventManager(timeout=timeout)
