"""Nothing hangs: a worker or actor that dies, busy or idle, becomes an error within ~1 s, and
the program can still be ended by SIGTERM, leaving no process behind.

The fault matrix runs tests/scripts/fault_matrix.py (one subprocess per cell): entry points
(``Runtime().map``, the seed's ``MultiProcessing().GlobalProcessPool().map``, an actor chain,
a processes-mode Pipeline) x faults (SIGKILL of an idle worker, of a busy one, ``os._exit`` in
a task, an exception that cannot be unpickled). Every wait has a deadline, so a hang fails the
cell instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import multiprocess
import psutil
import pytest

import chronopipe as cp
from processes_helper import kill_all, running

SCRIPTS = Path(__file__).parent / "scripts"
#: The fault must become an outcome (an ActorError, or a finished map) within this (goal: ~1 s).
DETECT_TIMEOUT = 5.0
#: SIGTERM must end the script within this.
SIGTERM_TIMEOUT = 3.0
START_TIMEOUT = 20.0




class Cell:
    """A running fault_matrix.py: read its lines with deadlines; nothing it started outlives it."""

    def __init__(self, entry: str, fault: str, stderr: Path) -> None:
        self.stderr_path = stderr
        with stderr.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(SCRIPTS / "fault_matrix.py"), entry, fault],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        self.me = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {}
        self._buf = b""
        self.note_children()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def note_children(self) -> None:
        try:
            for p in self.me.children(recursive=True):
                self.seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass

    def line(self, prefix: str, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._buf:
            self.note_children()
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {prefix} line within {timeout} s (it hung); stdout {self._buf!r}; "
                            f"stderr:\n{self.stderr()}")
            if select.select([fd], [], [], min(left, 0.05))[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    pytest.fail(f"the script ended ({self.proc.wait(5)}) before {prefix}; stderr:\n{self.stderr()}")
                self._buf += chunk
        text, self._buf = self._buf.split(b"\n", 1)
        line = text.decode()
        assert line.startswith(prefix), f"expected {prefix}, got {line!r}; stderr:\n{self.stderr()}"
        return line.removeprefix(prefix).strip()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def cleanup(self) -> None:
        kill_all(self.proc, list(self.seen.values()))
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass


ENTRIES = ["runtime-map", "seed-map", "actors", "pipeline"]
FAULTS = ["kill-idle", "kill-busy", "os-exit", "unpicklable"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("entry", ENTRIES)
def test_a_dead_or_failing_worker_is_an_error_within_a_second_and_sigterm_still_ends_everything(
    entry: str, fault: str, tmp_path: Path
) -> None:
    cell = Cell(entry, fault, tmp_path / "stderr")
    try:
        action, pid_text, *go = cell.line("ARMED", START_TIMEOUT).split()
        pid = int(pid_text)
        if action == "kill":
            os.kill(pid, signal.SIGKILL)
        faulted = time.monotonic()
        if go == ["go"]:
            try:
                psutil.Process(pid).wait(DETECT_TIMEOUT)
            except psutil.NoSuchProcess:
                pass
            cell.send("go")
        outcome = json.loads(cell.line("OUTCOME", DETECT_TIMEOUT + 1.0))
        took = time.monotonic() - faulted
        assert took < DETECT_TIMEOUT, f"the fault took {took:.2f} s to surface"
        pool = entry.endswith("map")
        if fault == "kill-idle" and pool:  # the dead idle worker was replaced; the map finished
            assert outcome == {"kind": "ok", "result": list(range(20, 0, -1)), "seconds": outcome["seconds"]}
        else:
            assert outcome["kind"] == "error", outcome
            text = outcome["message"]
            if fault == "unpicklable":
                assert outcome["exc_type"].endswith("NeedsTwoArgs") and "55" in text
            else:
                assert outcome["exc_type"] in ("BrokenProcessPool", "ProcessKilled", "ProcessExited"), outcome
                assert ("SIGKILL" if fault.startswith("kill") else "code 3") in text
                assert f"pid {pid}" in text  # names the worker / actor process that died
            if not pool and fault != "unpicklable":  # how far each actor got, what was lost
                assert "work" in text and "in flight (lost):" in text, text
                if entry == "pipeline":
                    assert "work[0] received" in text and "work[1] received" in text, text
        cell.note_children()  # (in a fast cell, all may have ended already)
        cell.proc.send_signal(signal.SIGTERM)
        try:
            code = cell.proc.wait(SIGTERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM did not end the script within {SIGTERM_TIMEOUT} s; stderr:\n{cell.stderr()}")
        assert code in (-signal.SIGTERM, 143), cell.stderr()
        deadline = time.monotonic() + 1.0
        while running(list(cell.seen.values())) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not running(list(cell.seen.values())), "processes left after SIGTERM"
    finally:
        cell.cleanup()


def test_a_user_pathos_pool_made_after_the_runtime_started_exits_cleanly_50_times_in_a_row() -> None:
    done = subprocess.run([sys.executable, str(SCRIPTS / "user_pool_loop.py"), "50"], capture_output=True,
                          timeout=60, start_new_session=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout.strip() == b"DONE", done.stderr.decode()[-4000:]


def test_a_user_pool_terminated_while_its_workers_are_still_forking_ends_all_of_them() -> None:
    # The SIGTERM reaches workers still in their after-fork hooks: with the runtime's handlers
    # inherited, CPython dropped it and terminate() joined a live worker forever (signals.py).
    done = subprocess.run([sys.executable, str(SCRIPTS / "user_pool_loop.py"), "100", "--terminate-at-once"],
                          capture_output=True, timeout=60, start_new_session=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout.strip() == b"DONE", done.stderr.decode()[-4000:]


# -- in this process -----------------------------------------------------------------------
def test_a_process_not_forked_by_the_runtime_gets_the_default_signal_handlers() -> None:
    cp.Runtime()  # installs the handlers here
    q = multiprocess.get_context("fork").SimpleQueue()

    def report() -> None:
        q.put((signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
               signal.getsignal(signal.SIGINT) is signal.default_int_handler))

    p = multiprocess.get_context("fork").Process(target=report)
    p.start()
    p.join(10)
    assert q.get() == (True, True)


def test_process_actor_counts_are_live_while_it_runs_and_final_after_it_is_killed() -> None:
    out = cp.Channel(mode="process", name="out", maxsize=100_000)

    def slow_source():
        yield from range(5000)
        time.sleep(60)

    src = cp.Actor("src", source=slow_source, outputs=out, mode="process").start()
    deadline = time.monotonic() + 10
    while src.statistics().emitted < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    live = src.statistics()
    assert live.state == "running" and live.emitted >= 2000  # live: read while the actor still runs
    time.sleep(0.2)
    before_kill = src.statistics().emitted
    os.kill(src.pid, signal.SIGKILL)
    with pytest.raises(cp.ActorError, match="SIGKILL") as caught:
        src.join(5)
    final = src.statistics()
    assert final.state == "failed" and final.emitted == before_kill  # final after the kill
    assert caught.value.progress == {"src": (0, before_kill)}


def test_a_killed_actors_error_says_how_far_each_actor_got_and_how_many_records_were_lost() -> None:
    a = cp.Channel(mode="process", name="a", maxsize=100_000)
    b = cp.Channel(mode="process", name="b", maxsize=100_000)

    def stuck_on_500(x: int) -> int:
        if x == 500:
            time.sleep(60)
        return x

    source = cp.Actor("source", source=range(2000), outputs=a, mode="process").start()
    work = cp.Actor("work", stuck_on_500, inbox=a, outputs=b, mode="process").start()
    sink = cp.Actor("sink", lambda r: None, inbox=b, mode="process").start()
    deadline = time.monotonic() + 10
    while source.statistics().emitted < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(work.pid, signal.SIGKILL)
    with pytest.raises(cp.ActorError) as caught:
        sink.join(5)
    err = caught.value
    assert err.actor == "work" and err.progress is not None and err.in_flight is not None
    received, emitted = err.progress["work"]
    assert err.progress["source"] == (0, 2000)
    assert received < 2000 and err.progress["sink"][0] == emitted
    assert err.in_flight == {"a": 2000 - received, "b": 0} and err.lost == 2000 - received
    assert f"work received {received} emitted {emitted}" in str(err)


def test_what_a_killed_middle_actor_held_is_counted_as_lost():
    """source -> scale -> slow total; SIGKILL scale: every record the source emitted is either
    received by total or counted lost (in flight, or in the dead actor's hands)."""
    raw = cp.Channel(mode="process", name="raw")
    scaled = cp.Channel(mode="process", name="scaled")

    class Total(cp.Actor):
        def on_receive(self, record):
            time.sleep(0.00001)

    cp.Actor("source", source=lambda: ({"v": i} for i in range(3_000_000)), outputs=raw, mode="process").start()
    scale = cp.Actor("scale", lambda r: r, inbox=raw, outputs=scaled, mode="process").start()
    total = Total("total", inbox=scaled, mode="process").start()
    deadline = time.monotonic() + 10
    while total.statistics().received < 2_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(scale.pid, signal.SIGKILL)
    with pytest.raises(cp.ActorError) as failed:
        total.join(timeout=DETECT_TIMEOUT)
    progress = failed.value.progress
    assert progress["source"][1] - progress["total"][0] == failed.value.lost, (progress, failed.value.in_flight)
