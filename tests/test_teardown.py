"""chronopipe's teardown contract: however a program ends, its actors, pools and manager end too.

Most scenarios run tests/scripts/teardown_pipeline.py in a subprocess, wait for its
``READY {json}`` line (its actors are running by then), end it in some way and check,
with psutil, the exit status and that every descendant it had is gone (a zombie waiting to
be reaped counts as gone). The tests from "in this process" on use this process's runtime.

Every wait polls against a deadline, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiprocess
import psutil
import pytest

import chronopipe as cp
from processes_helper import running

SCRIPT = Path(__file__).parent / "scripts" / "teardown_pipeline.py"

#: Upper bound for the script to start its actors (only reached when something is wrong).
READY_TIMEOUT = 20.0
#: Upper bound for the script to exit after the test ends it ("does not hang").
EXIT_TIMEOUT = 5.0
#: Ctrl-C must end the script promptly.
SIGINT_EXIT_TIMEOUT = 3.0
#: After the script exited, its descendants must be gone within this.
CHILDREN_GONE_TIMEOUT = 1.0
#: After the script was SIGKILLed, its orphaned descendants must end themselves within this.
ORPHANS_GONE_TIMEOUT = 2.0
#: In this process: Runtime.shutdown() must return within this (it waits about 1 s at most).
SHUTDOWN_TIMEOUT = 5.0
POLL = 0.01


# -- helpers ---------------------------------------------------------------------------


def wait_until(condition: Callable[[], Any], timeout: float) -> Any:
    """Poll ``condition`` until it returns something truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL)


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until none of ``procs`` runs; those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = running(procs)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(POLL)


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"pid {p.pid} ({' '.join(p.cmdline())[:80]!r}, status {p.status()})")
        except psutil.Error:
            out.append(f"pid {p.pid}")
    return out


@dataclass
class Script:
    """A running teardown_pipeline.py and what it reported when READY."""

    proc: subprocess.Popen[bytes]
    stderr_path: Path
    ready: dict[str, Any] = field(default_factory=dict)
    descendants: list[psutil.Process] = field(default_factory=list)

    @property
    def actor_pids(self) -> set[int]:
        return {pid for pid in self.ready["actors"].values() if pid is not None}

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def send_line(self) -> None:
        """Let the script go on past its READY (it then ends as its scenario says)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the script alone."""
        self.proc.send_signal(signum)

    def ctrl_c(self) -> None:
        """What Ctrl-C in a terminal does: SIGINT to every process of the script's process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait_exit(self, timeout: float) -> tuple[int, float]:
        """(exit status, seconds it took); fails the test (and kills the script) on a hang."""
        start = time.monotonic()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the script did not exit within {timeout} s (it hung); stderr:\n{self.stderr()}")
        return code, time.monotonic() - start


@pytest.fixture
def start_script(tmp_path: Path) -> Iterator[Callable[[str], Script]]:
    """``start_script(scenario)``: a running teardown_pipeline.py whose actors are running.

    Whatever the test does, nothing it started outlives it.
    """
    started: list[Script] = []

    def start(scenario: str) -> Script:
        stderr_path = tmp_path / f"{scenario}-{len(started)}.stderr"
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(  # in its own process group, like a job started from a shell
                [sys.executable, str(SCRIPT), scenario],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        script = Script(proc, stderr_path)
        started.append(script)
        script.ready = read_ready(script)
        script.descendants = psutil.Process(proc.pid).children(recursive=True)
        missing = script.actor_pids - {p.pid for p in script.descendants}
        assert not missing, f"actor processes {missing} are not children of the script"
        return script

    yield start

    for script in started:
        if script.proc.poll() is None:
            script.proc.kill()
            script.proc.wait()
        for p in running(script.descendants):
            try:
                p.kill()
            except psutil.Error:
                pass
        for stream in (script.proc.stdin, script.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:  # stdin's pipe is broken once the script exited
                    pass


def read_ready(script: Script) -> dict[str, Any]:
    """Wait (with a deadline) for the script's ``READY {json}`` line."""
    assert script.proc.stdout is not None
    fd = script.proc.stdout.fileno()
    deadline = time.monotonic() + READY_TIMEOUT
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no READY line within {READY_TIMEOUT} s; stdout {data!r}; stderr:\n{script.stderr()}")
        if select.select([fd], [], [], min(left, 0.1))[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                code = script.proc.wait(READY_TIMEOUT)
                pytest.fail(f"the script exited ({code}) before READY; stdout {data!r}; stderr:\n{script.stderr()}")
            data += chunk
    line = data.split(b"\n", 1)[0].decode()
    assert line.startswith("READY "), f"unexpected first line {line!r}; stderr:\n{script.stderr()}"
    return json.loads(line.removeprefix("READY "))


def assert_no_descendant_left(script: Script, timeout: float = CHILDREN_GONE_TIMEOUT) -> None:
    assert script.descendants, "the script had no child process to check"
    left = wait_gone(script.descendants, timeout)
    assert not left, f"still running {timeout} s after the script ended: {describe(left)}"


# -- 1. normal exit: the atexit teardown ------------------------------------------------
def test_normal_exit_with_running_actors_exits_0(start_script: Callable[[str], Script]) -> None:
    script = start_script("exit")
    script.send_line()
    code, _ = script.wait_exit(EXIT_TIMEOUT)
    assert code == 0, script.stderr()


def test_normal_exit_with_running_actors_leaves_no_child_process(start_script: Callable[[str], Script]) -> None:
    script = start_script("exit")
    script.send_line()
    script.wait_exit(EXIT_TIMEOUT)
    assert_no_descendant_left(script)


# -- 2. an uncaught exception ------------------------------------------------------------
def test_uncaught_exception_with_running_actors_exits_1(start_script: Callable[[str], Script]) -> None:
    script = start_script("raise")
    script.send_line()
    code, _ = script.wait_exit(EXIT_TIMEOUT)
    assert code == 1, script.stderr()
    assert "RuntimeError: the script failed while its actors were running" in script.stderr()


def test_uncaught_exception_with_running_actors_leaves_no_child_process(
    start_script: Callable[[str], Script],
) -> None:
    script = start_script("raise")
    script.send_line()
    script.wait_exit(EXIT_TIMEOUT)
    assert_no_descendant_left(script)


# -- 3. SIGINT (Ctrl-C) ------------------------------------------------------------------
def test_sigint_raises_keyboard_interrupt_that_ends_the_script_promptly(
    start_script: Callable[[str], Script],
) -> None:
    # The runtime tears down, then chains to Python's handler: KeyboardInterrupt propagates.
    # CPython (3.8+) ends a program with an uncaught KeyboardInterrupt by SIGINT itself, after
    # printing the traceback: status -SIGINT here, 130 in a shell (not 1).
    script = start_script("sigint")
    script.signal(signal.SIGINT)
    code, took = script.wait_exit(EXIT_TIMEOUT)
    assert code == -signal.SIGINT, script.stderr()
    assert "KeyboardInterrupt" in script.stderr()
    assert took < SIGINT_EXIT_TIMEOUT


def test_sigint_caught_as_keyboard_interrupt_lets_the_script_exit_130_promptly(
    start_script: Callable[[str], Script],
) -> None:
    script = start_script("sigint-130")
    script.signal(signal.SIGINT)
    code, took = script.wait_exit(EXIT_TIMEOUT)
    assert code == 130, script.stderr()
    assert took < SIGINT_EXIT_TIMEOUT


def test_sigint_leaves_no_child_process(start_script: Callable[[str], Script]) -> None:
    script = start_script("sigint")
    script.signal(signal.SIGINT)
    script.wait_exit(EXIT_TIMEOUT)
    assert_no_descendant_left(script)


def test_ctrl_c_to_the_whole_process_group_raises_keyboard_interrupt_promptly(
    start_script: Callable[[str], Script],
) -> None:
    script = start_script("sigint")
    script.ctrl_c()
    code, took = script.wait_exit(EXIT_TIMEOUT)
    assert code == -signal.SIGINT, script.stderr()
    assert "KeyboardInterrupt" in script.stderr()
    assert took < SIGINT_EXIT_TIMEOUT


def test_ctrl_c_to_the_whole_process_group_leaves_no_child_process(start_script: Callable[[str], Script]) -> None:
    script = start_script("sigint")
    script.ctrl_c()
    script.wait_exit(EXIT_TIMEOUT)
    assert_no_descendant_left(script)


# -- 4. SIGTERM ------------------------------------------------------------------------
def test_sigterm_ends_the_script_by_sigterm(start_script: Callable[[str], Script]) -> None:
    script = start_script("sigterm")
    script.signal(signal.SIGTERM)
    code, _ = script.wait_exit(EXIT_TIMEOUT)
    assert code == -signal.SIGTERM, script.stderr()  # shell status 143


def test_sigterm_leaves_no_child_process(start_script: Callable[[str], Script]) -> None:
    script = start_script("sigterm")
    script.signal(signal.SIGTERM)
    script.wait_exit(EXIT_TIMEOUT)
    assert_no_descendant_left(script)


# -- 5. SIGKILL of the parent: the children end themselves --------------------------------
def role_of(script: Script, p: psutil.Process) -> str:
    if p.pid in script.actor_pids:
        return "actor"
    if p.pid == script.ready["manager"]:
        return "manager"
    return "pool worker"


@pytest.mark.parametrize("role", ["actor", "pool worker", "manager"])
def test_sigkill_of_the_parent_lets_orphaned_children_exit_by_themselves(
    start_script: Callable[[str], Script], role: str
) -> None:
    script = start_script("sigkill")
    mine = [p for p in script.descendants if role_of(script, p) == role]
    assert mine, f"the script had no {role} process; its children: {describe(script.descendants)}"
    script.signal(signal.SIGKILL)
    code, _ = script.wait_exit(EXIT_TIMEOUT)
    assert code == -signal.SIGKILL
    left = wait_gone(mine, ORPHANS_GONE_TIMEOUT)
    assert not left, f"{role} processes still running {ORPHANS_GONE_TIMEOUT} s after the parent died: {describe(left)}"


# -- 6. exit with a full channel ---------------------------------------------------------
@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param("full-process", id="process-actor-blocked-on-channel-capacity"),
        pytest.param("full-pipe", id="process-actor-blocked-in-pipe-write"),
        pytest.param("full-thread", id="thread-actor-blocked-on-channel-capacity"),
    ],
)
def test_exit_with_a_producer_blocked_on_a_full_channel_does_not_hang(
    start_script: Callable[[str], Script], scenario: str
) -> None:
    script = start_script(scenario)
    script.send_line()
    code, _ = script.wait_exit(EXIT_TIMEOUT)
    assert code == 0, script.stderr()


# -- in this process: shutdown and reuse -----------------------------------------------
def shutdown(rt: cp.Runtime) -> None:
    """``rt.shutdown()``, failing the test instead of hanging it when it does not return in time.

    On a hang, this process's child processes are killed, which lets the stuck shutdown
    finish, so that the next tests in this worker find a usable runtime.
    """
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rt.shutdown()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, name="test-shutdown", daemon=True)
    thread.start()
    if not done.wait(SHUTDOWN_TIMEOUT):
        frame = sys._current_frames().get(thread.ident or 0)
        where = "".join(traceback.format_stack(frame)) if frame is not None else "?"
        children = psutil.Process().children(recursive=True)
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
        done.wait(SHUTDOWN_TIMEOUT)
        pytest.fail(
            f"Runtime.shutdown() did not return within {SHUTDOWN_TIMEOUT} s (children then: {describe(children)}); "
            f"it was stuck in:\n{where}"
        )
    thread.join(SHUTDOWN_TIMEOUT)
    if errors:
        raise errors[0]


@pytest.fixture
def runtime() -> Iterator[cp.Runtime]:
    """The runtime, shut down before and after the test; this process's signal handlers restored."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    rt = cp.Runtime()
    shutdown(rt)
    try:
        yield rt
    finally:
        shutdown(rt)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def square(x: int) -> int:
    return x * x


# -- 7. a second run after shutdown ------------------------------------------------------
def test_process_pool_after_shutdown_is_a_new_pool(runtime: cp.Runtime) -> None:
    first = runtime.process_pool()
    shutdown(runtime)
    assert runtime.process_pool() is not first


def test_new_process_pool_after_shutdown_runs_tasks(runtime: cp.Runtime) -> None:
    runtime.process_pool()
    shutdown(runtime)
    assert runtime.process_pool().map(square, [1, 2, 3]) == [1, 4, 9]


def test_thread_pool_after_shutdown_is_a_new_pool(runtime: cp.Runtime) -> None:
    first = runtime.thread_pool()
    shutdown(runtime)
    assert runtime.thread_pool() is not first


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_map_works_after_shutdown(runtime: cp.Runtime, pool: str) -> None:
    assert runtime.map(square, [1, 2, 3], mode=pool) == [1, 4, 9]
    shutdown(runtime)
    assert runtime.map(square, [1, 2, 3], mode=pool) == [1, 4, 9]


# -- 8. shutdown leaves no child process and no thread behind ---------------------------
def start_everything(runtime: cp.Runtime, hosting: str) -> list[cp.Actor]:
    """A running source -> map -> sink pipeline (actors on ``hosting``), both pools and the manager.

    ``mixed``: the source and sink are threads here, the map a process (so this process
    also runs the channels' linger thread).
    """
    arrived = multiprocess.Event()
    kind = "thread" if hosting == "thread" else "process"
    a = cp.Channel(maxsize=1000, mode=kind, name="a")
    b = cp.Channel(maxsize=1000, mode=kind, name="b")
    edge = "thread" if hosting in ("thread", "mixed") else "process"
    middle = "thread" if hosting == "thread" else "process"

    def numbers() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    actors = [
        cp.Actor("source", source=numbers, outputs=a, mode=edge).start(),
        cp.Actor("map", lambda r: r + 1, inbox=a, outputs=b, mode=middle).start(),
        cp.Actor("sink", lambda r: arrived.set(), inbox=b, mode=edge).start(),
    ]
    assert runtime.map(square, [1, 2], mode="process") == [1, 4]
    assert runtime.map(square, [1, 2], mode="thread") == [1, 4]
    runtime.manager().dict()
    assert arrived.wait(READY_TIMEOUT), "no record reached the sink"
    assert all(actor.alive for actor in actors)
    return actors


HOSTINGS = ["thread", "process", "mixed"]
#: Names of the threads of the pathos pools (Python names a thread after its target).
POOL_THREAD_NAMES = ("(worker)", "(_handle_workers)", "(_handle_tasks)", "(_handle_results)")


def is_runtime_thread(t: threading.Thread) -> bool:
    return t.name.startswith("chronopipe") or t.name.endswith(POOL_THREAD_NAMES)


@pytest.mark.parametrize("hosting", HOSTINGS)
def test_shutdown_leaves_no_child_process(runtime: cp.Runtime, hosting: str) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    start_everything(runtime, hosting)
    assert {p.pid for p in me.children(recursive=True)} - before, "nothing to check: no child process started"
    shutdown(runtime)

    def left() -> list[psutil.Process]:
        # Every child: this process starts none but the runtime's. Zombies count too: the
        # runtime must reap what it started.
        return me.children(recursive=True)

    assert wait_until(lambda: not left(), CHILDREN_GONE_TIMEOUT), f"left behind: {describe(left())}"


@pytest.mark.parametrize("hosting", HOSTINGS)
def test_shutdown_leaves_no_thread_of_the_runtime(runtime: cp.Runtime, hosting: str) -> None:
    before = set(threading.enumerate())
    start_everything(runtime, hosting)
    assert set(threading.enumerate()) - before, "nothing to check: no thread started"
    shutdown(runtime)

    def left() -> list[threading.Thread]:
        # New threads, and the runtime's threads whenever they started.
        return [t for t in threading.enumerate() if t.is_alive() and (t not in before or is_runtime_thread(t))]

    assert wait_until(lambda: not left(), CHILDREN_GONE_TIMEOUT), f"left behind: {[t.name for t in left()]}"


def test_shutdown_with_a_thread_actor_blocked_on_a_full_process_channel_kills_no_runtime_thread(
    runtime: cp.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The source thread, then the linger thread, wait to send to the full channel when
    # shutdown() aborts it with an ActorError; neither may die of it (the linger thread did,
    # before channels.pipe._quiet_flush caught every Exception).
    died: list[str] = []
    monkeypatch.setattr(
        threading, "excepthook", lambda args: died.append(f"{args.thread.name}: {args.exc_type.__name__}")
    )
    made = [0]

    def numbers() -> Iterator[int]:
        while True:
            made[0] += 1
            yield made[0]

    full = cp.Channel(maxsize=100, mode="process", name="full")
    cp.Actor("source", source=numbers, outputs=full, mode="thread").start()
    cp.Actor("slow-sink", lambda r: time.sleep(60), inbox=full, mode="process").start()
    # The channel is full once the source stops making records (the sink takes one batch, then sleeps).
    stuck = {"last": -1, "since": time.monotonic()}

    def source_stuck() -> bool:
        now = time.monotonic()
        if made[0] != stuck["last"]:
            stuck["last"], stuck["since"] = made[0], now
            return False
        return made[0] > full.maxsize and now - stuck["since"] >= 0.2

    assert wait_until(source_stuck, READY_TIMEOUT), "the channel did not fill"
    shutdown(runtime)
    assert not died, f"runtime threads died of an exception during shutdown: {died}"
