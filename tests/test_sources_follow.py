"""FollowSource: a followed file (tail -F) through creation, growth, rotation, truncation and
restarts; every line exactly once, in order."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from chronopipe.sources import follow
from chronopipe.sources.base import SourceError
from chronopipe.sources.follow import FollowSource
from sources_helper import drain, take, wait_until


# -- helpers ---------------------------------------------------------------------------------
def lines(start: int, stop: int) -> list[str]:
    return [f"{i:06d} the line numbered {i}" for i in range(start, stop)]


def text(records: list[str]) -> str:
    return "".join(f"{r}\n" for r in records)


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def nothing_more(source: FollowSource, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        source.queue.get(timeout=seconds)


def stopped(source: FollowSource) -> tuple[list[str], object]:
    """Stop a hosted source: the records it still had, and its statistics."""
    source.stop()
    left = drain(source.queue)
    return left, source.join(5)


class Writer(threading.Thread):
    """Runs ``work`` on a thread; ``finish()`` joins it and raises what it raised."""

    def __init__(self, work: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.work, self.error = work, None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 20.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the writer is still writing"
        if self.error is not None:
            raise self.error


def trickle(path: Path, records: list[str], per_write: int = 97, pause: float = 0.002) -> None:
    """Append ``records`` a few at a time, each write cut in two mid-line (partial lines)."""
    for i in range(0, len(records), per_write):
        data = text(records[i : i + per_write]).encode()
        cut = len(data) // 2 + 3
        with open(path, "ab") as f:
            f.write(data[:cut])
            f.flush()
            time.sleep(pause / 2)
            f.write(data[cut:])
        time.sleep(pause / 2)


# -- reading ---------------------------------------------------------------------------------
def test_a_one_byte_file_is_read(tmp_path):
    path = tmp_path / "tiny.log"
    path.write_bytes(b"\n")
    with FollowSource(path).start() as source:
        assert take(source.queue, 1) == [""]
        assert source.statistics().bytes == 1


def test_a_partial_last_line_is_held_until_its_newline_arrives(tmp_path):
    path = tmp_path / "app.log"
    path.write_bytes(b"first\nsec")
    source = FollowSource(path).start()
    assert take(source.queue, 1) == ["first"]
    nothing_more(source)
    append(path, "ond\nthi")
    assert take(source.queue, 1) == ["second"]
    left, stats = stopped(source)
    assert left == []  # "thi" is not emitted at the stop either
    assert stats.detail["offset"] == len(b"first\nsecond\n")


def test_a_file_created_after_the_start_is_read_from_its_start(tmp_path):
    path = tmp_path / "later.log"
    source = FollowSource(path, from_start=False).start()
    wait_until(lambda: source.statistics().detail["waiting"])
    path.write_text(text(lines(0, 3)))
    assert take(source.queue, 3) == lines(0, 3)
    assert stopped(source)[1].detail["waiting"] is False


def test_from_start_false_begins_after_the_last_whole_line(tmp_path):
    path = tmp_path / "app.log"
    path.write_text("old\nolder\nstarted")
    source = FollowSource(path, from_start=False).start()
    nothing_more(source)
    append(path, " now\nnew\n")
    assert take(source.queue, 2) == ["started now", "new"]
    stopped(source)


def test_crlf_line_endings_are_taken_off(tmp_path):
    path = tmp_path / "dos.log"
    path.write_bytes(b"a\r\nb\r\n\r\nc\rd\r\n")
    with FollowSource(path).start() as source:
        assert take(source.queue, 4) == ["a", "b", "", "c\rd"]


def test_undecodable_bytes_are_escaped_and_counted(tmp_path):
    path = tmp_path / "bad.log"
    path.write_bytes(b"fine\nbad \xff byte\nfine again\n")
    source = FollowSource(path).start()
    assert take(source.queue, 3) == ["fine", "bad \\xff byte", "fine again"]
    stats = stopped(source)[1]
    assert stats.errors == 1 and "undecodable" in stats.last_error


def test_a_line_longer_than_max_record_is_skipped_to_its_newline_and_counted(tmp_path):
    path = tmp_path / "app.log"
    path.write_bytes(b"short\n" + b"x" * 25 + b"\nfine\n" + b"y" * 11)
    source = FollowSource(path, max_record=10).start()
    assert take(source.queue, 2) == ["short", "fine"]
    append(path, "y" * 30)  # one long line over several reads, held bytes dropped as they come
    nothing_more(source)
    append(path, "\n0123456789\n")
    assert take(source.queue, 1) == ["0123456789"]  # exactly max_record bytes: kept
    left, stats = stopped(source)
    assert left == [] and stats.errors == 2
    assert stats.last_error.endswith("line at byte 37 longer than 10 bytes: skipped")  # the y's, after 37 bytes
    assert stats.detail["offset"] == path.stat().st_size


def test_a_50_mb_file_without_a_newline_is_skipped_in_bounded_memory(tmp_path):
    path = tmp_path / "blob.bin"
    with open(path, "wb") as f:
        f.truncate(50_000_000)  # 50 MB of zero bytes, no b"\n"
    me = psutil.Process()
    before = peak = me.memory_info().rss
    source = FollowSource(path).start()
    deadline = time.monotonic() + 20
    while source.statistics().bytes < 50_000_000:
        assert time.monotonic() < deadline, "the file was not read in 20 s"
        peak = max(peak, me.memory_info().rss)
        time.sleep(0.005)
    peak = max(peak, me.memory_info().rss)
    assert peak - before < 30_000_000
    append(path, "\nafter\n")
    assert take(source.queue, 1) == ["after"]
    stats = stopped(source)[1]
    assert stats.errors == 1 and "line at byte 0 longer than 1,048,576 bytes: skipped" in stats.last_error


def test_a_200k_line_file_is_read_whole(tmp_path):
    path = tmp_path / "big.log"
    records = lines(0, 200_000)
    path.write_text(text(records))
    source = FollowSource(path)
    got = list(itertools.islice(source, len(records)))
    assert len(got) == len(records)
    assert hashlib.sha256(text(got).encode()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source.bytes == path.stat().st_size


# -- rotation and truncation -----------------------------------------------------------------
def test_rename_rotation_gives_every_line_once_in_order(tmp_path):
    path = tmp_path / "app.log"
    expected = lines(0, 9_000)

    def write() -> None:
        for generation in range(3):
            trickle(path, expected[generation * 3000 : (generation + 1) * 3000])
            if generation < 2:
                os.rename(path, tmp_path / f"app.log.{generation + 1}")

    path.write_text("")
    source = FollowSource(path).start()
    writer = Writer(write)
    writer.start()
    got = take(source.queue, len(expected), timeout=30)
    writer.finish()
    left, stats = stopped(source)
    assert got + left == expected
    assert stats.detail["rotations"] == 2 and stats.detail["truncations"] == 0


def test_a_truncated_file_is_read_again_from_its_start(tmp_path):
    path = tmp_path / "app.log"
    path.write_text(text(lines(0, 10)))
    source = FollowSource(path).start()
    assert take(source.queue, 10) == lines(0, 10)
    path.write_text("again\n")  # shorter than what was read
    assert take(source.queue, 1) == ["again"]
    stats = stopped(source)[1]
    assert stats.detail["truncations"] == 1 and stats.detail["offset"] == len("again\n")


def test_copytruncate_with_rotated_loses_and_repeats_nothing(tmp_path):
    path, copy = tmp_path / "app.log", tmp_path / "app.log.1"
    path.write_text(text(lines(0, 100)))
    source = FollowSource(path, rotated=copy, poll=0.5).start()
    assert take(source.queue, 100) == lines(0, 100)
    # while the follower sleeps: lines appended after its last read, then logrotate's copytruncate
    append(path, text(lines(100, 150)))
    shutil.copyfile(path, copy)
    os.truncate(path, 0)
    append(path, text(lines(150, 153)))
    assert take(source.queue, 53) == lines(100, 153)
    nothing_more(source)
    stats = stopped(source)[1]
    assert stats.detail["truncations"] == 1 and stats.detail["rotations"] == 0
    assert stats.detail["recovered"] == len(text(lines(100, 150)))
    assert stats.detail["file"] == str(path)


@pytest.mark.parametrize("copy", [True, False], ids=["copytruncate", "truncate"])
def test_a_file_truncated_and_written_past_the_offset_between_two_looks_is_read_from_its_start(tmp_path, copy):
    path, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    path.write_text("a\nb\n")
    source = FollowSource(path, rotated=rotated if copy else None, poll=0.01)
    looks = 0

    def pause(seconds: float) -> bool:  # the follower waits between two looks: the file is rotated now
        nonlocal looks
        looks += 1
        if looks == 1:
            if copy:
                shutil.copyfile(path, rotated)
            os.truncate(path, 0)
            append(path, "c\nd\ne\nf\n")  # more than was read: the old offset is inside it
        return not source.stopping

    source._pause = pause
    assert list(itertools.islice(source, 6)) == ["a", "b", "c", "d", "e", "f"]
    assert source.detail["truncations"] == 1 and source.errors == 0


def test_a_truncation_between_the_look_at_the_head_and_the_read_drops_that_read(tmp_path, monkeypatch):
    path, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    path.write_text(text(lines(0, 10)))
    read_at = path.stat().st_size
    real_pread, done = os.pread, []

    def pread(fd: int, size: int, offset: int) -> bytes:
        if offset == read_at and size > 4096 and not done:  # the read after the first look: copytruncate now
            done.append(True)
            shutil.copyfile(path, rotated)
            os.truncate(path, 0)
            append(path, text(lines(10, 30)))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    source = FollowSource(path, rotated=rotated, poll=0.01)
    assert list(itertools.islice(source, 30)) == lines(0, 30)
    assert done and source.detail["truncations"] == 1


# -- restarts --------------------------------------------------------------------------------
def test_a_restart_with_a_position_loses_and_repeats_nothing(tmp_path):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    expected = lines(0, 20_000)
    path.write_text("")
    writer = Writer(lambda: trickle(path, expected))
    writer.start()
    first = FollowSource(path, position=position).start()
    got = take(first.queue, 3000)
    left, stats = stopped(first)  # in the middle of the file, the writer still writing
    got += left
    assert stats.records == len(got) and writer.is_alive()
    saved = json.loads(position.read_text())
    assert saved["offset"] == len(text(got))
    second = FollowSource(path, position=position).start()
    got += take(second.queue, len(expected) - len(got), timeout=30)
    writer.finish()
    assert got == expected
    nothing_more(second)
    assert stopped(second)[1].errors == 0


def test_a_restart_after_a_rotation_while_stopped_reads_the_rest_of_the_rotated_file(tmp_path):
    path, copy, position = tmp_path / "app.log", tmp_path / "app.log.1", tmp_path / "app.pos"
    path.write_text(text(lines(0, 100)) + "partial")
    first = FollowSource(path, position=position, rotated=copy).start()
    assert take(first.queue, 100) == lines(0, 100)
    stopped(first)
    append(path, " line\n" + text(lines(100, 150)))  # while no follower runs
    os.rename(path, copy)
    path.write_text(text(lines(150, 200)))
    second = FollowSource(path, position=position, rotated=copy).start()
    assert take(second.queue, 101) == ["partial line", *lines(100, 200)]
    nothing_more(second)
    stats = stopped(second)[1]
    assert stats.detail["rotations"] == 1 and stats.errors == 0


def test_iteration_left_early_saves_the_position_before_the_lines_not_taken(tmp_path):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    path.write_text(text(lines(0, 10)))
    assert list(itertools.islice(FollowSource(path, position=position), 4)) == lines(0, 4)
    assert list(itertools.islice(FollowSource(path, position=position), 6)) == lines(4, 10)


def test_a_stop_with_a_full_channel_saves_the_position_before_the_lines_not_sent(tmp_path):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    expected = lines(0, 20_000)
    path.write_text(text(expected))
    first = FollowSource(path, position=position, maxsize=100).start()
    wait_until(lambda: first.statistics().records == len(expected))  # all read; the channel is full
    first.stop()
    assert first.wait(2.0)  # ended before anyone took a record: what the channel did not take stays unsent
    left, stats = drain(first.queue), first.join(5)
    assert stats.detail.get("unsent", 0) > 0 and len(left) < len(expected)
    assert json.loads(position.read_text())["offset"] == len(text(left))
    second = FollowSource(path, position=position).start()
    assert left + take(second.queue, len(expected) - len(left)) == expected
    nothing_more(second)
    stopped(second)


def test_position_with_event_time_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"position= cannot be used with event_time= \(records held for ordering"):
        FollowSource(tmp_path / "app.log", position=tmp_path / "app.pos", event_time=int)
    FollowSource(tmp_path / "app.log", event_time=int)  # each alone is fine
    FollowSource(tmp_path / "app.log", position=tmp_path / "app.pos", event_time=None)


def test_a_position_that_does_not_match_the_file_restarts_from_its_start(tmp_path):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    path.write_text(text(lines(0, 5)))
    assert list(itertools.islice(FollowSource(path, position=position), 5)) == lines(0, 5)
    with open(path, "r+b") as f:  # the same inode, other first bytes
        f.write(b"X")
    source = FollowSource(path, position=position)
    assert next(iter(source)) == "X" + lines(0, 1)[0][1:]
    assert source.errors == 1 and "does not match the file" in source.last_error


def test_a_corrupt_position_file_is_a_source_error_naming_it(tmp_path):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    path.write_text("a\n")
    position.write_text("{not json")
    with pytest.raises(SourceError, match="app.pos is corrupt"):
        next(iter(FollowSource(path, position=position)))
    assert position.read_text() == "{not json"


# -- errors, stopping, hosting ---------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"encoding": "bogus"}, "FollowSource 'app.log': unknown encoding 'bogus'"),
    ({"encoding": "utf-16"}, "FollowSource 'app.log': encoding 'utf-16' is not supported"),
    ({"poll": 0}, "FollowSource 'app.log': poll must be more than 0 seconds, not 0"),
    ({"poll": -1.0}, "poll must be more than 0"),
    ({"poll": float("nan")}, "poll must be more than 0"),
    ({"max_record": 0}, "max_record must be a number of bytes above 0, not 0"),
])
def test_a_bad_argument_is_a_value_error_naming_the_source_at_construction(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FollowSource(tmp_path / "app.log", **kwargs)


def test_a_directory_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="is a directory"):
        FollowSource(tmp_path).start()
    with pytest.raises(SourceError, match="is a directory"):
        next(iter(FollowSource(tmp_path)))


def test_a_file_it_may_not_read_is_a_source_error(tmp_path, monkeypatch):
    path = tmp_path / "secret.log"
    path.write_text("a\n")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: have open() refuse it as it would refuse another user
        real_open = os.open

        def refusing_open(file, flags, *args, **kwargs):
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(SourceError, match="cannot open .*Permission denied"):
        next(iter(FollowSource(path)))


def test_stop_ends_the_hosted_source_within_a_second_and_closes_every_fd(tmp_path):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    path.write_text(text(lines(0, 10)))
    me = psutil.Process()
    fds = me.num_fds()
    source = FollowSource(path, position=position, rotated=tmp_path / "app.log.1").start()
    assert take(source.queue, 10) == lines(0, 10)
    assert any(f.path == str(path) for f in me.open_files())
    began = time.monotonic()
    source.stop()
    assert source.wait(1.0)
    assert time.monotonic() - began < 1.0
    assert not [f.path for f in me.open_files() if f.path.startswith(str(tmp_path))]
    assert me.num_fds() == fds
    assert json.loads(position.read_text())["offset"] == path.stat().st_size


def test_stop_ends_a_source_waiting_for_its_file(tmp_path):
    source = FollowSource(tmp_path / "never.log").start()
    wait_until(lambda: source.statistics().detail["waiting"])
    began = time.monotonic()
    source.stop()
    assert source.wait(1.0) and time.monotonic() - began < 1.0
    assert source.join().records == 0


def test_in_a_process_the_statistics_are_adopted_after_join(tmp_path):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    path.write_text(text(lines(0, 3)))
    source = FollowSource(path, mode="process", position=position).start()
    assert take(source.queue, 3) == lines(0, 3)
    append(path, text(lines(3, 5)))
    assert take(source.queue, 2) == lines(3, 5)
    left, stats = stopped(source)
    assert left == [] and source.pid != os.getpid()
    assert (stats.records, stats.bytes) == (5, path.stat().st_size)
    assert stats.detail["offset"] == path.stat().st_size
    assert json.loads(position.read_text())["offset"] == path.stat().st_size


def test_a_save_failing_on_a_full_disk_leaves_no_temporary_file_and_is_counted_once(tmp_path, monkeypatch):
    path, position = tmp_path / "app.log", tmp_path / "app.pos"
    path.write_text(text(lines(0, 10)))
    real_fsync, full = os.fsync, threading.Event()
    full.set()

    def fsync(fd: int) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(follow, "SAVE_EVERY", 0.02)
    source = FollowSource(path, position=position, from_start=True).start()
    try:
        assert take(source.queue, 10) == lines(0, 10)
        time.sleep(0.5)  # idle: about 25 retries of the same save
        assert source.statistics().errors == 1 and "No space left" in source.statistics().last_error
        assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log"]  # no state.json.<pid>.tmp
        append(path, text(lines(10, 11)))  # a new position: its failing save is counted too
        assert take(source.queue, 1) == lines(10, 11)
        time.sleep(0.3)
        assert source.statistics().errors == 2
        full.clear()  # space again: the next save succeeds
        deadline = time.monotonic() + 5
        while not position.exists():
            assert time.monotonic() < deadline, "the position was never saved"
            time.sleep(0.02)
        assert json.loads(position.read_text())["offset"] == len(text(lines(0, 11)))
    finally:
        source.stop()
        source.join(5)
    assert source.statistics().errors == 2
