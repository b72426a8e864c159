"""Nothing hangs in the applications either: a reader, check host or Manager server killed mid-run
is exit status 3 (or an ActorError) within seconds, with a short summary on stderr saying which
actor died, how far each actor got and what was lost, no traceback and no process left behind;
and SIGTERM ends a running application within 3 s.

Each cell runs the application as a subprocess on inputs big enough to last seconds (3 CSV files
of 1.5M rows, captures of ~300k packets, generated once per module) and watches its children
with psutil. Every wait has a deadline, so a hang fails the cell instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from chronopipe import cli
from chronopipe.actors import ActorError
from chronopipe.capture import CaptureWriter, read_frames
from chronopipe.capture.checkhost import CheckHost
from chronopipe.capture.validate import _host_death
from chronopipe.channels import ChannelBroken, ProcessChannel
from chronopipe.channels.pipe import LINGER
from chronopipe.graph.errors import from_actor_error
from processes_helper import kill_all, running

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "scripts"
#: A fault must end the run within this (goal: ~1 s; the machine is noisy).
DETECT_TIMEOUT = 5.0
#: SIGTERM must end a running application within this.
SIGTERM_TIMEOUT = 3.0
START_TIMEOUT = 20.0
#: How long the application runs before the fault or the signal.
RUN_BEFORE = 0.3
CSV_ROWS = 1_500_000
CAPTURE_REPEATS = 25  # copies of modbusBig.pcap (13,622 packets) in each generated capture

latencies: dict[str, float] = {}  # cell: seconds from the kill to the exit (printed with -s)


# -- inputs --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_csvs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """3 sorted CSV files of CSV_ROWS rows each, interleaving by date."""
    where = tmp_path_factory.mktemp("csv")
    paths = []
    for i, name in enumerate(("a.csv", "b.csv", "c.csv")):
        path = where / name
        with path.open("w") as f:
            f.write("date,value\n")
            f.writelines(f"{1_400_000_000 + i + 3 * n},{n}\n" for n in range(CSV_ROWS))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def big_captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """3 pcap files of CAPTURE_REPEATS copies of a bundled capture, one after the other in time."""
    frames = list(read_frames(ROOT / "tests/data/captures/bulk/modbusBig.pcap"))
    span = frames[-1][0] - frames[0][0] + 1_000_000_000
    where = tmp_path_factory.mktemp("captures")
    paths = []
    for k, name in enumerate(("a.pcap", "b.pcap", "c.pcap")):
        path = where / name
        with CaptureWriter(path) as out:
            index = 0
            for copy in range(CAPTURE_REPEATS):
                shift = copy * span + k * 1000
                for ts, interface, _index, caplen, wirelen, linktype, data in frames:
                    index += 1
                    out.write((ts + shift, "tap", interface, index, caplen, wirelen, linktype, data))
        paths.append(path)
    return paths


def command(app: str, csvs: list[Path], captures: list[Path], tmp_path: Path) -> tuple[list[str], list[Path]]:
    """The command line of ``app`` and its inputs (one reader process each)."""
    cli = [sys.executable, "-m", "chronopipe.cli"]
    if app == "main.py":
        return [sys.executable, str(ROOT / "main.py"), "--files", *map(str, csvs)], csvs
    if app == "merge":
        return [*cli, "merge", *map(str, captures), "-w", str(tmp_path / "merged.pcapng")], captures
    if app == "validate":
        return [*cli, "validate", *map(str, captures[:2]), "--check-processes", "1"], captures[:2]
    raise ValueError(app)


# -- running an application ----------------------------------------------------------------------


@dataclass
class App:
    """A running application; every process it started is noted, and none outlives the test."""

    argv: list[str]
    inputs: list[Path]
    tmp_path: Path
    proc: subprocess.Popen = field(init=False)
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with (self.tmp_path / "stderr").open("wb") as err, (self.tmp_path / "stdout").open("wb") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=ROOT,
                                         start_new_session=True)
        self.me = psutil.Process(self.proc.pid)

    def stderr(self) -> str:
        return (self.tmp_path / "stderr").read_text(errors="replace")

    def note_children(self) -> list[psutil.Process]:
        try:
            children = self.me.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in children:
            self.seen.setdefault(p.pid, p)
        return children

    def readers(self) -> dict[Path, psutil.Process]:
        """Once every input is open in a child process: {input: the reader process}."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = {}
            for child in self.note_children():
                try:
                    opened = {f.path for f in child.open_files()}
                except psutil.Error:
                    continue
                found.update({path: child for path in self.inputs if str(path) in opened})
            if len(found) == len(self.inputs):
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"the application ended ({self.proc.returncode}) before reading; {self.stderr()}")
            time.sleep(0.02)
        pytest.fail(f"the readers did not open their files within {START_TIMEOUT} s; stderr:\n{self.stderr()}")

    def wait(self, timeout: float, what: str) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what}: the application still runs after {timeout} s (it hung); stderr:\n{self.stderr()}")

    def left(self, grace: float = 1.0) -> list[psutil.Process]:
        deadline = time.monotonic() + grace
        while running(list(self.seen.values())) and time.monotonic() < deadline:
            time.sleep(0.02)
        return running(list(self.seen.values()))

    def cleanup(self) -> None:
        kill_all(self.proc, list(self.seen.values()))


@dataclass
class Killed:
    """What an application did after one of its processes was SIGKILLed."""

    status: int
    seconds: float  #: from the kill to the application's exit
    stderr: str
    victim: str  #: the name of the actor killed
    pid: int
    left: list[psutil.Process]


_killed: dict[tuple[str, str], Killed] = {}


def kill_one(app: str, victim: str, csvs: list[Path], captures: list[Path], tmp_path: Path) -> Killed:
    """Run ``app``, SIGKILL its ``victim`` (reader: the first input's reader; checkhost: the check
    host) RUN_BEFORE seconds after every reader opened its file; once per cell per test process."""
    cell = (app, victim)
    if cell in _killed:
        return _killed[cell]
    argv, inputs = command(app, csvs, captures, tmp_path)
    run = App(argv, inputs, tmp_path)
    try:
        readers = run.readers()
        time.sleep(RUN_BEFORE)
        if victim == "reader":
            target, name = readers[inputs[0]], inputs[0].name
        else:
            hosts = [c for c in run.note_children() if c.pid not in {r.pid for r in readers.values()}]
            assert len(hosts) == 1, hosts
            target, name = hosts[0], "validate-checks-1"
        assert run.proc.poll() is None, "the run ended before the fault: make the inputs bigger"
        target.kill()
        killed_at = time.monotonic()
        status = run.wait(DETECT_TIMEOUT, f"{victim} killed")
        took = time.monotonic() - killed_at
        latencies[f"{app} {victim}"] = took
        _killed[cell] = Killed(status, took, run.stderr(), name, target.pid, run.left())
        return _killed[cell]
    finally:
        run.cleanup()


KILL_CELLS = [("main.py", "reader"), ("merge", "reader"), ("validate", "reader"), ("validate", "checkhost")]


@pytest.mark.parametrize(("app", "victim"), KILL_CELLS)
def test_a_killed_reader_or_check_host_ends_the_application_with_status_3_within_seconds(
    app: str, victim: str, big_csvs: list[Path], big_captures: list[Path], tmp_path: Path
) -> None:
    killed = kill_one(app, victim, big_csvs, big_captures, tmp_path)
    assert killed.status == 3, killed.stderr
    assert killed.seconds < DETECT_TIMEOUT


@pytest.mark.parametrize(("app", "victim"), KILL_CELLS)
def test_a_killed_reader_or_check_host_leaves_no_process_and_no_traceback(
    app: str, victim: str, big_csvs: list[Path], big_captures: list[Path], tmp_path: Path
) -> None:
    killed = kill_one(app, victim, big_csvs, big_captures, tmp_path)
    assert not killed.left, f"processes left: {killed.left}"
    assert "Traceback" not in killed.stderr and "--- traceback" not in killed.stderr, killed.stderr


@pytest.mark.parametrize(("app", "victim"), KILL_CELLS)
def test_the_failure_summary_says_which_actor_died_of_what_and_how_far_each_actor_got(
    app: str, victim: str, big_csvs: list[Path], big_captures: list[Path], tmp_path: Path
) -> None:
    killed = kill_one(app, victim, big_csvs, big_captures, tmp_path)
    lines = killed.stderr.splitlines()
    prog = "chronopipe merge-csv" if app == "main.py" else f"chronopipe {app}"
    summary = [line for line in lines if line.startswith(f"{prog}: actor ")]
    assert len(summary) == 1 and len(lines) <= 3, killed.stderr  # merge adds "... not written"
    reason, *counts = summary[0].removeprefix(f"{prog}: ").split("; ")
    assert reason == f"actor '{killed.victim}' died (killed by SIGKILL, pid {killed.pid})"
    assert counts[0].startswith(f"progress: {killed.victim} "), summary[0]
    assert re.fullmatch(r"progress: [^;]+ (received|emitted) [\d,]+(, emitted [\d,]+)?", counts[0]), summary[0]


@pytest.mark.parametrize(("app", "victim"), [
    ("main.py", "reader"),
    ("merge", "reader"),
    ("validate", "reader"),
    ("validate", "checkhost"),
])
def test_the_failure_summary_counts_the_merge_and_the_records_lost_in_flight(
    app: str, victim: str, big_csvs: list[Path], big_captures: list[Path], tmp_path: Path
) -> None:
    killed = kill_one(app, victim, big_csvs, big_captures, tmp_path)
    merge = "validate-merge" if app == "validate" else "merge"
    assert f"; {merge} received " in killed.stderr, killed.stderr
    assert re.search(r"; in flight \(lost\): [\d,]+$", killed.stderr.strip()), killed.stderr


@pytest.mark.parametrize("app", ["main.py", "merge", "validate"])
def test_sigterm_ends_a_running_application_within_3_s_leaving_no_process(
    app: str, big_csvs: list[Path], big_captures: list[Path], tmp_path: Path
) -> None:
    run = App(*command(app, big_csvs, big_captures, tmp_path), tmp_path)
    try:
        run.readers()
        time.sleep(RUN_BEFORE)
        assert run.proc.poll() is None, "the run ended before the signal: make the inputs bigger"
        run.proc.send_signal(signal.SIGTERM)
        status = run.wait(SIGTERM_TIMEOUT, "SIGTERM")
        assert status in (-signal.SIGTERM, 143), run.stderr()
        assert not run.left(), "processes left after SIGTERM"
        assert "Traceback" not in run.stderr(), run.stderr()
    finally:
        run.cleanup()


# -- a Manager's server killed under a multiplexer or an actor ------------------------------------
def read_line(proc: subprocess.Popen, prefix: str, timeout: float, buf: bytearray, err: Path) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {prefix} line within {timeout} s (it hung); stderr:\n{err.read_text()[-3000:]}")
        if select.select([proc.stdout], [], [], min(left, 0.05))[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"the script ended ({proc.wait(5)}) before {prefix}; stderr:\n{err.read_text()[-3000:]}")
            buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    assert line.decode().startswith(prefix), line
    return line.decode().removeprefix(prefix).strip()


@pytest.mark.parametrize("consumer", ["multiplexer", "actor"])
@pytest.mark.parametrize("manager", ["runtime", "seed"])
def test_a_killed_manager_server_is_an_actor_error_within_seconds_and_sigterm_still_ends_everything(
    manager: str, consumer: str, tmp_path: Path
) -> None:
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, str(SCRIPTS / "manager_fault.py"), manager, consumer],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    buf = bytearray()
    seen: list[psutil.Process] = []
    try:
        server = int(read_line(proc, "ARMED", START_TIMEOUT, buf, err))
        seen = psutil.Process(proc.pid).children(recursive=True)
        os.kill(server, signal.SIGKILL)
        killed_at = time.monotonic()
        outcome = json.loads(read_line(proc, "OUTCOME", DETECT_TIMEOUT + 1.0, buf, err))
        took = time.monotonic() - killed_at
        latencies[f"manager {manager} {consumer}"] = took
        assert took < DETECT_TIMEOUT
        assert outcome["kind"] == "error" and outcome["actor"] == ("merge" if consumer == "multiplexer" else "consume")
        assert "Manager server is gone" in outcome["message"], outcome
        assert outcome["progress"][outcome["actor"]][0] >= 100, outcome  # it had taken records
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(SIGTERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM did not end the script within {SIGTERM_TIMEOUT} s; stderr:\n{err.read_text()}")
        assert status in (-signal.SIGTERM, 143), err.read_text()
        deadline = time.monotonic() + 1.0
        while running(seen) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not running(seen), "processes left after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in running(seen):
            p.kill()
        for stream in (proc.stdin, proc.stdout):
            stream.close()  # type: ignore[union-attr]


# -- in this process -----------------------------------------------------------------------------
def test_a_node_error_keeps_how_far_each_actor_got_and_what_was_lost() -> None:
    err = ActorError("work[1]", "ProcessKilled", "the process was killed by signal SIGKILL", exitcode=-9,
                     progress={"source": (0, 2000), "work[1]": (700, 650)}, in_flight={"a": 1300, "b": 0})
    renamed = from_actor_error(err, "work")
    assert renamed.actor == "work"
    assert renamed.progress == {"source": (0, 2000), "work[1]": (700, 650)}
    assert renamed.in_flight == {"a": 1300, "b": 0} and renamed.lost == 1300


def test_a_check_host_killed_under_a_send_is_reported_as_its_death_not_as_a_broken_pipe() -> None:
    host = CheckHost("validate-checks-1", [], lambda packet: packet).start()
    os.kill(host.pid, signal.SIGKILL)  # type: ignore[arg-type]
    broken = ChannelBroken("channel 'validate-checks-1.in': the reader is gone ([Errno 32] Broken pipe)")
    died = _host_death(broken, [host])  # as the main thread sees it, before the runtime noticed the death
    assert isinstance(died, ActorError) and died.actor == "validate-checks-1" and died.exc_type == "ProcessKilled"


def test_a_broken_channel_that_ends_a_command_is_one_line_and_exit_status_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = ChannelBroken("channel 'validate-checks-1.in': the reader is gone ([Errno 32] Broken pipe)")
    assert cli._failed(None, broken) == 3
    assert capsys.readouterr().err == f"chronopipe: {broken}\n"


class _ClosedMidSend:
    """A pipe end that ``abort()`` closes while a batch is being written (what the runtime does
    when the reader dies): multiprocess's Connection then fails with a TypeError (its handle is None)."""

    def __init__(self, channel: ProcessChannel, reason: BaseException) -> None:
        self.channel, self.reason, self.real, self.closed = channel, reason, channel._writer, False

    def send_bytes(self, data: bytes) -> None:
        self.channel.abort(self.reason)
        raise TypeError("'NoneType' object cannot be interpreted as an integer")

    def close(self) -> None:
        self.closed = True
        self.real.close()


def test_a_channel_aborted_in_the_middle_of_a_send_raises_the_reason_for_the_abort() -> None:
    ch = ProcessChannel(name="hosted.in")
    died = ActorError("host", "ProcessKilled", "the process was killed by signal SIGKILL", exitcode=-9)
    ch._writer = _ClosedMidSend(ch, died)
    with pytest.raises(ActorError) as caught:
        ch.put_many(list(range(ch.batch_size)))
    assert caught.value is died


def _blocked_signals(thread: threading.Thread) -> set[int]:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def test_the_channels_linger_thread_leaves_sigint_and_sigterm_to_the_main_thread() -> None:
    LINGER.stop()  # a fresh linger thread, started by the next partial batch
    ch = ProcessChannel(name="lonely")
    try:
        ch.put("record")  # a partial batch: the linger thread starts to send it
        thread = LINGER.thread()
        assert thread is not None and thread.is_alive()
        assert {signal.SIGINT, signal.SIGTERM} <= _blocked_signals(thread)
        assert ch.get(timeout=5) == "record"
    finally:
        ch.abort()


@pytest.fixture(scope="module", autouse=True)
def report_latencies():
    yield
    if latencies:
        print("\ndetection latencies (s): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(latencies.items())))
