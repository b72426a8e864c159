"""EventManager: callbacks run for the events they registered for, in order, synchronously or on a
pool, from trigger() or from a queue consumed on a runtime thread, and nothing is left behind."""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

import chronopipe as cp
from chronopipe.either import Left, Pending, Right, settle
from chronopipe.events import EventManager, EventStatistics, Subscription, exists, lt

POOL_THREAD_NAMES = ("(worker)", "(_handle_workers)", "(_handle_tasks)", "(_handle_results)")
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After the runtime shuts down, no thread or process the test started is left."""
    before = set(threading.enumerate())
    yield
    cp.Runtime().shutdown()

    def left() -> list[str]:
        threads = [t.name for t in threading.enumerate() if t.is_alive() and (
            t not in before or t.name.startswith("chronopipe") or t.name.endswith(POOL_THREAD_NAMES))]
        return threads + [f"pid {p.pid}" for p in psutil.Process().children(recursive=True)]

    deadline = time.monotonic() + 5
    while left() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left(), f"left behind: {left()}"


def explode(event):
    raise ValueError(f"boom {event['n']}")


def shout(event):
    return event["action"].upper()


class Recorder:
    def __init__(self):
        self.seen = []

    def record(self, event):
        self.seen.append(event)


# -- trigger ----------------------------------------------------------------------------
def test_trigger_runs_the_matching_callbacks_in_registration_order():
    manager = EventManager()
    manager.register(lambda e: "first", {"type": "response"})
    manager.register(lambda e: "other", {"type": "command"})
    manager.register(lambda e: "second", {"value": exists()})
    manager.register(lambda e: "third")
    assert manager.trigger({"type": "response", "value": 1}) == [Right("first"), Right("second"), Right("third")]


def test_trigger_of_an_event_nobody_wants_returns_nothing():
    manager = EventManager()
    manager.register(lambda e: 1, {"type": "response"})
    assert manager.trigger({"type": "command"}) == []


@pytest.mark.parametrize("falsy", [0, False, "", None])
def test_an_event_whose_field_is_falsy_is_dispatched(falsy):
    manager = EventManager()
    manager.register(lambda e: "hit", {"x": falsy})
    assert manager.trigger({"x": falsy}) == [Right("hit")]


def test_matching_names_the_subscriptions_without_running_them():
    manager, calls = EventManager(), []
    sub = manager.register(calls.append, {"a": 1})
    assert manager.matching({"a": 1}) == [sub]
    assert calls == []


def test_register_returns_a_readable_subscription():
    manager = EventManager(name="checks")
    sub = manager.register(shout, {"type": ["a", "b"]}, {"async": "thread", "once": True})
    assert isinstance(sub, Subscription)
    assert repr(sub) == "<Subscription #0 checks:shout Condition({'type': ['a', 'b']}) async=thread once>"


def test_the_name_option_names_the_callback_in_errors():
    manager = EventManager()
    manager.register(explode, {"n": 1}, {"name": "exploder"})
    assert manager.trigger({"n": 1})[0].error.actor == "events:exploder"


# -- once, unregister, changes during dispatch ------------------------------------------
def test_register_once_runs_for_the_first_matching_event_only():
    manager, calls = EventManager(), []
    sub = manager.register_once(calls.append, {"a": 1})
    manager.trigger({"a": 1})
    manager.trigger({"a": 1})
    assert (calls, sub.active, manager.statistics().rules) == ([{"a": 1}], False, 0)


def test_a_once_callback_that_triggers_the_same_event_again_runs_once():
    manager, calls = EventManager(), []

    def again(event):
        calls.append(event)
        manager.trigger(event)

    manager.register_once(again, {"a": 1})
    manager.trigger({"a": 1})
    assert calls == [{"a": 1}]


def test_unregister_a_subscription():
    manager = EventManager()
    sub = manager.register(lambda e: 1, {"a": 1})
    assert (manager.unregister(sub), manager.unregister(sub)) == (1, 0)
    assert manager.trigger({"a": 1}) == []


def test_subscription_unregister_removes_it():
    manager = EventManager()
    sub = manager.register(lambda e: 1, {"a": 1})
    assert (sub.unregister(), sub.unregister()) == (True, False)


def test_unregister_a_callback_removes_all_its_registrations():
    manager, calls = EventManager(), []
    for spec in ({"a": 1}, {"b": 1}, {"a": exists()}):
        manager.register(calls.append, spec)
    assert manager.unregister(calls.append) == 3
    assert manager.trigger({"a": 1, "b": 1}) == []


def test_unregister_a_callback_with_a_condition_removes_that_registration_only():
    manager, calls = EventManager(), []
    manager.register(calls.append, {"a": 1})
    manager.register(calls.append, {"b": 1})
    assert manager.unregister(calls.append, {"a": 1}) == 1
    assert [s.condition for s in manager.subscriptions()] == [manager.subscriptions()[0].condition]
    assert manager.trigger({"a": 1, "b": 1}) == [Right(None)]


def test_unregister_a_bound_method_by_a_new_reference_to_it():
    manager, recorder = EventManager(), Recorder()
    manager.register(recorder.record, {"a": 1})
    assert manager.unregister(recorder.record) == 1


def test_unregister_a_callback_never_registered_removes_nothing():
    assert EventManager().unregister(print) == 0


def test_unregister_a_subscription_of_another_manager_is_refused():
    sub = EventManager(name="one").register(print, {"a": 1})
    with pytest.raises(ValueError, match="another EventManager"):
        EventManager(name="two").unregister(sub)


def test_the_first_registered_callback_can_unregister_itself_during_dispatch():
    manager, calls, subs = EventManager(), [], []
    subs.append(manager.register(lambda e: calls.append("first") or manager.unregister(subs[0]), {"a": 1}))
    manager.register(lambda e: calls.append("second"), {"a": 1})
    manager.trigger({"a": 1})
    manager.trigger({"a": 1})
    assert subs[0].seq == 0
    assert calls == ["first", "second", "second"]


def test_a_callback_unregistered_before_its_turn_does_not_run():
    manager, calls, subs = EventManager(), [], []
    manager.register(lambda e: calls.append("first") or manager.unregister(subs[0]), {"a": 1})
    subs.append(manager.register(lambda e: calls.append("second"), {"a": 1}))
    assert manager.trigger({"a": 1}) == [Right(1)]
    assert calls == ["first"]


def test_a_callback_registered_during_dispatch_runs_from_the_next_event_on():
    manager, calls = EventManager(), []
    manager.register_once(lambda e: manager.register(lambda e: calls.append("new"), {"a": 1}), {"a": 1})
    manager.trigger({"a": 1})
    assert calls == []
    manager.trigger({"a": 1})
    assert calls == ["new"]


def test_events_triggered_from_many_threads_are_handled_one_at_a_time():
    manager, busy, overlaps = EventManager(), threading.Lock(), []

    def exclusive(event):
        if not busy.acquire(blocking=False):
            overlaps.append(event)
            return
        time.sleep(0.0005)
        busy.release()

    manager.register(exclusive, {"n": exists()})
    threads = [threading.Thread(target=lambda: [manager.trigger({"n": i}) for i in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert overlaps == [] and manager.statistics().callbacks == 200


# -- errors of synchronous callbacks and predicates -------------------------------------
def test_a_raising_callback_gives_a_left_with_the_traceback_and_the_event():
    manager = EventManager()
    manager.register(explode, {"n": 1})
    [result] = manager.trigger({"n": 1})
    error = result.error
    assert isinstance(error, cp.ActorError)
    assert (error.exc_type, error.message, error.record) == ("ValueError", "boom 1", {"n": 1})
    assert "in explode" in error.traceback and isinstance(error.cause, ValueError)


def test_a_raising_callback_is_logged_and_counted(caplog):
    manager = EventManager()
    manager.register(explode, {"n": 1})
    with caplog.at_level(logging.ERROR, logger="chronopipe.events"):
        manager.trigger({"n": 1})
    assert "callback events:explode failed" in caplog.text and "ValueError: boom 1" in caplog.text
    assert manager.statistics().errors == 1


def test_the_callbacks_after_a_raising_one_still_run():
    manager = EventManager()
    manager.register(explode, {"n": 1})
    manager.register(lambda e: "after", {"n": 1})
    assert manager.trigger({"n": 1})[1] == Right("after")


def test_on_error_raise_makes_trigger_raise_the_actor_error():
    manager = EventManager(on_error="raise")
    manager.register(explode, {"n": 2})
    with pytest.raises(cp.ActorError, match="boom 2"):
        manager.trigger({"n": 2})


def test_the_on_error_option_applies_to_one_callback():
    manager = EventManager()
    manager.register(explode, {"n": 3}, {"on_error": "raise"})
    with pytest.raises(cp.ActorError, match="boom 3"):
        manager.trigger({"n": 3})


def test_a_raising_predicate_is_recorded_and_counted_not_raised():
    manager = EventManager()
    sub = manager.register(shout, {"name.type": "command", "action": lambda x: x.startsWith("test")})
    assert manager.trigger({"name": {"type": "command"}, "action": "testCommand"}) == []
    assert sub.condition.errors[0].exc_type == "AttributeError"
    assert manager.statistics().predicate_errors == 1


# -- async callbacks --------------------------------------------------------------------
def test_an_async_callback_runs_on_the_runtimes_thread_pool_by_default():
    manager, seen = EventManager(), []
    manager.register(lambda e: seen.append(e) or "done", {"a": 1}, {"async": True})
    [result] = manager.trigger({"a": 1})
    assert isinstance(result, Pending)
    assert (result.wait(TIMEOUT), seen) == (Right("done"), [{"a": 1}])


def test_an_async_callback_that_raises_on_a_thread_settles_to_a_left_with_its_traceback():
    manager = EventManager()
    manager.register(explode, {"n": 4}, {"async": "thread"})
    error = manager.trigger({"n": 4})[0].wait(TIMEOUT).error
    assert isinstance(error, cp.ActorError) and error.exc_type == "ValueError" and "in explode" in error.traceback


def test_a_process_pool_callback_returns_its_value_as_right():
    manager = EventManager(async_pool=cp.MultiProcessing().ProcessPool())
    manager.register(shout, {"name.type": "command"}, {"async": True})
    [result] = manager.trigger({"name": {"type": "command"}, "action": "testCommand"})
    assert result.wait(TIMEOUT) == Right("TESTCOMMAND")


def test_a_process_pool_callback_cannot_change_the_parents_objects():
    manager, commands = EventManager(), []
    manager.register(lambda e: commands.append(e) or len(commands), {"a": 1}, {"async": "process"})
    [result] = manager.trigger({"a": 1})
    assert (result.wait(TIMEOUT), commands) == (Right(1), [])  # appended to the worker's copy


def test_a_process_pool_callback_that_raises_settles_to_a_left_with_the_childs_traceback():
    manager = EventManager(async_pool="process")
    manager.register(explode, {"n": 5}, {"async": True})
    error = manager.trigger({"n": 5})[0].wait(TIMEOUT).error
    assert isinstance(error, cp.ActorError)
    assert (error.exc_type, error.message) == ("ValueError", "boom 5")
    assert "in explode" in error.traceback and 'raise ValueError(f"boom' in error.traceback


def test_async_results_come_in_registration_order():
    manager = EventManager()
    for i in range(5):
        manager.register(lambda e, i=i: time.sleep(0.01 * (5 - i)) or i, {"a": 1}, {"async": True})
    assert settle(manager.trigger({"a": 1}), TIMEOUT) == [Right(i) for i in range(5)]


def test_a_pool_worker_that_dies_gives_a_left_instead_of_a_hang():
    manager = EventManager()
    manager.register(lambda e: os._exit(3), {"a": 1}, {"async": "process"})
    error = manager.trigger({"a": 1})[0].wait(TIMEOUT).error
    assert error.exc_type == "BrokenProcessPool"


def test_a_callback_its_pool_refuses_gives_a_left_at_once():
    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    manager = EventManager(async_pool=executor)
    manager.register(print, {"a": 1}, {"async": True})
    [result] = manager.trigger({"a": 1})
    assert result.is_left and result.error.exc_type == "RuntimeError"


def test_an_executor_can_be_the_async_pool():
    with ThreadPoolExecutor(2) as executor:
        manager = EventManager(async_pool=executor)
        manager.register(lambda e: e["a"] * 2, {"a": 21}, {"async": True})
        assert manager.trigger({"a": 21})[0].wait(TIMEOUT) == Right(42)


def test_failed_async_callbacks_are_logged_and_counted_once_finished(caplog):
    manager = EventManager()
    manager.register(explode, {"n": 6}, {"async": True})
    manager.trigger({"n": 6})
    with caplog.at_level(logging.ERROR, logger="chronopipe.events"):
        stats = manager.join(TIMEOUT)
    assert (stats.errors, stats.pending) == (1, 0)
    assert "async callback events:explode failed" in caplog.text


def test_join_waits_for_async_callbacks_and_times_out_when_one_runs_on():
    manager, gate = EventManager(), threading.Event()
    manager.register(lambda e: gate.wait(TIMEOUT), {"a": 1}, {"async": True})
    manager.trigger({"a": 1})
    try:
        with pytest.raises(TimeoutError, match="still running"):
            manager.join(0.05)
        assert manager.statistics().pending == 1
    finally:
        gate.set()
    assert manager.join(TIMEOUT).pending == 0


# -- run(): consuming a queue -----------------------------------------------------------
def test_the_seeds_readme_flow_with_a_manager_queue():
    queue_ = cp.MultiProcessing().Manager().Queue()
    event_manager = EventManager(queue_, async_pool=cp.MultiProcessing().ProcessPool()).run()
    commands = []
    responses = []
    event_manager.register(
        callback=lambda event: commands.append(event),
        condition={"name.type": ["command", "response"], "action": lambda x: x.startswith("test")},
        options={"async": True},
    )
    event_manager.register(lambda event: responses.append(event), condition={"type": "response"})
    queue_.put({"name": {"type": "command"}, "action": "testCommand"})
    queue_.put({"type": "response", "value": "success"})
    event_manager.trigger({"type": "response", "value": "complete"})
    queue_.put(queue.Empty)  # the seed's end marker
    stats = event_manager.join(TIMEOUT)
    assert sorted(r["value"] for r in responses) == ["complete", "success"]
    assert commands == []  # the async callback appended in a pool process, to its own copy
    assert (stats.events, stats.dispatched, stats.callbacks, stats.errors, stats.pending) == (3, 3, 3, 0, 0)


def test_the_seeds_js_predicate_records_its_error_instead_of_matching():
    queue_ = cp.MultiProcessing().Manager().Queue()
    event_manager = EventManager(queue_).run()
    commands = []
    sub = event_manager.register(commands.append, {"name.type": "command", "action": lambda x: x.startsWith("test")})
    queue_.put({"name": {"type": "command"}, "action": "testCommand"})
    queue_.put(cp.END)
    stats = event_manager.join(TIMEOUT)
    assert (commands, stats.predicate_errors) == ([], 1)
    assert "startsWith" in sub.condition.errors[0].message


def test_run_consumes_a_stdlib_manager_queue():
    with multiprocessing.Manager() as mp_manager:
        queue_ = mp_manager.Queue()
        manager, seen = EventManager(queue_), []
        manager.register(seen.append, {"n": exists()})
        manager.run()
        for i in range(3):
            queue_.put({"n": i})
        queue_.put(cp.END)
        manager.join(TIMEOUT)
    assert seen == [{"n": 0}, {"n": 1}, {"n": 2}]


@pytest.mark.parametrize("make", [queue.Queue, lambda: cp.Channel(name="events")], ids=["queue.Queue", "Channel"])
def test_run_handles_events_in_arrival_order_until_end(make):
    source, seen = make(), []
    manager = EventManager(source)
    manager.register(lambda e: seen.append(e["n"]), {"n": lt(10_000)})
    manager.run()
    for i in range(500):
        source.put({"n": i})
    source.put(cp.END)
    stats = manager.join(TIMEOUT)
    assert seen == list(range(500)) and stats.events == 500


def test_run_returns_self_and_runs_once():
    manager = EventManager(queue.Queue())
    assert manager.run() is manager
    threads = threading.active_count()
    assert manager.run() is manager and threading.active_count() == threads


def test_run_consumes_on_a_runtime_thread():
    before = set(threading.enumerate())
    manager = EventManager(queue.Queue(), name="checks").run()
    assert [t.name for t in set(threading.enumerate()) - before] == ["chronopipe:checks"]
    manager.queue.put(cp.END)
    manager.join(TIMEOUT)


def test_run_without_a_queue_makes_one():
    manager, seen = EventManager().run(), []
    manager.register(seen.append, {"a": 1})
    manager.queue.put({"a": 1})
    manager.queue.close()
    manager.join(TIMEOUT)
    assert seen == [{"a": 1}]


def test_stop_ends_the_loop_and_join_returns_the_statistics():
    manager = EventManager(queue.Queue()).run()
    manager.stop()
    assert isinstance(manager.join(TIMEOUT), EventStatistics)


def test_a_runtime_shutdown_stops_the_loop_and_join_says_so():
    manager = EventManager(queue.Queue()).run()
    cp.Runtime().shutdown()
    with pytest.raises(cp.ActorError, match="shut down"):
        manager.join(TIMEOUT)


def test_a_callback_raising_with_on_error_raise_ends_the_loop_with_its_error():
    source = queue.Queue()
    manager = EventManager(source, on_error="raise").run()
    manager.register(explode, {"n": 7})
    source.put({"n": 7})
    with pytest.raises(cp.ActorError, match="boom 7") as info:
        manager.join(TIMEOUT)
    assert info.value.record == {"n": 7}


def test_the_manager_as_the_actor_at_the_end_of_a_pipeline():
    channel = cp.Channel(mode="process", name="records")
    manager, seen = EventManager(), []
    manager.register(lambda e: seen.append(e["n"]), {"n": lt(50)})
    cp.Actor("source", source=lambda: ({"n": i} for i in range(100)), outputs=channel, mode="process").start()
    stats = manager.as_actor(channel).start().join(TIMEOUT)
    assert (seen, stats.events, stats.dispatched) == (list(range(50)), 100, 50)


# -- statistics and refusals ------------------------------------------------------------
def test_statistics_count_what_happened():
    manager = EventManager(name="stats")
    manager.register(lambda e: 1, {"a": 1})
    manager.register(explode, {"a": 1, "n": 0})
    manager.register(lambda e: 1, {"b": lambda v: v.nope})
    for event in ({"a": 1}, {"a": 1, "n": 0}, {"b": 1}, {"c": 1}):
        manager.trigger(event)
    assert manager.statistics() == EventStatistics(
        name="stats", rules=3, events=4, dispatched=2, callbacks=3, pending=0, errors=1, predicate_errors=1)


def test_a_callback_that_is_not_callable_is_refused_with_the_right_order():
    with pytest.raises(TypeError, match=r"register\(callback, condition, options\)"):
        EventManager().register({"type": "response"}, print)


def test_an_unknown_option_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown option.*'asynch'.*'async'"):
        EventManager().register(print, {"a": 1}, {"asynch": True})


@pytest.mark.parametrize("options", [{"async": "gpu"}, {"on_error": "ignore"}])
def test_a_bad_option_value_is_refused(options):
    with pytest.raises(ValueError, match="must be"):
        EventManager().register(print, {"a": 1}, options)


def test_an_async_pool_the_runtime_cannot_supervise_is_refused():
    with pytest.raises(TypeError, match="async_pool must be"):
        EventManager(async_pool=object())


def test_a_queue_without_get_is_refused_at_once():
    with pytest.raises(TypeError, match="Channel or have get"):
        EventManager([])


def test_options_that_are_not_a_dict_are_refused():
    with pytest.raises(TypeError, match="options must be a dict"):
        EventManager().register(print, {"a": 1}, ["async"])


def test_a_bad_on_error_is_refused():
    with pytest.raises(ValueError, match="on_error must be"):
        EventManager(on_error="ignore")  # type: ignore[arg-type]


def test_a_left_is_what_a_failed_callback_gives():
    manager = EventManager()
    manager.register(explode, {"n": 8})
    assert isinstance(manager.trigger({"n": 8})[0], Left)


# -- dispatch ---------------------------------------------------------------------------
def test_dispatch_runs_what_trigger_runs_in_the_same_order_and_counts_the_callbacks():
    runs: dict[str, list] = {"trigger": [], "dispatch": []}
    managers = {}
    for how, calls in runs.items():
        manager = managers[how] = EventManager(name=how)
        manager.register(lambda e, calls=calls: calls.append(("first", e["n"])), {"type": "response"})
        manager.register(lambda e, calls=calls: calls.append(("odd", e["n"])), {"n": lambda n: n % 2})
        manager.register(lambda e, calls=calls: calls.append(("all", e["n"])))
    events = [{"type": t, "n": n} for n, t in enumerate(["response", "command", "response", "other"])]
    for event in events:
        managers["trigger"].trigger(event)
    assert managers["dispatch"].dispatch(iter(events)) == len(runs["trigger"]) == 8
    assert runs["dispatch"] == runs["trigger"]
    stats = {how: manager.statistics() for how, manager in managers.items()}
    assert stats["dispatch"] == EventStatistics(**{**vars(stats["trigger"]), "name": "dispatch"})


def test_dispatch_counts_statistics_as_trigger_does():
    manager = EventManager(name="stats")
    manager.register(lambda e: 1, {"a": 1})
    manager.register(explode, {"a": 1, "n": 0})
    manager.register(lambda e: 1, {"b": lambda v: v.nope})
    assert manager.dispatch([{"a": 1}, {"a": 1, "n": 0}, {"b": 1}, {"c": 1}]) == 3
    assert manager.statistics() == EventStatistics(
        name="stats", rules=3, events=4, dispatched=2, callbacks=3, pending=0, errors=1, predicate_errors=1)


def test_dispatch_with_on_error_raise_raises_and_counts_the_events_up_to_the_failing_one():
    manager = EventManager(on_error="raise")
    seen: list = []
    manager.register(explode, {"n": 2})
    manager.register(seen.append)
    with pytest.raises(cp.ActorError, match="boom 2"):
        manager.dispatch({"n": n} for n in range(5))
    stats = manager.statistics()
    assert (stats.events, stats.dispatched, stats.callbacks, stats.errors) == (3, 3, 3, 1)
    assert seen == [{"n": 0}, {"n": 1}]


def test_dispatch_runs_a_once_callback_once_and_skips_one_unregistered_before_its_turn():
    manager = EventManager()
    calls: list = []
    manager.register_once(lambda e: calls.append("once"), {"n": exists()})
    manager.register(lambda e: later.unregister(), {"n": 1})
    later = manager.register(lambda e: calls.append("later"), {"n": 1})
    manager.register(lambda e: calls.append("last"), {"n": 1})
    manager.dispatch([{"n": 0}, {"n": 1}, {"n": 1}])
    assert calls == ["once", "last", "last"]


def test_dispatch_submits_async_callbacks_to_their_pool_and_join_waits_for_them():
    manager = EventManager()
    done: list = []
    manager.register(lambda e: done.append(e["n"]), {"n": exists()}, {"async": True})
    assert manager.dispatch({"n": n} for n in range(3)) == 3
    stats = manager.join(TIMEOUT)
    assert sorted(done) == [0, 1, 2] and (stats.callbacks, stats.pending, stats.errors) == (3, 0, 0)


def test_start_dispatches_the_queue_and_the_seeds_run_after_it_does_nothing_more():
    seen: list[int] = []
    manager = EventManager(cp.Channel(name="events"))
    manager.register(seen.append, condition={"n": exists()})
    assert not manager.started
    assert manager.start() is manager and manager.started
    assert manager.run() is manager  # the seed's spelling: already started, so nothing more
    manager.queue.put_many([{"n": 1}, {"n": 2}])
    manager.queue.put(cp.END)
    manager.join(timeout=10)
    assert [e["n"] for e in seen] == [1, 2]
