"""Actor: the same behaviour on a thread and in a process (the `mode` fixture)."""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest

import chronopipe as cp


class Collect(cp.Actor):
    """A sink whose result (on_stop's value) is every record it received."""

    def on_start(self):
        self.seen = []

    def on_receive(self, item):
        self.seen.append(item)

    def on_stop(self):
        return self.seen


def test_a_source_actor_emits_every_item_then_end(mode, channel):
    out = channel()
    cp.Actor("numbers", source=range(2500), outputs=out, mode=mode).start()
    assert list(out) == list(range(2500))


def test_a_closure_runs_as_behaviour_in_either_hosting(mode, channel):
    offset = 100  # captured by the lambda: fork carries it to a process without pickling
    inbox, out = channel(), channel()
    cp.Actor("shift", lambda x: x + offset, inbox=inbox, outputs=out, mode=mode).start()
    inbox.put_many([1, 2, 3])
    inbox.close()
    assert list(out) == [101, 102, 103]


def test_returning_none_from_on_receive_emits_nothing(mode, channel):
    inbox, out = channel(), channel()
    cp.Actor("evens", lambda x: x if x % 2 == 0 else None, inbox=inbox, outputs=out, mode=mode).start()
    inbox.put_many(range(10))
    inbox.close()
    assert list(out) == [0, 2, 4, 6, 8]


def test_join_returns_what_on_stop_returned(mode, channel):
    inbox = channel()
    sink = Collect("collect", inbox=inbox, mode=mode).start()
    inbox.put_many(["a", "b"])
    inbox.close()
    assert sink.join(timeout=10) == ["a", "b"]
    assert sink.state == "finished"


def test_emit_sends_several_records_per_input_in_order(mode, channel):
    class Repeat(cp.Actor):
        def on_receive(self, item):
            for _ in range(item):
                self.emit(item)

    inbox, out = channel(), channel()
    Repeat("repeat", inbox=inbox, outputs=out, mode=mode).start()
    inbox.put_many([1, 2, 3])
    inbox.close()
    assert list(out) == [1, 2, 2, 3, 3, 3]


def test_stop_ends_an_endless_source_and_closes_its_outputs(mode, channel):
    out = channel(100)
    source = cp.Actor("forever", source=itertools.count, outputs=out, mode=mode).start()
    assert out.get(timeout=5) == 0
    source.stop()
    drained = list(out)  # ends with END: downstream is not left waiting
    assert drained == list(range(1, len(drained) + 1))
    source.join(timeout=5)
    assert source.state == "stopped"


def test_statistics_count_received_and_emitted(mode, channel):
    inbox, out = channel(), channel()
    actor = cp.Actor("count", lambda x: x, inbox=inbox, outputs=out, mode=mode).start()
    inbox.put_many(range(7))
    inbox.close()
    list(out)
    actor.join(timeout=10)
    stats = actor.statistics()
    assert (stats.name, stats.mode, stats.received, stats.emitted) == ("count", mode, 7, 7)


def test_an_exception_surfaces_as_actor_error_with_name_type_traceback_and_record(mode, channel):
    def parse(record):
        if record["line"] == 3:
            raise ValueError("bad timestamp")
        return record

    inbox, out = channel(), channel()
    actor = cp.Actor("parse", parse, inbox=inbox, outputs=out, mode=mode).start()
    inbox.put_many([{"line": n} for n in range(1, 6)])
    inbox.close()
    with pytest.raises(cp.ActorError) as caught:
        actor.join(timeout=10)
    err = caught.value
    assert (err.actor, err.exc_type, err.message) == ("parse", "ValueError", "bad timestamp")
    assert "in parse" in err.traceback and "raise ValueError" in err.traceback
    assert err.record == {"line": 3} and err.record_repr == "{'line': 3}"
    assert isinstance(err.cause, ValueError)


def test_a_reader_of_a_failed_actor_gets_the_actor_error_not_a_hang(mode, channel):
    inbox, out = channel(), channel()
    cp.Actor("divide", lambda x: 1 / x, inbox=inbox, outputs=out, mode=mode).start()
    inbox.put_many([1, 0, 2])
    inbox.close()
    with pytest.raises(cp.ActorError, match="divide.*ZeroDivisionError"):
        list(out)


class Unpicklable(Exception):
    """Rebuilding it needs an argument pickle does not keep, so it cannot be unpickled."""

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_unpicklable(record):
    raise Unpicklable(1, 2)


def test_an_exception_that_cannot_be_unpickled_still_arrives_as_text():
    inbox = cp.Channel(mode="process")
    actor = cp.Actor("odd", raise_unpicklable, inbox=inbox, mode="process").start()
    inbox.put("x")
    inbox.close()
    with pytest.raises(cp.ActorError) as caught:
        actor.join(timeout=10)
    assert caught.value.exc_type.endswith("Unpicklable") and caught.value.message == "1/2"
    assert "Unpicklable" in caught.value.traceback


def test_a_process_actor_killed_by_sigkill_is_reported_naming_the_signal():
    inbox = cp.Channel(mode="process")
    victim = cp.Actor("victim", lambda x: x, inbox=inbox, mode="process").start()
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(cp.ActorError, match="SIGKILL") as caught:
        victim.join(timeout=10)
    assert caught.value.exitcode == -signal.SIGKILL


def test_an_actor_that_calls_os_exit_is_reported_with_its_exit_code():
    inbox = cp.Channel(mode="process")
    quitter = cp.Actor("quitter", lambda x: os._exit(3), inbox=inbox, mode="process").start()
    inbox.put(1)
    with pytest.raises(cp.ActorError, match="exited with code 3"):
        quitter.join(timeout=10)


def test_a_failure_stops_the_connected_actors_and_they_report_the_root_cause(mode, channel):
    a, b = channel(100), channel(100)
    source = cp.Actor("endless", source=itertools.count, outputs=a, mode=mode).start()
    cp.Actor("boom", lambda x: 1 / (x - 500), inbox=a, outputs=b, mode=mode).start()
    sink = cp.Actor("sink", lambda x: None, inbox=b, mode=mode).start()
    started = time.monotonic()
    for actor in (source, sink):
        with pytest.raises(cp.ActorError) as caught:
            actor.join(timeout=10)
        assert caught.value.actor == "boom"
        assert actor.state == "cancelled"
    assert time.monotonic() - started < 5


def test_an_actor_needs_a_name():
    with pytest.raises(ValueError, match="name"):
        cp.Actor("", lambda x: x)


def test_an_actor_cannot_be_started_twice(channel, mode):
    actor = cp.Actor("once", source=[1], outputs=channel(), mode=mode).start()
    with pytest.raises(RuntimeError, match="already started"):
        actor.start()


def test_join_before_start_says_to_start_first():
    with pytest.raises(RuntimeError, match="start"):
        cp.Actor("idle", source=[]).join()


def test_a_process_actor_refuses_a_thread_channel_and_says_which():
    with pytest.raises(ValueError, match="'local'.*mode='process'"):
        cp.Actor("p", source=[1], outputs=cp.Channel(name="local"), mode="process").start()


def test_an_actor_with_nothing_to_do_fails_clearly(mode):
    with pytest.raises(cp.ActorError, match="nothing to do"):
        cp.Actor("lazy", mode=mode).start().join(timeout=10)


def paced(records, seconds):
    """A live source: yields a record, then waits, like a sensor or a socket."""
    for record in records:
        yield record
        time.sleep(seconds)


def test_a_record_from_a_pausing_source_is_not_held_back_for_the_next(mode, channel):
    out = channel()
    cp.Actor("live", source=lambda: paced(["first", "second"], 1.0), outputs=out, mode=mode).start()
    started = time.monotonic()
    assert out.get(timeout=5) == "first"
    assert time.monotonic() - started < 0.5


def test_stop_is_noticed_within_about_a_record_of_a_slow_source(mode, channel):
    out = channel()
    source = cp.Actor("sensor", source=lambda: paced(itertools.count(), 0.05), outputs=out, mode=mode).start()
    assert out.get(timeout=5) == 0
    time.sleep(0.3)  # let the source settle into its pace
    asked = time.monotonic()
    source.stop()
    source.join(timeout=5)
    assert time.monotonic() - asked < 1.0


def batches_until_end(ch):
    """Every batch ``ch`` delivers, END left out, until END."""
    batches = []
    while True:
        batch = ch.get_batch(timeout=10)
        ended = batch[-1] is cp.END
        if ended:
            batch = batch[:-1]
        if batch:
            batches.append(batch)
        if ended:
            return batches


class Fan(cp.Actor):
    """Emits ``range(item)`` for each item."""

    def on_receive(self, item):
        for n in range(item):
            self.emit(n)


def test_an_actor_sends_no_batch_larger_than_its_outputs_batch_size(mode):
    inbox, out = cp.Channel(mode=mode), cp.Channel(10, mode="process")  # batch_size 10
    Fan("fan", inbox=inbox, outputs=out, mode=mode).start()
    inbox.put(35)
    inbox.close()
    batches = batches_until_end(out)
    assert [n for batch in batches for n in batch] == list(range(35))
    assert max(len(batch) for batch in batches) <= 10


def test_emitted_counts_each_record_once_however_many_outputs(mode, channel):
    inbox, a, b = channel(), channel(), channel()
    actor = cp.Actor("copy", lambda x: x, inbox=inbox, outputs=[a, b], mode=mode).start()
    inbox.put_many(range(7))
    inbox.close()
    assert list(a) == list(b) == list(range(7))
    actor.join(timeout=10)
    assert actor.statistics().emitted == 7


def test_emitted_counts_whole_batches_as_they_leave_while_the_actor_runs(mode, channel):
    class Burst(cp.Actor):
        def on_receive(self, item):
            for n in range(item):
                self.emit(n)
            while not self.stopping:  # holds the rest (a partial batch) until stopped
                time.sleep(0.01)

    inbox, out = channel(), channel()
    actor = Burst("burst", inbox=inbox, outputs=out, mode=mode).start()
    inbox.put(2500)
    inbox.flush()
    got = []
    while len(got) < 2000:
        got += out.get_batch(timeout=10)
    deadline = time.monotonic() + 5
    while actor.counts.emitted < 2000 and time.monotonic() < deadline:  # counted just after the send
        time.sleep(0.01)
    assert got == list(range(2000)) and actor.counts.emitted == 2000  # the last 500 wait in the outbox
    actor.stop()
    assert got + list(out) == list(range(2500))  # the partial batch left when the actor ended
    actor.join(timeout=10)
    assert (actor.statistics().received, actor.statistics().emitted) == (1, 2500)
