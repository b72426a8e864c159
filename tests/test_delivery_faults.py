"""The fault matrix of issue 17: never a hang, one clear error naming the node, nothing left behind.

A two-node pipeline ``work | sink`` fed 3,000 records (dicts ``{"i": i}``), where ``work`` meets
one fault in its own code at record 1,500 (or in begin/end/commit): ``os._exit(3)`` (crash),
SIGKILL of its own process, ``os._exit(3)`` in ``end()``, ``sys.exit(2)``, raising an exception
that cannot be pickled (it holds a lock and a lambda) or cannot be unpickled (two-argument
``__init__``), pushing a record that cannot be pickled (a lambda) or that fails to unpickle on the
receiving side (``__reduce__`` returns a callable that raises: the ``sink`` is the node that
fails then), a dead letter whose record pickle cannot write (a generator: neither can dill; a
lambda: dill can), raising in ``begin()``, ``end()`` or ``commit()``. Crossed with the guarantee
(``"none"``, ``"replay"``, ``"track"``, and ``"replay"`` with a ``state_dir``) and the mode where
the fault applies: ``"processes"`` (one worker, and two writing the sink's pipe) for the faults
that only exist across a process boundary, ``"sync"`` and ``"threads"`` too for the others.
``test_a_run_longer_than_the_window...`` adds a fault-free run longer than the (shrunk) feed
window under every kind of acknowledged run: a feed that waits forever is a hang too.

Start method: the runtime supports only ``fork`` (src/chronopipe/runtime/runtime.py: "Start
method: fork"; every process is made by ``multiprocess.get_context("fork")`` or ``os.fork``
in runtime/procs.py, hosts.py, counts.py); there is no spawn or forkserver setting to cross
the matrix with, so every cell runs under fork.

Every cell asserts the outcome docs/delivery.md documents for it and, always: the run returns
or raises within ``DEADLINE`` seconds (and the per-test ``pytest.mark.timeout`` turns a real
hang into a failure instead of a stalled suite), no child process is left a moment after, and
a failure is one ``ActorError`` naming the node (``.actor``), never a bare ``BrokenPipeError``
or ``ChannelBroken``, naming no other record than the one that met the fault, counting what a
dead process lost (``.lost``) and, under acknowledgements, what was not confirmed. Cells that
show a bug are kept, marked ``xfail(strict=True)`` with the bug in one line (``BUGS``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import multiprocess
import pytest

from chronopipe.actors import ActorError
from chronopipe.channels import ChannelBroken
from chronopipe.graph import Node, Pipeline, acking
from processes_helper import children

pytestmark = pytest.mark.timeout(60)

N = 3_000
AT = 1_500  # the record that meets the fault (mid-run: the second batch of 1,000)
DEADLINE = 15.0  # seconds for one run, whatever its fault
_ctx = multiprocess.get_context("fork")  # the only start method the runtime has


# -- records and exceptions that do not travel ------------------------------------------------
def _explode() -> None:
    raise RuntimeError("boom from __reduce__")


class Unloadable:
    """Pickles fine; unpickling it (on the receiving side of a process channel) raises."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _explode, ()


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock (and a lambda)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()
        self.hook = lambda: None


class NeedsTwoArgs(Exception):
    """An exception that pickles but cannot be unpickled (its __init__ wants two arguments)."""

    def __init__(self, a: Any, b: Any) -> None:
        super().__init__(f"needs two: {a} {b}")


# -- the nodes --------------------------------------------------------------------------------
class Work(Node):
    """Pushes ``record["i"]`` on; meets ``fault`` at record ``AT`` (or in begin/end/commit)."""

    def __init__(self, name: str, fault: str, flag: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.fault, self.flag = fault, flag

    def begin(self) -> None:
        if self.fault == "begin":
            raise RuntimeError("begin failed")

    def process(self, record: dict[str, Any]) -> None:
        i, fault = record["i"], self.fault
        if i == AT:
            if fault in ("crash", "sigkill") and not os.path.exists(self.flag):
                open(self.flag, "w").close()  # once: a restarted worker goes on
                if fault == "crash":
                    os._exit(3)
                os.kill(os.getpid(), signal.SIGKILL)
            elif fault == "sys_exit":
                sys.exit(2)
            elif fault == "raise_unpicklable":
                raise LockedError(f"locked {i}")
            elif fault == "raise_unloadable":
                raise NeedsTwoArgs(i, i)
            elif fault == "push_unpicklable":
                self.push(lambda: i)
                return
            elif fault == "push_unloadable":
                self.push(Unloadable())
                return
            elif fault == "letter_unpicklable":
                record["gen"] = (x for x in ())  # neither pickle nor dill can write a generator
                raise ValueError(f"bad record {i}")
            elif fault == "letter_lambda":
                record["fn"] = lambda: i  # pickle cannot write it, dill can
                raise ValueError(f"bad record {i}")
        self.push(i)

    def end(self) -> None:
        if self.fault == "end":
            raise RuntimeError("end failed")
        if self.fault == "end_crash":
            os._exit(3)

    def commit(self) -> None:
        if self.fault == "commit":
            raise RuntimeError("commit failed")


class Sink(Node):
    """Counts each record it gets in shared memory (seen in every mode, also after a failed run)."""

    def __init__(self, name: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self._seen = _ctx.Array("i", N, lock=False)  # "_": not node state to bring home
        self._odd = _ctx.Value("q", 0, lock=False)

    def process(self, item: Any) -> None:
        if isinstance(item, int) and 0 <= item < N:
            self._seen[item] += 1
        else:
            self._odd.value += 1


class Source:
    """range(N) as dicts, resumable (``resume_key``), confirmable."""

    def __init__(self, key: str) -> None:
        self.resume_key, self.confirmed = key, []

    def __iter__(self):
        return ({"i": i} for i in range(N))

    def confirm(self, n: int) -> None:
        self.confirmed.append(n)


# -- the matrix ---------------------------------------------------------------------------------
GUARANTEES = ["none", "replay", "track", "replay+state"]
#: faults that exist only across a process boundary: a dead process, a record or batch that must be pickled
PROCESS_ONLY = ["crash", "sigkill", "end_crash", "push_unpicklable", "push_unloadable"]
#: faults of any Python code, in the three modes
ANY_MODE = ["sys_exit", "raise_unpicklable", "raise_unloadable", "letter_unpicklable", "letter_lambda",
            "begin", "end", "commit"]
REPLAYS = ("replay", "replay+state")

#: the cells that show a bug, kept as strict xfails (a fix makes them pass: unmark them then):
#: (faults, guarantees, modes, the bug in one line)
BUGS: list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = []


def _cells() -> list[Any]:
    cells = []
    for fault in PROCESS_ONLY + ANY_MODE:
        for mode in ["processes"] if fault in PROCESS_ONLY else ["sync", "threads", "processes"]:
            for guarantee in GUARANTEES:
                bugs = [reason for faults, guarantees, modes, reason in BUGS
                        if fault in faults and guarantee in guarantees and mode in modes]
                marks = [pytest.mark.xfail(strict=True, reason=bugs[0])] if bugs else []
                for workers in (1, 2) if mode == "processes" else (1,):  # 2: two writers share the sink's pipe
                    cells.append(pytest.param(fault, guarantee, mode, workers, marks=marks,
                                              id=f"{fault}-{guarantee}-{mode}" + ("-w2" if workers == 2 else "")))
    return cells


def _no_child_left(before: set[int]) -> None:
    deadline = time.monotonic() + 2.0
    while True:
        left = [p.pid for p in children() if p.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"processes left after the run: {left}"


def _expected(fault: str, guarantee: str, mode: str) -> str:
    """What docs/delivery.md says the run does: "finish" (every record counted), "restart" (a
    killed worker restarted, every record counted), "letter" (the record retried, then
    dead-lettered, the rest handled), "kept" (under track: the failure kept, not retried, the
    rest handled) or "fail" (an ActorError naming the node)."""
    replay, acks = guarantee.startswith("replay"), guarantee in ("track", "replay+state")
    if fault in ("crash", "sigkill"):
        return "restart" if replay else "fail"
    if fault in ("raise_unpicklable", "raise_unloadable", "letter_unpicklable", "letter_lambda"):
        return "letter" if replay else "kept" if guarantee == "track" else "fail"
    if fault == "commit":  # called under acknowledgements, and in a restartable worker before it acknowledges a batch
        return "fail" if acks or (replay and mode == "processes") else "finish"
    return "fail"  # sys.exit (not retried: it stops the run), begin(), end(), a push that cannot travel,
    # a worker dying in end() (under replay: not restarted once its input has ended)


#: what the error must say, beyond naming the node
SAYS = {"crash": "code 3", "sigkill": "SIGKILL", "end_crash": "code 3", "sys_exit": "SystemExit",
        "raise_unpicklable": "locked 1500", "raise_unloadable": "needs two", "push_unpicklable": "cannot be pickled",
        "push_unloadable": "unpickl", "letter_unpicklable": "bad record 1500", "letter_lambda": "bad record 1500",
        "begin": "begin failed", "end": "end failed", "commit": "commit failed"}


@pytest.mark.parametrize(("fault", "guarantee", "mode", "workers"), _cells())
def test_fault(fault: str, guarantee: str, mode: str, workers: int, tmp_path: Path) -> None:
    before = {p.pid for p in children()}
    work, sink = Work("work", fault, str(tmp_path / "flag"), workers=workers), Sink("sink")
    letters = tmp_path / "dl.jsonl"
    state = {"state_dir": tmp_path / "state"} if guarantee == "replay+state" else {}
    pipeline = Pipeline(work | sink, mode=mode, name="faults", guarantee=guarantee.split("+")[0],
                        max_retries=1, dead_letter=letters, **state)
    source = Source(f"faults-{fault}-{guarantee}-{mode}")
    error: BaseException | None = None
    started = time.monotonic()
    try:
        pipeline.consume(source)
    except BaseException as exc:  # SystemExit too: what the caller gets is the point
        error = exc
    took = time.monotonic() - started
    assert took < DEADLINE, f"the run took {took:.1f} s"
    _no_child_left(before)

    expected, stats = _expected(fault, guarantee, mode), pipeline.statistics()
    seen = list(sink._seen)
    if expected == "fail":
        assert error is not None, f"the run finished: {stats.summary}"
        assert isinstance(error, ActorError), f"not an ActorError: {type(error).__mro__}: {error}"
        node = "sink" if fault == "push_unloadable" else "work"
        assert error.actor == node, f"names {error.actor!r}, not {node!r}: {error}"
        assert SAYS[fault] in str(error), str(error)
        assert not isinstance(error, (BrokenPipeError, ChannelBroken)), str(error)
        if fault == "end_crash" and guarantee in REPLAYS:
            assert "not restarted" in str(error), str(error)
        record = getattr(error, "record", None)
        if record is not None:  # a record named is the one that met the fault
            assert isinstance(record, dict) and record.get("i") == AT, f"blames {record!r}: {error}"
        if guarantee in ("track", "replay+state"):  # acknowledged: the error says what is not confirmed
            unconfirmed = getattr(error, "unconfirmed", None)
            if stats.confirmed is not None and stats.confirmed < stats.fed:
                assert unconfirmed == range(stats.confirmed, stats.fed), (unconfirmed, stats.summary)
            else:  # everything fed was confirmed (end() failed after the last mark)
                assert unconfirmed is None, (unconfirmed, stats.summary)
        if fault in ("crash", "sigkill"):  # a dead process: the error counts what may be lost, never fewer
            # (a sink cancelled in the middle of a batch has handled part of it: counted as lost, an upper bound)
            # (under acks the source may not have fed all N when the run failed: count what it fed)
            fed = N if stats.fed is None else stats.fed
            assert error.lost >= fed - sum(seen) and "in flight (lost)" in str(error), (fed - sum(seen), str(error))
            assert error.lost <= N, str(error)  # (acknowledgement marks are not counted as records)
        elif fault == "end_crash":  # (what it pushed and had not sent yet is not counted: timing, see the report)
            assert error.lost is not None and "in flight (lost)" in str(error), str(error)
        assert stats.state == "failed", stats.summary
        return
    assert error is None, f"{type(error).__name__}: {error}"
    assert stats.state == "finished", stats.summary
    nodes = {n.name: n for n in stats.nodes}
    if expected == "restart":
        assert (tmp_path / "flag").exists()
        assert all(seen), f"records lost: {[i for i, c in enumerate(seen) if not c][:10]}"
        assert sum(seen) - N <= stats.duplicates_possible <= 1_000
        assert stats.restarts == 1 and nodes["work"].received == N, stats.summary
        assert not letters.exists()
    elif expected == "letter":
        assert seen == [0 if i == AT else 1 for i in range(N)], "a record lost or doubled"
        [line] = letters.read_text(encoding="utf-8").splitlines()
        letter = json.loads(line)
        assert (letter["node"], letter["attempts"]) == ("work", 2)
        if fault == "letter_unpicklable":
            assert letter["pickle"] is None and "generator" in json.dumps(letter["record"])
        elif fault == "letter_lambda":
            assert letter["pickler"] == "dill" and letter["pickle"]
        else:
            assert letter["error_type"].endswith(("LockedError", "NeedsTwoArgs")) and letter["pickle"]
        assert (nodes["work"].received, nodes["work"].dead_lettered) == (N, 1)
    elif expected == "kept":
        assert seen == [0 if i == AT else 1 for i in range(N)], "a record lost or doubled"
        [failure] = stats.failures
        assert (failure.node, failure.attempts, stats.failed, nodes["work"].failed) == ("work", 1, 1, 1)
        assert SAYS[fault] in failure.error + failure.traceback + repr(failure.record)
        assert not letters.exists()  # kept in memory, written nowhere
    else:
        assert seen == [1] * N and not letters.exists()
    assert sink._odd.value == 0
    if guarantee in ("track", "replay+state"):
        assert source.confirmed and source.confirmed[-1] == N and stats.confirmed == N


# -- no fault at all, but a run longer than the window -------------------------------------------
#: (pipeline guarantee, the sink's own guarantee, state_dir): acknowledged runs of every kind
WINDOWED = {"track": ("track", None, False), "none+state": ("none", None, True),
            "replay+state": ("replay", None, True), "track+replaying-sink": ("track", "replay", False)}


def _windowed() -> list[Any]:
    cells = []
    for name in WINDOWED:
        for mode in ("sync", "threads", "processes"):
            cells.append(pytest.param(name, mode, id=f"{name}-{mode}"))
    return cells


@pytest.mark.timeout(4)  # a run takes well under a second: a hang fails the cell, not the suite
@pytest.mark.parametrize(("kind", "mode"), _windowed())
def test_a_run_longer_than_the_window_is_confirmed_as_it_goes_and_never_hangs(
        kind: str, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/delivery.md: the feed stays within WINDOW records of what is confirmed, and the source's
    confirm(n) is called whenever n grows: with a window of 2,000, a run of 3,000 records has to be
    confirmed while it goes, in every kind of acknowledged run ("replay" with a state_dir included)."""
    monkeypatch.setattr(acking, "WINDOW", 2_000)
    guarantee, sink_guarantee, with_state = WINDOWED[kind]
    before = {p.pid for p in children()}
    sink = Sink("sink", guarantee=sink_guarantee)
    state = {"state_dir": tmp_path / "state"} if with_state else {}
    pipeline = Pipeline(Work("work", "none", str(tmp_path / "flag")) | sink, mode=mode, guarantee=guarantee,
                        dead_letter=tmp_path / "dl.jsonl", **state)
    source = Source(f"window-{kind}-{mode}")
    pipeline.consume(source)
    _no_child_left(before)
    assert list(sink._seen) == [1] * N
    stats = pipeline.statistics()
    assert stats.confirmed == N and source.confirmed[-1] == N
    assert len(source.confirmed) > 1, f"confirmed only at the end: {source.confirmed}"
